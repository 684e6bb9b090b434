"""Lists and members: the operator's direct acts (``mailforum lists …``, ``members …``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from mailforum.batching import chunks
from mailforum.config import Config
from mailforum.db.base import Id
from mailforum.db.models import (
    ApiToken,
    Ban,
    Confirmation,
    DeliveryMode,
    ListOwner,
    MailingList,
    Member,
    Moderator,
    OutboxEntry,
    OutboxState,
    Post,
    PostingPolicy,
    PostStatus,
    Tag,
    TagSubscription,
    Topic,
    TopicSubscription,
    TopicTag,
    Visibility,
)
from mailforum.db.queries import list_named
from mailforum.db.txcache import TxCache
from mailforum.errors import InvalidInput, NotFound
from mailforum.mail.addresses import MAX_LIST_NAME, SUFFIXES, valid_list_name

if TYPE_CHECKING:
    from mailforum.mail.compose import ListIdentity

MEMBER_BATCH = 1000


def identity(config: Config, mlist: MailingList) -> ListIdentity:
    """How the list names itself in the mail it sends: addresses, title, subject tag, links."""
    from mailforum.mail.compose import ListIdentity  # 8 ms of email code no lists command needs

    tag = f"[{mlist.name}]" if mlist.subject_tag is None else mlist.subject_tag
    return ListIdentity(mlist.name, mlist.display_title, config.site.domain, config.site.base_url, tag)


@dataclass(frozen=True, slots=True)
class Address:
    """A checked address: ``address`` is what we store and compare (lower-cased)."""

    address: str
    display_name: str = ""


# Top-level names of email-validator's SPECIAL_USE_DOMAIN_NAMES that an intranet or a test
# install may use (never .invalid or .onion): alice@localhost, bob@host.local, …@x.test,
# …@host.home.arpa.
PRIVATE_TLDS = frozenset({"localhost", "local", "test", "arpa"})
LOCAL_DOMAINS_HINT = (
    " (refused by default: for an intranet or test install, [site] allow_local_domains = true "
    "accepts addresses at localhost, .local, .test, .arpa and names without a dot)"
)


def check_address(
    text: str, where: str = "", check_dns: bool = False, local_domains: bool = False
) -> Address:
    """Validate one address (``Name <a@b>`` or ``a@b``) with email-validator.

    ``local_domains`` ([site] allow_local_domains) also accepts special-use and dotless
    domains (``is_local_domain``), without DNS checks. Raises ``InvalidInput`` naming
    the address and ``where`` it came from.
    """
    from email.utils import parseaddr

    from email_validator import EmailNotValidError, validate_email  # 40 ms: only where addresses are read

    name, addr = parseaddr(text.strip())
    if not addr:
        raise InvalidInput(f"{where}not an email address: {text.strip()!r}")
    local = is_local_domain(addr.rpartition("@")[2])
    try:
        if local and local_domains:
            normalized = validate_local(addr)
        else:
            normalized = validate_email(addr, check_deliverability=check_dns, allow_smtputf8=True).normalized
    except EmailNotValidError as exc:
        hint = LOCAL_DOMAINS_HINT if local and not local_domains and _valid_local(addr) else ""
        raise InvalidInput(f"{where}{addr!r} is not a valid address: {str(exc).rstrip('.')}{hint}") from None
    return Address(normalized.lower(), name.strip())


def is_local_domain(domain: str) -> bool:
    """A name only an intranet or a test setup can route: no dot, or a PRIVATE_TLDS ending."""
    domain = domain.strip().lower()
    return "." not in domain or domain.rpartition(".")[2] in PRIVATE_TLDS


def _valid_local(addr: str) -> bool:
    from email_validator import EmailNotValidError

    try:
        validate_local(addr)
    except EmailNotValidError:
        return False
    return True


def validate_local(addr: str) -> str:
    """email-validator's normalised ``addr``, whose domain may be special-use or dotless.

    email-validator refuses special-use names whatever its options (except .test in a
    test environment), so a ``PRIVATE_TLDS`` ending is checked as ``.test`` and put back.
    """
    from email_validator import validate_email

    local_part, _, domain = addr.rpartition("@")
    head, dot, tld = domain.rpartition(".")
    tld = tld.lower()
    stand_in = f"{local_part}@{head}{dot}test" if tld in PRIVATE_TLDS else addr
    normalized: str = validate_email(
        stand_in,
        check_deliverability=False,
        allow_smtputf8=True,
        globally_deliverable=False,
        test_environment=True,
    ).normalized
    if tld in PRIVATE_TLDS:
        normalized = normalized[: -len("test")] + tld
    return normalized


def create_list(
    session: Session,
    name: str,
    title: str = "",
    description: str = "",
    policy: PostingPolicy = PostingPolicy.MEMBERS,
    visibility: Visibility = Visibility.PUBLIC,
) -> MailingList:
    name = name.strip().lower()
    if not valid_list_name(name):
        raise InvalidInput(
            f"bad list name {name!r}: use lower-case letters, digits, '.', '_' and '-', "
            f"at most {MAX_LIST_NAME} characters (every address of the list must fit the 64 octets "
            f"of RFC 5321), not ending in {', '.join(SUFFIXES)}"
        )
    if list_named(session, name) is not None:
        raise InvalidInput(f"list {name!r} already exists")
    mlist = MailingList(
        name=name,
        title=title,
        description=description,
        posting_policy=policy.value,
        visibility=visibility.value,
    )
    session.add(mlist)
    session.flush()
    return mlist


_LISTS: TxCache[dict[str, MailingList]] = TxCache("mailforum.lists", dict)  # by name


def list_by_name(session: Session, name: str) -> MailingList | None:
    """The list, remembered for the rest of the transaction (an import asks 500 times)."""
    known = _LISTS.setdefault(session)
    mlist = known.get(name)
    if mlist is None or mlist not in session:
        mlist = list_named(session, name)
        if mlist is not None:
            known[name] = mlist
    return mlist


def get_list(session: Session, name: str) -> MailingList:
    mlist = list_named(session, name.strip().lower())
    if mlist is None:
        raise NotFound(f"no list named {name!r} (see `mailforum lists list`)")
    return mlist


def list_names(session: Session) -> list[str]:
    return list(session.scalars(select(MailingList.name).order_by(MailingList.name)))


def list_stats(session: Session, mlist: MailingList) -> dict[str, object]:
    members = session.scalar(select(func.count()).where(Member.list_id == mlist.id)) or 0
    topics = (
        session.scalar(select(func.count()).where(Topic.list_id == mlist.id, Topic.merged_into_id.is_(None)))
        or 0
    )
    posts = (
        session.scalar(
            select(func.count()).where(Post.list_id == mlist.id, Post.status == PostStatus.PUBLISHED.value)
        )
        or 0
    )
    held = (
        session.scalar(
            select(func.count()).where(Post.list_id == mlist.id, Post.status == PostStatus.HELD.value)
        )
        or 0
    )
    last = session.scalar(select(func.max(Post.received_at)).where(Post.list_id == mlist.id))
    return {"members": members, "topics": topics, "posts": posts, "held": held, "last_post": last}


def add_members(
    session: Session,
    mlist: MailingList,
    addresses: Sequence[Address],
    mode: DeliveryMode,
    now: dt.datetime,
) -> tuple[int, int]:
    """Add members in batches; existing members are left as they are. Returns (added, existing)."""
    unique: dict[str, Address] = {}
    for a in addresses:
        unique.setdefault(a.address, a)
    existing: set[str] = set()
    for chunk in chunks(unique, MEMBER_BATCH):
        existing.update(
            session.scalars(
                select(Member.address).where(Member.list_id == mlist.id, Member.address.in_(chunk))
            )
        )
    # New members' digests start with what is new from now on, not the whole archive.
    newest = session.scalar(
        select(func.max(Post.id)).where(Post.list_id == mlist.id, Post.status == PostStatus.PUBLISHED.value)
    )
    rows = [
        {
            "list_id": mlist.id,
            "address": a.address,
            "display_name": a.display_name,
            "delivery_mode": mode.value,
            "watch_own": True,
            "receive_own": False,
            "digest_mark": int(newest or 0),
            "created_at": now,
        }
        for key, a in unique.items()
        if key not in existing
    ]
    for batch in chunks(rows, MEMBER_BATCH):
        session.execute(insert(Member), batch)
    return len(rows), len(existing)


def remove_members(
    session: Session, mlist: MailingList, addresses: Iterable[Address]
) -> tuple[int, list[str]]:
    """Remove members; returns (removed, addresses that were not members)."""
    wanted = {a.address for a in addresses}
    present = set(
        session.scalars(select(Member.address).where(Member.list_id == mlist.id, Member.address.in_(wanted)))
    )
    if present:
        session.execute(delete(Member).where(Member.list_id == mlist.id, Member.address.in_(present)))
    return len(present), sorted(wanted - present)


def members(session: Session, mlist: MailingList) -> list[Member]:
    return list(session.scalars(select(Member).where(Member.list_id == mlist.id).order_by(Member.address)))


def find_member(session: Session, list_id: int, address: str) -> Member | None:
    if not address:
        return None
    address = address.lower()
    known = _KNOWN_MEMBERS.get(session)
    if known is not None and (list_id, address) in known:
        return known[(list_id, address)]
    return session.scalars(_FIND_MEMBER, {"list_id": list_id, "address": address}).first()


# What ``remember_members`` read for this transaction: (list id, address) → Member or None.
_KNOWN_MEMBERS: TxCache[dict[tuple[int, str], Member | None]] = TxCache("mailforum.lists.known_members", dict)


def remember_members(session: Session, list_id: int, addresses: Iterable[str]) -> None:
    """Look these addresses up in the list at once: ``find_member`` answers from what this
    read until ``forget_members`` (a processing batch's senders: one query, not one per
    message). Whoever changes memberships in the same session must forget first."""
    wanted = {a.lower() for a in addresses if a}
    if not wanted:
        return
    known = _KNOWN_MEMBERS.setdefault(session)
    found = {
        m.address: m
        for chunk in chunks(sorted(wanted), 500)
        for m in session.scalars(select(Member).where(Member.list_id == list_id, Member.address.in_(chunk)))
    }
    known.update(((list_id, a), found.get(a)) for a in wanted)


def forget_members(session: Session) -> None:
    _KNOWN_MEMBERS.clear(session)


# Built once: every message looks its sender up.
_FIND_MEMBER = select(Member).where(
    Member.list_id == bindparam("list_id", type_=Id), Member.address == bindparam("address", type_=String())
)


# --- deleting a list -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deletion:
    """What deleting a list removes (``deletion_counts``) or removed (``delete_list``)."""

    members: int
    topics: int
    posts: int
    held: int
    tags: int
    outbox_pending: int
    outbox_sent: int
    outbox_failed: int
    api_tokens: int
    owners: int
    moderators: int
    bans: int

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def deletion_counts(session: Session, mlist: MailingList) -> Deletion:
    """What ``delete_list`` would remove, one COUNT per table (each on an index of list_id)."""

    def count(model: Any, *where: Any) -> int:
        return (
            session.scalar(select(func.count()).select_from(model).where(model.list_id == mlist.id, *where))
            or 0
        )

    outbox = dict(
        session.execute(
            select(OutboxEntry.state, func.count())
            .where(OutboxEntry.list_id == mlist.id)
            .group_by(OutboxEntry.state)
        ).all()
    )
    return Deletion(
        members=count(Member),
        topics=count(Topic),
        posts=count(Post, Post.status != PostStatus.HELD.value),
        held=count(Post, Post.status == PostStatus.HELD.value),
        tags=count(Tag),
        outbox_pending=outbox.get(OutboxState.PENDING.value, 0),
        outbox_sent=outbox.get(OutboxState.SENT.value, 0),
        outbox_failed=outbox.get(OutboxState.FAILED.value, 0),
        api_tokens=count(ApiToken),
        owners=count(ListOwner),
        moderators=count(Moderator),
        bans=count(Ban),
    )


def delete_list(session: Session, mlist: MailingList) -> Deletion:
    """Delete the list and everything of it, in the caller's transaction; returns the counts.

    One statement per table, each selecting its rows by ``list_id`` (or by the list's topics,
    tags or posts through an index: migration 0017 indexes topics.merged_into_id and
    confirmations.topic_id), so 10,000 topics cost a few statements, not 10,000 of them.
    Every outbox row of the list goes: a copy still pending is never sent (a sender that
    has one claimed already may finish it; its answer then updates no row). The spool
    keeps the raw mail (retention removes it); the audit log keeps its entries, with
    ``list_id`` NULL and the list's name in ``detail``. Tables added later that point at
    the list with ON DELETE CASCADE go with the list's own row, last.
    """
    counts = deletion_counts(session, mlist)
    topic_ids = select(Topic.id).where(Topic.list_id == mlist.id)
    post_ids = select(Post.id).where(Post.list_id == mlist.id)
    tag_ids = select(Tag.id).where(Tag.list_id == mlist.id)
    session.execute(delete(OutboxEntry).where(OutboxEntry.list_id == mlist.id))
    session.execute(delete(OutboxEntry).where(OutboxEntry.post_id.in_(post_ids)))  # copies filed elsewhere
    session.execute(delete(TopicSubscription).where(TopicSubscription.topic_id.in_(topic_ids)))
    session.execute(delete(TagSubscription).where(TagSubscription.tag_id.in_(tag_ids)))
    session.execute(delete(TopicTag).where(TopicTag.topic_id.in_(topic_ids)))
    session.execute(delete(Confirmation).where(Confirmation.list_id == mlist.id))
    session.execute(delete(Confirmation).where(Confirmation.topic_id.in_(topic_ids)))
    # Links into the list from outside it (none are made today; a cheap check on two indexes).
    session.execute(
        update(Post).where(Post.parent_id.in_(post_ids), Post.list_id != mlist.id).values(parent_id=None)
    )
    session.execute(
        update(Topic)
        .where(Topic.merged_into_id.in_(topic_ids), Topic.list_id != mlist.id)
        .values(merged_into_id=None)
    )
    session.execute(delete(Post).where(Post.list_id == mlist.id))
    session.execute(delete(Topic).where(Topic.list_id == mlist.id))
    session.execute(delete(Member).where(Member.list_id == mlist.id))
    session.execute(delete(MailingList).where(MailingList.id == mlist.id))
    session.expunge(mlist)
    _LISTS.setdefault(session).pop(mlist.name, None)
    return counts
