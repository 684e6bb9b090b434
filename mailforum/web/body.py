"""How a post reads in a browser: quotes, signatures, sanitised HTML, hidden addresses.

Pure functions; the templates escape what they print (autoescape), so nothing here
returns markup except ``sanitize_html``, whose output comes from nh3's allow-list. A
text body's quotes, code and prose are read by ``web.reading``. Rules of thumb taken
from mail clients:

- HTML is shown only when the message has no text part of its own (RELIABILITY B41:
  the text part is preferred), and then through an allow-list without styles,
  images, forms, frames, scripts or event handlers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

import nh3

from mailforum.mail.headers import reply_subject
from mailforum.mail.parse import html_to_text

_ADDRESS = re.compile(r"(?<![\w.+-])([\w.+-]{1,64})@([\w-]+(?:\.[\w-]+)+)")


def hide_address(address: str) -> str:
    """An address a reader recognises and a harvester cannot use: ``a…@example.com``."""
    local, at, domain = address.partition("@")
    if not at:
        return address
    return f"{local[:1]}…@{domain}"


def spell_address(address: str) -> str:
    """The whole address, spelled out for lists that show addresses: ``ann at example.com``."""
    local, at, domain = address.partition("@")
    return f"{local} at {domain}" if at else address


def author_label(name: str, address: str, show_address: bool) -> str:
    """What the archive calls an author: the display name, never the raw address."""
    if show_address and address:
        return f"{name} ({spell_address(address)})" if name else spell_address(address)
    return name or hide_address(address) or "unknown sender"


def hide_addresses(text: str) -> str:
    """Every address in a body, hidden (harvesters read archives)."""
    return _ADDRESS.sub(lambda m: f"{m.group(1)[:1]}…@{m.group(2)}", text)


# The allow-list for HTML parts: structure and emphasis, links, tables. No style
# attributes or <style> (CSS tricks), no <img> (remote images track readers), no
# forms, frames, <base>, <meta>, SVG or MathML; links only to http(s) and mailto.
ALLOWED_TAGS = {
    "p", "br", "div", "span", "b", "strong", "i", "em", "u", "s", "small", "sub", "sup",
    "blockquote", "pre", "code", "ul", "ol", "li", "dl", "dt", "dd", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "a",
    "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
URL_SCHEMES = {"http", "https", "mailto"}


def sanitize_html(markup: str) -> str:
    """HTML from a mail, reduced to the allow-list: inert whatever came in."""
    return nh3.clean(
        markup,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        clean_content_tags={"script", "style", "head", "title", "template", "noscript", "svg", "math"},
        link_rel="nofollow noopener noreferrer ugc",
        strip_comments=True,
    )


def html_only(text_body: str, html_body: str | None) -> bool:
    """True when the text body was made from the HTML part (the message had no text part)."""
    return bool(html_body) and text_body == html_to_text(html_body or "")


_TAG = re.compile(r"^\s*\[([^\[\]]{1,40})\]\s*")
_REPLY = re.compile(r"^\s*(?:re|aw|sv|fwd?)\s*:\s*", re.IGNORECASE)


def subject_tags(subject: str, list_name: str, list_tag: str | None = None) -> tuple[tuple[str, ...], str]:
    """(tags, title) from a subject like "[ann][python] New release"; the list's own tag is dropped."""
    own = {list_name.lower(), (list_tag or "").strip("[] ").lower()}
    tags: list[str] = []
    rest = subject
    while True:
        rest = _REPLY.sub("", rest)
        found = _TAG.match(rest)
        if not found:
            break
        tag = found.group(1).strip()
        if tag.lower() not in own and tag not in tags:
            tags.append(tag)
        rest = rest[found.end() :]
    return tuple(tags), rest.strip() or "(no subject)"


def mailto(address: str, subject: str, in_reply_to: str = "") -> str:
    """A ``mailto:`` URL (RFC 6068) that answers a post: subject and In-Reply-To set."""
    url = f"mailto:{quote(address, safe='@')}?subject={quote(reply_subject(subject), safe='')}"
    if in_reply_to:
        url += f"&In-Reply-To={quote(in_reply_to, safe='')}"
    return url


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    match: bool


def snippet(text: str, terms: list[str], width: int = 160) -> tuple[Segment, ...]:
    """A window of ``text`` around the first term, split into matching and other segments."""
    flat = hide_addresses(" ".join(text.split()))
    lowered = flat.lower()
    starts = [lowered.find(t) for t in terms if lowered.find(t) >= 0]
    start = max(min(starts) - width // 3, 0) if starts else 0
    window = flat[start : start + width]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + width < len(flat) else ""
    if not terms:
        return (Segment(prefix + window + suffix, False),)
    pattern = re.compile("(" + "|".join(re.escape(t) for t in terms) + ")", re.IGNORECASE)
    parts = pattern.split(prefix + window + suffix)
    return tuple(Segment(p, i % 2 == 1) for i, p in enumerate(parts) if p)
