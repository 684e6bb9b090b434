"""Tags for members on the web, and authors deleting their own posts (issue 19), over real HTTP
with ``serve``'s parts running and copies at a relay over real SMTP, on SQLite and PostgreSQL.

RELIABILITY S42 (an outside sender cannot tag a topic by writing the web's header), S43 (only
the author deletes a post: another's is 404, a forged form 403), B58 (a tag outside the
vocabulary or a choice the page does not offer is refused, changing nothing), B59 (after the
list's window, or on a list without one, a polite 403; unsent copies of a deleted post go no more).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from mailforum.core import lists, topics
from mailforum.db.models import AuditEntry, DeliveryMode, OutboxEntry, Post, utcnow
from tests.helpers import message, send, wait_for
from tests.integration.outbound_helpers import as_email, settled
from tests.web.test_posting import browser, signed_in, submit, token
from tests.web.test_posting import served as served  # a fixture

ANN, BOB, CY = "ann@example.com", "bob@example.com", "cy@example.com"


def _tags(site, *names: str) -> None:
    with site.db.session() as session:
        topics.add_tags(session, lists.get_list(session, "dev"), names, utcnow())


def _settings(site, address: str) -> dict[str, list[str]]:
    with site.db.read_session() as session:
        member = lists.find_member(session, lists.get_list(session, "dev").id, address)
        assert member is not None
        return topics.tag_settings(session, member)


def _post(site, subject: str) -> dict:
    return wait_for(lambda: next((p for p in site.export() if p["subject"] == subject), None))


def test_a_tag_followed_on_the_preferences_page_reaches_a_none_mode_member(site, relay, served) -> None:
    _tags(site, "strategy", "risk", "agile")
    with site.db.session() as session:
        member = lists.find_member(session, lists.get_list(session, "dev").id, CY)
        assert member is not None
        member.delivery_mode = DeliveryMode.NONE.value
    path = "/lists/dev/preferences"
    fields = {"mode": "none", "digest": "off", "digest_hour": "", "timezone": ""}
    with signed_in(site, CY) as cy:
        page = cy.get(path)
        assert 'name="tag:strategy" value="follow"' in page.text
        refused = cy.post(path, data={"csrf": token(page, path), **fields, "tag:nosuch": "follow"})
        assert refused.status_code == 422 and "not a tag of dev: nosuch" in refused.text
        odd = cy.post(path, data={"csrf": token(page, path), **fields, "tag:risk": "love"})
        assert odd.status_code == 422 and "follow, mute or neither" in odd.text
        assert _settings(site, CY) == {"watch": [], "mute": []}  # nothing changed
        saved = cy.post(
            path,
            data={"csrf": token(page, path), **fields, "tag:strategy": "follow", "tag:risk": "mute"},
        )
        assert saved.status_code == 303
        assert _settings(site, CY) == {"watch": ["strategy"], "mute": ["risk"]}
        shown = cy.get(path).text
        assert 'name="tag:strategy" value="follow" checked' in shown
        assert 'name="tag:risk" value="mute" checked' in shown
        assert 'name="tag:agile" value="neither" checked' in shown
        # The form without tag fields (an older page, a script) leaves the tags alone.
        assert cy.post(path, data={"csrf": token(page, path), **fields}).status_code == 303
        assert _settings(site, CY) == {"watch": ["strategy"], "mute": ["risk"]}

    with signed_in(site, ANN) as ann:
        form = ann.get("/lists/dev/new")
        assert 'name="tags" value="strategy"' in form.text
        answer = submit(
            ann, "/lists/dev/new", {"subject": "Plans", "body": "Where next?\n", "tags": "strategy"}
        )
        assert answer.status_code == 303, answer.text[:300]
        assert submit(ann, "/lists/dev/new", {"subject": "Lunch", "body": "Pizza?\n"}).status_code == 303
    plans, lunch = _post(site, "Plans"), _post(site, "Lunch")
    assert plans["tags"] == ["strategy"] and lunch["tags"] == []
    wait_for(lambda: relay.messages_for(BOB)[1:] and settled(site))
    to_cy = [as_email(m.data) for m in relay.messages_for(CY)]
    assert [m["Message-ID"] for m in to_cy] == [plans["message_id"]]  # the followed tag, not Lunch
    assert "strategy" in to_cy[0]["X-Mailforum-Tags"]


def test_the_new_topic_form_tags_the_topic_and_refuses_words_outside_the_vocabulary(
    site, relay, served
) -> None:
    _tags(site, "agile", "risk")
    with signed_in(site, ANN) as ann:
        page = ann.get("/lists/dev/new")
        fields = {"csrf": token(page, "/lists/dev/new"), "subject": "Sprints", "body": "How long?\n"}
        bad = ann.post("/lists/dev/new", data={**fields, "tags": ["agile", "nosuch"]}, files={"x": ("", b"")})
        assert bad.status_code == 422 and "not a tag of dev: nosuch" in bad.text
        assert 'value="agile" checked' in bad.text  # the form keeps what was ticked
        assert not any(p["subject"] == "Sprints" for p in site.export())  # nothing was spooled
        good = ann.post("/lists/dev/new", data={**fields, "tags": ["agile", "risk"]}, files={"x": ("", b"")})
        assert good.status_code == 303, good.text[:300]
        root = _post(site, "Sprints")
        assert root["tags"] == ["agile", "risk"]
        # A reply takes no tags of its own: the topic keeps its own.
        reply_path = f"/lists/dev/posts/{good.headers['location'].rpartition('#p')[2]}/reply"
        reply = ann.get(reply_path)
        assert 'name="tags"' not in reply.text
        answer = ann.post(
            reply_path, data={"csrf": token(reply, reply_path), "body": "Two weeks.\n", "tags": "risk"}
        )
        assert answer.status_code == 303
    wait_for(lambda: len([p for p in site.export() if p["topic_id"] == root["topic_id"]]) == 2)
    assert {tuple(p["tags"]) for p in site.export() if p["topic_id"] == root["topic_id"]} == {
        ("agile", "risk")
    }


def test_an_outsider_cannot_tag_a_topic_with_the_web_header(site, relay, served) -> None:
    _tags(site, "agile", "risk")
    header = f"{topics.WEB_TAGS_HEADER}: agile, risk\nX-Mailforum-Source: web"
    send(site.config, message("Forged tags", "<forged@example.com>", sender=f"Bob <{BOB}>", extra=header),
         mail_from=BOB)  # fmt: skip
    # The same words in the subject's [tag] form do count: the header is what is not trusted.
    send(site.config, message("[risk] Real tag", "<real@example.com>", sender=f"Bob <{BOB}>"), mail_from=BOB)
    posts = wait_for(lambda: (p := site.posts_by_id()).get("<real@example.com>", {}).get("tags") and p)
    assert posts["<real@example.com>"]["tags"] == ["risk"]
    assert posts["<forged@example.com>"]["status"] == "published"
    assert posts["<forged@example.com>"]["tags"] == []


def _copies(site, post_id: int) -> dict[str, str]:
    """Recipient → state of the post's copies in the outbox; a copy a delivery worker holds
    right now shows as "held" (a removal leaves it to the worker: RELIABILITY F26)."""
    query = select(OutboxEntry.recipient, OutboxEntry.state, OutboxEntry.claimed_until).where(
        OutboxEntry.post_id == post_id
    )
    now = utcnow()
    with site.db.read_session() as session:
        return {
            recipient: "held" if claimed_until is not None and claimed_until > now else state
            for recipient, state, claimed_until in session.execute(query)
        }


def test_an_author_deletes_their_own_post_within_the_window_and_not_after(site, relay, served) -> None:
    relay.rcpt[CY] = "451 4.3.0 Try again later"  # cy's copies wait for a retry
    with signed_in(site, ANN) as ann:
        first = submit(ann, "/lists/dev/new", {"subject": "Oops", "body": "Sent too soon.\n"})
        topic_url = first.headers["location"].partition("#")[0]
        root_id = int(first.headers["location"].rpartition("#p")[2])
        later = submit(ann, f"/lists/dev/posts/{root_id}/reply", {"body": "And a second thought.\n"})
        second_id = int(later.headers["location"].rpartition("#p")[2])
    wait_for(lambda: len(relay.messages_for(BOB)) == 2)
    wait_for(lambda: _copies(site, root_id) == {BOB: "sent", CY: "pending"})
    delete = f"/lists/dev/posts/{root_id}/delete"
    with signed_in(site, BOB) as bob:
        assert f'href="{delete}"' not in bob.get(topic_url).text  # not his post
        assert bob.get(delete).status_code == 404
        assert bob.post(delete, data={"csrf": "x"}).status_code == 404
        assert bob.get(f"/lists/dev/posts/{second_id}/delete").status_code == 404
    with browser(site) as anonymous:  # not signed in: sent to sign in first
        assert anonymous.get(delete).status_code == 303
        assert anonymous.post(delete, data={"csrf": "x"}).status_code == 403
    with signed_in(site, ANN) as ann:
        page = ann.get(topic_url)
        assert f'href="{delete}"' in page.text
        ask = ann.get(delete)
        assert ask.status_code == 200 and "Delete your post?" in ask.text
        assert ann.post(delete, data={"csrf": "forged"}).status_code == 403
        done = ann.post(delete, data={"csrf": token(ask, delete)})
        assert done.status_code == 303 and done.headers["location"].startswith(topic_url)
        shown = ann.get(topic_url).text
        assert "deleted by its author" in shown and "Sent too soon" not in shown
        assert ann.get(delete).status_code == 404  # gone: nothing more to delete
        # The copy that had not gone out yet goes no more; the one sent stays sent.
        assert _copies(site, root_id) == {BOB: "sent"}

        # After the window: a polite refusal, nothing changes.
        second = f"/lists/dev/posts/{second_id}/delete"
        still_open = ann.get(second)
        assert still_open.status_code == 200
        with site.db.session() as session:
            session.execute(
                update(Post)
                .where(Post.id == second_id)
                .values(received_at=utcnow() - dt.timedelta(minutes=61))
            )
        assert f'href="{second}"' not in ann.get(topic_url).text
        late = ann.get(second)
        assert late.status_code == 403 and "Too late" in late.text
        refused = ann.post(second, data={"csrf": token(still_open, second)})
        assert refused.status_code == 403 and "60 minutes" in refused.text
    by_id = {p["id"]: p for p in site.export()}
    assert by_id[root_id]["status"] == "removed" and by_id[root_id]["text"] == ""
    assert by_id[second_id]["status"] == "published"
    with site.db.read_session() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "post.delete")))
        post = session.get(Post, root_id)
        assert post is not None and post.raw is None and post.hold_reason == topics.AUTHOR_DELETED
    assert [(e.actor, e.target) for e in entries] == [(ANN, str(root_id))]


def test_a_moderators_removal_also_drops_the_copies_not_sent_yet(site, relay, served) -> None:
    relay.rcpt[CY] = "451 4.3.0 Try again later"  # cy's copy waits for a retry
    with signed_in(site, ANN) as ann:
        first = submit(ann, "/lists/dev/new", {"subject": "Spam", "body": "Buy now.\n"})
        post_id = int(first.headers["location"].rpartition("#p")[2])
    wait_for(lambda: _copies(site, post_id) == {BOB: "sent", CY: "pending"})
    removed = site.cli("posts", "remove", "dev", str(post_id), "--reason", "spam")
    assert removed.returncode == 0, removed.stderr
    assert _copies(site, post_id) == {BOB: "sent"}  # the sent copy stays sent; cy's goes no more
    with site.db.read_session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "post.remove")).one()
    assert entry.detail["unsent_copies_dropped"] == 1


def test_lists_set_author_delete_minutes_and_a_list_without_the_window(site, relay, served) -> None:
    result = site.cli("lists", "set", "dev", "--author-delete-minutes", "0")
    assert result.returncode == 0, result.stderr
    assert "author delete:    off" in site.cli("lists", "show", "dev").stdout
    bad = site.cli("lists", "set", "dev", "--author-delete-minutes", "-5")
    assert bad.returncode == 2 and "author-delete-minutes" in bad.stderr
    with signed_in(site, ANN) as ann:
        first = submit(ann, "/lists/dev/new", {"subject": "Kept", "body": "Forever.\n"})
        post_id = int(first.headers["location"].rpartition("#p")[2])
        assert "/delete" not in ann.get(first.headers["location"].partition("#")[0]).text
        refused = ann.get(f"/lists/dev/posts/{post_id}/delete")
        assert refused.status_code == 403 and "does not let authors delete" in refused.text
    assert site.cli("lists", "set", "dev", "--author-delete-minutes", "15").returncode == 0
    assert "author delete:    15 minutes" in site.cli("lists", "show", "dev").stdout
