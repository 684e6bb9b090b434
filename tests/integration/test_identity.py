"""Who sent it: a post, a command or a moderator's reply is attributed only to the one mailbox
a DMARC validator reads from the From: as received (issue 12, the CVE-2023-27043 family).

Every case goes over real SMTP to the real server. A From: that is not exactly one
mailbox is held with its reason (a post) or ignored (a command, a moderator reply); so
is one whose display name reads as another address.
"""

from __future__ import annotations

from sqlalchemy import select

from mailforum.core import moderation
from mailforum.db.models import DeliveryMode, MailingList, Member, OutboxEntry, Post, SpoolEntry
from tests.helpers import DOMAIN, send, wait_for

MEMBER = "member@example.com"
MOD = "mod@example.com"
ATTACKER = "attacker@evil.example"

# (From: field values as written, one header line each; a hostile sender hiding behind the member).
HOSTILE_FROM: list[tuple[str, ...]] = [
    (f"{MEMBER}, {ATTACKER}",),
    (f"{ATTACKER}, {MEMBER}",),
    (f"{MEMBER} (comment), {ATTACKER}",),
    (f"{MEMBER} ({ATTACKER}, x), {ATTACKER}",),
    (f"{ATTACKER} ({MEMBER})",),  # an address in parentheses
    (f"({MEMBER}) {ATTACKER}",),
    (f"{MEMBER}){ATTACKER}",),
    (f"{ATTACKER})<{MEMBER}>",),
    (f"{MEMBER} <{ATTACKER}>",),  # an unquoted address as the display name
    (f"<{MEMBER}> {ATTACKER}",),
    (f"<{MEMBER}> <{ATTACKER}>",),
    (f'"{MEMBER}" <{ATTACKER}>',),
    (f'"Member \\" <{MEMBER}>" <{ATTACKER}>',),  # quoted-pair: the quote does not end there
    (f'"{ATTACKER}\\" <{MEMBER}>"',),  # all one quoted string: no mailbox at all
    (f"Member <{ATTACKER}> (really {MEMBER})",),
    ("=?utf-8?q?member=40example=2Ecom?= <attacker@evil.example>",),  # encoded-word names
    ("=?utf-8?b?TWVtYmVyIDxtZW1iZXJAZXhhbXBsZS5jb20+?= <attacker@evil.example>",),
    ('"=?utf-8?q?member=40example=2Ecom?=" <attacker@evil.example>',),
    ("=?utf-8?q?member=EF=BC=A0example=2Ecom?= <attacker@evil.example>",),  # a full-width at sign
    ("Member\uff20example.com <attacker@evil.example>",),  # the same, as raw UTF-8
    ("=?utf-8?q?member=40example=2Ecom?=",),  # an encoded-word as the address itself
    ("=?utf-8?q?member?=@example.com",),
    (f"friends: {MEMBER};",),  # group syntax
    (f"friends: {MEMBER}, {ATTACKER};",),
    (f"undisclosed:; {MEMBER}",),
    ('"unbalanced <member@example.com>',),
    (f"Member (unbalanced <{MEMBER}>",),
    ("",),  # empty
    (),  # missing
    (MEMBER, ATTACKER),  # two From: fields
    (ATTACKER, MEMBER),
]
HONEST_FROM = [
    f"Member <{MEMBER}>",
    f'"{MEMBER}" <{MEMBER}>',
    f"Mr. M. Ember <{MEMBER}>",
    f"{MEMBER} (Member)",
    f"=?utf-8?q?J=C3=BCrgen_Member?= <{MEMBER}>",
]


def raw_mail(froms: tuple[str, ...], mid: str, to: str, subject: str = "Hello", body: str = "Hi.\n") -> bytes:
    head = "".join(f"From: {value}\r\n" for value in froms)
    head += (
        f"To: {to}\r\nSubject: {subject}\r\nMessage-ID: {mid}\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
    )
    return (head + "\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


def stored(site, mids: list[str]) -> dict[str, Post]:
    def find() -> dict[str, Post] | None:
        with site.db.read_session() as session:
            found = {p.message_id: p for p in session.scalars(select(Post).where(Post.message_id.in_(mids)))}
        return found if len(found) == len(mids) else None

    return wait_for(find)


def outcomes(site, count: int) -> list[str]:
    """The outcomes of the first ``count`` spool entries, once all are processed."""

    def find() -> list[str] | None:
        with site.db.read_session() as session:
            done = session.scalars(
                select(SpoolEntry).where(SpoolEntry.state != "new").order_by(SpoolEntry.id)
            )
            found = [entry.outcome or "" for entry in done]
        return found if len(found) >= count else None

    return wait_for(find)


def test_a_hostile_from_is_held_with_its_reason_never_attributed_to_the_member(site, server):
    site.create_list("dev")
    site.add_members("dev", MEMBER)
    mids = {f"<h{i}@evil.example>": froms for i, froms in enumerate(HOSTILE_FROM)}
    honest = {f"<ok{i}@example.com>": value for i, value in enumerate(HONEST_FROM)}
    for mid, froms in mids.items():
        send(site.config, raw_mail(froms, mid, f"dev@{DOMAIN}"), mail_from=ATTACKER)
    for mid, value in honest.items():
        send(site.config, raw_mail((value,), mid, f"dev@{DOMAIN}"), mail_from=MEMBER)
    posts = stored(site, [*mids, *honest])
    wrong = []
    for mid, froms in mids.items():
        post = posts[mid]
        held = post.status == "held" and (post.hold_reason or "").startswith(("suspect-from:", "no-sender:"))
        if not held or post.author_address == MEMBER:
            wrong.append((froms, post.status, post.author_address, post.hold_reason))
    assert wrong == []
    assert {mid: posts[mid].status for mid in honest} == dict.fromkeys(honest, "published")
    assert {posts[mid].author_address for mid in honest} == {MEMBER}


def _member(site) -> Member:
    with site.db.read_session() as session:
        return session.scalars(select(Member).where(Member.address == MEMBER)).one()


def test_a_command_from_a_hostile_from_is_ignored_and_answers_no_one(site, server):
    site.create_list("dev")
    site.add_members("dev", MEMBER)
    to = f"dev-request@{DOMAIN}"
    for i, froms in enumerate(HOSTILE_FROM):
        send(
            site.config,
            raw_mail(froms, f"<c{i}@evil.example>", to, "mode none", "mode none\n"),
            [to],
            ATTACKER,
        )
    send(site.config, raw_mail((MEMBER,), "<ok@example.com>", to, "status", "status\n"), [to], MEMBER)
    found = outcomes(site, len(HOSTILE_FROM) + 1)
    wrong = [
        (froms, outcome)
        for froms, outcome in zip(HOSTILE_FROM, found, strict=False)
        if "ignored" not in outcome
    ]
    assert wrong == []
    assert "commands" in found[-1]
    assert _member(site).delivery_mode == DeliveryMode.ALL.value
    with site.db.read_session() as session:
        assert set(session.scalars(select(OutboxEntry.recipient))) == {MEMBER}  # the control's answer only


def test_a_moderator_reply_from_a_hostile_from_decides_nothing(site, server):
    site.create_list("dev")
    site.add_members("dev", MEMBER)
    with site.db.session() as session:
        moderation.add_moderator(session, session.scalars(select(MailingList)).one(), MOD)
    send(
        site.config, raw_mail(("out@example.org",), "<o1@example.org>", f"dev@{DOMAIN}"), mail_from="o@x.org"
    )
    (post,) = stored(site, ["<o1@example.org>"]).values()
    approve = wait_for(lambda: _notice_reply_to(site))
    hostile = [
        (f"{MOD}, {ATTACKER}",),
        (f"{ATTACKER} ({MOD})",),
        (f'"{MOD}" <{ATTACKER}>',),
        ("=?utf-8?q?mod=40example=2Ecom?= <attacker@evil.example>",),
        (f"{MOD} <{ATTACKER}>",),
        (f"{MOD}){ATTACKER}",),
        (f"team: {MOD};",),
        (MOD, ATTACKER),
    ]
    for i, froms in enumerate(hostile):
        send(site.config, raw_mail(froms, f"<m{i}@evil.example>", approve, "Re: held"), [approve], ATTACKER)
    found = outcomes(site, 1 + len(hostile))
    assert all("ignored" in outcome for outcome in found[1:]), found
    assert stored(site, ["<o1@example.org>"])["<o1@example.org>"].status == "held"
    send(site.config, raw_mail((MOD,), "<m-ok@example.com>", approve, "Re: held"), [approve], MOD)
    assert "approved" in outcomes(site, 2 + len(hostile))[-1]
    assert post.id is not None


def _notice_reply_to(site) -> str | None:
    with site.db.read_session() as session:
        for entry in session.scalars(select(OutboxEntry).where(OutboxEntry.recipient == MOD)):
            reply_to = (entry.payload or {}).get("reply_to")
            if reply_to:
                return str(reply_to)
    return None
