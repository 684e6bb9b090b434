"""How a reply marks what it quotes: the attribution line and the original message below it.

Mail programs write a line before the text they quote — "On Tue, 26 Nov 2026, Ann
wrote:", "Am 26.11.2026 schrieb Ann:", "Le 26 nov. 2026, Ann a écrit :", "El … escribió:"
— and Outlook puts "-----Original Message-----" above the message answered. A digest
leaves both out of a post's new text (``core.digest_content.trim``); a command mail
stops being read at them (``core.commands``).

The two readers ask different questions, so their patterns differ on purpose: a
digest drops an attribution line only right before quoted lines, so it may match any
line with the verb and a colon; a command mail stops at the first line that looks like
one, so there only "On … wrote:" counts. The archive (``web.body``) shows "Replying to
NAME", so its pattern captures the author, and it reads more languages: a page that
misses an attribution only shows one more line, where a digest would lose text.
"""

from __future__ import annotations

import re

# The attribution's verb, English first: "wrote", then German, French, Spanish.
WROTE = ("wrote", "schrieb", "a écrit", "escribió")

# More verbs the archive recognises: "writes", Scandinavian, Finnish, Italian.
MORE_WROTE = ("writes", "skrev", "kirjoitti", "ha scritto")

# An attribution line, whole and stripped: English "On … wrote:" (the colon optional), or
# another language's verb with a colon after it ("Am 26.11. schrieb Ann:").
ATTRIBUTION = re.compile(
    rf"^(on\b.{{0,200}}\b{WROTE[0]}:?|.{{0,80}}\b({'|'.join(WROTE[1:])})\b.{{0,80}}:)\s*$", re.IGNORECASE
)

# The end of an "On … wrote:" line in any of the languages, for patterns that stop there.
ON_WROTE = rf"on\b.{{0,200}}\b({'|'.join(WROTE)})\s*:?\s*$"

# The separator above a replied-to or forwarded message (Outlook, Gmail, German Outlook).
ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(original message|forwarded message|ursprüngliche nachricht)", re.IGNORECASE
)

# An attribution line that names its author (group ``who``), for "Replying to NAME":
# "On Tue, 26 Nov 2026, Ann <ann@example.com> wrote:", "Am 26.11. schrieb Ann:", "Ann writes:".
NAMED_ATTRIBUTION = re.compile(
    r"^(?:on\b.*?,\s*|am\b.*?,?\s*|le\b.*?,?\s*)?(?P<who>[^,<>]{1,80}?)\s*(?:<[^>]*>\s*)?"
    rf"(?:{'|'.join(WROTE + MORE_WROTE)})\s*:\s*$",
    re.IGNORECASE,
)

# German, French and Spanish put the verb first: "Am 26.11.2026 um 10:00 schrieb Jörg Meier:",
# "El 26 nov 2026, escribió Ana <ana@example.com>:".
VERB_FIRST_ATTRIBUTION = re.compile(
    rf"^.{{0,120}}\b(?:{'|'.join(WROTE[1:])})\s+(?P<who>[^:<>]{{1,80}}?)\s*(?:<[^>]*>\s*)?:\s*$",
    re.IGNORECASE,
)
