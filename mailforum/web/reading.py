"""How a mail's text reads in a browser: quotes as people write them, code, reflowed prose.

Pure functions from a post's stored text (addresses already hidden) to a tree of typed
blocks; the templates escape every block's text (autoescape). What real list mail does,
and what the archive makes of it:

- ``>`` quoting nests (``>>``, ``> >``); Usenet-style initials (``ABC>``) count when the
  same initials start at least two lines; blank lines inside a quote do not split it.
  The line before a quote that says who wrote it ("On DATE, NAME wrote:", in several
  languages, ``mail.quotes``) names the quote and is not shown; Gmail's attribution
  broken over two lines is read whole.
- Outlook's header-block quoting (``-----Original Message-----`` or a ``From:`` line with
  ``Sent:`` under it) quotes everything below it, named after its ``From:``; forwarded
  messages the same way.
- A quote is shown open when it is short and something follows it; a long quote, or a
  trailing one (the post says nothing after it), is folded with its line count.
- Patches (``diff --git``, ``---``/``+++`` hunks, diffstats), indented code and column-aligned
  text are ``code``: monospace, never wrapped, scrolled sideways inside their block; one
  longer than ``LONG_CODE`` lines is folded with its line count (a 44-patch series reads
  as 44 commit messages on a phone).
- Prose hard-wrapped near 72 columns is ``prose``, its lines joined so it fills a phone's
  width; short lines (greetings, addresses, lists) keep their breaks. Prose inside quotes
  keeps its lines as written (``text``).
- The signature after ``-- `` and a mailing-list footer under a line of underscores are
  ``signature``.
- A very long post (a pasted document: 85 kB in one real thread) shows its first
  ``LONG_POST`` lines or so; the rest is one folded ``more`` block.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass

from mailforum.mail.quotes import ATTRIBUTION, NAMED_ATTRIBUTION, ORIGINAL_MESSAGE, VERB_FIRST_ATTRIBUTION

SHORT_QUOTE = 5  # a quote of at most this many non-blank lines is shown open (unless it trails)
LONG_CODE = 30  # a longer patch or piece of code is folded with its line count
LONG_POST = 120  # a post longer than about this many phone lines shows them, the rest folds
MAX_NESTING = 12  # deeper quoting is shown as text at this depth (bounds the recursion)


@dataclass(frozen=True, slots=True)
class Block:
    """One piece of a body. ``kind``: "prose" (reflowed), "text" (lines kept), "code",
    "signature", "quote" (``who`` wrote ``blocks``; ``lines`` non-blank lines; ``open``:
    shown unfolded; ``forward``: a forwarded message rather than a reply), or "more" (the
    folded rest of a long post, ``lines`` about how many)."""

    kind: str
    text: str = ""
    who: str = ""
    blocks: tuple[Block, ...] = ()
    lines: int = 0
    open: bool = False
    forward: bool = False


# --- quote markers -------------------------------------------------------------------------

_MARK = re.compile(r"^ ?>")
_INITIALS = re.compile(r"^ {0,4}([A-Za-z][A-Za-z]{0,3})> ?")  # "ABC> ", Gnus' "    f> "
# Gnus/supercite's attribution: '>>>>> "f" == fork list <fork@example.com> writes:'
_SUPERCITE = re.compile(r'^>{3,}\s+"[^"]{1,20}"\s+==\s+(?P<who>.{1,120}?)\s+writes:\s*$')
_MBOX_FROM = re.compile(r"^>From ")


def _marker_initials(lines: list[str]) -> set[str]:
    """Initials that start at least two lines: those lines are quotes (``ABC> text``)."""
    counts = Counter(m.group(1) for line in lines if (m := _INITIALS.match(line)))
    return {initials for initials, count in counts.items() if count >= 2}


def _quoted(line: str, initials: set[str]) -> str | None:
    """The line without one level of quote marker, or None when it is not quoted."""
    if _MARK.match(line):
        rest = line.lstrip(" ")[1:]
        return rest[1:] if rest.startswith(" ") else rest
    found = _INITIALS.match(line)
    if found and found.group(1) in initials:
        return line[found.end() :]
    return None


# --- Outlook's header block and forwarded messages ------------------------------------------

_HEADER_NAMES = r"from|sent|date|to|cc|subject|von|gesendet|an|betreff|datum|de|envoyé|à|objet|importance"
_HEADER = re.compile(rf"^\s*\*?({_HEADER_NAMES})\*?\s*:\*?\s*(.*)$", re.IGNORECASE)
_FROM = re.compile(r"^\s*\*?(from|von|de)\*?\s*:\*?\s*\S", re.IGNORECASE)
_SENT = re.compile(r"^\s*\*?(sent|date|gesendet|datum|envoyé)\*?\s*:", re.IGNORECASE)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_FORWARD = re.compile(r"forward|weitergeleitet|transféré", re.IGNORECASE)


_OUTLOOK_HINT = re.compile(r"^[ \t]*(?:-{2,}|_{10,}|\*?(?:from|von|de)\*?\s*:)", re.IGNORECASE | re.MULTILINE)


def _outlook_start(lines: list[str]) -> tuple[int, int, bool] | None:
    """(first line of the block, first line of the quoted message, forwarded) or None."""
    if not _OUTLOOK_HINT.search("\n".join(lines)):
        return None
    for at, line in enumerate(lines):
        separator = bool(ORIGINAL_MESSAGE.match(line)) or bool(_UNDERSCORES.match(line))
        start = at + 1 if separator else at
        while separator and start < len(lines) and not lines[start].strip():
            start += 1
        if start >= len(lines) or not _FROM.match(lines[start]):
            if separator and ORIGINAL_MESSAGE.match(line):
                return at, at + 1, bool(_FORWARD.search(line))
            continue
        if not ORIGINAL_MESSAGE.match(line) and not any(_SENT.match(x) for x in lines[start + 1 : start + 5]):
            continue
        end = start  # the header lines, and the lines a long To: or Cc: wrapped onto
        while end < len(lines) and lines[end].strip() and (end - start < 15 or _HEADER.match(lines[end])):
            end += 1
        return at, end, bool(separator and _FORWARD.search(line))
    return None


def _outlook_who(header: list[str]) -> str:
    for line in header:
        if _FROM.match(line):
            value = _HEADER.match(line)
            if value:
                return _clean_who(value.group(2))
    return ""


# --- attribution lines ---------------------------------------------------------------------

_TIME = re.compile(
    r"^.*\b\d{1,2}:\d{2}(?::\d{2})?\s*(?:[AaPp]\.?[Mm]\.?)?(?:\s*(?:[+-]\d{4}|[A-Z]{2,5}))?\s*,?\s*"
)


_ON_DATE = re.compile(r"^on\s+(?:\w{3,9},?\s+)?\w{3,9}\.?\s+\d{1,2}(?:,?\s+\d{4})?,?\s+", re.IGNORECASE)
_IN_PARENS = re.compile(r"^\S+@\S+\s+\((?P<name>[^()]+)\)$")  # "ann@example.com (Ann Author)"


def _clean_who(who: str) -> str:
    """A person's name out of an attribution or a From: line: no address, date or "[mailto:]"."""
    who = re.sub(r"<[^>]*>|\[mailto:[^\]]*\]", "", who)
    _, behalf, on_behalf_of = who.partition(" On Behalf Of ")  # Outlook: "list@x On Behalf Of Ann"
    if behalf and on_behalf_of.strip():
        who = on_behalf_of
    who = re.sub(r"\s+On Behalf Of\s*$", "", who)
    who = _ON_DATE.sub("", _TIME.sub("", who))
    named = _IN_PARENS.match(who.strip())
    if named:
        who = named.group("name")
    who = re.sub(r"^[^\w\"']+", "", who.strip()).strip().strip("\"'").strip()
    return " ".join(who.split())[:80]


# Eudora's and others' "At 9:34 PM -0700 on 9/20/02, Mr. FoRK wrote:": the name after the last comma.
_AT_WROTE = re.compile(
    r"^at\b.{0,80},\s*(?P<who>[^,]{1,80}?)\s*(?:<[^>]*>\s*)?(?:wrote|writes)\s*:\s*$", re.IGNORECASE
)


def _attribution(plain: list[str]) -> tuple[int, str] | None:
    """(lines to drop from the end of ``plain``, author) when ``plain`` ends in an attribution."""
    end = len(plain)
    while end and not plain[end - 1].strip():
        end -= 1
    if not end:
        return None
    candidates = [(len(plain) - end + 1, plain[end - 1].strip())]
    if end >= 2 and plain[end - 2].strip():
        candidates.append((len(plain) - end + 2, plain[end - 2].strip() + " " + plain[end - 1].strip()))
    for drop, line in candidates:
        if len(line) > 300:
            continue
        named = NAMED_ATTRIBUTION.match(line) or VERB_FIRST_ATTRIBUTION.match(line) or _AT_WROTE.match(line)
        if named:
            return drop, _clean_who(named.group("who"))
        if ATTRIBUTION.match(line):
            return drop, ""
    return None


# --- code, patches and prose ---------------------------------------------------------------

_DIFF_START = re.compile(r"^(diff --git |diff -[a-zA-Z]|Index: \S|@@ -\d+(,\d+)? \+\d+(,\d+)? @@)")
_DIFF_LINE = re.compile(
    r"^([ +\-\\]|@@ |diff |index |new file|deleted file|old mode|new mode|similarity|rename |copy |"
    r"Binary files|$)"
)
_DIFFSTAT = re.compile(r"^\s\S.*\|\s+(\d+\s*[+\-]*|Bin .*)$|^\s*\d+ files? changed|^---$")
_CODE_END = re.compile(r"(;|\{|\}|\};|\)\s*\{)\s*$")
_CODE_START = re.compile(r"^\s*(#include\b|#define\b|\$ |import |from \S+ import |def |class |return\b)")
_COLUMNS = re.compile(r"\S {3,}\S|\t\S")
_HUNK_LINE = re.compile(r"^[+-](?![ +-])\S|^[+-]$")  # "+int x;", "-}" (not "- item" or "--")
_ENTITY = re.compile(r"&#?\w{1,8};\s*$")  # "&#8221;" from HTML, not a statement's end
_NOT_SENTENCE = re.compile(r"[\d_]|[^\w ,.;:'\"?!()-]")  # digits, symbols: what sentences have little of
_LIST_ITEM = re.compile(r"^\s*([-*+•]|\d{1,3}[.)])\s")
_FOOTER = re.compile(r"^_{20,}\s*$")


def _diff_at(lines: list[str], at: int) -> bool:
    line = lines[at]
    if _DIFF_START.match(line):
        return True
    return line.startswith("--- ") and at + 1 < len(lines) and lines[at + 1].startswith("+++ ")


def _wordy(lines: list[str]) -> bool:
    """Lines of sentences: letters, spaces and sentence punctuation, nothing a program needs."""
    text = "".join(line.strip() for line in lines)
    return bool(text) and len(_NOT_SENTENCE.findall(text)) <= 0.08 * len(text)


def _is_code(para: list[str]) -> bool:
    lines = [line for line in para if line.strip()]
    if not lines:
        return False
    if all(line.startswith(("    ", "\t")) for line in lines):
        return not _wordy(lines)  # indented sentences are an indented quote or excerpt, not code
    if all(_DIFFSTAT.match(line) for line in lines):
        return True
    if len(lines) >= 2 and all(_HUNK_LINE.match(line) for line in lines):
        return True  # lines of a hunk, quoted in a review without their header
    code = sum(
        1
        for line in lines
        if _CODE_START.match(line) or (_CODE_END.search(line) and not _ENTITY.search(line))
    )
    if code * 2 >= len(lines) and (code >= 2 or _CODE_START.match(lines[0])) and not _wordy(lines):
        return True
    columns = sum(1 for line in lines if _COLUMNS.search(line.strip()))
    return len(lines) >= 2 and columns >= 2 and columns * 2 >= len(lines)


def reflow(para: list[str]) -> str:
    """A hard-wrapped paragraph's lines joined where the writer's editor broke them.

    A break is the editor's when the next line's first word would not have fitted on the
    line (the width being the paragraph's longest line up to 80 columns, at least 50);
    list items and short lines keep their breaks."""
    widths = [len(line.rstrip()) for line in para if len(line.rstrip()) <= 80]
    width = max(widths, default=0)
    if len(para) < 2 or width < 50:
        return "\n".join(line.rstrip() for line in para)
    out = [para[0].rstrip()]
    previous = out[0]
    for line in para[1:]:
        line = line.rstrip()
        words = line.split()
        first = words[0] if words else ""
        if first and not _LIST_ITEM.match(line) and len(previous) + 1 + len(first) > width - 1:
            out[-1] += " " + line.strip()
        else:
            out.append(line)
        previous = line
    return "\n".join(out)


def _code(text: str, what: str = "code") -> Block:
    """A code block (``who``: "code" or "patch"), open unless longer than ``LONG_CODE`` lines."""
    lines = text.count("\n") + 1
    return Block("code", text, what, lines=lines, open=lines <= LONG_CODE)


def _text_blocks(lines: list[str], in_quote: bool) -> list[Block]:
    """Unquoted lines as code, prose (reflowed outside quotes) and text blocks."""
    out: list[Block] = []
    para: list[str] = []

    def flush() -> None:
        while para and not para[-1].strip():
            para.pop()
        if any(line.strip() for line in para):
            if _is_code(para):
                out.append(_code("\n".join(line.rstrip() for line in para)))
            elif in_quote or all(line.startswith((" ", "\t")) for line in para if line.strip()):
                # Quoted prose, and an indented excerpt, keep their lines as written.
                out.append(Block("text", "\n".join(line.rstrip() for line in para).strip("\n")))
            else:
                out.append(Block("prose", reflow(para)))
        para.clear()

    at = 0
    while at < len(lines):
        line = lines[at]
        if _diff_at(lines, at):
            # A diffstat or "---" just above belongs to the patch too.
            head: list[str] = []
            while para and (_DIFFSTAT.match(para[-1]) or not para[-1].strip()):
                head.insert(0, para.pop())
            flush()
            end = at + 1
            while end < len(lines) and (
                (lines[end].strip() and _DIFF_LINE.match(lines[end]))
                or (not lines[end].strip() and end + 1 < len(lines) and lines[end + 1][:1] in " +-@\\d")
            ):
                end += 1
            patch = [*head, *lines[at:end]]
            while patch and not patch[0].strip():
                patch.pop(0)
            out.append(_code("\n".join(x.rstrip() for x in patch).rstrip("\n"), "patch"))
            at = end
            continue
        if line.rstrip() == "---" and at + 1 < len(lines) and _DIFFSTAT.match(lines[at + 1]):
            flush()  # a patch's "---" and diffstat: the commit message ends here
            end = at + 1
            while end < len(lines) and lines[end].strip() and _DIFFSTAT.match(lines[end]):
                end += 1
            out.append(_code("\n".join(x.rstrip() for x in lines[at:end]), "patch"))
            at = end
            continue
        if line.strip():
            para.append(line)
        else:
            flush()
        at += 1
    flush()
    return out


# --- the whole body ------------------------------------------------------------------------


def _split_signature(lines: list[str]) -> tuple[list[str], list[str]]:
    for at in range(len(lines) - 1, -1, -1):
        if lines[at] in ("-- ", "--"):
            return lines[:at], lines[at + 1 :]
    for at in range(max(len(lines) - 12, 0), len(lines)):  # a list footer under a line of underscores
        if _FOOTER.match(lines[at]) and any(line.strip() for line in lines[at + 1 :]):
            return lines[:at], lines[at:]
    return lines, []


def _count(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip())


def _parse(lines: list[str], parent_author: str, level: int) -> list[Block]:
    in_quote = level > 0
    outlook = _outlook_start(lines) if level < MAX_NESTING else None
    tail: Block | None = None
    if outlook is not None:
        start, body_at, forward = outlook
        original = lines[body_at:]
        who = _outlook_who(lines[start:body_at]) or ("" if forward else parent_author) or "an earlier message"
        tail = Block(
            "quote",
            who=who,
            blocks=tuple(_parse(original, "", level + 1)),
            lines=_count(original),
            forward=forward,
        )
        lines = lines[:start]
    lines, signature = _split_signature(lines)
    initials = _marker_initials(lines) if level < MAX_NESTING else set()
    blocks: list[Block] = []
    plain: list[str] = []
    at = 0
    while at < len(lines):
        line = lines[at]
        supercite = _SUPERCITE.match(line) if line.startswith(">>>") else None
        if supercite:
            plain.append(_clean_who(supercite.group("who")) + " writes:")
            at += 1
            continue
        if level >= MAX_NESTING or _quoted(line, initials) is None:
            plain.append(line)
            at += 1
            continue
        if _MBOX_FROM.match(line) and not _quote_near(lines, at, initials):
            plain.append(line[1:])  # an mbox-escaped "From " line, not a quote
            at += 1
            continue
        quoted: list[str] = []
        end = at
        while end < len(lines):
            inner = _quoted(lines[end], initials)
            if inner is not None:
                quoted.append(inner)
                end += 1
                continue
            if not lines[end].strip():  # a blank line between two quoted lines stays in the quote
                ahead = end
                while ahead < len(lines) and not lines[ahead].strip():
                    ahead += 1
                if ahead < len(lines) and _quoted(lines[ahead], initials) is not None:
                    quoted.extend("" for _ in range(ahead - end))
                    end = ahead
                    continue
            break
        who = parent_author
        found = _attribution(plain)
        if found is not None:
            drop, named = found
            del plain[len(plain) - drop :]
            who = named or who
        blocks.extend(_text_blocks(plain, in_quote))
        plain = []
        while quoted and not quoted[-1].strip():
            quoted.pop()
        blocks.append(
            Block(
                "quote",
                who=who or "an earlier message",
                blocks=tuple(_parse(quoted, "", level + 1)),
                lines=_count(quoted),
            )
        )
        at = end
    blocks.extend(_text_blocks(plain, in_quote))
    if tail is not None:
        blocks.append(tail)
    sig = "\n".join(line.rstrip() for line in signature).strip("\n")
    if sig.strip():
        blocks.append(Block("signature", sig))
    return _fold(blocks)


def _quote_near(lines: list[str], at: int, initials: set[str]) -> bool:
    for step in (-1, 1):
        near = at + step
        if 0 <= near < len(lines) and lines[near].strip() and _quoted(lines[near], initials) is not None:
            return True
    return False


def _fold(blocks: list[Block]) -> list[Block]:
    """Short quotes with something after them open; long and trailing ones folded."""
    out: list[Block] = []
    for index, block in enumerate(blocks):
        if block.kind == "quote":
            trailing = all(b.kind in ("signature", "quote") for b in blocks[index + 1 :])
            opened = block.lines <= SHORT_QUOTE and not trailing and not block.forward
            block = Block("quote", "", block.who, block.blocks, block.lines, opened, block.forward)
        out.append(block)
    return out


def _height(block: Block) -> int:
    """About how many lines a block takes on a narrow screen (a folded quote: its summary)."""
    if block.kind == "quote":
        return 1 + (sum(_height(b) for b in block.blocks) if block.open else 0)
    if block.kind == "prose":
        return sum(1 + len(line) // 45 for line in block.text.split("\n"))
    if block.kind == "code" and not block.open:
        return 1
    return block.text.count("\n") + 1


def _fold_rest(blocks: list[Block]) -> list[Block]:
    """A very long post shows its first ``LONG_POST`` lines; the rest folds ("more")."""
    shown = 0
    for index, block in enumerate(blocks):
        shown += _height(block)
        if shown < LONG_POST:
            continue
        rest = blocks[index + 1 :]
        hidden = sum(_height(b) for b in rest)
        if hidden >= LONG_POST // 4 and any(b.kind != "signature" for b in rest):
            return [*blocks[: index + 1], Block("more", blocks=tuple(rest), lines=hidden)]
        break
    return blocks


@functools.lru_cache(maxsize=2048)
def read_body(text: str, parent_author: str = "") -> tuple[Block, ...]:
    """A post's text as blocks: quotes (nested), code, prose, signature, in order; the rest
    of a very long post folded into one "more" block. Stored bodies do not change: the
    last 2,048 read are remembered (a popular topic is read over and over)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return tuple(_fold_rest(_parse(lines, parent_author, 0)))
