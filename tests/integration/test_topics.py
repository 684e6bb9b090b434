"""Topics end to end (issue 19): real SMTP in, the real server, copies out to the fake relay.

A followed tag reaches a member whose mode is ``none``, a muted tag silences (a watched
topic wins over it); a reply to a locked topic is held and its author told once; a
split and a merge survive ``rethread``; ``members forget`` leaves no trace of the address
in any column of any table, in the archive's pages or in exports.
"""

from __future__ import annotations

import json
from dataclasses import replace
from email.message import EmailMessage

import httpx
import pytest
from sqlalchemy import JSON, LargeBinary, String, select

from mailforum.config import SecurityConfig
from mailforum.core import lists, topics
from mailforum.db.base import Base
from mailforum.db.models import DeliveryMode, Post, SubscriptionKind, Topic, utcnow
from tests.helpers import DOMAIN, ServerThread, message, send, wait_for
from tests.integration.outbound_helpers import as_email, deliver, settled, topic_of

LIST = f"dev@{DOMAIN}"
REQUEST = f"dev-request@{DOMAIN}"


@pytest.fixture
def dev(site):
    site.create_list("dev")
    with site.db.session() as session:
        topics.add_tags(session, lists.get_list(session, "dev"), ["strategy", "risk", "agile"], utcnow())
    site.add_members("dev", "Ann <ann@example.com>", "Mia <mia@example.com>", "Bob <bob@example.com>")
    site.add_members("dev", "dave@example.com", mode=DeliveryMode.NONE)
    return site


def post(site, sender: str, subject: str, mid: str, body: str, to: str = LIST, extra: str = "") -> None:
    raw = message(subject, f"<{mid}@example.com>", sender=sender, to=to, body=body, extra=extra)
    send(site.config, raw, [to], sender.split("<")[-1].rstrip(">"))


def copies(relay, address: str) -> list[EmailMessage]:
    """The list copies ``address`` received (automatic answers left out)."""
    found = [as_email(t.data) for t in relay.messages_for(address)]
    return [m for m in found if m["Auto-Submitted"] != "auto-replied"]


def answers(relay, address: str) -> list[EmailMessage]:
    found = [as_email(t.data) for t in relay.messages_for(address)]
    return [m for m in found if m["Auto-Submitted"] == "auto-replied"]


def published(site, *mids: str) -> bool:
    with site.db.read_session() as session:
        found = session.scalars(
            select(Post.status).where(Post.message_id.in_([f"<{m}@example.com>" for m in mids]))
        )
        return list(found).count("published") == len(mids)


def quiet(site) -> bool:
    from mailforum.db.models import SpoolEntry

    with site.db.read_session() as session:
        waiting = session.scalar(select(SpoolEntry.id).where(SpoolEntry.state == "new"))
    return waiting is None and settled(site)


def ids(messages: list[EmailMessage]) -> set[str]:
    return {str(m["Message-ID"]).strip("<>").split("@")[0] for m in messages}


def test_followed_tag_reaches_a_none_member_and_a_muted_tag_silences(dev, relay, server) -> None:
    post(dev, "dave@example.com", "watch #strategy", "w1", "", to=REQUEST)
    post(dev, "Mia <mia@example.com>", "mute #risk", "w2", "", to=REQUEST)
    wait_for(lambda: answers(relay, "dave@example.com") and answers(relay, "mia@example.com"))
    post(dev, "Ann <ann@example.com>", "Roadmap", "road", "#strategy\nWhere next year?\n")
    post(dev, "Ann <ann@example.com>", "Lunch", "lunch", "Pizza on Friday?\n")
    post(dev, "Ann <ann@example.com>", "[risk] Outage", "risk", "The disk is full.\n")
    wait_for(lambda: published(dev, "road", "lunch", "risk") and quiet(dev))
    assert ids(copies(relay, "dave@example.com")) == {"road"}  # mode none: only the followed tag
    assert ids(copies(relay, "mia@example.com")) == {"road", "lunch"}  # the muted tag is silent
    assert ids(copies(relay, "bob@example.com")) == {"road", "lunch", "risk"}
    road = next(m for m in copies(relay, "bob@example.com") if "road" in str(m["Message-ID"]))
    assert road["X-Mailforum-Tags"] == "strategy" and road["Keywords"] == "strategy"
    assert str(road["Subject"]).startswith("[dev] [strategy] Roadmap")
    # A watched topic wins over a muted tag.
    post(dev, "Mia <mia@example.com>", f"watch {topic_of(dev, '<risk@example.com>')}", "w3", "", to=REQUEST)
    wait_for(lambda: len(answers(relay, "mia@example.com")) >= 2)
    post(
        dev,
        "Bob <bob@example.com>",
        "Re: [risk] Outage",
        "risk2",
        "Cleaned it.\n",
        extra="In-Reply-To: <risk@example.com>",
    )
    wait_for(lambda: published(dev, "risk2") and quiet(dev))
    assert "risk2" in ids(copies(relay, "mia@example.com"))
    assert "risk2" not in ids(copies(relay, "dave@example.com"))


def test_a_reply_to_a_locked_topic_is_held_and_its_author_told_once(dev, relay, server) -> None:
    post(dev, "Ann <ann@example.com>", "Sprint length", "s0", "How long should a sprint be?\n")
    wait_for(lambda: published(dev, "s0") and quiet(dev))
    topic = topic_of(dev, "<s0@example.com>")
    result = dev.cli("topics", "lock", "dev", str(topic))
    assert result.returncode == 0, result.stderr
    for n in (1, 2):
        post(
            dev,
            "Bob <bob@example.com>",
            "Re: Sprint length",
            f"s{n}",
            f"Reply {n}.\n",
            extra="In-Reply-To: <s0@example.com>",
        )
    wait_for(lambda: quiet(dev) and len(dev.export()) == 3)
    held = {p["message_id"]: p for p in dev.export()}
    assert [held[f"<s{n}@example.com>"]["status"] for n in (1, 2)] == ["held", "held"]
    told = answers(relay, "bob@example.com")
    assert len(told) == 1 and "locked" in str(told[0]["Subject"])
    assert "s1" not in ids(copies(relay, "ann@example.com")) and "s2" not in ids(
        copies(relay, "mia@example.com")
    )
    with dev.db.read_session() as session:
        reasons = session.scalars(select(Post.hold_reason).where(Post.status == "held")).all()
    assert all(r.startswith("topic-locked:") for r in reasons)
    assert dev.cli("topics", "unlock", "dev", str(topic)).returncode == 0
    audited = dev.cli("audit", "--list", "dev").stdout
    assert "topic.lock" in audited and "topic.unlock" in audited
    post(
        dev,
        "Bob <bob@example.com>",
        "Re: Sprint length",
        "s3",
        "Two weeks.\n",
        extra="In-Reply-To: <s0@example.com>",
    )
    wait_for(lambda: published(dev, "s3") and quiet(dev))
    assert topic_of(dev, "<s3@example.com>") == topic


def test_split_merge_and_retitle_survive_rethread(dev, relay, server) -> None:
    post(dev, "Ann <ann@example.com>", "Big thread", "b0", "Everything here.\n")
    post(
        dev,
        "Bob <bob@example.com>",
        "Re: Big thread",
        "b1",
        "A side question.\n",
        extra="In-Reply-To: <b0@example.com>",
    )
    post(dev, "Mia <mia@example.com>", "Re: Big thread", "b2", "The answer.\n",
         extra="In-Reply-To: <b1@example.com>\nReferences: <b0@example.com> <b1@example.com>")  # fmt: skip
    post(dev, "Ann <ann@example.com>", "Lunch", "l0", "Pizza?\n")
    post(dev, "Ann <ann@example.com>", "Roadmap", "r0", "#agile\nNext year.\n")
    wait_for(lambda: published(dev, "b0", "b1", "b2", "l0", "r0") and quiet(dev))
    posts = dev.posts_by_id()
    assert dev.cli("topics", "split", "dev", str(posts["<b1@example.com>"]["id"])).returncode == 0
    lunch, road = topic_of(dev, "<l0@example.com>"), topic_of(dev, "<r0@example.com>")
    assert dev.cli("topics", "merge", "dev", str(lunch), str(road)).returncode == 0
    assert dev.cli("topics", "retitle", "dev", str(road), "Roadmap and lunch").returncode == 0

    def check() -> None:
        topic = {mid: p["topic_id"] for mid, p in dev.posts_by_id().items()}
        assert topic["<b1@example.com>"] == topic["<b2@example.com>"] != topic["<b0@example.com>"]
        assert topic["<l0@example.com>"] == topic["<r0@example.com>"]
        assert dev.posts_by_id()["<l0@example.com>"]["tags"] == ["agile"]  # the survivor's tags

    check()
    split_topic = topic_of(dev, "<b1@example.com>")
    # A live reply naming the whole chain stays in the split topic: the threader does not undo it.
    chain = "References: <b0@example.com> <b1@example.com> <b2@example.com>"
    post(
        dev,
        "Ann <ann@example.com>",
        "Re: Big thread",
        "b3",
        "More.\n",
        extra=f"In-Reply-To: <b2@example.com>\n{chain}",
    )
    wait_for(lambda: published(dev, "b3") and quiet(dev))
    assert topic_of(dev, "<b3@example.com>") == split_topic
    result = dev.cli("rethread", "--list", "dev")  # another process: the decisions are in the database
    assert result.returncode == 0, result.stderr
    check()
    assert topic_of(dev, "<b3@example.com>") == topic_of(dev, "<b1@example.com>")
    with httpx.Client(base_url=f"http://127.0.0.1:{dev.config.web.port}") as http:
        page = http.get(f"/lists/dev/topics/{topic_of(dev, '<r0@example.com>')}")
    assert page.status_code == 200 and "Roadmap and lunch" in page.text


def _values(site) -> list[tuple[str, str, str]]:
    """(table, column, value as text) for every text, JSON and binary value of every table."""
    out = []
    with site.db.read_session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                for column in table.columns:
                    value = row[column.name]
                    kind = getattr(column.type, "impl", column.type)
                    if value is None:
                        continue
                    if isinstance(kind, LargeBinary) or isinstance(column.type, LargeBinary):
                        out.append((table.name, column.name, bytes(value).decode("utf-8", "replace")))
                    elif isinstance(kind, JSON) or isinstance(column.type, JSON):
                        out.append((table.name, column.name, json.dumps(value)))
                    elif isinstance(column.type, String):
                        out.append((table.name, column.name, value))
    return out


def test_forget_leaves_no_trace(dev, relay, server) -> None:
    post(dev, "Bob Builder <bob@example.com>", "watch #risk", "f0", "", to=REQUEST)
    post(dev, "Bob Builder <bob@example.com>", "[risk] Backups", "f1", "Who checks the backups?\n")
    wait_for(lambda: published(dev, "f1") and quiet(dev))
    post(dev, "Ann <ann@example.com>", "Re: [risk] Backups", "f2",
         "Bob Builder <bob@example.com> wrote:\n> Who checks the backups?\nI do.\n",
         extra="In-Reply-To: <f1@example.com>\nCc: bob@example.com")  # fmt: skip
    post(dev, "jimbob@example.com", "A stranger", "f3", "Not bob.\n")  # held: not a member
    wait_for(lambda: published(dev, "f2") and quiet(dev))
    data = json.loads(dev.cli("members", "data", "bob@example.com").stdout)
    assert data["lists"] == ["dev"] and {"members", "posts", "tag_subscriptions"} <= set(data["tables"])
    assert any(v == "bob@example.com" for _, _, v in _values(dev))

    result = dev.cli("members", "forget", "bob@example.com")
    assert result.returncode == 0, result.stderr
    left = [(t, c, v) for t, c, v in _values(dev) if "bob@example.com" in v.lower().replace("jimbob@", "")]
    assert left == []
    names = [(t, c) for t, c, v in _values(dev) if t == "posts" and c != "raw" and "Bob Builder" in v]
    assert names == []
    assert any(v == "jimbob@example.com" for _, _, v in _values(dev))  # a longer address is someone else
    exported = (
        dev.cli("export", "--list", "dev").stdout
        + dev.cli("export", "--list", "dev", "--format", "mbox").stdout
    )
    assert "bob@example.com" not in exported.lower().replace("jimbob@", "")
    with httpx.Client(base_url=f"http://127.0.0.1:{dev.config.web.port}") as http:
        topic = topic_of(dev, "<f1@example.com>")
        page = http.get(f"/lists/dev/topics/{topic}").text + http.get("/lists/dev").text
        page += http.get(f"/lists/dev/topics/{topic}/topic.mbox").text + http.get("/lists/dev/feed.atom").text
    assert "bob@example" not in page and "Bob Builder" not in page
    assert "former member" in page
    after = json.loads(dev.cli("members", "data", "bob@example.com").stdout)
    assert after["tables"] == {} and after["lists"] == []
    assert dev.posts_by_id()["<f1@example.com>"]["status"] == "published"


def test_forget_remove_posts(dev, relay, server) -> None:
    post(dev, "Ann <ann@example.com>", "Plans", "g0", "Ideas?\n")
    wait_for(lambda: published(dev, "g0") and quiet(dev))
    post(dev, "Bob Builder <bob@example.com>", "Re: Plans", "g1", "My words.\n",
         extra="In-Reply-To: <g0@example.com>")  # fmt: skip
    wait_for(lambda: published(dev, "g1") and quiet(dev))
    assert dev.cli("members", "forget", "bob@example.com", "--remove-posts").returncode == 0
    gone = dev.posts_by_id()["<g1@example.com>"]
    assert gone["status"] == "removed" and gone["text"] == "" and gone["author"] == ""
    with httpx.Client(base_url=f"http://127.0.0.1:{dev.config.web.port}") as http:
        page = http.get(f"/lists/dev/topics/{topic_of(dev, '<g0@example.com>')}").text
    assert "removed at its author&#39;s request" in page or "removed at its author's request" in page
    assert "My words" not in page and "removed by a moderator" not in page
    assert dev.cli("members", "data", "nonsense").returncode != 0


def test_moderators_act_by_mail_only_when_our_mta_authenticated_them(dev, relay) -> None:
    dev.config = replace(dev.config, security=SecurityConfig(authserv_id=DOMAIN))
    assert dev.cli("lists", "moderators", "dev", "add", "mia@example.com").returncode == 0
    running = ServerThread(dev.config)
    running.start()
    try:
        forged = f"Authentication-Results: {DOMAIN}; dmarc=fail header.from=example.com"
        signed = f"Authentication-Results: {DOMAIN}; dmarc=pass header.from=example.com"
        post(dev, "Ann <ann@example.com>", "Pin me", "p0", "Important.\n", extra=signed)
        wait_for(lambda: published(dev, "p0") and quiet(dev))
        topic = topic_of(dev, "<p0@example.com>")
        post(dev, "Mia <mia@example.com>", "cmd", "m1", f"lock {topic}\n", to=REQUEST, extra=forged)
        post(dev, "Ann <ann@example.com>", "cmd", "m2", f"lock {topic}\n", to=REQUEST, extra=signed)
        wait_for(lambda: answers(relay, "mia@example.com") and answers(relay, "ann@example.com"))
        with dev.db.read_session() as session:
            assert session.get(Topic, topic).locked_at is None  # a forged moderator, a member: no
        commands = f"lock {topic}\npin {topic}\nretitle {topic} Read me\n"
        post(dev, "Mia <mia@example.com>", "cmd", "m3", commands, to=REQUEST, extra=signed)
        wait_for(lambda: len(answers(relay, "mia@example.com")) >= 2)
        with dev.db.read_session() as session:
            marked = session.get(Topic, topic)
            assert (
                marked.locked_at is not None and marked.pinned_at is not None and marked.subject == "Read me"
            )
        assert "is locked" in answers(relay, "mia@example.com")[-1].get_body(("plain",)).get_content()
        audited = dev.cli("audit", "--list", "dev").stdout
        assert "topic.lock" in audited and "mia@example.com" in audited
    finally:
        running.stop()


def test_a_tag_followed_by_its_address(dev, relay, server) -> None:
    post(dev, "dave@example.com", "", "t1", "", to=f"dev+watch-#risk@{DOMAIN}")
    wait_for(lambda: answers(relay, "dave@example.com"))
    with dev.db.read_session() as session:
        member = lists.find_member(session, lists.get_list(session, "dev").id, "dave@example.com")
        assert topics.tag_settings(session, member)["watch"] == ["risk"]
    assert "#risk" in dev.cli("members", "show", "dev", "dave@example.com").stdout
    post(dev, "dave@example.com", "status", "t2", "", to=REQUEST)
    wait_for(lambda: len(answers(relay, "dave@example.com")) >= 2)
    assert (
        "following the tags #risk"
        in answers(relay, "dave@example.com")[-1].get_body(("plain",)).get_content()
    )


def test_digests_group_by_tag_and_leave_muted_tags_out(site, relay) -> None:
    from tests.integration.test_digests import DAY1, digests_for, run, setup_list, text_of
    from tests.integration.test_digests import post as store_post

    setup_list(site, "dora@example.com", "dan@example.com")
    with site.db.session() as session:
        topics.add_tags(session, lists.get_list(session, "dev"), ["agile", "risk"], utcnow())
        mlist = lists.get_list(session, "dev")
        dora = lists.find_member(session, mlist.id, "dora@example.com")
        topics.set_tag(
            session, dora, topics.tag_named(session, mlist, "risk"), SubscriptionKind.MUTE, utcnow()
        )
    store_post(site, "Untagged chat", "u1@example.com")
    store_post(site, "[risk] Disk full", "r1@example.com")
    store_post(site, "[agile] Sprints", "a1@example.com")
    run(site, DAY1)
    deliver(site.config, site.db)
    (dan,) = digests_for(relay, "dan@example.com")
    text = text_of(dan)
    assert text.index("#agile") < text.index("Sprints") < text.index("#risk") < text.index("Disk full")
    assert text.index("Disk full") < text.index("Untagged chat")
    (dora_digest,) = digests_for(relay, "dora@example.com")
    assert "Disk full" not in text_of(dora_digest) and "Sprints" in text_of(dora_digest)


def test_cli_vocabulary_tagging_move_and_errors(dev) -> None:
    from tests.integration.outbound_helpers import store

    dev.create_list("ops")
    assert dev.cli("lists", "tags", "ops", "add", "risk").returncode == 0
    store(dev, message("[risk] Disk", "<d1@example.com>", sender="ann@example.com"))
    store(
        dev,
        message(
            "Re: Disk", "<d2@example.com>", sender="bob@example.com", extra="In-Reply-To: <d1@example.com>"
        ),
    )
    topic = topic_of(dev, "<d1@example.com>")
    bad = dev.cli("lists", "tags", "dev", "add", "no good")
    assert bad.returncode == 1 and "not a tag name" in bad.stderr and "Traceback" not in bad.stderr
    unknown = dev.cli("topics", "tag", "dev", str(topic), "nosuch")
    assert unknown.returncode == 1 and "not in dev's tags: nosuch" in unknown.stderr
    assert (
        dev.cli("topics", "tag", "dev", str(topic), "agile").stdout.strip()
        == f"topic {topic}: tags agile, risk"
    )
    removed = dev.cli("topics", "tag", "dev", str(topic), "agile", "--remove")
    assert removed.stdout.strip() == f"topic {topic}: tags risk"
    missing = dev.cli("topics", "lock", "dev", "99999")
    assert missing.returncode == 1 and "no topic 99999 in dev" in missing.stderr
    root = dev.posts_by_id()["<d1@example.com>"]["id"]
    nothing = dev.cli("topics", "split", "dev", str(root))
    assert nothing.returncode == 1 and "starts its topic" in nothing.stderr
    assert dev.cli("topics", "merge", "dev", str(topic), str(topic)).returncode == 1
    assert dev.cli("topics", "retitle", "dev", str(topic), "   ").returncode == 1
    moved = dev.cli("topics", "move", "dev", str(topic), "ops")
    assert moved.returncode == 0, moved.stderr
    assert dev.export("dev") == []
    ops = {p["message_id"]: p for p in dev.export("ops")}
    assert ops["<d2@example.com>"]["topic_id"] == topic and ops["<d2@example.com>"]["tags"] == ["risk"]
    assert dev.cli("lists", "tags", "dev", "remove", "risk").stdout.strip() == "risk: removed"
    assert dev.cli("lists", "tags", "dev").stdout.split() == ["agile", "strategy"]
    assert "post.remove" not in dev.cli("audit", "--list", "dev").stdout
    assert "topic.move" in dev.cli("audit", "--list", "dev").stdout
