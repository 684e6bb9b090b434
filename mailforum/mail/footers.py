"""Our own footers, found in the text of replies that quote our copies, so they are not stored.

Clients quote the footer of the copy they answer (``templates/_partials/footer.*.j2``);
without this a fourth-level reply carries five footers into the archive, the exports
and the digests. A footer is recognised in every form clients give it: quoted (``> ``,
``>> ``, ``> > ``), reflowed (a line break and quote markers wherever there was a
space), unquoted below an Outlook "From: … Sent: …" header, or turned into text from
our HTML part (one line with ``·`` between the links, or links in ``<…>``).

A footer is only ours when it names an address of our domain in its first line
(``Dev Talk <dev@lists.example.org>``) and at least three of its link labels follow;
text that merely mentions "unsubscribe" is never touched. Only the stored text is
cleaned: the raw message stays as received.
"""

from __future__ import annotations

import functools
import re

# White space between two words of a footer: spaces, or a line break and the next line's
# quote markers. Possessive, so a text that is not a footer costs one pass.
_WS = r"(?:[ \t]++|\r?\n[ \t>]*+)++"
_SEP = rf"(?:{_WS})?+(?:[·|•-](?:{_WS})?+)?+"
# A link as clients leave it after a label: bare, <in brackets>, [in brackets] or (in parens).
_LINK = rf"(?:[ \t]*+:)?+(?:(?:{_WS})?+(?:<[^<>\s]{{1,2000}}>|\[[^\[\]\s]{{1,2000}}\]|\([^()\s]{{1,2000}}\)|(?:https?://|mailto:)[^\s<>]{{1,2000}}))?+"


def _words(*words: str) -> str:
    return _WS.join(re.escape(w) for w in words)


# The labels of templates/_partials/footer.txt.j2 and footer.html.j2 (the HTML one lower-case).
_LABELS = "|".join(
    (
        _words("view", "this", "topic", "on", "the", "web"),
        # "Reply privately to Ann Author": the name may be wrapped onto the next line too.
        _words("reply", "privately", "to")
        + r"\b(?:[^:·<>\[\]\r\n]|\r?\n[ \t>]*+){0,200}?(?=[ \t]*+(?::|·|<|\[|\r?\n|$))",
        _words("watch", "or", "mute", "this", "topic"),
        _words("watch", "this", "topic"),
        _words("mute", "this", "topic"),
        _words("change", "your", "delivery", "mode"),
        _words("your", "settings", "on", "the", "web")
        + r"(?:"
        + _WS
        + _words("(after", "signing", "in)")
        + r")?+",
        "unsubscribe",
    )
)
MIN_LABELS = 3


@functools.lru_cache(maxsize=64)
def _footer(domain: str) -> re.Pattern[str]:
    address = rf"<[^\s<>@]{{1,64}}@{re.escape(domain)}>"
    return re.compile(
        # The signature separator, as quoted; after it the title may be wrapped onto its own line.
        rf"^[ \t>]*+(?:--[ \t]*+\r?\n[ \t>]*+(?:[^\r\n<>]{{1,120}}\r?\n[ \t>]*+)?+)?+"
        rf"[^\r\n<>]{{0,120}}{address}"  # "Dev Talk <dev@lists.example.org>"
        rf"(?:{_SEP}(?:{_LABELS}){_LINK}){{{MIN_LABELS},12}}[ \t]*+(?:\r?\n)?+",
        re.IGNORECASE | re.MULTILINE,
    )


def strip_footers(text: str, domain: str) -> str:
    """``text`` without any of our footers, quoted or not; unchanged when it has none.

    The blank (or quote-only) lines just above a footer go with it.
    """
    if not domain or "@" not in text:
        return text
    kept: list[str] = []
    start = 0
    for found in _footer(domain.lower()).finditer(text):
        kept.append(_without_blank_tail(text[start : found.start()]))
        start = found.end()
    if not kept:
        return text
    kept.append(text[start:])
    cleaned = "".join(kept)
    return cleaned if cleaned.strip(" \t\r\n>") else ""


def _without_blank_tail(chunk: str) -> str:
    """``chunk`` (which ends at a line start) without its last lines that hold only quote markers."""
    end = len(chunk)
    while end:
        line_start = chunk.rfind("\n", 0, end - 1) + 1
        if chunk[line_start:end].strip(" \t\r\n>"):
            break
        end = line_start
    return chunk[:end]
