"""Commands by mail: ``NAME-request@`` and the shortcuts ``+subscribe``, ``+unsubscribe``,
``+watch-T``, ``+mute-T`` and ``+confirm-TOKEN``.

A command mail is read from the subject (when it starts with a command) and the
body, one command per line, stopping at a signature (``-- ``), quoted text (``>``,
"On … wrote:", "-----Original Message-----") or after ``[subscriptions]
max_command_lines`` (10) lines (RELIABILITY S23). HTML-only mail is read through
its text (``ParsedMessage.text_body``). The commands are a table (``COMMANDS``);
each returns a ``Result``, and all results go back in ONE answer to the sender's
From address — never to anyone else.

Nothing is answered, and nothing is done, for mail a machine sent (RFC 3834; a
vacation reply to a confirmation must not confirm it): ``answers.should_answer``
comes first. ``subscribe`` (and ``unsubscribe``) only ever send a confirmation to
the From address itself, so a forged request cannot change anyone's membership
(S4, S7); the confirmation is the whole answer, so a forger causes one mail.

    subscribe | join                     confirmation mail, then welcome
    unsubscribe | leave                  confirmation mail, then goodbye
    digest daily|weekly|off              members: a digest as well (mode digest: instead; off: none)
    mode all|new-topics|digest|none      members: what arrives by mail
    watch T | mute T | unwatch T         members: follow, silence or reset one topic
    watch #TAG | mute #TAG | unwatch #TAG  members: follow, silence or reset a tag's topics
    nodupes on|off | set nodupes on|off  members: no list copy of a post addressed to you (default on)
    who am i | whoami | status           your membership, mode and topics
    confirm TOKEN                        confirm a pending request
    enable [delivery]                    members paused by bounces: a link to resume, mailed to them
    lock|unlock|pin|unpin T, split POST, merge T INTO, retitle T TITLE, remove POST [REASON],
    tag T TAG...                         moderators, from mail our MTA authenticated
    help                                 the commands
    end | stop | thanks                  ignore the rest of the mail
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import answers, bounces, digest_enqueue, roles, subscriptions, topics
from mailforum.core.authentication import verdict
from mailforum.core.inbound import Arrival, Outcome
from mailforum.core.lists import Address, check_address, find_member
from mailforum.db import queries
from mailforum.db.models import (
    ConfirmAction,
    DeliveryMode,
    MailingList,
    Member,
    SubscriptionKind,
    Topic,
)
from mailforum.errors import InvalidInput, MailforumError
from mailforum.mail.addresses import Kind
from mailforum.mail.compose import clean
from mailforum.mail.headers import subject_info
from mailforum.mail.parse import ParsedMessage, html_to_text
from mailforum.mail.quotes import ON_WROTE

log = logging.getLogger(__name__)

MAX_LINE = 200  # longer lines are prose, not commands
_SUBJECT_PREFIX = re.compile(
    r"^\s*((re|aw|sv|antw|fwd?|wg)\s*(\[\d+\])?\s*:\s*|\[[^\]]{0,64}\]\s*)", re.IGNORECASE
)
# Where the command part of a mail ends: a signature, quoted text, a forwarded or replied-to message.
_STOP = re.compile(
    r"^(--\s*$|-- |_{5,}|-{5,}\s*original message|>|" + ON_WROTE + "|"
    r"(from|von|de):\s.+@|sent from my\b)",
    re.IGNORECASE,
)
_CONFIRM_IN_SUBJECT = re.compile(r"\bconfirm\s+([0-9a-z]+(?:-[0-9a-z]+){2,})", re.IGNORECASE)
_HTML_QUOTE = re.compile(
    r"(?i)<\s*(blockquote\b|hr\b|div\b[^>]*\b(gmail_quote|moz-cite-prefix|divRplyFwdMsg)\b)"
)
_TOPIC = re.compile(r"^(?:#|.*/topics/)?(\d{1,12})/?$")
_TAG = re.compile(r"^#(?!\d+$)[A-Za-z0-9][\w-]{0,63}$")  # "#agile"; "#12" is topic 12 (digits only)


@dataclass(frozen=True, slots=True)
class Result:
    """What one command did, in our own words (never the sender's text: S4)."""

    command: str
    ok: bool
    message: str
    quiet: bool = False  # its own mail (a confirmation) is the answer; needs no result mail
    known: bool = True  # False for a line that is not a command


@dataclass
class Context:
    """One command mail being carried out for ``who`` (the From address)."""

    session: Session
    config: Config
    mlist: MailingList
    who: Address
    now: dt.datetime
    in_reply_to: str | None
    # False when [security] authserv_id is set and our MTA did not authenticate the From (S1).
    verified: bool = True
    # Our MTA's Authentication-Results vouch for the From ([security] authserv_id set and
    # passing): what moderators' commands need (a moderator's power is not given on a claim).
    authenticated: bool = False
    show_help: bool = False
    stop: bool = False
    results: list[Result] = field(default_factory=list)

    @property
    def member(self) -> Member | None:
        return find_member(self.session, self.mlist.id, self.who.address)

    def not_member(self, command: str) -> Result:
        return Result(
            command,
            False,
            f"You are not a member of {self.mlist.name}. To join, send 'subscribe' to "
            f"{self.mlist.name}-request@{self.config.site.domain}.",
        )


Command = Callable[[Context, tuple[str, ...]], Result | None]


# --- reading the mail ---------------------------------------------------------------------------


def strip_subject(subject: str) -> str:
    """The subject without Re:/Fwd: prefixes and [list] tags."""
    previous = None
    while previous != subject:
        previous = subject
        subject = _SUBJECT_PREFIX.sub("", subject, count=1)
    return subject.strip()


def command_lines(parsed: ParsedMessage, limit: int) -> list[tuple[str, ...]]:
    """The command lines of a mail, split into words: the subject if it is one, then the body.

    A command given twice (in the subject and again in the body, or on two lines) is
    read once, so it is carried out and answered once.
    """
    lines: list[tuple[str, ...]] = []
    subject = strip_subject(parsed.subject).split()
    token = _CONFIRM_IN_SUBJECT.search(parsed.subject)
    if token is not None:  # "Re: Please confirm: … (confirm TOKEN)", answered to -request
        lines.append(("confirm", token.group(1)))
    elif subject and _word(subject[0]) in COMMANDS:
        lines.append(tuple(subject))
    for raw in body_text(parsed).splitlines():
        text = raw.strip()
        if _STOP.match(text):
            break
        if not text:
            continue
        if len(lines) >= limit:
            break
        lines.append(tuple(text[:MAX_LINE].split()))
    return _once(lines)[:limit]


def _once(lines: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """``lines`` without repeats, compared word by word as commands are read (``_word``)."""
    seen: set[tuple[str, ...]] = set()
    kept = []
    for words in lines:
        key = tuple(_word(w) for w in words)
        if key not in seen:
            seen.add(key)
            kept.append(words)
    return kept


def body_text(parsed: ParsedMessage) -> str:
    """The text to read commands from. For HTML-only mail, its text with quotes marked.

    Mail clients quote in HTML with <blockquote> (and Gmail's "gmail_quote", Thunderbird's
    "moz-cite-prefix", Outlook's "divRplyFwdMsg" or an <hr>); the plain text made from the
    HTML loses that, so a "> " line is put in front of each, where reading stops.
    """
    if parsed.html_body is None or parsed.text_body.strip() != html_to_text(parsed.html_body):
        return parsed.text_body
    return html_to_text(_HTML_QUOTE.sub(lambda found: "<br>&gt; " + found.group(0), parsed.html_body))


def _word(text: str) -> str:
    return text.lower().strip(".,;:!?\"'*")


# --- the commands --------------------------------------------------------------------------------


def _confirm(ctx: Context, name: str, action: ConfirmAction) -> Result:
    """Mail a confirmation of ``action`` to the From address; the answer says only that."""
    subscriptions.request(
        ctx.session, ctx.config, ctx.mlist, ctx.who, action, ctx.now, in_reply_to=ctx.in_reply_to
    )
    return Result(
        name, True, "We have mailed you a confirmation (unless one is already on its way).", quiet=True
    )


def do_subscribe(ctx: Context, args: tuple[str, ...]) -> Result:
    """Always a confirmation to the From address, member or not (no oracle: S4)."""
    return _confirm(ctx, "subscribe", ConfirmAction.SUBSCRIBE)


def do_unsubscribe(ctx: Context, args: tuple[str, ...]) -> Result:
    if ctx.member is None:
        return ctx.not_member("unsubscribe")
    return _confirm(ctx, "unsubscribe", ConfirmAction.UNSUBSCRIBE)


DIGESTS = {"daily": "daily", "weekly": "weekly", "off": None}


def do_digest(ctx: Context, args: tuple[str, ...]) -> Result:
    choice = _word(args[0]) if args else ""
    if choice not in DIGESTS:
        return Result("digest", False, "Say 'digest daily', 'digest weekly' or 'digest off'.")
    member = ctx.member
    if member is None:
        return ctx.not_member(f"digest {choice}")
    if DIGESTS[choice] is not None:
        _start_digests(ctx.session, member)
    member.digest_frequency = DIGESTS[choice]
    if choice == "off":
        if member.delivery_mode == DeliveryMode.DIGEST.value:
            member.delivery_mode = DeliveryMode.ALL.value
            return Result(
                "digest off", True, "No more digests: you get every post as it arrives (mode 'all')."
            )
        return Result("digest off", True, "No more digests.")
    mode = DeliveryMode(member.delivery_mode)
    if mode in (DeliveryMode.ALL, DeliveryMode.NEW_TOPICS):
        # The digest comes on top of the mode ("mode digest" is the digest instead of single posts).
        return Result(
            f"digest {choice}",
            True,
            f"You now get a {choice} digest as well as {MODE_TEXT[mode]}. "
            "Say 'mode digest' to get the digest instead of single posts.",
        )
    member.delivery_mode = DeliveryMode.DIGEST.value
    return Result(f"digest {choice}", True, f"You now get a {choice} digest instead of single posts.")


MODES = {m.value: m for m in DeliveryMode} | {
    "new": DeliveryMode.NEW_TOPICS,
    "newtopics": DeliveryMode.NEW_TOPICS,
}
MODE_TEXT = {
    DeliveryMode.ALL: "every post as it arrives",
    DeliveryMode.NEW_TOPICS: "the first post of every new topic, and the topics you watch",
    DeliveryMode.DIGEST: "a digest instead of single posts",
    DeliveryMode.NONE: "no mail, except the topics you watch",
}


def do_mode(ctx: Context, args: tuple[str, ...]) -> Result:
    choice = _word(args[0]) if args else ""
    if choice not in MODES:
        return Result("mode", False, "Say 'mode all', 'mode new-topics', 'mode digest' or 'mode none'.")
    mode = MODES[choice]
    member = ctx.member
    if member is None:
        return ctx.not_member(f"mode {mode.value}")
    set_mode(ctx.session, member, mode)
    return Result(f"mode {mode.value}", True, f"You now get {MODE_TEXT[mode]}.")


SWITCH = {"on": True, "yes": True, "off": False, "no": False}


def do_nodupes(ctx: Context, args: tuple[str, ...]) -> Result:
    """Mailman's "avoid duplicate copies": no list copy of a post whose To or Cc names you."""
    choice = _word(args[0]) if args else ""
    if choice not in SWITCH:
        return Result("nodupes", False, "Say 'nodupes on' or 'nodupes off'.")
    member = ctx.member
    if member is None:
        return ctx.not_member(f"nodupes {choice}")
    member.avoid_duplicates = SWITCH[choice]
    if member.avoid_duplicates:
        text = "A post whose To or Cc names you reaches you once: no list copy next to the sender's."
    else:
        text = "You get the list's copy of every post, even when its sender also wrote to you."
    return Result(f"nodupes {'on' if member.avoid_duplicates else 'off'}", True, text)


SETTINGS: dict[str, Callable[[Context, tuple[str, ...]], Result]] = {"nodupes": do_nodupes}


def do_set(ctx: Context, args: tuple[str, ...]) -> Result:
    """``set nodupes on`` (Mailman's spelling) is ``nodupes on``."""
    setting = SETTINGS.get(_word(args[0]) if args else "")
    if setting is None:
        return Result("set", False, "Say 'set nodupes on' or 'set nodupes off'.")
    return setting(ctx, args[1:])


def set_mode(session: Session, member: Member, mode: DeliveryMode) -> None:
    """Change a member's delivery mode (the mail command "mode", the API, the owner pages)."""
    if mode is DeliveryMode.DIGEST:
        _start_digests(session, member)
    elif member.delivery_mode == DeliveryMode.DIGEST.value:
        member.digest_frequency = None  # leaving digest mode ends the digests it brought
    member.delivery_mode = mode.value
    if mode is DeliveryMode.DIGEST and not member.digest_frequency:
        member.digest_frequency = "daily"


def _start_digests(session: Session, member: Member) -> None:
    """A member who starts digests now gets what is new from now on, not the posts already mailed."""
    if member.delivery_mode != DeliveryMode.DIGEST.value and member.digest_frequency is None:
        member.digest_mark = digest_enqueue.start_mark(session, member.list_id)


def _topic_command(kind: SubscriptionKind | None, name: str) -> Command:
    def run(ctx: Context, args: tuple[str, ...]) -> Result:
        if args and _TAG.match(args[0]):
            return _tag_command(ctx, kind, name, args[0])
        found = _TOPIC.match(args[0]) if args else None
        if found is None:
            return Result(name, False, f"Say '{name} NUMBER' with the topic's number (see its web address).")
        number = int(found.group(1))
        topic = queries.resolve_topic(ctx.session, ctx.mlist, number)
        if topic is None or topic.post_count == 0:
            return Result(f"{name} {number}", False, f"There is no topic {number} in {ctx.mlist.name}.")
        member = ctx.member
        if member is None and kind is SubscriptionKind.WATCH:
            # Following one topic is joining in a small way: the owner of the address confirms it.
            subscriptions.request(
                ctx.session,
                ctx.config,
                ctx.mlist,
                ctx.who,
                ConfirmAction.WATCH,
                ctx.now,
                topic_id=topic.id,
                in_reply_to=ctx.in_reply_to,
            )
            return Result(f"watch {topic.id}", True, "We have mailed you a confirmation.", quiet=True)
        if member is None:
            return ctx.not_member(f"{name} {topic.id}")
        subscriptions.set_topic(ctx.session, member, topic, kind, ctx.now)
        named = topic_name(topic)
        text = {
            SubscriptionKind.WATCH: f"You now get every new post in {named}, whatever your mode.",
            SubscriptionKind.MUTE: f"You get no more mail about {named}.",
            None: f"{named[0].upper()}{named[1:]} now follows your delivery mode again.",
        }[kind]
        return Result(f"{name} {topic.id}", True, text)

    return run


def _tag_command(ctx: Context, kind: SubscriptionKind | None, name: str, word: str) -> Result:
    """``watch #TAG``, ``mute #TAG``, ``unwatch #TAG``: follow or mute a tag of the list's vocabulary."""
    tag = topics.tag_named(ctx.session, ctx.mlist, word)
    shown = f"#{word.lstrip('#').lower()[:64]}" if tag is not None else "#…"
    if tag is None:  # never echo what the sender wrote (S4)
        return Result(f"{name} {shown}", False, f"That is not one of {ctx.mlist.name}'s tags.")
    member = ctx.member
    if member is None:
        return ctx.not_member(f"{name} #{tag.name}")
    topics.set_tag(ctx.session, member, tag, kind, ctx.now)
    text = {
        SubscriptionKind.WATCH: f"You now get every post of topics tagged #{tag.name}, whatever your mode.",
        SubscriptionKind.MUTE: f"You get no more mail about topics tagged #{tag.name} unless you watch one.",
        None: f"Topics tagged #{tag.name} now follow your delivery mode again.",
    }[kind]
    return Result(f"{name} #{tag.name}", True, text)


# --- moderators' commands --------------------------------------------------------

_NUMBER = re.compile(r"^#?(\d{1,12})$")


def _numbers(args: tuple[str, ...], count: int) -> list[int] | None:
    found = [_NUMBER.match(a) for a in args[:count]]
    if len(found) < count or any(m is None for m in found):
        return None
    return [int(m.group(1)) for m in found if m is not None]


def _moderator_command(name: str, usage: str, count: int, act: Callable[..., str]) -> Command:
    """A moderator's command by mail: only from a moderator (or owner, or site admin) of the
    list, and only when our MTA authenticated the From (``Context.authenticated``)."""

    def run(ctx: Context, args: tuple[str, ...]) -> Result:
        if not ctx.authenticated or not roles.is_moderator(ctx.session, ctx.mlist, ctx.who.address):
            return Result(
                name,
                False,
                "Only the list's moderators may do that, from mail our server authenticated.",
            )
        numbers = _numbers(args, count)
        if numbers is None:
            return Result(name, False, f"Say '{usage}'.")
        actor = topics.Actor(ctx.who.address, "mail")
        try:
            with ctx.session.begin_nested():
                said = act(ctx, actor, numbers, args[count:])
        except MailforumError as exc:
            return Result(f"{name} {' '.join(map(str, numbers))}", False, str(exc)[:200])
        return Result(f"{name} {' '.join(map(str, numbers))}", True, said)

    return run


_MARKED = {"lock": "locked", "unlock": "unlocked", "pin": "pinned", "unpin": "unpinned"}


def _mark(what: str) -> Callable[..., str]:
    def act(ctx: Context, actor: topics.Actor, numbers: list[int], rest: tuple[str, ...]) -> str:
        topic = topics.mark(ctx.session, ctx.mlist, numbers[0], what, actor, ctx.now)
        return f"{_named(topic)} is {_MARKED[what]}."

    return act


def _named(topic: Topic) -> str:
    name = topic_name(topic)
    return name[0].upper() + name[1:]


def _split(ctx: Context, actor: topics.Actor, numbers: list[int], rest: tuple[str, ...]) -> str:
    topic = topics.split(ctx.session, ctx.mlist, numbers[0], actor, ctx.now)
    return f"Post {numbers[0]} and its replies are {topic_name(topic)} now."


def _merge(ctx: Context, actor: topics.Actor, numbers: list[int], rest: tuple[str, ...]) -> str:
    topic = topics.merge(ctx.session, ctx.mlist, numbers[0], numbers[1], actor, ctx.now)
    return f"Topic {numbers[0]} is part of {topic_name(topic)} now."


def _retitle(ctx: Context, actor: topics.Actor, numbers: list[int], rest: tuple[str, ...]) -> str:
    topic = topics.retitle(ctx.session, ctx.mlist, numbers[0], " ".join(rest), actor, ctx.now)
    return f"{_named(topic)} has its new title."


def _remove(ctx: Context, actor: topics.Actor, numbers: list[int], rest: tuple[str, ...]) -> str:
    topics.remove_post(ctx.session, ctx.mlist, numbers[0], " ".join(rest), actor, ctx.now)
    return f"Post {numbers[0]} is removed; its thread shows that a moderator removed it."


def _tag(ctx: Context, actor: topics.Actor, numbers: list[int], rest: tuple[str, ...]) -> str:
    if not rest:
        raise InvalidInput("Say 'tag TOPIC TAG...' with the tags of the list's vocabulary.")
    topic, _ = topics.set_tags_by_hand(ctx.session, ctx.mlist, numbers[0], rest, actor)
    shown = ", ".join(f"#{t}" for t in topics.tags_of(ctx.session, [topic.id]).get(topic.id, []))
    return f"{_named(topic)} is tagged {shown or '(nothing)'}."


MODERATOR_COMMANDS: dict[str, Command] = {
    "lock": _moderator_command("lock", "lock TOPIC", 1, _mark("lock")),
    "unlock": _moderator_command("unlock", "unlock TOPIC", 1, _mark("unlock")),
    "pin": _moderator_command("pin", "pin TOPIC", 1, _mark("pin")),
    "unpin": _moderator_command("unpin", "unpin TOPIC", 1, _mark("unpin")),
    "split": _moderator_command("split", "split POST", 1, _split),
    "merge": _moderator_command("merge", "merge TOPIC INTO", 2, _merge),
    "retitle": _moderator_command("retitle", "retitle TOPIC NEW TITLE", 1, _retitle),
    "remove": _moderator_command("remove", "remove POST [REASON]", 1, _remove),
    "tag": _moderator_command("tag", "tag TOPIC TAG...", 1, _tag),
}


MAX_TITLE = 80


def topic_name(topic: Topic) -> str:
    """``topic 12 ("Build fails on ARM")``: its number and its title as the list shows it.

    Said only to members, about topics published in their own list.
    """
    title = clean(subject_info(topic.subject).title)
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - 1].rstrip() + "…"
    return f'topic {topic.id} ("{title}")' if title else f"topic {topic.id}"


def do_status(ctx: Context, args: tuple[str, ...]) -> Result:
    member = ctx.member
    if member is None:
        return Result("status", True, f"{ctx.who.address} is not a member of {ctx.mlist.name}.")
    settings = topics.topic_settings(ctx.session, member)
    watched = [_listed(ctx, t) for t in settings[SubscriptionKind.WATCH.value][:50]]
    muted = [_listed(ctx, t) for t in settings[SubscriptionKind.MUTE.value][:50]]
    tags = topics.tag_settings(ctx.session, member)
    parts = [
        f"{member.address} is a member of {ctx.mlist.name}",
        f"delivery mode {member.delivery_mode}",
        f"digest {member.digest_frequency or 'off'}",
        f"copies of posts addressed to you {'skipped' if member.avoid_duplicates else 'sent'}",
        f"watching {', '.join(watched) or '(no topics)'}",
        f"muted {', '.join(muted) or '(no topics)'}",
    ]
    for kind, label in ((SubscriptionKind.WATCH.value, "following"), (SubscriptionKind.MUTE.value, "muted")):
        if tags.get(kind):
            parts.append(f"{label} the tags {', '.join('#' + t for t in tags[kind])}")
    return Result("status", True, "; ".join(parts) + ".")


def _listed(ctx: Context, topic_id: int) -> str:
    topic = ctx.session.get(Topic, topic_id)
    return topic_name(topic) if topic is not None else f"topic {topic_id}"


def do_confirm(ctx: Context, args: tuple[str, ...]) -> Result:
    token = next((a for a in args if re.fullmatch(r"[0-9a-z-]{20,200}", a.lower())), "")
    return confirm_token(ctx, token)


def confirm_token(ctx: Context, token: str) -> Result:
    done = subscriptions.confirm(
        ctx.session, ctx.config, token, ctx.now, in_reply_to=ctx.in_reply_to, replier=ctx.who
    )
    status = subscriptions.Status
    if done.status is status.DONE and not done.detail:
        return Result("confirm", True, "Confirmed.", quiet=True)  # the welcome/goodbye mail says the rest
    messages = {
        status.DONE: f"Confirmed: {done.detail}.",
        status.ALREADY: "This request was confirmed already; nothing more to do."
        + (f" ({done.detail})" if done.detail else ""),
        status.EXPIRED: "This confirmation has expired. Please send your request again.",
        status.INVALID: "This confirmation code is not valid. Please reply to the confirmation mail "
        "without changing its subject, or send your request again.",
    }
    return Result("confirm", done.status in (status.DONE, status.ALREADY), messages[done.status])


def do_enable(ctx: Context, args: tuple[str, ...]) -> Result:
    """ "enable [delivery]": delivery that bounces paused (core.bounces) is turned back on only
    through the signed link mailed to the member's own address, so a forged From cannot do it."""
    member = ctx.member
    if member is None:
        return ctx.not_member("enable")
    if member.delivery_disabled_at is None:
        return Result("enable", True, "Delivery to you is on; nothing to enable.")
    bounces.send_enable_link(ctx.session, ctx.config, ctx.mlist, member, ctx.now)
    return Result("enable", True, "We have mailed you a link to turn delivery back on.", quiet=True)


def do_help(ctx: Context, args: tuple[str, ...]) -> None:
    ctx.show_help = True
    return None


def do_end(ctx: Context, args: tuple[str, ...]) -> None:
    ctx.stop = True
    return None


COMMANDS: dict[str, Command] = {
    "subscribe": do_subscribe,
    "join": do_subscribe,
    "unsubscribe": do_unsubscribe,
    "leave": do_unsubscribe,
    "digest": do_digest,
    "mode": do_mode,
    "nodupes": do_nodupes,
    "set": do_set,
    "watch": _topic_command(SubscriptionKind.WATCH, "watch"),
    "follow": _topic_command(SubscriptionKind.WATCH, "watch"),
    "mute": _topic_command(SubscriptionKind.MUTE, "mute"),
    "unwatch": _topic_command(None, "unwatch"),
    "unmute": _topic_command(None, "unmute"),
    "who": do_status,  # "who am i"
    "whoami": do_status,
    "status": do_status,
    "confirm": do_confirm,
    "enable": do_enable,  # "enable delivery" after bounces paused it
    "help": do_help,
    "info": do_help,
    "end": do_end,
    "stop": do_end,
    "thanks": do_end,
    **MODERATOR_COMMANDS,
}


def run(ctx: Context, lines: list[tuple[str, ...]]) -> None:
    """Carry out ``lines`` in order; an unknown line is reported by its number, never echoed (S4)."""
    for number, words in enumerate(lines, 1):
        if ctx.stop:
            break
        command = COMMANDS.get(_word(words[0]) if words else "")
        if command is None:
            ctx.results.append(Result(f"line {number}", False, "This is not a command we know.", known=False))
            continue
        result = _unverified(ctx, words) or command(ctx, words[1:])
        if result is not None:
            ctx.results.append(result)


# Commands that change a member's own settings without a confirmation mail.
MEMBER_SETTINGS = frozenset(
    {"digest", "mode", "nodupes", "set", "watch", "follow", "mute", "unwatch", "unmute"}
)


def _unverified(ctx: Context, words: tuple[str, ...]) -> Result | None:
    """A forged From: must not change a member's settings (S1); the refusal goes to the member."""
    if ctx.verified or _word(words[0]) not in MEMBER_SETTINGS or ctx.member is None:
        return None
    return Result(
        " ".join(words[:2]),
        False,
        "Nothing changed: our mail server could not confirm that this mail came from you.",
    )


# --- answering -------------------------------------------------------------------------------------


def answer(ctx: Context) -> bool:
    """One answer for the whole mail, unless the commands' own mails (confirmations) answer it.

    Lines we did not understand alone never cause a second mail next to a confirmation:
    a forged "subscribe" followed by any text sends the victim one confirmation, nothing
    else (S4).
    """
    understood = [r for r in ctx.results if r.known]
    needs_answer = ctx.show_help or not understood or any(not r.quiet for r in understood)
    if not needs_answer:
        return False
    context = {
        **subscriptions.member_context(ctx.config, ctx.mlist, ctx.member, ctx.who.address),
        "results": [{"command": r.command, "ok": r.ok, "message": r.message} for r in ctx.results],
        "show_help": ctx.show_help or not understood,
        "nothing_understood": not understood,
    }
    template = "command/result" if understood else "command/help"
    return answers.answer(
        ctx.session,
        ctx.config,
        ctx.mlist,
        ctx.who.address,
        template,
        context,
        ctx.now,
        in_reply_to=ctx.in_reply_to,
    )


# --- the routes ----------------------------------------------------------------------------------


def _sender(arrival: Arrival) -> Address | None:
    parsed = arrival.parsed
    if parsed.from_problem:  # never act for a mailbox the From: does not name beyond doubt
        return None
    try:
        config = arrival.config
        checked = check_address(
            parsed.from_address,
            check_dns=config.subscriptions.check_dns,
            local_domains=config.site.allow_local_domains,
        )
    except InvalidInput:
        return None
    return Address(checked.address, parsed.from_name)


def _handle(arrival: Arrival, lines: list[tuple[str, ...]] | None) -> Outcome:
    """Shared by every command route: check we may answer, carry out, answer once."""
    name = arrival.mlist.name
    reason = answers.should_answer(arrival.parsed, arrival.mail_from, arrival.config)
    if reason is not None:
        log.info("command mail to %s not acted on: %s", name, reason)
        return Outcome(f"{name}: command mail ignored ({reason})", discarded=True)
    who = _sender(arrival)
    if who is None:
        return Outcome(f"{name}: command mail ignored (no valid From address)", discarded=True)
    authserv_id = arrival.config.security.authserv_id
    ctx = Context(
        arrival.session,
        arrival.config,
        arrival.mlist,
        who,
        arrival.now,
        arrival.parsed.message_id,
        verified=not authserv_id or verdict(arrival.raw, authserv_id, who.address).authenticated,
        authenticated=bool(authserv_id) and verdict(arrival.raw, authserv_id, who.address).authenticated,
    )
    if lines is None:
        lines = command_lines(arrival.parsed, arrival.config.subscriptions.max_command_lines)
    run(ctx, lines)
    answered = answer(ctx)
    done = ", ".join(r.command.split()[0] for r in ctx.results if r.known) or (
        "help" if ctx.show_help else "none"
    )
    return Outcome(f"{name}: commands ({done}); {'answered' if answered else 'no separate answer'}")


def explain_administrivia(arrival: Arrival) -> bool:
    """Tell the author of "unsubscribe" sent to the whole list where commands go (S24).

    The post itself is held, not published. The answer follows the same rules as any
    other: never to a machine, at most ``answers_per_day`` a day.
    """
    if answers.should_answer(arrival.parsed, arrival.mail_from, arrival.config) is not None:
        return False
    who = _sender(arrival)
    if who is None:
        return False
    mlist = arrival.mlist
    context = subscriptions.member_context(arrival.config, mlist, None, who.address)
    return answers.answer(
        arrival.session,
        arrival.config,
        mlist,
        who.address,
        "command/administrivia",
        context,
        arrival.now,
        in_reply_to=arrival.parsed.message_id,
    )


def handle_request(arrival: Arrival) -> Outcome:
    """``NAME-request@``: the commands in the subject and the body."""
    return _handle(arrival, None)


def _shortcut(words: Callable[[str], tuple[str, ...]]) -> Callable[[Arrival], Outcome]:
    def handle(arrival: Arrival) -> Outcome:
        return _handle(arrival, [words(arrival.recipient.arg)])

    return handle


# Recipient kind → the command its address stands for (the address is the whole command).
SHORTCUTS: dict[Kind, Callable[[Arrival], Outcome]] = {
    Kind.REQUEST: handle_request,
    Kind.SUBSCRIBE: _shortcut(lambda arg: ("subscribe",)),
    Kind.UNSUBSCRIBE: _shortcut(lambda arg: ("unsubscribe",)),
    Kind.WATCH: _shortcut(lambda arg: ("watch", arg)),
    Kind.MUTE: _shortcut(lambda arg: ("mute", arg)),
    Kind.CONFIRM: _shortcut(lambda arg: ("confirm", arg)),
}
