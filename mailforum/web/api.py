"""The JSON API under ``/api/v1`` (DESIGN "Owners and site admins"), and its OpenAPI document.

One table, ``OPERATIONS``, drives both: each row names the method, the path, the scope
a token needs, the pydantic models of its request body and of its answer, and the
method of ``Api`` that serves it. ``routes()`` turns the rows into Starlette routes and
``openapi()`` into the document at ``/api/v1/openapi.json``, with the JSON Schemas
pydantic generates for the same models that validate the bodies, so the document
cannot drift from what the code accepts and answers.

Every request goes through the same steps, in this order:

1. ``Authorization: Bearer TOKEN`` (core/api_tokens.py): none, unknown or revoked → 401.
2. The token's rate limit ([api] rate_limit per rate_window, counted in the database
   like the web forms' limits, so it holds across nodes) → 429 with Retry-After.
3. A list in the path that does not exist, or that a token bound to another list
   may not see → 404 (the same answer: existence does not leak).
4. A scope too small for the operation (read < write < admin) → 403.
5. The body: bigger than [api] max_body → 413, not JSON → 400, not what the model
   says → 422 naming each bad field.

Errors are RFC 9457 ``application/problem+json``. Collections answer ``{"items": [...],
"next": CURSOR-or-null}`` and take ``?cursor=`` and ``?limit=``. Every change is written to
the audit log (core/audit.py) in the transaction that makes it, as ``api:TOKEN-NAME``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

import sqlalchemy.exc
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailforum.config import Config
from mailforum.core import (
    api_tokens,
    audit,
    bans,
    commands,
    digest_schedule,
    lists,
    moderation,
    roles,
    topics,
)
from mailforum.core.api_tokens import Principal
from mailforum.db import admin_queries, queries
from mailforum.db.enums import DeliveryMode, DigestFormat, PostingPolicy, Visibility
from mailforum.db.models import MailingList, Member, Post, Topic, utcnow
from mailforum.db.session import Database
from mailforum.errors import InvalidInput, NotFound
from mailforum.web.forms import RateLimiter

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


# --- errors --------------------------------------------------------------------------------


class EntryError(BaseModel):
    """One bad part of a request: an entry of a bulk add (``index``, ``address``) or a field."""

    index: int | None = None
    address: str | None = None
    field: str | None = None
    error: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; ``errors`` names each bad entry or field."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[EntryError] | None = None


class Problem(Exception):
    """An API error, answered as ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[EntryError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers or {}

    def response(self) -> Response:
        return problem_response(self.status, self.detail, self.errors, self.headers)


def problem_response(
    status: int, detail: str, errors: list[EntryError] | None = None, headers: dict[str, str] | None = None
) -> Response:
    body = ProblemDetails(title=TITLES.get(status, "Error"), status=status, detail=detail, errors=errors)
    extra = {"cache-control": "no-store", **(headers or {})}
    if status == 401:
        extra.setdefault("www-authenticate", 'Bearer realm="mailforum"')
    return Response(body.model_dump_json(exclude_none=True), status, extra, PROBLEM)


# --- the models of bodies and answers -----------------------------------------------------------

M = TypeVar("M")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


BREAKS = "\r\n\0"


def has_break(text: str) -> bool:
    """The one rule for one-line text (titles, names, reasons): no CR, LF or NUL."""
    return any(c in text for c in BREAKS)


def _one_line(text: str) -> str:
    if has_break(text):
        raise ValueError("CR, LF or NUL in a one-line field")
    return text


# A title, a name or a reason in a body: a 422 naming the field when it holds CR, LF or NUL.
Line = Annotated[str, AfterValidator(_one_line)]


class ListIn(Body):
    name: str = Field(max_length=64, description="Lower-case letters, digits, '.', '_', '-'.")
    title: Line = Field("", max_length=200)
    description: str = Field("", max_length=2000)
    policy: PostingPolicy = PostingPolicy.MEMBERS
    visibility: Visibility = Visibility.PUBLIC


class ListPatch(Body):
    title: Line | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=2000)
    policy: PostingPolicy | None = None
    visibility: Visibility | None = None
    moderate_first_post: bool | None = None
    show_addresses: bool | None = None
    unverified_action: Literal["hold", "confirm"] | None = None
    digest_format: DigestFormat | None = None
    digest_hour: int | None = Field(None, ge=0, le=23, description="0-23; null: [digest] hour again.")
    digest_timezone: str | None = Field(
        None, max_length=64, description="An IANA name (Europe/Berlin); null: [digest] timezone again."
    )


class ListOut(BaseModel):
    name: str
    title: str
    description: str
    policy: str
    visibility: str
    moderate_first_post: bool
    show_addresses: bool
    unverified_action: str
    digest_format: str
    digest_hour: int | None = Field(description="The list's own digest hour; null: [digest] hour.")
    digest_timezone: str | None = Field(description="The list's own time zone; null: [digest] timezone.")
    created_at: dt.datetime


class ListDetail(ListOut):
    members: int
    topics: int
    posts: int
    held: int
    last_post: dt.datetime | None


class MemberIn(Body):
    address: str = Field(max_length=400)
    name: str = Field("", max_length=200)
    mode: DeliveryMode = DeliveryMode.ALL


class MembersIn(Body):
    members: list[MemberIn] = Field(min_length=1, max_length=100_000)


class Added(BaseModel):
    added: int
    existing: int


class MemberOut(BaseModel):
    address: str
    name: str
    mode: str
    digest: str = Field(description="daily, weekly or off")
    delivery: Literal["enabled", "disabled"]
    nodupes: bool
    bounce_score: float
    joined: dt.datetime


class MemberPatch(Body):
    name: Line | None = Field(None, max_length=200)
    mode: DeliveryMode | None = None
    nodupes: bool | None = None
    delivery: Literal["enabled"] | None = Field(None, description="Deliver again after bounces disabled it.")


class HeldOut(BaseModel):
    id: int
    author: str
    author_name: str
    subject: str
    reason: str
    received_at: dt.datetime


class HeldAction(Body):
    action: Literal["approve", "reject", "discard"]
    reason: Line = Field("", max_length=2000, description="Told to an authenticated author on reject.")
    allow_sender: bool = Field(False, description="On approve: let a non-member author post from now on.")


class Done(BaseModel):
    result: str


class TopicOut(BaseModel):
    id: int
    subject: str
    post_count: int
    created_at: dt.datetime
    last_post_at: dt.datetime
    tags: list[str]
    locked: bool
    pinned: bool


class PostOut(BaseModel):
    id: int
    message_id: str
    parent_id: int | None
    author: str
    author_name: str
    subject: str
    received_at: dt.datetime
    text: str


class TopicDetail(TopicOut):
    posts: list[PostOut]


class BansIn(Body):
    patterns: list[str] = Field(min_length=1, max_length=1000, description="address, @domain or ^regex")


class BanOut(BaseModel):
    pattern: str


class BansChanged(BaseModel):
    changed: list[str]


class Changed(BaseModel):
    changed: list[str] = Field(description="The entries this request changed (the others were so already).")


class AuditOut(BaseModel):
    id: int
    at: dt.datetime
    actor: str = Field(description="cli, api:TOKEN-NAME, or a person's address")
    origin: str = Field(description="cli, api, mail, or the client address of a web change")
    action: str
    list: str | None
    target: str
    detail: dict[str, Any]


class OwnersIn(Body):
    addresses: list[str] = Field(min_length=1, max_length=1000)


class OwnerOut(BaseModel):
    address: str


class TagsIn(Body):
    tags: list[str] = Field(min_length=1, max_length=200, description="Letters, digits, '-' and '_'.")


class TagOut(BaseModel):
    name: str


class TopicTagsIn(Body):
    tags: list[str] = Field(
        max_length=200, description="The topic's tags from now on: words of the vocabulary."
    )


class TopicAction(Body):
    action: Literal["lock", "unlock", "pin", "unpin", "retitle", "merge", "move"]
    title: Line | None = Field(None, max_length=300, description="retitle: the new title.")
    into: int | None = Field(None, ge=1, description="merge: the topic this one goes into.")
    list: str | None = Field(None, max_length=64, description="move: the list it goes to.")


class PostRemoveIn(Body):
    reason: Line = Field("", max_length=500, description="Kept in the audit log and with the post.")


class PostRemoved(BaseModel):
    id: int
    topic: int
    status: str


class SiteBanOut(BaseModel):
    id: int
    pattern: str
    created_at: dt.datetime


class SiteBansAdded(BaseModel):
    items: list[SiteBanOut] = Field(description="The bans this request added (the others existed).")


class ListDeleted(BaseModel):
    name: str
    deleted: bool = Field(description="false for ?dry_run=true: the counts of what would go")
    members: int
    topics: int
    posts: int
    held: int
    tags: int
    outbox_pending: int = Field(description="Copies not sent yet: they never will be")
    outbox_sent: int
    outbox_failed: int
    api_tokens: int
    owners: int
    moderators: int
    bans: int


class Page(BaseModel, Generic[M]):
    items: list[M]
    next: str | None = Field(description="Give it as ?cursor= for the next page; null on the last.")


MEMBERS_PAGE = TypeAdapter(Page[MemberOut])


# --- the table of operations --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the principal, the path and query, the checked body, the client."""

    principal: Principal
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    client: str


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # under /api/v1
    handler: str  # the method of Api, and the operationId
    scope: str  # read, write or admin
    summary: str
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    status: int = 200
    paged: bool = False
    site: bool = False  # site-wide: a token bound to one list may not call it


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET", "/lists", "lists_get", "read", "The lists the token sees", answer=Page[ListOut], paged=True
    ),
    Operation("POST", "/lists", "lists_create", "admin", "Create a list", ListIn, ListDetail, 201),
    Operation("GET", "/lists/{list}", "list_get", "read", "One list, with its counts", answer=ListDetail),
    Operation(
        "PATCH", "/lists/{list}", "list_patch", "admin", "Change a list's settings", ListPatch, ListDetail
    ),
    Operation(
        "DELETE",
        "/lists/{list}",
        "list_delete",
        "admin",
        "Delete a list and all of it (?dry_run=true: only count what would go)",
        answer=ListDeleted,
        site=True,
    ),
    Operation(
        "GET", "/lists/{list}/members", "members_get", "read", "Members", answer=Page[MemberOut], paged=True
    ),
    Operation(
        "POST",
        "/lists/{list}/members",
        "members_add",
        "write",
        "Add members, all or nothing (422 names each bad entry)",
        MembersIn,
        Added,
    ),
    Operation(
        "PATCH",
        "/lists/{list}/members/{address}",
        "member_patch",
        "write",
        "Change a member",
        MemberPatch,
        MemberOut,
    ),
    Operation(
        "DELETE", "/lists/{list}/members/{address}", "member_delete", "write", "Remove a member", status=204
    ),
    Operation(
        "GET", "/lists/{list}/held", "held_get", "read", "Held posts", answer=Page[HeldOut], paged=True
    ),
    Operation(
        "POST", "/lists/{list}/held/{id}", "held_act", "write", "Approve, reject or discard", HeldAction, Done
    ),
    Operation(
        "GET", "/lists/{list}/topics", "topics_get", "read", "Topics", answer=Page[TopicOut], paged=True
    ),
    Operation(
        "GET", "/lists/{list}/topics/{id}", "topic_get", "read", "A topic and its posts", answer=TopicDetail
    ),
    Operation(
        "GET", "/lists/{list}/bans", "bans_get", "read", "Banned senders", answer=Page[BanOut], paged=True
    ),
    Operation("POST", "/lists/{list}/bans", "bans_add", "write", "Ban senders", BansIn, BansChanged),
    Operation("DELETE", "/lists/{list}/bans", "bans_remove", "write", "Lift bans", BansIn, BansChanged),
    Operation(
        "GET",
        "/audit",
        "audit_get",
        "admin",
        "The site's audit log, newest first (?actor= ?action= ?since=)",
        answer=Page[AuditOut],
        paged=True,
        site=True,
    ),
    Operation(
        "GET",
        "/lists/{list}/audit",
        "list_audit_get",
        "read",
        "The list's audit log, newest first (?actor= ?action= ?since=)",
        answer=Page[AuditOut],
        paged=True,
    ),
    Operation(
        "GET", "/lists/{list}/owners", "owners_get", "admin", "Owners", answer=Page[OwnerOut], paged=True
    ),
    Operation("POST", "/lists/{list}/owners", "owners_add", "admin", "Add owners", OwnersIn, Changed),
    Operation(
        "DELETE", "/lists/{list}/owners/{address}", "owner_delete", "admin", "Remove an owner", status=204
    ),
    Operation("GET", "/lists/{list}/tags", "tags_get", "read", "The tag vocabulary", answer=Page[TagOut]),
    Operation(
        "POST", "/lists/{list}/tags", "tags_add", "admin", "Add words to the vocabulary", TagsIn, Changed
    ),
    Operation(
        "DELETE",
        "/lists/{list}/tags/{tag}",
        "tag_delete",
        "admin",
        "Remove a word from the vocabulary (its topics lose it)",
        status=204,
    ),
    Operation(
        "PUT",
        "/lists/{list}/topics/{id}/tags",
        "topic_tags_put",
        "write",
        "Set a topic's tags (words of the vocabulary)",
        TopicTagsIn,
        TopicOut,
    ),
    Operation(
        "POST",
        "/lists/{list}/topics/{id}",
        "topic_act",
        "write",
        "Lock, unlock, pin, unpin, retitle, merge or move a topic",
        TopicAction,
        TopicOut,
    ),
    Operation(
        "POST",
        "/lists/{list}/posts/{id}/split",
        "post_split",
        "write",
        "The post and its replies become a topic of their own",
        answer=TopicOut,
    ),
    Operation(
        "POST",
        "/lists/{list}/posts/{id}/remove",
        "post_remove",
        "write",
        "Remove a post: a tombstone in its thread; copies already sent stay sent",
        PostRemoveIn,
        PostRemoved,
    ),
    Operation(
        "GET",
        "/bans",
        "site_bans_get",
        "admin",
        "Site-wide bans",
        answer=Page[SiteBanOut],
        paged=True,
        site=True,
    ),
    Operation(
        "POST",
        "/bans",
        "site_bans_add",
        "admin",
        "Ban senders on every list",
        BansIn,
        SiteBansAdded,
        site=True,
    ),
    Operation(
        "DELETE", "/bans/{id}", "site_ban_delete", "admin", "Lift a site-wide ban", status=204, site=True
    ),
)


# --- the handlers -------------------------------------------------------------------------------


def _list_out(mlist: MailingList) -> dict[str, Any]:
    return {
        "name": mlist.name,
        "title": mlist.title,
        "description": mlist.description,
        "policy": mlist.posting_policy,
        "visibility": mlist.visibility,
        "moderate_first_post": mlist.moderate_first_post,
        "show_addresses": mlist.show_addresses,
        "unverified_action": mlist.unverified_action,
        "digest_format": mlist.digest_format,
        "digest_hour": mlist.digest_hour,
        "digest_timezone": mlist.digest_timezone,
        "created_at": mlist.created_at,
    }


def _member_fields(member: Any) -> dict[str, Any]:
    """A ``Member``, or a row of ``admin_queries.MEMBER_COLUMNS``, as the fields of ``MemberOut``."""
    digest = member.digest_frequency or (
        "daily" if member.delivery_mode == DeliveryMode.DIGEST.value else "off"
    )
    return {
        "address": member.address,
        "name": member.display_name,
        "mode": member.delivery_mode,
        "digest": digest,
        "delivery": "disabled" if member.delivery_disabled_at is not None else "enabled",
        "nodupes": member.avoid_duplicates,
        "bounce_score": member.bounce_score,
        "joined": member.created_at,
    }


def _member_out(member: Any) -> MemberOut:
    return MemberOut.model_validate(_member_fields(member))


def _held_out(post: Post) -> HeldOut:
    return HeldOut(
        id=post.id,
        author=post.author_address,
        author_name=post.author_name,
        subject=post.subject,
        reason=post.hold_reason or "",
        received_at=post.received_at,
    )


def _topic_out(topic: Topic, tags: list[str]) -> dict[str, Any]:
    return {
        "id": topic.id,
        "subject": topic.subject,
        "post_count": topic.post_count,
        "created_at": topic.created_at,
        "last_post_at": topic.last_post_at,
        "tags": tags,
        "locked": topic.locked_at is not None,
        "pinned": topic.pinned_at is not None,
    }


def _topic_model(session: Session, topic: Topic) -> TopicOut:
    return TopicOut(**_topic_out(topic, topics.tags_of(session, [topic.id]).get(topic.id, [])))


def _audit_out(entry: Any) -> AuditOut:
    detail = dict(entry.detail or {})
    name = detail.get("list")
    return AuditOut(
        id=entry.id,
        at=entry.at,
        actor=entry.actor,
        origin=entry.origin,
        action=entry.action,
        list=name if isinstance(name, str) else None,
        target=entry.target,
        detail=detail,
    )


def _field(name: str, exc: Exception) -> Problem:
    """A 422 naming the field ``name`` with what the core said of it."""
    return Problem(422, f"{name}: {exc}", [EntryError(field=name, error=str(exc))])


def _each(
    texts: list[str], check: Callable[[str], M], field: str
) -> tuple[list[tuple[int, M]], list[EntryError]]:
    """Each entry of a list field through ``check``: the good ones with their index, and an
    ``EntryError`` naming the index and ``field.INDEX`` of each bad one."""
    good: list[tuple[int, M]] = []
    errors: list[EntryError] = []
    for index, text in enumerate(texts):
        try:
            good.append((index, check(text)))
        except InvalidInput as exc:
            errors.append(EntryError(index=index, field=f"{field}.{index}", error=str(exc)))
    return good, errors


def _refuse(errors: list[EntryError], what: str, outcome: str) -> None:
    """A 422 naming every bad entry, when there is one: the request changes nothing."""
    if errors:
        errors.sort(key=lambda e: e.index or 0)
        raise Problem(422, f"{len(errors)} bad {what}, {outcome}: {errors[0].error}", errors)


def _int(text: str | None, what: str) -> int:
    if text is None or not text.isdigit() or len(text) > 18:
        raise Problem(400 if what == "cursor" else 404, f"{what} {str(text)[:40]!r} is not a number")
    return int(text)


class Api:
    """The handlers of ``OPERATIONS``: each takes a ``Call``, returns a model (or None for 204)."""

    def __init__(self, db: Database, config: Config, limiter: RateLimiter) -> None:
        self.db, self.config, self.limiter = db, config, limiter

    # --- the steps before a handler ----------------------------------------------------------

    def admit(self, authorization: str, op: Operation, list_name: str | None) -> Principal:
        """Steps 1–4 of the module doc: the principal, or a Problem."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(401, "this API needs an API token: Authorization: Bearer TOKEN")
        with self.db.read_session() as session:
            principal = api_tokens.authenticate(session, token)
            if principal is None:
                raise Problem(401, "the API token is unknown or was revoked")
            if list_name is not None:
                self._visible(session, principal, list_name)
        wait = self.limiter.hit(principal.name)
        if wait:
            raise Problem(
                429,
                f"more than {self.limiter.limit} requests in {self.limiter.window.total_seconds():g} s "
                "with this token",
                headers={"retry-after": str(max(1, round(wait + 0.5)))},
            )
        if not principal.allows(op.scope):
            raise Problem(403, f"this needs a token with scope {op.scope}; this one has {principal.scope}")
        if op.handler == "lists_create" and principal.list_id is not None:
            raise Problem(403, "a token bound to one list cannot create lists")
        if op.site and principal.list_id is not None:
            raise Problem(403, "a token bound to one list cannot use this site-wide operation")
        return principal

    @staticmethod
    def _visible(session: Session, principal: Principal, name: str) -> MailingList:
        mlist = queries.list_named(session, name.lower())
        if mlist is None or not principal.sees(mlist):
            raise Problem(404, f"no list named {name[:64]!r}")
        return mlist

    def _limit(self, call: Call) -> int:
        text = call.query.get("limit")
        if text is None:
            return self.config.api.page_size
        if not text.isdigit() or not 1 <= int(text) <= self.config.api.max_page_size:
            raise Problem(400, f"limit must be a number from 1 to {self.config.api.max_page_size}")
        return int(text)

    def _audit(
        self,
        session: Session,
        call: Call,
        action: str,
        mlist: MailingList | None,
        target: str = "",
        detail: dict[str, object] | None = None,
    ) -> None:
        audit.record(
            session,
            actor=call.principal.actor,
            origin="api",
            action=action,
            mailing_list=mlist,
            target=target,
            detail={**(detail or {}), "client": call.client},
        )

    # --- lists ---------------------------------------------------------------------------------

    def lists_get(self, call: Call) -> BaseModel:
        after = call.query.get("cursor") or None
        with self.db.read_session() as session:
            page = admin_queries.lists_page(session, after, self._limit(call), call.principal.list_id)
            items = [ListOut(**_list_out(m)) for m in page.items]
        return Page[ListOut](items=items, next=page.next)

    def _detail(self, session: Session, mlist: MailingList) -> ListDetail:
        stats = lists.list_stats(session, mlist)
        return ListDetail(**_list_out(mlist), **stats)  # type: ignore[arg-type]

    def lists_create(self, call: Call) -> BaseModel:
        body: ListIn = call.body
        with self.db.session() as session:
            if queries.list_named(session, body.name.strip().lower()) is not None:
                raise Problem(409, f"list {body.name.strip().lower()!r} already exists")
            try:
                mlist = lists.create_list(
                    session, body.name, body.title, body.description, body.policy, body.visibility
                )
            except InvalidInput as exc:
                raise Problem(422, str(exc), [EntryError(field="name", error=str(exc))]) from None
            self._audit(session, call, "list.create", mlist, mlist.name, body.model_dump(mode="json"))
            return self._detail(session, mlist)

    def list_get(self, call: Call) -> BaseModel:
        with self.db.read_session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            return self._detail(session, mlist)

    def list_patch(self, call: Call) -> BaseModel:
        body: ListPatch = call.body
        changes = body.model_dump(mode="json", exclude_none=True)
        schedule = {"digest_hour", "digest_timezone", "digest_format"}
        columns = {"policy": "posting_policy"}
        # An explicit null goes back to the [digest] default (as `digest schedule --default`),
        # which the shared rule (core.digest_schedule.set_list_digest) takes as "".
        reset = {
            k
            for k in ("digest_hour", "digest_timezone")
            if k in body.model_fields_set and changes.get(k) is None
        }
        changes.update(dict.fromkeys(reset))
        if body.digest_timezone is not None:
            try:
                digest_schedule.check_zone(body.digest_timezone)
            except InvalidInput as exc:
                raise _field("digest_timezone", exc) from None
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            for key, value in changes.items():
                if key not in schedule:
                    setattr(mlist, columns.get(key, key), value)
            digest_schedule.set_list_digest(
                mlist,
                hour="" if "digest_hour" in reset else body.digest_hour,
                timezone="" if "digest_timezone" in reset else body.digest_timezone,
                digest_format=body.digest_format.value if body.digest_format is not None else None,
            )
            if changes:
                self._audit(session, call, "list.settings", mlist, mlist.name, changes)
            session.flush()
            return self._detail(session, mlist)

    def list_delete(self, call: Call) -> BaseModel:
        dry = call.query.get("dry_run", "false").lower()
        if dry not in ("true", "false", "1", "0"):
            raise Problem(
                400, "dry_run is true or false", [EntryError(field="dry_run", error="true or false")]
            )
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            name = mlist.name
            if dry in ("true", "1"):
                counts = lists.deletion_counts(session, mlist).as_dict()
                return ListDeleted(name=name, deleted=False, **counts)
            counts = lists.delete_list(session, mlist).as_dict()
            self._audit(session, call, "list.delete", None, name, {"list": name, **counts})
        log.info("api: list %s deleted by %s", name, call.principal.actor)
        return ListDeleted(name=name, deleted=True, **counts)

    # --- members -------------------------------------------------------------------------------

    def members_get(self, call: Call) -> BaseModel:
        after = _int(call.query.get("cursor", "0"), "cursor")
        with self.db.read_session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            page = admin_queries.members_page(session, mlist, after, self._limit(call))
            items = [_member_fields(m) for m in page.items]
        # One validation of the whole page (in pydantic-core): a fraction of building 500 models.
        return MEMBERS_PAGE.validate_python({"items": items, "next": page.next})

    def members_add(self, call: Call) -> BaseModel:
        body: MembersIn = call.body
        local = self.config.site.allow_local_domains
        errors: list[EntryError] = []
        checked: list[tuple[int, lists.Address, DeliveryMode]] = []
        for index, entry in enumerate(body.members):
            try:
                who = lists.check_address(entry.address, local_domains=local)
            except InvalidInput as exc:
                errors.append(EntryError(index=index, address=entry.address, error=str(exc)))
                continue
            name = entry.name.strip() or who.display_name
            if has_break(name):
                errors.append(EntryError(index=index, address=entry.address, error="line break in the name"))
                continue
            checked.append((index, lists.Address(who.address, name), entry.mode))
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            banned = bans.banned_among(session, mlist, [a.address for _, a, _ in checked])
            for index, address, _ in checked:
                if address.address in banned:
                    error = f"banned ({banned[address.address]})"
                    errors.append(EntryError(index=index, address=address.address, error=error))
            if errors:
                errors.sort(key=lambda e: e.index or 0)
                shown = "; ".join(f"entry {e.index} ({e.address!r}): {e.error}" for e in errors[:5])
                raise Problem(
                    422,
                    f"{len(errors)} bad entr{'y' if len(errors) == 1 else 'ies'}, nothing added: {shown}"
                    + (" …" if len(errors) > 5 else ""),
                    errors,
                )
            now = utcnow()
            added = existing = 0
            for mode in DeliveryMode:
                group = [a for _, a, m in checked if m is mode]
                if group:
                    new, old = lists.add_members(session, mlist, group, mode, now)
                    added, existing = added + new, existing + old
            addresses = [a.address for _, a, _ in checked]
            detail: dict[str, object] = {"added": added, "existing": existing, "addresses": addresses[:1000]}
            self._audit(session, call, "members.add", mlist, f"{len(addresses)} addresses", detail)
        return Added(added=added, existing=existing)

    def _member(self, session: Session, call: Call) -> tuple[MailingList, Member]:
        mlist = self._visible(session, call.principal, call.params["list"])
        member = lists.find_member(session, mlist.id, call.params["address"].strip())
        if member is None:
            raise Problem(404, f"{call.params['address'][:320]!r} is not a member of {mlist.name}")
        return mlist, member

    def member_patch(self, call: Call) -> BaseModel:
        body: MemberPatch = call.body
        from mailforum.core import bounces

        with self.db.session() as session:
            mlist, member = self._member(session, call)
            if body.name is not None:
                member.display_name = body.name.strip()
            if body.mode is not None:
                commands.set_mode(session, member, body.mode)
            if body.nodupes is not None:
                member.avoid_duplicates = body.nodupes
            if body.delivery == "enabled":
                bounces.enable(member)
            changes = body.model_dump(mode="json", exclude_none=True)
            if changes:
                self._audit(session, call, "members.change", mlist, member.address, changes)
            session.flush()
            return _member_out(member)

    def member_delete(self, call: Call) -> None:
        with self.db.session() as session:
            mlist, member = self._member(session, call)
            lists.remove_members(session, mlist, [lists.Address(member.address)])
            self._audit(session, call, "members.remove", mlist, member.address)

    # --- held posts ----------------------------------------------------------------------------

    def held_get(self, call: Call) -> BaseModel:
        after = _int(call.query.get("cursor", "0"), "cursor")
        with self.db.read_session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            page = admin_queries.held_page(session, mlist, after, self._limit(call))
            items = [_held_out(p) for p in page.items]
        return Page[HeldOut](items=items, next=page.next)

    def held_act(self, call: Call) -> BaseModel:
        body: HeldAction = call.body
        post_id = _int(call.params["id"], "held post")
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            post = moderation.held_post(session, post_id)
            if post is None or post.list_id != mlist.id:
                raise Problem(404, f"no held post {post_id} in {mlist.name}")
            author = post.author_address
            result = moderation.act(
                session,
                self.config,
                mlist,
                post,
                moderation.ACTIONS[body.action],
                utcnow(),
                reason=body.reason,
                allow_sender=body.allow_sender,
            )
            detail = {
                "post": post_id,
                "author": author,
                "reason": body.reason,
                "allow_sender": body.allow_sender,
            }
            self._audit(session, call, f"held.{body.action}", mlist, str(post_id), detail)
        return Done(result=result)

    # --- topics --------------------------------------------------------------------------------

    def topics_get(self, call: Call) -> BaseModel:
        cursor = call.query.get("cursor")
        before = _int(cursor, "cursor") if cursor is not None else None
        with self.db.read_session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            tag_id = None
            if "tag" in call.query:
                tag = topics.tag_named(session, mlist, call.query["tag"])
                if tag is None:
                    text = call.query["tag"][:64]
                    raise Problem(
                        400,
                        f"{text!r} is not a tag of {mlist.name}",
                        [EntryError(field="tag", error="not a tag")],
                    )
                tag_id = tag.id
            page = admin_queries.topics_page(session, mlist, before, self._limit(call), tag_id)
            tags = topics.tags_of(session, [t.id for t in page.items])
            items = [TopicOut(**_topic_out(t, tags.get(t.id, []))) for t in page.items]
        return Page[TopicOut](items=items, next=page.next)

    def topic_get(self, call: Call) -> BaseModel:
        topic_id = _int(call.params["id"], "topic")
        with self.db.read_session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            topic = queries.resolve_topic(session, mlist, topic_id)
            if topic is None or topic.post_count == 0:
                raise Problem(404, f"no topic {topic_id} in {mlist.name}")
            posts = [
                PostOut(
                    id=p.id,
                    message_id=p.message_id,
                    parent_id=p.parent_id,
                    author=p.author_address,
                    author_name=p.author_name,
                    subject=p.subject,
                    received_at=p.received_at,
                    text=p.text_body,
                )
                for p in admin_queries.topic_posts(session, topic)
            ]
            tags = topics.tags_of(session, [topic.id]).get(topic.id, [])
            return TopicDetail(**_topic_out(topic, tags), posts=posts)

    # --- bans ----------------------------------------------------------------------------------

    def bans_get(self, call: Call) -> BaseModel:
        with self.db.read_session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            items = [BanOut(pattern=p) for p in bans.patterns(session, mlist)]
        return Page[BanOut](items=items, next=None)

    def _bans(
        self, call: Call, change: Callable[[Session, MailingList, list[str]], list[str]], action: str
    ) -> BaseModel:
        body: BansIn = call.body
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            try:
                changed = change(session, mlist, body.patterns)
            except InvalidInput as exc:
                raise Problem(422, str(exc), [EntryError(field="patterns", error=str(exc))]) from None
            for pattern in changed:
                self._audit(session, call, action, mlist, pattern)
        return BansChanged(changed=changed)

    def bans_add(self, call: Call) -> BaseModel:
        return self._bans(call, bans.add, "bans.add")

    def bans_remove(self, call: Call) -> BaseModel:
        return self._bans(call, bans.remove, "bans.remove")

    # --- the audit log ---------------------------------------------------------------------------

    def _audit_page(self, call: Call, mlist_name: str | None) -> BaseModel:
        cursor = call.query.get("cursor")
        before = _int(cursor, "cursor") if cursor is not None else None
        since = None
        if call.query.get("since"):
            try:
                since = audit.parse_since(call.query["since"])
            except InvalidInput as exc:
                raise Problem(400, str(exc), [EntryError(field="since", error=str(exc))]) from None
        for name in ("actor", "action"):
            if len(call.query.get(name, "")) > 320:
                raise Problem(400, f"{name} is too long", [EntryError(field=name, error="too long")])
        limit = self._limit(call)
        with self.db.read_session() as session:
            mlist = self._visible(session, call.principal, mlist_name) if mlist_name is not None else None
            found = audit.entries(
                session,
                mailing_list=mlist,
                before_id=before,
                limit=limit + 1,
                actor=call.query.get("actor") or None,
                action=call.query.get("action") or None,
                since=since,
            )
            items = [_audit_out(e) for e in found[:limit]]
        return Page[AuditOut](items=items, next=str(items[-1].id) if len(found) > limit else None)

    def audit_get(self, call: Call) -> BaseModel:
        return self._audit_page(call, None)

    def list_audit_get(self, call: Call) -> BaseModel:
        return self._audit_page(call, call.params["list"])

    # --- owners ----------------------------------------------------------------------------------

    def owners_get(self, call: Call) -> BaseModel:
        with self.db.read_session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            items = [OwnerOut(address=a) for a in roles.owners(session, mlist)]
        return Page[OwnerOut](items=items, next=None)

    def owners_add(self, call: Call) -> BaseModel:
        body: OwnersIn = call.body
        local = self.config.site.allow_local_domains
        good, errors = _each(
            body.addresses, lambda text: lists.check_address(text, local_domains=local).address, "addresses"
        )
        checked = [address for _, address in good]
        for error in errors:
            error.address = body.addresses[error.index or 0][:320]
        if errors:
            shown = "; ".join(f"entry {e.index}: {e.error}" for e in errors[:5])
            raise Problem(422, f"{len(errors)} bad address(es), nothing added: {shown}", errors)
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            added = roles.add_owners(session, mlist, checked)
            for address in added:
                self._audit(session, call, "owners.add", mlist, address)
        return Changed(changed=added)

    def owner_delete(self, call: Call) -> None:
        address = call.params["address"].strip().lower()
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            if not roles.remove_owners(session, mlist, [address]):
                raise Problem(404, f"{address[:320]!r} is not an owner of {mlist.name}")
            self._audit(session, call, "owners.remove", mlist, address)

    # --- tags ------------------------------------------------------------------------------------

    def _actor(self, call: Call) -> topics.Actor:
        return topics.Actor(call.principal.actor, "api", call.client)

    def tags_get(self, call: Call) -> BaseModel:
        with self.db.read_session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            items = [TagOut(name=t.name) for t in topics.vocabulary(session, mlist)]
        return Page[TagOut](items=items, next=None)

    def tags_add(self, call: Call) -> BaseModel:
        body: TagsIn = call.body
        _refuse(_each(body.tags, topics.tag_name, "tags")[1], "tag name(s)", "nothing added")
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            added = topics.add_tags(session, mlist, body.tags, utcnow())
            if added:
                topics.audit(
                    session, self._actor(call), "tags.add", mlist, ",".join(added)[:200], {"tags": added}
                )
        return Changed(changed=added)

    def tag_delete(self, call: Call) -> None:
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            tag = topics.tag_named(session, mlist, call.params["tag"])
            if tag is None:
                raise Problem(404, f"{call.params['tag'][:64]!r} is not a tag of {mlist.name}")
            removed = topics.remove_tags(session, mlist, [tag.name])
            topics.audit(session, self._actor(call), "tags.remove", mlist, tag.name, {"tags": removed})

    def _topic(self, session: Session, mlist: MailingList, call: Call) -> Topic:
        topic_id = _int(call.params["id"], "topic")
        try:
            return topics.get_topic(session, mlist, topic_id)
        except NotFound as exc:
            raise Problem(404, str(exc)) from None

    def topic_tags_put(self, call: Call) -> BaseModel:
        body: TopicTagsIn = call.body
        good, errors = _each(body.tags, topics.tag_name, "tags")
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            topic = self._topic(session, mlist, call)
            vocab = {t.name for t in topics.vocabulary(session, mlist)}
            errors += [
                EntryError(index=index, field=f"tags.{index}", error=f"{name!r} is not a tag of {mlist.name}")
                for index, name in good
                if name not in vocab
            ]
            _refuse(errors, "tag(s)", "nothing changed")
            have = topics.tags_of(session, [topic.id]).get(topic.id, [])
            wanted = list(dict.fromkeys(name for _, name in good))
            gone = [n for n in have if n not in wanted]
            new = [n for n in wanted if n not in have]
            actor = self._actor(call)
            if gone:
                topics.set_tags_by_hand(session, mlist, topic.id, gone, actor, remove=True)
            if new:
                topics.set_tags_by_hand(session, mlist, topic.id, new, actor)
            session.flush()
            return _topic_model(session, topic)

    # --- moderators' tools -----------------------------------------------------------------------

    def topic_act(self, call: Call) -> BaseModel:
        body: TopicAction = call.body
        needs = {"retitle": "title", "merge": "into", "move": "list"}
        field = needs.get(body.action)
        if field is not None and getattr(body, field) is None:
            raise Problem(
                422,
                f"{body.action} needs {field}",
                [EntryError(field=field, error=f"required to {body.action}")],
            )
        actor, now = self._actor(call), utcnow()
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            topic = self._topic(session, mlist, call)
            try:
                if body.action in ("lock", "unlock", "pin", "unpin"):
                    topic = topics.mark(session, mlist, topic.id, body.action, actor, now)
                elif body.action == "retitle":
                    topic = topics.retitle(session, mlist, topic.id, body.title or "", actor, now)
                elif body.action == "merge":
                    assert body.into is not None
                    try:
                        topics.get_topic(session, mlist, body.into)
                    except NotFound as exc:
                        raise _field("into", exc) from None
                    topic = topics.merge(session, mlist, topic.id, body.into, actor, now)
                else:
                    other = queries.list_named(session, (body.list or "").strip().lower())
                    if other is None or not call.principal.sees(other):
                        raise _field("list", NotFound(f"no list named {(body.list or '')[:64]!r}"))
                    topic = topics.move(session, mlist, topic.id, other, actor, now)
            except InvalidInput as exc:
                raise _field(field or "action", exc) from None
            session.flush()
            return _topic_model(session, topic)

    def _post(self, session: Session, mlist: MailingList, call: Call) -> Post:
        post_id = _int(call.params["id"], "post")
        try:
            return topics.get_post(session, mlist, post_id)
        except NotFound as exc:
            raise Problem(404, str(exc)) from None

    def post_split(self, call: Call) -> BaseModel:
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            post = self._post(session, mlist, call)
            if post.status != "published":
                raise Problem(
                    409, f"post {post.id} is {post.status}, not published: there is nothing to split"
                )
            try:
                topic = topics.split(session, mlist, post.id, self._actor(call), utcnow())
            except InvalidInput as exc:
                raise Problem(409, str(exc)) from None
            session.flush()
            return _topic_model(session, topic)

    def post_remove(self, call: Call) -> BaseModel:
        body: PostRemoveIn = call.body
        with self.db.session() as session:
            mlist = self._visible(session, call.principal, call.params["list"])
            post = self._post(session, mlist, call)
            if post.status != "published":
                raise Problem(409, f"post {post.id} is {post.status}, not published")
            post = topics.remove_post(session, mlist, post.id, body.reason, self._actor(call), utcnow())
            from mailforum.core import threads

            return PostRemoved(
                id=post.id, topic=threads.live_topic(session, post.topic_id).id, status=post.status
            )

    # --- site-wide bans --------------------------------------------------------------------------

    def site_bans_get(self, call: Call) -> BaseModel:
        after = _int(call.query.get("cursor", "0"), "cursor")
        limit = self._limit(call)
        with self.db.read_session() as session:
            found = bans.site_bans(session, after, limit + 1)
            items = [SiteBanOut(id=b.id, pattern=b.pattern, created_at=b.created_at) for b in found[:limit]]
        return Page[SiteBanOut](items=items, next=str(items[-1].id) if len(found) > limit else None)

    def site_bans_add(self, call: Call) -> BaseModel:
        body: BansIn = call.body
        _refuse(_each(body.patterns, bans.normalise, "patterns")[1], "pattern(s)", "nothing banned")
        with self.db.session() as session:
            added = bans.add(session, None, body.patterns)
            for pattern in added:
                self._audit(session, call, "bans.add", None, pattern)
            session.flush()
            rows = [b for b in bans.site_bans(session, 0, 100_000) if b.pattern in set(added)]
            return SiteBansAdded(
                items=[SiteBanOut(id=b.id, pattern=b.pattern, created_at=b.created_at) for b in rows]
            )

    def site_ban_delete(self, call: Call) -> None:
        ban_id = _int(call.params["id"], "ban")
        with self.db.session() as session:
            ban = bans.site_ban(session, ban_id)
            if ban is None:
                raise Problem(404, f"no site-wide ban {ban_id}")
            pattern = ban.pattern
            bans.remove(session, None, [pattern])
            self._audit(session, call, "bans.remove", None, pattern)


# --- HTTP ------------------------------------------------------------------------------------------


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


async def read_body(request: Request, model: type[BaseModel], cap: int) -> BaseModel:
    """The request body as ``model``: 413 past ``cap`` bytes (read no further), 400 when it is
    not JSON (whatever Content-Type says), 422 naming each field that is wrong."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > cap):
        raise Problem(413 if length.isdigit() else 400, f"the request body is limited to {cap} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise Problem(413, f"the request body is limited to {cap} bytes")
        parts.append(chunk)
    raw = b"".join(parts)
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            raise Problem(400, f"the body is not JSON: {problems[0]['msg']}") from None
        errors = [
            EntryError(
                index=next((x for x in p["loc"] if isinstance(x, int)), None),
                field=".".join(str(x) for x in p["loc"]) or None,
                error=p["msg"],
            )
            for p in problems[:100]
        ]
        shown = "; ".join(f"{e.field or 'body'}: {e.error}" for e in errors[:5])
        raise Problem(422, f"{len(problems)} problem(s) in the body: {shown}", errors) from None


def _json(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


class ApiRoutes:
    """The Starlette side: one endpoint per operation, the OpenAPI document, the 404/405 answers."""

    def __init__(self, api: Api, base_url: str) -> None:
        self.api = api
        self.base_url = base_url.rstrip("/")
        self._document: bytes | None = None

    def endpoint(self, op: Operation) -> Callable[[Request], Any]:
        handler = getattr(self.api, op.handler)
        cap = self.api.config.api.max_body

        async def serve(request: Request) -> Response:
            try:
                principal = await run_in_threadpool(
                    self.api.admit,
                    request.headers.get("authorization", ""),
                    op,
                    request.path_params.get("list"),
                )
                body = await read_body(request, op.body, cap) if op.body is not None else None
                call = Call(
                    principal,
                    {k: str(v) for k, v in request.path_params.items()},
                    dict(request.query_params),
                    body,
                    _client(request),
                )
                result = await run_in_threadpool(handler, call)
            except Problem as problem:
                return problem.response()
            except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.TimeoutError) as exc:
                log.warning("api: database unavailable: %s", str(exc).strip().splitlines()[0][:200])
                return problem_response(
                    503, "the database is unavailable; try again", headers={"retry-after": "30"}
                )
            if result is None:
                return Response(status_code=op.status, headers={"cache-control": "no-store"})
            return Response(_json(result), op.status, {"cache-control": "no-store"}, "application/json")

        return serve

    def routes(self) -> list[Route]:
        by_path: dict[str, list[Operation]] = {}
        for op in OPERATIONS:
            by_path.setdefault(op.path, []).append(op)
        routes = [Route(PREFIX + "/openapi.json", self.document, methods=["GET"], name="api_openapi")]
        for path, ops in by_path.items():
            endpoints = {op.method: self.endpoint(op) for op in ops}
            # Every method reaches the dispatcher, which answers 405 as a problem, not as a page.
            routes.append(Route(PREFIX + path, self._dispatch(endpoints), methods=list(ALL_METHODS)))
        return routes

    @staticmethod
    def _dispatch(endpoints: dict[str, Callable[[Request], Any]]) -> Callable[[Request], Any]:
        async def dispatch(request: Request) -> Response:
            endpoint = endpoints.get("GET" if request.method == "HEAD" else request.method)
            if endpoint is None:
                return problem_response(
                    405, f"{request.method} is not allowed here", headers={"allow": ", ".join(endpoints)}
                )
            response: Response = await endpoint(request)
            return response

        return dispatch

    async def document(self, request: Request) -> Response:
        if self._document is None:
            self._document = json.dumps(openapi(self.base_url + PREFIX)).encode()
        return Response(self._document, 200, {"cache-control": "no-store"}, "application/json")


ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def not_found(request: Request) -> Response:
    return problem_response(404, f"no API operation at {request.url.path[:200]}")


# --- the OpenAPI document ----------------------------------------------------------------------------


def openapi(server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``OPERATIONS``, with pydantic's JSON Schemas of their models:
    request bodies in pydantic's validation mode, answers in its serialization mode."""
    keys: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ProblemDetails, "serialization")]
    for op in OPERATIONS:
        if op.body is not None and (op.body, "validation") not in keys:
            keys.append((op.body, "validation"))
        if op.answer is not None and (op.answer, "serialization") not in keys:
            keys.append((op.answer, "serialization"))
    refs, defs = models_json_schema(keys, ref_template="#/components/schemas/{model}")
    problem = {PROBLEM: {"schema": refs[(ProblemDetails, "serialization")]}}

    def error(text: str) -> dict[str, Any]:
        return {"description": text, "content": problem}

    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_names(op.path)
        ]
        if op.paged:
            params += [
                {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1},
                },
            ]
        responses: dict[str, Any] = {}
        if op.answer is not None:
            responses[str(op.status)] = {
                "description": op.summary,
                "content": {"application/json": {"schema": refs[(op.answer, "serialization")]}},
            }
        else:
            responses[str(op.status)] = {"description": op.summary}
        responses["401"] = error("No token, or an unknown or revoked one")
        responses["403"] = error(f"The token's scope is below {op.scope}")
        responses["404"] = error("No such list (or one the token may not see), member, post or topic")
        responses["429"] = error("Too many requests with this token; see Retry-After")
        if op.body is not None:
            responses["400"] = error("The body is not JSON")
            responses["413"] = error("The body is too large")
            responses["422"] = error("The body is not valid; errors names each bad entry")
        entry: dict[str, Any] = {
            "operationId": op.handler,
            "summary": op.summary,
            "description": f"Needs a token with scope {op.scope} (read < write < admin).",
            "parameters": params,
            "responses": responses,
            "security": [{"bearer": []}],
        }
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mailforum API",
            "version": "1",
            "description": "Lists, members, held posts, topics and bans of a mailforum site. "
            "Errors are RFC 9457 problem details; collections are cursor pages.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path_names(path: str) -> list[str]:
    import re

    return re.findall(r"\{([^}:]+)", path)
