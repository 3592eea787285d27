"""Header text: what may go into a Subject (or any header built from edition text).

A header value is one line: line breaks and other control characters would end the header (or
inject another) and make the message unbuildable. Whatever text reaches a header, from market data,
a feed or a setting, goes through :func:`header_text` first.
"""

from __future__ import annotations

import re
import unicodedata

#: Characters that break a header line, or that no reader should see in one.
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")


def header_text(value: str, *, limit: int, fallback: str = "") -> str:
    """``value`` as a single line of at most ``limit`` characters (``…`` marks a cut).

    Control characters and line breaks become spaces, runs of spaces one space; an empty result
    gives ``fallback``.
    """
    text = _BREAKS.sub(" ", value)
    text = "".join(" " if unicodedata.category(char) in ("Zl", "Zp") else char for char in text)
    text = _SPACES.sub(" ", text).strip()
    if not text:
        text = _SPACES.sub(" ", _BREAKS.sub(" ", fallback)).strip()
    if len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text
