"""CSV cells a spreadsheet will not run: the export neutralises, the import restores.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a formula by
Excel, LibreOffice and Google Sheets (CSV injection, OWASP). Such a cell is written with a leading
``'``, which spreadsheets show as text. A cell that already starts with ``'`` gets one too, so that the
escape can be undone without ambiguity: on import, one leading ``'`` is removed when what follows
starts with one of those characters or with ``'``. Every exported column goes through
:func:`neutralise` (an address may itself start with ``=`` or ``+`` and be valid).
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


def neutralise(value: str) -> str:
    """``value`` as a cell no spreadsheet evaluates."""
    if value.startswith((*FORMULA_STARTS, ESCAPE)):
        return ESCAPE + value
    return value


def restore(value: str) -> str:
    """The value :func:`neutralise` was given (a cell without the escape is returned as is)."""
    if value.startswith(ESCAPE) and value[1:].startswith((*FORMULA_STARTS, ESCAPE)):
        return value[1:]
    return value
