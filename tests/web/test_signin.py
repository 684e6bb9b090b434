"""Signing in by mail, over real HTTP, with the mail at a real SMTP sink: the flow and its abuse cases.

The app runs on a loopback port (WebThread); sign-in mails go through the outbox and the
real delivery worker to a RecordingSink, and the link is read from the mail as a person would.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import select, update

from mailforum.db.models import Member, OutboxEntry, SignInLink, Visibility, WebSession
from mailforum.web.auth import Viewer, key_hash
from tests.helpers import RecordingSink, message
from tests.integration.outbound_helpers import deliver
from tests.web.kit import WebThread, seed

ALICE = "alice@example.com"


@pytest.fixture
def mailsink(site) -> Iterator[RecordingSink]:
    sink = RecordingSink()
    sink.start()
    site.config = replace(site.config, relay=replace(site.config.relay, port=sink.port))
    yield sink
    sink.stop()


@pytest.fixture
def app(site, mailsink) -> Iterator[WebThread]:
    site.config = replace(site.config, web=replace(site.config.web, form_limit=20))
    running = WebThread(site.config, site.db)
    running.start()
    yield running
    for client in OPEN:
        client.close()
    OPEN.clear()
    running.stop()


OPEN: list[httpx.Client] = []


def browser(app: WebThread) -> httpx.Client:
    """A browser with its own cookie jar, sending the Origin a same-site form sends."""
    client = app.client(headers={"origin": app.base})
    OPEN.append(client)
    return client


def csrf_of(page: httpx.Response, action: str = "/signout") -> str:
    """The CSRF token of the page's (first) form posting to ``action``."""
    form = rf'<form method="post" action="{re.escape(action)}"[^>]*>\s*'
    found = re.search(form + r'<input type="hidden" name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def ask(http: httpx.Client, address: str) -> httpx.Response:
    page = http.get("/signin")
    assert page.status_code == 200 and 'name="address"' in page.text
    return http.post("/signin", data={"csrf": csrf_of(page, "/signin"), "address": address})


def links_to(site, sink: RecordingSink, address: str) -> list[str]:
    """Deliver what is queued; every sign-in link mailed to ``address``, oldest first."""
    deliver(site.config, site.db)
    found = []
    for t in sink.transactions:
        if t.rcpt_tos != [address]:
            continue
        mail = email.message_from_bytes(t.data, policy=email.policy.default)
        text = mail.get_body(("plain",)).get_content()
        found += re.findall(re.escape(site.config.site.base_url) + r"(/signin/[0-9a-z-]+)", text)
    return found


def sign_in(site, app, sink, address: str = ALICE) -> httpx.Client:
    http = browser(app)
    assert ask(http, address).status_code == 200
    link = links_to(site, sink, address)[-1]
    page = http.get(link)
    assert page.status_code == 200 and "Sign in" in page.text and address in page.text
    done = http.post(link)
    assert done.status_code == 303 and done.headers["location"] == "/account"
    return http


def private_list(site) -> None:
    site.create_list("secret", visibility=Visibility.PRIVATE)
    site.add_members("secret", ALICE)
    seed(site.config, site.db, [message("Secret plans", "<s1@example.com>")], "secret")


def test_the_whole_flow_sign_in_read_a_private_list_sign_out(site, app, mailsink) -> None:
    private_list(site)
    http = browser(app)
    assert http.get("/lists/secret").status_code == 404
    answer = ask(http, ALICE)
    assert answer.status_code == 200 and "Check your mail" in answer.text
    assert "httponly" in answer.headers["set-cookie"].lower()
    (link,) = links_to(site, mailsink, ALICE)
    mail = mailsink.transactions[-1]
    assert mail.mail_from == "<>"  # a bounce of a sign-in mail goes nowhere
    parsed = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert parsed["Auto-Submitted"] == "auto-generated" and "List-Id" not in parsed
    # The GET shows a button and changes nothing: a mail scanner's visit spends nothing.
    assert http.get(link).status_code == 200
    with browser(app) as scanner:
        seen = scanner.get(link)
        assert seen.status_code == 200 and "Another browser asked for this link" in seen.text
    assert http.get("/lists/secret").status_code == 404
    done = http.post(link)
    assert done.status_code == 303
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("mf_session=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # base_url is http here
    with site.db.read_session() as session:
        stored = session.scalars(select(WebSession)).one()
    assert stored.address == ALICE and http.cookies["mf_session"] not in stored.key_hash
    account = http.get("/account")
    assert account.status_code == 200 and ALICE in account.text and 'action="/signout"' in account.text
    assert "secret" in account.text  # her lists
    page = http.get("/lists/secret")
    assert page.status_code == 200 and "Secret plans" in page.text
    assert page.headers["cache-control"].startswith("private") and "Cookie" in page.headers["vary"]
    topic = re.search(r"/lists/secret/topics/(\d+)", page.text)
    assert topic
    tid = topic.group(1)
    now = dt.datetime.now(dt.UTC)
    readable = (
        f"/lists/secret/topics/{tid}",
        f"/lists/secret/topics/{tid}/feed.atom",
        f"/lists/secret/topics/{tid}/topic.mbox",
        f"/lists/secret/mbox/{now.year:04d}-{now.month:02d}.mbox",
        "/lists/secret/feed.atom",
        "/lists/secret/archive",
        "/lists/secret/search?q=plans",
    )
    for path in readable:
        assert http.get(path).status_code == 200, path
    assert 'href="/lists/secret"' in http.get("/").text  # the index shows her private list
    with browser(app) as anon:
        for path in readable:
            assert anon.get(path).status_code == 404, path
        assert 'href="/lists/secret"' not in anon.get("/").text
    with browser(app) as anon:
        public = anon.get("/lists/dev")
        assert public.headers["cache-control"].startswith("public") and ALICE not in public.text
        assert anon.get("/lists/secret/feed.atom").status_code == 404
    out = http.post("/signout", data={"csrf": csrf_of(account)})
    assert out.status_code == 303
    assert http.get("/lists/secret").status_code == 404
    assert ALICE not in http.get("/").text


def test_a_link_works_once_in_the_browser_that_asked(site, app, mailsink) -> None:
    private_list(site)
    http = browser(app)
    ask(http, ALICE)
    (link,) = links_to(site, mailsink, ALICE)
    asked_cookie = http.cookies["mf_signin"]
    with browser(app) as other:  # forwarded: the other browser cannot use it, but may ask for its own
        assert other.post(link).status_code == 200
        assert other.get("/lists/secret").status_code == 404
        resend = other.post(link, data={"resend": "1"})
        assert resend.status_code == 200 and "Check your mail" in resend.text
        own = links_to(site, mailsink, ALICE)[-1]
        assert own != link and other.post(own).status_code == 303
        assert other.get("/lists/secret").status_code == 200
    assert http.post(link).status_code == 303
    # Twice: the same POST again (the same cookies), or the link in a browser that signed out.
    with browser(app) as twin:
        twin.cookies.set("mf_signin", asked_cookie, domain="127.0.0.1", path="/")
        again = twin.post(link)
        assert again.status_code == 410 and "used already" in again.text
        assert twin.get("/lists/secret").status_code == 404


def test_forged_expired_and_garbage_tokens(site, app, mailsink) -> None:
    http = browser(app)
    ask(http, ALICE)
    (link,) = links_to(site, mailsink, ALICE)
    forged = link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb")
    assert http.get(forged).status_code == 404 and http.post(forged).status_code == 404
    garbage = http.get("/signin/garbage")
    assert garbage.status_code == 404 and "set-cookie" not in garbage.headers
    with site.db.session() as session:
        session.execute(
            update(SignInLink).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    expired = http.post(link)
    assert expired.status_code == 410 and "expired" in expired.text
    assert "mf_session" not in http.cookies


def test_the_answer_never_tells_whether_an_address_is_known(site, app, mailsink) -> None:
    site.add_members("dev", ALICE)
    with browser(app) as http:
        known = ask(http, ALICE)
        unknown = ask(http, "nobody@example.net")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(ALICE, "X") == unknown.text.replace("nobody@example.net", "X")
    # A visitor signs in to join: the unknown address gets its link too.
    assert links_to(site, mailsink, "nobody@example.net")


def test_caps_per_address_and_per_client(site, app, mailsink) -> None:
    per_address = site.config.web.signin_per_address
    with browser(app) as http:
        answers = [ask(http, ALICE).status_code for _ in range(per_address + 2)]
    assert answers == [200] * (per_address + 2)  # the same answer; only the mails stop
    assert len(links_to(site, mailsink, ALICE)) == per_address
    with site.db.read_session() as session:
        assert len(session.scalars(select(OutboxEntry)).all()) == per_address
    limit = site.config.web.form_limit
    with browser(app) as http:
        codes = [ask(http, f"p{i}@example.com").status_code for i in range(limit - per_address - 2 + 1)]
    assert codes[-1] == 429  # the client had form_limit sign-in requests in the window


def test_csrf_and_origin_are_checked(site, app, mailsink) -> None:
    with browser(app) as http:
        http.get("/signin")
        assert http.post("/signin", data={"address": ALICE}).status_code == 403
        assert http.post("/signin", data={"csrf": "1.bad", "address": ALICE}).status_code == 403
    signed = sign_in(site, app, mailsink)
    assert signed.post("/signout", data={}).status_code == 403
    assert signed.post("/signout", data={"csrf": "1.bad"}).status_code == 403
    token = csrf_of(signed.get("/account"))
    evil = signed.post("/signout", data={"csrf": token}, headers={"origin": "https://evil.example"})
    assert evil.status_code == 403
    assert ALICE in signed.get("/account").text  # still signed in
    with browser(app) as anon:  # a token without its session is worthless
        assert anon.post("/signout", data={"csrf": token}).status_code == 403
    assert links_to(site, mailsink, ALICE)


def test_session_fixation_and_replay_after_sign_out(site, app, mailsink) -> None:
    private_list(site)
    http = browser(app)
    planted = "A" * 43  # an attacker's cookie in the victim's browser is never adopted
    http.cookies.set("mf_session", planted, domain="127.0.0.1", path="/")
    ask(http, ALICE)
    link = links_to(site, mailsink, ALICE)[-1]
    assert http.post(link).status_code == 303
    fresh = http.cookies["mf_session"]
    assert fresh != planted
    with browser(app) as attacker:
        attacker.cookies.set("mf_session", planted, domain="127.0.0.1", path="/")
        assert attacker.get("/lists/secret").status_code == 404
    # A second sign-in in the same browser rotates the session: the old cookie stops working.
    again = ask(http, ALICE)
    assert again.status_code == 200, again.text
    assert http.post(links_to(site, mailsink, ALICE)[-1]).status_code == 303
    assert http.cookies["mf_session"] != fresh
    with browser(app) as thief:
        thief.cookies.set("mf_session", fresh, domain="127.0.0.1", path="/")
        assert thief.get("/lists/secret").status_code == 404
        thief.cookies.set("mf_session", http.cookies["mf_session"], domain="127.0.0.1", path="/")
        assert thief.get("/lists/secret").status_code == 200
        copied = thief.cookies["mf_session"]
    http.post("/signout", data={"csrf": csrf_of(http.get("/account"))})
    with browser(app) as thief:
        thief.cookies.set("mf_session", copied, domain="127.0.0.1", path="/")
        assert thief.get("/lists/secret").status_code == 404
        assert thief.get("/account", follow_redirects=False).status_code == 303


def test_sessions_listed_and_signed_out_one_or_everywhere(site, app, mailsink) -> None:
    first = sign_in(site, app, mailsink)
    second = sign_in(site, app, mailsink)
    third = sign_in(site, app, mailsink)
    account = first.get("/account")
    ids = re.findall(r'name="session" value="(\d+)"', account.text)
    assert len(ids) == 3 and "This browser" in account.text
    with site.db.read_session() as session:
        second_id = max(session.scalars(select(WebSession.id)).all()) - 1
    out = first.post("/signout", data={"csrf": csrf_of(account), "session": str(second_id)})
    assert out.status_code == 303 and out.headers["location"] == "/account"
    assert second.get("/account").status_code == 303 and third.get("/account").status_code == 200
    assert first.get("/account").status_code == 200
    account = first.get("/account")
    everywhere = first.post("/signout", data={"csrf": csrf_of(account), "everywhere": "1"})
    assert everywhere.status_code == 303
    assert first.get("/account").status_code == 303 and third.get("/account").status_code == 303


def test_join_watch_and_mute_at_once_when_signed_in(site, app, mailsink) -> None:
    seed(site.config, site.db, [message("Topic one", "<t1@example.com>")])
    http = sign_in(site, app, mailsink)
    join = http.get("/lists/dev/join")
    assert join.status_code == 200 and 'name="address"' not in join.text
    joined = http.post("/lists/dev/join", data={"csrf": csrf_of(join, "/lists/dev/join")})
    assert joined.status_code == 303
    with site.db.read_session() as session:
        assert session.scalars(select(Member.address).where(Member.address == ALICE)).one()
    page = http.get("/lists/dev")
    tid = re.search(r"/lists/dev/topics/(\d+)", page.text).group(1)
    topic = http.get(f"/lists/dev/topics/{tid}")
    assert f'action="/lists/dev/topics/{tid}/mute"' in topic.text
    mute_token = csrf_of(topic, f"/lists/dev/topics/{tid}/mute")
    before = len(mailsink.transactions)
    assert http.post(f"/lists/dev/topics/{tid}/mute", data={"csrf": mute_token}).status_code == 303
    out = site.cli("members", "show", "dev", ALICE).stdout
    assert "mute" in out.lower() and tid in out
    topic = http.get(f"/lists/dev/topics/{tid}")
    assert "Unmute" in topic.text
    deliver(site.config, site.db)
    assert [
        t for t in mailsink.transactions[before:] if "welcome" not in t.data.decode(errors="replace").lower()
    ] == []
    # Without the session's token, nothing happens.
    assert http.post(f"/lists/dev/topics/{tid}/watch", data={"csrf": "1.x"}).status_code == 403
    with browser(app) as anon:
        assert anon.post(f"/lists/dev/topics/{tid}/mute", data={}).status_code == 403


def test_cookies_are_secure_when_base_url_is_https(site, mailsink) -> None:
    port = site.config.web.port
    site.config = replace(site.config, site=replace(site.config.site, base_url=f"https://127.0.0.1:{port}"))
    running = WebThread(site.config, site.db)
    running.start()
    try:
        # httpx keeps Secure cookies off plain http, as a browser would: send them by hand.
        with running.client(headers={"origin": f"https://127.0.0.1:{port}"}) as http:
            page = http.get("/signin")
            assert "Secure" in page.headers["set-cookie"]
            jar = {"mf_csrf": http.cookies["mf_csrf"]}
            cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
            answer = http.post(
                "/signin",
                data={"csrf": csrf_of(page, "/signin"), "address": ALICE},
                headers={"cookie": cookie},
            )
            assert answer.status_code == 200 and "Secure" in answer.headers["set-cookie"]
            asked = {"mf_signin": http.cookies["mf_signin"]}
            (path,) = links_to(site, mailsink, ALICE)
            done = http.post(path, headers={"cookie": f"mf_signin={asked['mf_signin']}"})
            assert done.status_code == 303
            assert "mf_session=" in done.headers["set-cookie"]
            session_cookie = [c for c in done.headers.get_list("set-cookie") if c.startswith("mf_session=")]
            assert "Secure" in session_cookie[0] and "HttpOnly" in session_cookie[0]
    finally:
        running.stop()


def test_housekeeping_forgets_expired_links_and_sessions(site, app, mailsink) -> None:
    from mailforum.runners.housekeeping import Housekeeper

    sign_in(site, app, mailsink)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=site.config.web.session_days + 2)
    done = Housekeeper(site.db, site.config, clock=lambda: later).once()
    assert done["sign-in links forgotten"] == 1 and done["web sessions expired"] == 1
    with site.db.read_session() as session:
        assert session.scalars(select(WebSession)).all() == []


def test_a_signed_in_visitor_watches_at_once_and_joins_with_mode_none(site, app, mailsink) -> None:
    seed(site.config, site.db, [message("Topic one", "<t1@example.com>")])
    http = sign_in(site, app, mailsink, "visitor@example.net")
    tid = re.search(r"/lists/dev/topics/(\d+)", http.get("/lists/dev").text).group(1)
    topic = http.get(f"/lists/dev/topics/{tid}")
    assert f'action="/lists/dev/topics/{tid}/mute"' not in topic.text  # no member: nothing to mute
    mute = f"/lists/dev/topics/{tid}/mute"
    assert (
        http.post(mute, data={"csrf": csrf_of(topic, "/signout")}).status_code == 403
    )  # another form's token
    auth = app.app.state.auth  # the token a mute form would carry, had the page one
    token = auth.csrf_for(Viewer("visitor@example.net", 0, key_hash(http.cookies["mf_session"])), mute)
    refused = http.post(mute, data={"csrf": token})
    assert refused.status_code == 403 and "Members only" in refused.text
    watch = f"/lists/dev/topics/{tid}/watch"
    assert http.post(watch, data={"csrf": csrf_of(topic, watch)}).status_code == 303
    out = site.cli("members", "show", "dev", "visitor@example.net").stdout
    assert "none" in out and tid in out
    assert "Stop watching" in http.get(f"/lists/dev/topics/{tid}").text


def test_after_signing_in_the_browser_goes_where_it_was_asked_to_sign_in(site, app, mailsink) -> None:
    http = browser(app)
    asked = http.get("/account")
    assert asked.status_code == 303 and asked.headers["location"] == "/signin?next=%2Faccount"
    page = http.get("/signin", params={"next": "/lists/dev?sort=newest"})
    assert 'name="next" value="/lists/dev?sort=newest"' in page.text
    answer = http.post(
        "/signin", data={"csrf": csrf_of(page, "/signin"), "address": ALICE, "next": "/lists/dev?sort=newest"}
    )
    assert answer.status_code == 200
    done = http.post(links_to(site, mailsink, ALICE)[-1])
    assert done.status_code == 303 and done.headers["location"] == "/lists/dev?sort=newest"
    # Anywhere else is refused: the account page instead.
    elsewhere_all = ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/a b", "lists/dev")
    for n, elsewhere in enumerate(elsewhere_all):
        page = http.get("/signin", params={"next": elsewhere})
        assert 'name="next"' not in page.text
        who = f"person{n}@example.com"
        http.post("/signin", data={"csrf": csrf_of(page, "/signin"), "address": who, "next": elsewhere})
        done = http.post(links_to(site, mailsink, who)[-1])
        assert done.headers["location"] == "/account", elsewhere


def test_a_failing_database_is_a_503_for_a_signed_in_browser_too(site, tmp_path) -> None:
    from mailforum.config import DatabaseConfig
    from mailforum.db.session import Database

    broken = Database(f"sqlite:///{tmp_path}/missing/dir/x.db")
    running = WebThread(replace(site.config, database=DatabaseConfig(url=broken.url)), broken)
    running.start()
    try:
        with running.client(cookies={"mf_session": "A" * 43}) as http:
            page = http.get("/lists/dev")
    finally:
        running.stop()
        broken.dispose()
    assert page.status_code == 503 and "The archive is busy" in page.text
