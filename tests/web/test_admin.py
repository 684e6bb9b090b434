"""The owner pages under /admin over real HTTP, on SQLite and PostgreSQL: every route 404 to
anyone without the role, CSRF on every POST, the bulk add all or nothing with a per-line
report, held posts, bans, delivery problems, activity charts and the audit log."""

from __future__ import annotations

import datetime as dt
import html
import re
import secrets

import httpx
from sqlalchemy import select

from mailforum.core import lists, moderation, roles, routing
from mailforum.db import websessions
from mailforum.db.models import AuditEntry, Ban, Member, Post, PostStatus, utcnow
from mailforum.mail.parse import parse
from mailforum.web.auth import SESSION_COOKIE, key_hash
from tests.helpers import DOMAIN, message

OWNER, ADMIN, MEMBER, MOD, OTHER = (
    "owner@example.com",
    "admin@example.com",
    "member@example.com",
    "mod@example.com",
    "other-owner@example.com",
)


def signed_in(site, web, address: str | None) -> httpx.Client:
    """A browser with a live session for ``address`` (None: anonymous)."""
    client = web.client(follow_redirects=False)
    if address is not None:
        key = secrets.token_urlsafe(32)
        now = utcnow()
        with site.db.session() as session:
            websessions.add_session(session, key_hash(key), address, now, now + dt.timedelta(days=1), "test")
        client.cookies.set(SESSION_COOKIE, key, domain="127.0.0.1", path="/")
    return client


def roles_set_up(site) -> None:
    site.create_list("other")
    site.add_members("dev", MEMBER, MOD)
    with site.db.session() as session:
        dev, other = lists.get_list(session, "dev"), lists.get_list(session, "other")
        roles.add_owners(session, dev, [OWNER])
        roles.add_owners(session, other, [OTHER])
        roles.add_admins(session, [ADMIN])
        moderation.add_moderator(session, dev, MOD)


def csrf(page: httpx.Response, action: str) -> str:
    """The CSRF token of a form on ``page`` that posts to ``action`` (tokens are bound to it)."""
    found = re.search(
        rf'<form method="post" action="{re.escape(action)}"[^>]*>\s*'
        r'<input type="hidden" name="csrf" value="([^"]+)"',
        page.text,
    )
    assert found, page.text[:500]
    return html.unescape(found.group(1))


def hold(site, subject: str, sender: str = "stranger@example.net") -> int:
    raw = message(subject, f"<{secrets.token_hex(6)}@example.net>", sender=sender)
    now = utcnow()
    with site.db.session() as session:
        routing.process(session, site.config, parse(raw), raw, sender, (f"dev@{DOMAIN}",), None, now, now)
    with site.db.read_session() as session:
        return session.scalars(select(Post.id).where(Post.subject == subject)).one()


def post(http: httpx.Client, path: str, **fields: str) -> httpx.Response:
    token = csrf(http.get(path), path)
    return http.post(path, data={"csrf": token, **fields})


PAGES = (
    "/admin/lists/dev",
    "/admin/lists/dev/members",
    "/admin/lists/dev/held",
    "/admin/lists/dev/bans",
    "/admin/lists/dev/problems",
    "/admin/lists/dev/activity",
    "/admin/lists/dev/audit",
    "/admin/lists/dev/templates",
    "/admin/lists/dev/templates/notification/post.txt.j2",
)
WHO = {
    "anonymous": None,
    "member": MEMBER,
    "moderator": MOD,
    "other owner": OTHER,
    "owner": OWNER,
    "admin": ADMIN,
}


def test_every_owner_route_is_404_without_the_role_and_every_post_needs_csrf(site, web) -> None:
    roles_set_up(site)
    wrong = []
    for who, address in WHO.items():
        allowed = who in ("owner", "admin")
        with signed_in(site, web, address) as http:
            for path in (*PAGES, "/admin/lists/nosuch", "/admin/lists/nosuch/members"):
                want = 200 if allowed and "nosuch" not in path else 404
                got = http.get(path).status_code
                if got != want:
                    wrong.append(f"GET {path} as {who}: {got}, want {want}")
            for path in (p for p in PAGES if not p.endswith(("activity", "audit", "templates"))):
                got = http.post(
                    path, data={"csrf": "x", "action": "add", "addresses": "x@example.com"}
                ).status_code
                want = 403 if allowed else 404  # a forged CSRF token: refused, and nothing changes
                if got != want:
                    wrong.append(f"POST {path} as {who} with a bad token: {got}, want {want}")
            for path in ("/admin/bans", "/admin/new-list"):  # site admins' pages
                got = http.post(
                    path, data={"csrf": "x", "action": "add", "pattern": "x@example.com"}
                ).status_code
                want = 403 if who == "admin" else 404
                if got != want:
                    wrong.append(f"POST {path} as {who} with a bad token: {got}, want {want}")
                got = http.get(path).status_code
                if got != (200 if who == "admin" else 404):
                    wrong.append(f"GET {path} as {who}: {got}")
            index, create = http.get("/admin").status_code, http.get("/admin/new-list").status_code
            want_index = 200 if allowed or who == "other owner" else 404  # the index of the lists they run
            want_create = 200 if who == "admin" else 404
            if (index, create) != (want_index, want_create):
                wrong.append(
                    f"/admin, /admin/new-list as {who}: {index}, {create}; want {want_index}, {want_create}"
                )
    assert wrong == []
    with site.db.read_session() as session:
        assert session.scalars(select(Member.address)).all().count("x@example.com") == 0
        assert session.scalars(select(AuditEntry)).all() == []


def test_the_owner_journey_bulk_add_held_posts_bans_charts_and_the_audit_log(site, web) -> None:
    roles_set_up(site)
    with signed_in(site, web, OWNER) as http:
        assert "Running" in http.get("/admin").text and 'href="/admin/lists/dev"' in http.get("/admin").text
        r = post(
            http,
            "/admin/lists/dev",
            title="Developers",
            policy="moderated",
            visibility="private",
            unverified_action="hold",
            digest_format="mime",
            moderate_first_post="on",
        )
        assert r.status_code == 303
        assert "Saved." in http.get(r.headers["location"]).text
        pasted = "\n".join(
            [*(f"new{i}@example.com" for i in range(99)), "not an address", "Ann <ann@example.com>"]
        )
        r = post(http, "/admin/lists/dev/members", action="add", addresses=pasted, mode="digest")
        assert r.status_code == 422
        assert "Nothing was added" in r.text and "not an address" in r.text and r.text.count(": ok<") == 100
        assert "new98@example.com" in r.text  # the textarea keeps what was pasted
        with site.db.read_session() as session:
            assert session.scalars(select(Member.address).where(Member.address.like("new%"))).all() == []
        fixed = pasted.replace("not an address", "fixed@example.com")
        r = post(http, "/admin/lists/dev/members", action="add", addresses=fixed, mode="digest")
        assert r.status_code == 303
        page = http.get(r.headers["location"])
        assert "Added 101 member(s)" in page.text
        found = http.get("/admin/lists/dev/members", params={"q": "ANN@"}).text
        assert "ann@example.com" in found and "new1@example.com" not in found
        assert (
            post(
                http, "/admin/lists/dev/members", action="mode", address="ann@example.com", mode="none"
            ).status_code
            == 303
        )
        assert (
            post(http, "/admin/lists/dev/members", action="remove", address="new0@example.com").status_code
            == 303
        )
        with site.db.read_session() as session:
            modes = dict(session.execute(select(Member.address, Member.delivery_mode)).all())
        assert (
            modes["ann@example.com"] == "none"
            and modes["new5@example.com"] == "digest"
            and "new0@example.com" not in modes
        )

        approve, ban = hold(site, "Please approve me"), hold(site, "Buy pills", "spammer@bad.example")
        held_page = http.get("/admin/lists/dev/held").text
        assert "Please approve me" in held_page and "Buy pills" in held_page
        assert post(http, "/admin/lists/dev/held", post=str(approve), action="approve").status_code == 303
        token = csrf(http.get("/admin/lists/dev/held"), "/admin/lists/dev/held")
        assert (
            http.post("/admin/lists/dev/held", data={"csrf": token, "post": ban, "action": "ban"}).status_code
            == 303
        )
        again = http.post("/admin/lists/dev/held", data={"csrf": token, "post": ban, "action": "approve"})
        assert again.status_code == 404  # not held any more
        assert "spammer@bad.example" in http.get("/admin/lists/dev/bans").text
        bad = post(http, "/admin/lists/dev/bans", action="add", pattern="^(")
        assert bad.status_code == 422 and "not a regular expression" in bad.text
        assert post(http, "/admin/lists/dev/bans", action="add", pattern="@worse.example").status_code == 303

        activity = http.get("/admin/lists/dev/activity")
        assert activity.text.count("<svg") == 5 and "Posts per day" in activity.text
        assert "<script" not in activity.text
        assert "new1@example.com" not in http.get("/admin/lists/dev/problems").text
        audit = http.get("/admin/lists/dev/audit").text
    with site.db.read_session() as session:
        assert session.get(Post, approve).status == PostStatus.PUBLISHED.value
        assert session.get(Post, ban) is None
        assert sorted(session.scalars(select(Ban.pattern))) == ["@worse.example", "spammer@bad.example"]
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        mlist = lists.get_list(session, "dev")
        assert (
            mlist.posting_policy == "moderated"
            and mlist.visibility == "private"
            and mlist.digest_format == "mime"
        )
    actions = [(e.actor, e.action, e.target) for e in entries]
    assert actions == [
        (OWNER, "list.settings", "dev"),
        (OWNER, "members.add", "101 addresses"),
        (OWNER, "members.change", "ann@example.com"),
        (OWNER, "members.remove", "new0@example.com"),
        (OWNER, "held.approve", str(approve)),
        (OWNER, "bans.add", "spammer@bad.example"),
        (OWNER, "held.ban", str(ban)),
        (OWNER, "bans.add", "@worse.example"),
    ]
    assert all(e.origin == "127.0.0.1" for e in entries)
    assert "members.add" in audit and OWNER in audit


def test_a_site_admin_creates_a_list_and_becomes_its_owner(site, web) -> None:
    roles_set_up(site)
    with signed_in(site, web, ADMIN) as http:
        bad = post(
            http, "/admin/new-list", name="Bad Name!", title="x", policy="members", visibility="public"
        )
        assert bad.status_code == 422 and "bad list name" in bad.text
        r = post(http, "/admin/new-list", name="fresh", title="Fresh", policy="open", visibility="public")
        assert r.status_code == 303 and r.headers["location"] == "/admin/lists/fresh"
    with site.db.read_session() as session:
        fresh = lists.get_list(session, "fresh")
        assert fresh.posting_policy == "open" and roles.owners(session, fresh) == [ADMIN]
    with signed_in(site, web, OWNER) as http:
        assert http.get("/admin/lists/fresh").status_code == 404


def test_failed_copies_are_retried_and_a_disabled_member_is_enabled_again(site, web) -> None:
    from mailforum.db.models import OutboxEntry, OutboxState

    roles_set_up(site)
    with site.db.session() as session:
        dev = lists.get_list(session, "dev")
        for n in range(2):
            session.add(
                OutboxEntry(
                    kind="notice",
                    list_id=dev.id,
                    recipient=f"gone{n}@example.com",
                    message_id=f"<n{n}@example.com>",
                    state=OutboxState.FAILED.value,
                    last_reply="550 5.1.1 no such user",
                )
            )
        member = lists.find_member(session, dev.id, MEMBER)
        member.bounce_score, member.delivery_disabled_at = 5.0, utcnow()
    with signed_in(site, web, OWNER) as http:
        page = http.get("/admin/lists/dev/problems").text
        assert "gone0@example.com" in page and "550 5.1.1 no such user" in page
        assert "Messages whose processing failed" not in page  # parked spool entries: site admins only
        with site.db.read_session() as session:
            first = min(session.scalars(select(OutboxEntry.id)))
        assert post(http, "/admin/lists/dev/problems", retry="copy", id=str(first)).status_code == 303
        assert (
            post(http, "/admin/lists/dev/problems", retry="spool", id="0").status_code == 404
        )  # not an admin
        assert "Re-enable" in http.get("/admin/lists/dev/members").text
        assert post(http, "/admin/lists/dev/members", action="enable", address=MEMBER).status_code == 303
    with site.db.read_session() as session:
        states = dict(session.execute(select(OutboxEntry.recipient, OutboxEntry.state)).all())
        assert states == {"gone0@example.com": "pending", "gone1@example.com": "failed"}
        again = lists.find_member(session, lists.get_list(session, "dev").id, MEMBER)
        assert again.delivery_disabled_at is None and again.bounce_score == 0
    with signed_in(site, web, ADMIN) as http:
        assert "Messages whose processing failed" in http.get("/admin/lists/dev/problems").text


def test_a_list_named_new_is_reached_at_its_own_page(site, web) -> None:
    roles_set_up(site)
    with signed_in(site, web, OWNER) as http:
        assert http.get("/admin/lists/new").status_code == 404  # not an admin: no redirect, nothing told
    with signed_in(site, web, ADMIN) as http:
        old = http.get("/admin/lists/new")
        assert old.status_code == 303 and old.headers["location"] == "/admin/new-list"
        assert 'href="/admin/new-list"' in http.get("/admin").text
        r = post(http, "/admin/new-list", name="new", title="New things", policy="open", visibility="public")
        assert r.status_code == 303 and r.headers["location"] == "/admin/lists/new"
        page = http.get("/admin/lists/new")
        assert page.status_code == 200 and "Running <bdi>New things</bdi>" in page.text
        assert (
            post(
                http,
                "/admin/lists/new",
                title="Newer",
                policy="open",
                visibility="public",
                unverified_action="hold",
                digest_format="standard",
            ).status_code
            == 303
        )
    with site.db.read_session() as session:
        assert lists.get_list(session, "new").title == "Newer"


def test_the_digest_hour_zone_and_format_are_set_on_the_settings_page(site, web) -> None:
    """S35/B54: the page takes the CLI's rule (core.digest_schedule.set_list_digest); a bad zone
    or hour is a 422 naming it, and nothing of that form is saved."""
    roles_set_up(site)
    form = {"title": "Dev", "policy": "members", "visibility": "public", "unverified_action": "hold"}
    with signed_in(site, web, OWNER) as http:
        page = http.get("/admin/lists/dev").text
        assert 'name="digest_hour"' in page and "the site's (07:00)" in page
        r = post(
            http,
            "/admin/lists/dev",
            **form,
            digest_format="mime",
            digest_hour="18",
            digest_timezone="Asia/Tokyo",
        )
        assert r.status_code == 303
        page = http.get("/admin/lists/dev").text
        assert '<option value="18" selected>' in page and 'value="Asia/Tokyo"' in page
        for hour, zone, error in (
            ("3", "Mars/Olympus", "unknown time zone &#39;Mars/Olympus&#39;"),
            ("3", "../../etc/passwd", "unknown time zone"),
            ("3", "Europe/Berlin\r\nX: y", "unknown time zone"),
            ("24", "UTC", "bad digest hour &#39;24&#39;"),
            ("-1", "UTC", "bad digest hour"),
        ):
            bad = post(
                http,
                "/admin/lists/dev",
                **{**form, "title": "Changed"},
                digest_format="standard",
                digest_hour=hour,
                digest_timezone=zone,
            )
            assert bad.status_code == 422 and error in bad.text, (hour, zone, bad.text[:300])
        bad = post(http, "/admin/lists/dev", **form, digest_format="rtf", digest_hour="", digest_timezone="")
        assert bad.status_code == 422 and "unknown digest format &#39;rtf&#39;" in bad.text
        assert (
            post(
                http, "/admin/lists/dev", **form, digest_format="mime", digest_hour="", digest_timezone=""
            ).status_code
            == 303
        )
    with site.db.read_session() as session:
        dev = lists.get_list(session, "dev")
        assert (dev.title, dev.digest_hour, dev.digest_timezone, dev.digest_format) == (
            "Dev",
            None,
            None,
            "mime",
        )
        details = [e.detail for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert details == [
        {
            "title": "Dev",
            "digest_format": "mime",
            "digest_hour": 18,
            "digest_timezone": "Asia/Tokyo",
            "list": "dev",
        },
        {"digest_hour": None, "digest_timezone": None, "list": "dev"},
    ]


def test_an_owner_edits_resets_and_cannot_break_a_mail_template(site, web) -> None:
    """S36/B55: only the mail templates exist as pages; a template that does not compile is a
    422 with its line, kept nowhere; saving and resetting are audited."""
    roles_set_up(site)
    page = "/admin/lists/dev/templates/notification/post.txt.j2"
    with signed_in(site, web, OWNER) as http:
        index = http.get("/admin/lists/dev/templates").text
        assert f'href="{page}"' in index and "built-in" in index and "web/base.html" not in index
        for missing in (
            "web/base.html",
            "nosuch.txt.j2",
            "../../../etc/passwd",
            "notification/..%2f..%2fREADME.md",
        ):
            assert http.get(f"/admin/lists/dev/templates/{missing}").status_code == 404, missing
        shown = http.get(page).text
        assert "{{ post.text }}" in shown and "Reset to the built-in" not in shown
        bad = post(http, page, action="save", source="Hi\n{% for x in y %}\nno end")
        assert bad.status_code == 422 and "does not compile: line 3" in bad.text, bad.text[:400]
        assert "no end" in bad.text  # the textarea keeps what was typed
        huge = post(http, page, action="save", source="x" * (64 * 1024 + 1))
        assert huge.status_code == 422 and "at most 65536 bytes" in huge.text
        shown = post(http, page, action="preview", source="To {{ list.title }}: {{ post.subject }}!")
        assert (
            shown.status_code == 200
            and "To dev: «post.subject»!" in shown.text
            and "Preview (not saved)" in shown.text
        )
        escaped = post(http, page, action="preview", source="{{ list.__class__ }}")
        assert escaped.status_code == 422 and "would fail in a mail (SecurityError" in escaped.text
        r = post(http, page, action="save", source="<b>Hi</b> {{ post.text }}\r\n")
        assert r.status_code == 303 and r.headers["location"] == page + "?saved=save"
        shown = http.get(r.headers["location"]).text
        assert "Saved." in shown and "&lt;b&gt;Hi&lt;/b&gt; {{ post.text }}" in shown
        assert "this list's own (by owner@example.com)" in http.get("/admin/lists/dev/templates").text
        assert post(http, page, action="reset").status_code == 303
        assert "Reset to the built-in" not in http.get(page).text
    with signed_in(site, web, OTHER) as http:
        assert http.get(page).status_code == 404
    with site.db.read_session() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert lists.get_list(session, "dev").templates_version == 2
    assert [(e.actor, e.action, e.target) for e in entries] == [
        (OWNER, "templates.set", "notification/post.txt.j2"),
        (OWNER, "templates.reset", "notification/post.txt.j2"),
    ]


def test_a_site_admin_bans_senders_on_every_list(site, web) -> None:
    """S37/B56: /admin/bans takes the CLI's patterns and refuses what it refuses; audited."""
    roles_set_up(site)
    with signed_in(site, web, ADMIN) as http:
        assert 'href="/admin/bans"' in http.get("/admin").text
        for pattern, error in (
            ("^(", "not a regular expression"),
            ("@-bad-", "not a domain after"),
            ("no at sign", "give an address, @domain or ^regex"),
            ("a@b.example\r\nX: y", "bad ban pattern"),
            ("", "bad ban pattern"),
        ):
            bad = post(http, "/admin/bans", action="add", pattern=pattern)
            assert bad.status_code == 422 and error in bad.text, (pattern, bad.text[:300])
        for pattern in ("@Spam.Example", "^.*@junk\\.example$", "pest@example.net"):
            r = post(http, "/admin/bans", action="add", pattern=pattern)
            assert r.status_code == 303 and r.headers["location"] == "/admin/bans"
        page = http.get("/admin/bans").text
        assert "@spam.example" in page and "pest@example.net" in page
        assert post(http, "/admin/bans", action="remove", pattern="pest@example.net").status_code == 303
        assert post(http, "/admin/bans", action="wipe", pattern="x@example.net").status_code == 400
    with signed_in(site, web, OWNER) as http:
        assert http.get("/admin/bans").status_code == 404
        assert (
            "@spam.example" in http.get("/admin/lists/dev/bans").text
        )  # shown to owners, not theirs to lift
    with site.db.read_session() as session:
        assert bans_of(session) == ["@spam.example", "^.*@junk\\.example$"]
        dev = lists.get_list(session, "dev")
        from mailforum.core import bans

        assert bans.banned(session, dev, "x@mail.spam.example") == "@spam.example"
        assert bans.banned(session, dev, "y@junk.example") == "^.*@junk\\.example$"
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.actor, e.action, e.target, e.list_id) for e in entries] == [
        (ADMIN, "bans.add", "@spam.example", None),
        (ADMIN, "bans.add", "^.*@junk\\.example$", None),
        (ADMIN, "bans.add", "pest@example.net", None),
        (ADMIN, "bans.remove", "pest@example.net", None),
    ]


def bans_of(session) -> list[str]:
    return list(session.scalars(select(Ban.pattern).where(Ban.list_id.is_(None)).order_by(Ban.id)))


def form_csrf(page: httpx.Response, action: str) -> str:
    """The CSRF token of the (first) form on ``page`` posting to ``action``."""
    start = page.text.index(f'action="{action}"')
    found = re.search(r'name="csrf" value="([^"]+)"', page.text[start:])
    assert found, page.text[start : start + 300]
    return html.unescape(found.group(1))


def test_a_members_own_changes_on_the_web_are_in_the_owners_audit_log(site, web) -> None:
    """Join, watch, mute, preferences and leave on the web are audited as the member's, from
    the client's address; the same changes by mail are not (they were never)."""
    from tests.web.kit import seed

    roles_set_up(site)
    seed(site.config, site.db, [message("A topic", "<audit-t@example.com>")])
    with site.db.read_session() as session:
        topic = session.scalars(select(Post.topic_id)).one()
    joiner = "joiner@example.com"
    with signed_in(site, web, joiner) as http:
        join = "/lists/dev/join"
        assert http.post(join, data={"csrf": form_csrf(http.get(join), join)}).status_code == 303
        page = f"/lists/dev/topics/{topic}"
        for kind in ("watch", "mute"):
            action = f"{page}/{kind}"
            assert http.post(action, data={"csrf": form_csrf(http.get(page), action)}).status_code == 303
        prefs = "/lists/dev/preferences"
        fields = {"mode": "digest", "digest": "weekly", "digest_hour": "8", "timezone": "Asia/Tokyo"}
        saved = http.post(prefs, data={"csrf": form_csrf(http.get(prefs), prefs), **fields})
        assert saved.status_code == 303
        again = http.post(prefs, data={"csrf": form_csrf(http.get(prefs), prefs), **fields})
        assert again.status_code == 303  # nothing changed: no entry
        leave = f"{prefs}/leave"
        assert http.post(leave, data={"csrf": form_csrf(http.get(prefs), leave)}).status_code == 200
    with site.db.read_session() as session:
        dev = lists.get_list(session, "dev")
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.actor, e.origin, e.action, e.list_id) for e in entries] == [
        (joiner, "127.0.0.1", action, dev.id)
        for action in ("member.join", "member.watch", "member.mute", "member.preferences", "member.leave")
    ]
    assert entries[3].detail == {
        "mode": "digest",
        "digest": "weekly",
        "digest_hour": 8,
        "digest_timezone": "Asia/Tokyo",
    }
    with signed_in(site, web, OWNER) as http:
        shown = http.get("/admin/lists/dev/audit").text
    for action in ("member.join", "member.watch", "member.mute", "member.preferences", "member.leave"):
        assert f"<td>{action}</td>" in shown


def test_banning_a_sender_that_cannot_be_banned_is_a_422_and_retry_all_stays_in_the_list(site, web) -> None:
    """B56: a held post whose sender is empty or not an address: "discard and ban" says so
    (422) and changes nothing; "retry all" requeues only this list's failed copies."""
    from mailforum.db.models import OutboxEntry, OutboxState

    roles_set_up(site)
    empty, garbled = hold(site, "No sender"), hold(site, "Garbled sender")
    with site.db.session() as session:
        session.get(Post, empty).author_address = ""
        session.get(Post, garbled).author_address = "not an address"
        for n, name in enumerate(("dev", "dev", "other")):
            session.add(
                OutboxEntry(
                    kind="notice",
                    list_id=lists.get_list(session, name).id,
                    recipient=f"gone{n}@example.com",
                    message_id=f"<r{n}@example.com>",
                    state=OutboxState.FAILED.value,
                )
            )
    with signed_in(site, web, OWNER) as http:
        for post_id, shown in ((empty, "(no address)"), (garbled, "&#39;not an address&#39;")):
            r = post(http, "/admin/lists/dev/held", post=str(post_id), action="ban")
            assert r.status_code == 422 and f"the sender {shown} of post {post_id} cannot be banned" in r.text
        assert post(http, "/admin/lists/dev/held", post=str(empty), action="discard").status_code == 303
        assert post(http, "/admin/lists/dev/problems", retry="copy", id="0").status_code == 303
    with site.db.read_session() as session:
        assert session.get(Post, empty) is None and session.get(Post, garbled).status == PostStatus.HELD.value
        assert session.scalars(select(Ban)).all() == []
        states = dict(
            session.execute(
                select(OutboxEntry.recipient, OutboxEntry.state).where(OutboxEntry.recipient.like("gone%"))
            ).all()
        )
        actions = [(e.action, e.detail.get("copies")) for e in session.scalars(select(AuditEntry))]
    assert states == {
        "gone0@example.com": "pending",
        "gone1@example.com": "pending",
        "gone2@example.com": "failed",
    }
    assert actions == [("held.discard", None), ("outbox.retry", 2)]
