"""The recipient grammar: which of our addresses a message was sent to.

    dev@lists.example.org                  post to the list "dev"
    dev-request@…                          commands in the subject or body
    dev-owner@…                            the list's owners
    dev-bounces@…, dev-bounces+VERP@…      bounces (VERP names the recipient and the message)
    dev+subscribe@…, dev+unsubscribe@…     shortcuts (also +join, +leave)
    dev+watch-T@…, dev+mute-T@…            follow or mute topic T
    dev+r-TOKEN@…                          reply to one post (signed, per recipient)
    dev+confirm-TOKEN@…, dev-confirm+TOKEN@…   confirm a pending request
    dev+enable-TOKEN@…                     re-enable delivery paused by bounces (signed)
    dev+mod-TOKEN@…                        a moderator's answer to a held post (signed)

Which list names exist is not known here; ``parse_recipient`` only reads the
address, and the caller checks the list. Local parts are compared case-insensitively.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from mailforum.core import tokens
from mailforum.errors import RecipientRefused


class Kind(enum.StrEnum):
    POST = "post"
    REQUEST = "request"
    OWNER = "owner"
    BOUNCES = "bounces"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    WATCH = "watch"
    MUTE = "mute"
    REPLY = "reply"
    CONFIRM = "confirm"
    ENABLE = "enable"
    MODERATE = "moderate"


@dataclass(frozen=True, slots=True)
class Recipient:
    kind: Kind
    list_name: str
    arg: str = ""  # the token, topic or VERP part, when the kind has one


# List names: what is safe in a local part, in a URL path and in a file name.
LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
# "-request" etc. end the list name: a list cannot itself be called "x-request".
SUFFIXES: dict[str, Kind] = {
    "-request": Kind.REQUEST,
    "-owner": Kind.OWNER,
    "-bounces": Kind.BOUNCES,
    "-confirm": Kind.CONFIRM,
}
SHORTCUTS: dict[str, Kind] = {
    "subscribe": Kind.SUBSCRIBE,
    "join": Kind.SUBSCRIBE,
    "unsubscribe": Kind.UNSUBSCRIBE,
    "leave": Kind.UNSUBSCRIBE,
}
PREFIXED: dict[str, Kind] = {
    "watch-": Kind.WATCH,
    "mute-": Kind.MUTE,
    "r-": Kind.REPLY,
    "confirm-": Kind.CONFIRM,
    "enable-": Kind.ENABLE,
    "mod-": Kind.MODERATE,
}
# Kinds that carry an argument after "+" on a suffixed base ("dev-bounces+…").
SUFFIX_ARG = {Kind.BOUNCES, Kind.CONFIRM}

RELAY_DENIED = "550 5.7.1 Relay access denied"
NO_SUCH = "550 5.1.1 No such list or address here"


def valid_list_name(name: str) -> bool:
    """A name ``lists create`` accepts: every address of the list fits 64 octets (B53)."""
    return (
        bool(LIST_NAME.match(name))
        and len(name) <= MAX_LIST_NAME
        and not any(name.endswith(s) for s in SUFFIXES)
    )


def parse_recipient(address: str, domain: str) -> Recipient:
    """Read one envelope recipient; refuse what is not one of our addresses.

    >>> parse_recipient("Dev+watch-42@lists.example.org", "lists.example.org")
    Recipient(kind=<Kind.WATCH: 'watch'>, list_name='dev', arg='42')
    """
    local, at, host = address.rpartition("@")
    if not at or not local:
        raise RecipientRefused(smtp_reply="501 5.1.3 Bad recipient address syntax")
    # Source routes and %-hacks are how open relays were abused (RFC 5321 §3.6, S18).
    if local.startswith("@") or ":" in local or "%" in local or "!" in local:
        raise RecipientRefused(smtp_reply=RELAY_DENIED)
    if host.lower().rstrip(".") != domain.lower():
        raise RecipientRefused(smtp_reply=RELAY_DENIED)
    if local.startswith('"'):
        raise RecipientRefused(smtp_reply=NO_SUCH)
    base, plus, detail = local.lower().partition("+")
    for suffix, kind in SUFFIXES.items():
        if base.endswith(suffix) and len(base) > len(suffix):
            name = base[: -len(suffix)]
            if plus and kind not in SUFFIX_ARG:
                break
            return _checked(Recipient(kind, name, _case_kept(local, detail) if plus else ""))
    if not plus:
        return _checked(Recipient(Kind.POST, base))
    if detail in SHORTCUTS:
        return _checked(Recipient(SHORTCUTS[detail], base))
    for prefix, kind in PREFIXED.items():
        if detail.startswith(prefix) and len(detail) > len(prefix):
            return _checked(Recipient(kind, base, _case_kept(local, detail)[len(prefix) :]))
    raise RecipientRefused(smtp_reply=NO_SUCH)


def _case_kept(local: str, detail_lower: str) -> str:
    """The detail part as the sender wrote it: tokens may be case-sensitive."""
    return local.partition("+")[2] if detail_lower else ""


def _checked(recipient: Recipient) -> Recipient:
    if not LIST_NAME.match(recipient.list_name):
        raise RecipientRefused(smtp_reply=NO_SUCH)
    return recipient


def list_address(name: str, domain: str, kind: Kind = Kind.POST, arg: str = "") -> str:
    """The address of one of a list's roles: the inverse of ``parse_recipient``."""
    if kind is Kind.POST:
        local = name
    elif kind in (Kind.REQUEST, Kind.OWNER):
        local = f"{name}-{kind.value}"
    elif kind is Kind.BOUNCES:
        local = f"{name}-bounces+{arg}" if arg else f"{name}-bounces"
    elif kind in (Kind.SUBSCRIBE, Kind.UNSUBSCRIBE):
        local = f"{name}+{kind.value}"
    elif kind is Kind.REPLY:
        local = f"{name}+r-{arg}"
    elif kind is Kind.MODERATE:
        local = f"{name}+mod-{arg}"
    else:
        local = f"{name}+{kind.value}-{arg}"
    return f"{local}@{domain}"


LOCAL_PART_MAX = 64  # octets (RFC 5321 §4.5.3.1.1)
# The largest fields of each kind's short token: ids up to tokens.MAX_ID, and a moderator's
# action (core.moderation) is one base-36 digit.
_WIDEST_TOKEN_FIELDS: dict[Kind, tuple[int, ...]] = {
    Kind.REPLY: (tokens.MAX_ID, tokens.MAX_ID),  # member, post
    Kind.MODERATE: (tokens.MAX_ID, 35),  # post, action
    Kind.BOUNCES: (tokens.MAX_ID,),  # outbox row
    Kind.CONFIRM: (tokens.MAX_ID,),  # confirmation
    Kind.ENABLE: (tokens.MAX_ID,),  # member
}


def widest_arg(kind: Kind) -> str:
    """An argument as long as the longest ``kind`` ever carries (``x`` for kinds without one)."""
    if kind in _WIDEST_TOKEN_FIELDS:
        return "x" * tokens.short_length(_WIDEST_TOKEN_FIELDS[kind])
    return str(tokens.MAX_ID) if kind in (Kind.WATCH, Kind.MUTE) else "x"


# The longest list name whose every address fits: 27 with the tokens of today.
MAX_LIST_NAME = LOCAL_PART_MAX - max(
    len(list_address("", "d", kind, widest_arg(kind)).partition("@")[0]) for kind in Kind
)
