"""Mail templates a list owner edits: stored per list, checked before they are kept.

Only the mail templates that exist may be overridden (``render.mail_templates``: a
post's notification, digests, answers to commands, notices and the footer), each at
most ``render.MAX_SOURCE`` bytes, and only if it compiles in the sandbox the renderer
uses; a template that does not compile is refused with the line and Jinja2's message.
Each change bumps ``lists.templates_version`` so every renderer reads the list's
templates again (render.py), and the caller writes it to the audit log in the same
transaction. What a stored template cannot be checked for before it runs (a variable
the mail does not have) is caught when it renders: the built-in template is used and
the failure logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core.answers import base_context
from mailforum.db.models import ListTemplate, MailingList, utcnow
from mailforum.errors import InvalidInput
from mailforum.render import BUILTIN, MAX_SOURCE, mail_templates, preview, syntax_error


@dataclass(frozen=True, slots=True)
class TemplateState:
    """One mail template of a list: its name and the list's own source, if it has one."""

    name: str
    source: str | None
    updated_by: str = ""


def check_name(name: str) -> str:
    """A template the list may override; ``InvalidInput`` otherwise."""
    if name not in mail_templates():
        raise InvalidInput(
            f"no mail template named {name[:200]!r} (see `lists templates LIST list` for the names)"
        )
    return name


def check_source(name: str, source: str) -> str:
    """The source as kept (line ends made \\n), if it fits and compiles in the sandbox."""
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE:
        raise InvalidInput(f"template {name} is {size} bytes; at most {MAX_SOURCE} bytes are kept")
    if "\0" in text:
        raise InvalidInput(f"template {name} contains a NUL character")
    error = syntax_error(name, text)
    if error is not None:
        raise InvalidInput(f"template {name} does not compile: {error}")
    return text


def builtin_source(name: str) -> str:
    return (BUILTIN / check_name(name)).read_text(encoding="utf-8")


def templates(session: Session, mlist: MailingList) -> list[TemplateState]:
    """Every template the list may override, with its own source where it has one."""
    rows = {
        row.name: row for row in session.scalars(select(ListTemplate).where(ListTemplate.list_id == mlist.id))
    }
    return [
        TemplateState(
            name, rows[name].source if name in rows else None, rows[name].updated_by if name in rows else ""
        )
        for name in mail_templates()
    ]


def stored(session: Session, mlist: MailingList, name: str) -> str | None:
    return session.scalar(
        select(ListTemplate.source).where(
            ListTemplate.list_id == mlist.id, ListTemplate.name == check_name(name)
        )
    )


def set_template(session: Session, mlist: MailingList, name: str, source: str, actor: str) -> bool:
    """Keep the list's own ``name`` (checked first); False when it was already that."""
    text = check_source(check_name(name), source)
    row = session.scalar(
        select(ListTemplate).where(ListTemplate.list_id == mlist.id, ListTemplate.name == name)
    )
    if row is not None and row.source == text:
        return False
    if row is None:
        session.add(
            ListTemplate(
                list_id=mlist.id, name=name, source=text, updated_at=utcnow(), updated_by=actor[:320]
            )
        )
    else:
        row.source, row.updated_at, row.updated_by = text, utcnow(), actor[:320]
    _bump(session, mlist)
    return True


def reset_template(session: Session, mlist: MailingList, name: str) -> bool:
    """Back to the built-in ``name``; False when the list had none of its own."""
    done = session.execute(
        delete(ListTemplate).where(ListTemplate.list_id == mlist.id, ListTemplate.name == check_name(name))
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        return False
    _bump(session, mlist)
    return True


def _bump(session: Session, mlist: MailingList) -> None:
    """One more on the list's version, in SQL (two owners saving at once both count)."""
    mlist.templates_version = MailingList.templates_version + 1
    session.flush()
    session.refresh(mlist, ["templates_version"])


def preview_source(config: Config, mlist: MailingList, name: str, source: str) -> str:
    """What ``source`` would make for this list, with the list's and the site's values and
    «placeholders» for a mail's own (checked as for saving first). ``InvalidInput`` with
    the reason when it would fail in a real mail, so the built-in one would be used."""
    text = check_source(check_name(name), source)
    try:
        return preview(name, text, base_context(config, mlist), config.outbound.templates or None)
    except Exception as exc:  # an owner's template: say what a real mail would meet
        raise InvalidInput(
            f"template {name} would fail in a mail ({type(exc).__name__}: {str(exc)[:200]}); "
            "the built-in one would be used"
        ) from None
