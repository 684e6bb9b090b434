"""Jinja2, in one place: the templates of outgoing mail and of the web.

Templates live in ``templates/`` at the top of the project, and every environment
is built here by ``environment`` with the same rules: undefined variables are errors
(StrictUndefined), so a typo in a template fails the first render instead of sending
blank text to thousands of people or showing it on a page; block tags leave no blank
lines. The two kinds of template differ only where they must:

- **Mail** (``Renderer``): one environment per list. A list may override any template:
  ``[outbound] templates`` names a folder, and ``<folder>/<list>/<name>`` wins over
  ``templates/<name>`` (then ``<folder>/<name>`` for a site-wide override). Only
  ``.html.j2`` (and ``.html``) templates autoescape; text templates are mail bodies,
  where escaping would show as ``&amp;``. A trailing newline is kept.
- **Stored per list** (``lists templates``, the owner pages): an owner's version of a
  mail template, kept in ``list_templates`` (core/list_templates.py). Owners are not
  trusted with Python, so a list with stored templates renders in Jinja2's
  ``ImmutableSandboxedEnvironment``, its stored templates first, then the files above.
  Compiled templates are kept per (list, ``lists.templates_version``): a change bumps
  the version and the next render reads the list's templates again. A stored template
  that fails when rendered (an unknown variable, a sandbox refusal) is logged and the
  built-in one is rendered instead: a post is never stuck on an owner's mistake.
- **Web** (``WebTemplates``): ``templates/web/``, no overrides. Every template
  autoescapes (``.html`` pages and the ``.atom`` feed); the caller passes the filters
  its pages use and a ``finalize`` applied to every printed value.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import jinja2.runtime
import jinja2.sandbox
from sqlalchemy import select
from sqlalchemy.orm import object_session

from mailforum.db.models import ListTemplate, MailingList

log = logging.getLogger(__name__)

T = TypeVar("T")
Template = jinja2.Template  # for callers that read a template's blocks (core/answers.py)


def _builtin_templates() -> Path:
    """The shipped templates: inside the package when installed from a wheel, else the checkout's."""
    installed = Path(__file__).resolve().parent / "templates"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "templates"


BUILTIN = _builtin_templates()
RECHECK = 2.0  # seconds between looks at the mail template files for changes (Renderer.environment)


def environment(
    search: Sequence[Path], autoescape: bool | Callable[[str | None], bool], **options: Any
) -> jinja2.Environment:
    """A Jinja2 environment over the folders in ``search`` (first match wins), with this
    project's rules (StrictUndefined, trim_blocks, lstrip_blocks) and ``options`` on top."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        **options,
    )


def _autoescape(name: str | None) -> bool:
    return bool(name) and str(name).endswith((".html.j2", ".html"))


# The mail templates a list may store its own version of: those under these folders of
# templates/ (a post's notification, digests, answers to commands and notices, and the
# footer they include); never the web pages or the site's sign-in mail.
MAIL_FOLDERS = ("notification", "digest", "command", "_partials")
MAX_SOURCE = 64 * 1024  # bytes of one stored template
STORED_LISTS = 256  # lists whose compiled stored templates are kept


def mail_templates(builtin: Path = BUILTIN) -> tuple[str, ...]:
    """The names a list may override, as ``folder/file`` (sorted)."""
    return tuple(
        sorted(
            f"{folder}/{path.name}"
            for folder in MAIL_FOLDERS
            for path in (builtin / folder).glob("*.j2")
            if path.is_file()
        )
    )


MAX_PRODUCT = 1024 * 1024  # items a template's ``*`` may make ("x" * 10**9 would fill the memory)


class OwnerSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with ``*`` and ``**`` bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int) and abs(right) > 64:
                raise jinja2.sandbox.SecurityError("an exponent over 64 is not allowed in a template")
            return left**right
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(times, int)
                and len(seq) * times > MAX_PRODUCT
            ):
                raise jinja2.sandbox.SecurityError(f"a product over {MAX_PRODUCT} items in a template")
        return left * right


def sandbox(
    loader: jinja2.BaseLoader, undefined: type[jinja2.Undefined] = jinja2.StrictUndefined
) -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    """The environment owners' templates run in: the project's rules, inside Jinja2's
    immutable sandbox (no attributes starting with ``_``, no mutating calls; ``range``
    at most 100,000 items, ``*`` at most ``MAX_PRODUCT``)."""
    return OwnerSandbox(
        loader=loader,
        undefined=undefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def syntax_error(name: str, source: str) -> str | None:
    """Why ``source`` does not compile in the owners' sandbox ("line 3: …"), or None."""
    try:
        sandbox(jinja2.BaseLoader()).compile(source, name=name)
    except jinja2.TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    return None


class Placeholder(jinja2.ChainableUndefined):
    """A value a preview does not have, shown by its name: ``{{ post.subject }}`` prints «post.subject»."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Placeholder(name=f"{self._undefined_name or 'value'}.{name}")

    __getitem__ = __getattr__

    def __str__(self) -> str:
        if self._undefined_exception is not jinja2.UndefinedError:  # the sandbox's refusal
            self._fail_with_undefined_error()
        return f"«{self._undefined_name or 'value'}»"


def preview(name: str, source: str, values: Mapping[str, Any], override_dir: str | Path | None = None) -> str:
    """``source`` rendered as template ``name`` in the owners' sandbox, with ``values`` and a
    ``Placeholder`` for whatever else a real mail would have; it may include the other
    templates (the override folder's, then the built-in ones)."""
    search = [Path(override_dir)] if override_dir else []
    files = jinja2.FileSystemLoader([str(p) for p in (*search, BUILTIN)])
    env = sandbox(jinja2.ChoiceLoader([jinja2.DictLoader({name: source}), files]), Placeholder)
    return env.get_template(name).render(values)


class Renderer:
    """Renders named mail templates for a list: its stored templates (sandboxed), then the
    override folder's, then the built-in ones."""

    def __init__(self, override_dir: str | Path | None = None, builtin: Path = BUILTIN) -> None:
        self._override = Path(override_dir) if override_dir else None
        self._builtin = builtin
        self._envs: dict[str, tuple[jinja2.Environment, float]] = {}  # list → (it, last checked)
        # list id -> (templates_version, sandboxed environment or None when it stores none);
        # the delivery runner renders from several threads
        self._stored: OrderedDict[int, tuple[int, jinja2.Environment | None]] = OrderedDict()
        self._lock = threading.Lock()

    def _search(self, list_name: str) -> list[Path]:
        search: list[Path] = []
        if self._override is not None:
            search += [self._override / list_name, self._override]
        search.append(self._builtin)
        return search

    def environment(self, list_name: str) -> jinja2.Environment:
        """The files' environment (override folder, then built-in) of one list.

        Jinja2's own reload check would ``stat`` a template and each of its includes on
        every render: 800 trips out of the GIL for 200 posts' copies in the delivery
        worker's threads (bench/posts.py). Here the compiled templates are checked at most
        every ``RECHECK`` seconds, and all are compiled again when one file changed."""
        now = time.monotonic()
        found = self._envs.get(list_name)
        if found is None:
            env = environment(
                self._search(list_name), _autoescape, keep_trailing_newline=True, auto_reload=False
            )
            self._envs[list_name] = (env, now)
            return env
        env, checked = found
        if now - checked > RECHECK:
            if env.cache is not None and not all(t.is_up_to_date for t in list(env.cache.values())):
                env.cache.clear()
            self._envs[list_name] = (env, now)
        return env

    def stored_environment(self, mlist: MailingList) -> jinja2.Environment | None:
        """The sandbox over the list's stored templates (then its files), None when it stores
        none. Read from the database through ``mlist``'s session when its
        ``templates_version`` is not the one compiled."""
        version = mlist.templates_version or 0
        if version == 0:
            return None  # never stored one: no query
        with self._lock:
            cached = self._stored.get(mlist.id)
            if cached is not None and cached[0] == version:
                self._stored.move_to_end(mlist.id)
                return cached[1]
        session = object_session(mlist)
        if session is None:
            log.warning(
                "list %s: its stored templates cannot be read (no session); built-in ones used", mlist.name
            )
            return None
        rows = session.execute(
            select(ListTemplate.name, ListTemplate.source).where(ListTemplate.list_id == mlist.id)
        ).all()
        env: jinja2.Environment | None = None
        if rows:
            files = jinja2.FileSystemLoader([str(p) for p in self._search(mlist.name)])
            env = sandbox(jinja2.ChoiceLoader([jinja2.DictLoader(dict(rows)), files]))
        with self._lock:
            self._stored[mlist.id] = (version, env)
            while len(self._stored) > STORED_LISTS:
                self._stored.popitem(last=False)
        return env

    def use(self, mlist: MailingList | str, template: str, work: Callable[[jinja2.Template], T]) -> T:
        """``work(template)`` with the list's own version of ``template`` (and of what it
        includes), falling back to the files' version when the stored one fails."""
        name = mlist if isinstance(mlist, str) else mlist.name
        stored = None if isinstance(mlist, str) else self.stored_environment(mlist)
        if stored is not None:
            try:
                return work(stored.get_template(template))
            except Exception as exc:  # an owner's template: anything may fail, nothing may stick
                log.warning(
                    "list %s: its stored template %s failed (%s: %s); the built-in one is used",
                    name,
                    template,
                    type(exc).__name__,
                    str(exc)[:200],
                )
        return work(self.environment(name).get_template(template))

    def render(self, mlist: MailingList | str, template: str, context: Mapping[str, Any]) -> str:
        """Render ``template`` for a list (a MailingList: with its stored templates)."""
        return self.use(mlist, template, lambda t: t.render(context))


class WebTemplates:
    """The web's templates (``web/…`` under ``templates/``), every one autoescaped."""

    def __init__(
        self,
        filters: Mapping[str, Callable[..., Any]],
        finalize: Callable[[Any], Any],
        builtin: Path = BUILTIN,
    ) -> None:
        self.builtin = builtin
        self._env = environment(
            [builtin],
            jinja2.select_autoescape(["html", "atom", "xml"], default_for_string=True, default=True),
            finalize=finalize,
        )
        self._env.filters.update(filters)

    def render(self, template: str, values: Mapping[str, Any]) -> str:
        return self._env.get_template(template).render(values)
