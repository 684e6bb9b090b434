"""Text from mail made safe to show next to other text (issue 12): bidirectional controls.

A display name or subject holding U+202E (RIGHT-TO-LEFT OVERRIDE) and its kind reverses
whatever follows it on the line: "evil\u202egnp.exe" reads as "evilexe.png", a name
followed by "via dev" swallows the list's name. In pages user text is isolated
(``<bdi>``, ``dir="auto"``); where markup cannot isolate it (``<title>``, attributes,
header display names, file names) the controls are removed with ``strip_bidi``.
"""

from __future__ import annotations

import re

# Embeddings and overrides (LRE RLE PDF LRO RLO), isolates (LRI RLI FSI PDI) and the
# marks (LRM RLM ALM): every Unicode bidi formatting character (UAX #9 table 4).
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def strip_bidi(text: str) -> str:
    """``text`` without bidirectional formatting characters."""
    return BIDI_CONTROLS.sub("", text)
