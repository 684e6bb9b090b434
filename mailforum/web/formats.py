"""How values look on the web: the filters the templates use, text an Atom feed can carry,
download headers, and the mbox format of downloads.

The templates themselves are rendered by ``render.WebTemplates`` (autoescape on for
every web template, undefined names fail loudly); ``FILTERS`` and ``no_bidi`` are what
the web hands it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from mailforum.core.archive import mbox_entry
from mailforum.db.models import Post
from mailforum.textsafe import safe_filename, strip_bidi, url_filename
from mailforum.web import body


def when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def month(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%b %Y") if value else ""


def iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if value else ""


def size(value: int) -> str:
    scaled = float(value)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if scaled < 1024 or unit == "GiB":
            return f"{value} {unit}" if unit == "bytes" else f"{scaled:.1f} {unit}"
        scaled /= 1024
    return str(value)


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


_URL = re.compile(r"\bhttps?://[^\s<>\"'`\x00-\x1f\x7f]+", re.IGNORECASE)


def linkify(text: str) -> Markup:
    """Escaped text with its http(s) URLs as links (rel=nofollow: archives attract link spam)."""
    out: list[Markup] = []
    last = 0
    for found in _URL.finditer(text):
        url = found.group(0).rstrip(".,;:!?)]}")
        out.append(escape(text[last : found.start()]))
        out.append(Markup('<a href="{0}" rel="nofollow noopener noreferrer ugc">{0}</a>').format(url))
        last = found.start() + len(url)
    out.append(escape(text[last:]))
    return Markup("").join(out)


def no_bidi(value: object) -> object:
    """Every plain string a template prints loses its bidi controls: in ``<title>``
    and attributes nothing else can contain them. Markup (bodies) is left alone, and
    isolated by ``dir="auto"`` in the templates."""
    return strip_bidi(value) if isinstance(value, str) and not isinstance(value, Markup) else value


FILTERS: dict[str, Callable[..., Any]] = {
    "when": when,
    "iso": iso,
    "month": month,
    "size": size,
    "plural": plural,
    "hide_addresses": body.hide_addresses,
    "linkify": linkify,
    "filename": safe_filename,
    "url_filename": url_filename,
    "safe_html": lambda markup: Markup(body.sanitize_html(markup)),
}


# Characters XML 1.0 forbids even escaped (§2.2): C0 controls but tab, LF and CR, and U+FFFE/U+FFFF.
# Mail bodies carry them (form feeds in patches, ANSI colours, bells); one in a feed would make the
# whole feed ill-formed, and feed readers drop an ill-formed feed entirely.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_chars(text: str) -> str:
    """``text`` with every character XML 1.0 cannot carry replaced by a space."""
    return _NOT_XML.sub(" ", text)


def content_disposition(filename: str, fallback: str) -> str:
    """``attachment`` with an ASCII filename and the UTF-8 one (RFC 6266); no path, quotes or controls."""
    name = re.sub(r"[\x00-\x1f\x7f/\\\"]+", "_", filename).strip(" .") or fallback
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip(" .") or fallback
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def mbox(posts: Iterable[Post]) -> Iterator[bytes]:
    for post in posts:
        yield mbox_entry(post)
