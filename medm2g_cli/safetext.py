"""Text from files made safe for a terminal and for a spreadsheet (no typer, no rich, no torch).

Header fields (SeriesDescription, PatientName), file names and report text are written by whoever
made the file. Printed raw, an ANSI escape can recolour or rewrite the user's terminal and a ``\\r``
can hide the rest of a line; written raw into a CSV, a cell starting with ``=`` is a formula that
a spreadsheet runs. :func:`printable` is applied to everything the CLI prints (the ``error:`` line,
``info``, status lines); :func:`csv_cell` to every text cell medm2g writes into a CSV.
"""

from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls (ESC, CR, BEL, backspace ...), DEL, and the invisible format characters that
# reorder or hide text (bidi overrides and isolates, zero-width characters, BOM).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with every control or invisible format character shown as a visible escape
    (``\\x1b``, ``\\r``, ``\\u202e``), so it cannot drive the terminal; everything else unchanged."""
    return _UNSAFE.sub(_escape, str(text))


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula: text starting with ``= + - @``, a
    tab or a carriage return gets a leading ``'`` (OWASP's advice), and control characters are
    escaped as in :func:`printable` (a bare CR would also break the row); other values pass."""
    if not isinstance(value, str):
        return value
    return ("'" if value.startswith(_FORMULA_START) else "") + printable(value)
