"""How a record shows things to people: outcome marks, tables, the guide's checklist ticked.

Records are read where no emoji font is installed (nbconvert's HTML, the static site, a
terminal), so an outcome is a word, with a small SVG dot beside it (a data-URI image). Tables
show whole numbers as whole numbers and a missing value as ``-`` (never ``1.0`` or
``NaN``), left-align text and right-align numbers, and say what a true/false means.
"""

from __future__ import annotations

import html
import math
from typing import Iterable

# outcome -> (word shown, colour of its dot)
_MARKS = {
    "ok": ("OK", "#137333"), "pass": ("pass", "#137333"), "succeeded": ("SUCCEEDED", "#137333"),
    "warning": ("WARNING", "#b06000"), "warn": ("warn", "#b06000"), "interrupted": ("INTERRUPTED", "#b06000"),
    "failed": ("FAILED", "#b3261e"), "fail": ("fail", "#b3261e"), "blocked": ("BLOCKED", "#b3261e"),
    "skipped": ("skipped", "#777777"), "incomplete": ("INCOMPLETE", "#777777"),
}
MISSING = "-"


def mark_word(outcome: str) -> str:
    return _MARKS.get(outcome, (outcome.upper(), ""))[0]


def mark_svg(outcome: str) -> str:
    """A coloured dot as inline SVG (no font needed); empty for an outcome without a colour."""
    colour = _MARKS.get(outcome, ("", ""))[1]
    if not colour:
        return ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="11" height="11" viewBox="0 0 10 10">'
            f'<circle cx="5" cy="5" r="5" fill="{colour}"/></svg>')


def mark_img(outcome: str) -> str:
    """Only the dot, as a markdown data-URI image ("" for an outcome without a colour)."""
    svg = mark_svg(outcome)
    if not svg:
        return ""
    import base64

    return f"![{outcome}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


def mark_md(outcome: str) -> str:
    """The outcome for markdown: the dot as a data-URI image (markdown renderers split inline
    ``<svg>`` apart; an image survives nbconvert and JupyterLab's sanitizer), then the word in
    bold, which is all that shows where images are stripped."""
    img = mark_img(outcome)
    return f"{img} **{mark_word(outcome)}**" if img else f"**{mark_word(outcome)}**"


# -- tables ------------------------------------------------------------------------------------------


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        import pandas as pd

        return value is pd.NA or value is pd.NaT
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False


def _is_number(value) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    if isinstance(value, (int, float)):
        return True
    kind = getattr(getattr(value, "dtype", None), "kind", "")
    return type(value).__module__ == "numpy" and kind in "iuf"


def cell_text(value, *, whole: bool = False, bool_labels: tuple[str, str] = ("yes", "no")) -> str:
    """One value as a person reads it: ``-`` for missing, yes/no for a flag, and with ``whole``
    (every number in its column is whole) ``3`` for 3.0, the float pandas makes of an integer
    column that has a missing value."""
    if _missing(value):
        return MISSING
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool_labels[0] if value else bool_labels[1]
    if _is_number(value):
        number = float(value)
        if whole and number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        return str(value.item() if hasattr(value, "item") else value)
    if isinstance(value, (list, tuple)):
        return ", ".join(cell_text(v) for v in value) or MISSING
    return str(value)


def _column_texts(values: list) -> tuple[list[str], bool]:
    """A column's cells as text, and whether it is numeric (right-aligned)."""
    present = [v for v in values if not _missing(v)]
    numeric = bool(present) and all(_is_number(v) for v in present)
    whole = numeric and all(float(v).is_integer() for v in present)  # an int column pandas made float by a gap
    return [cell_text(v, whole=whole) for v in values], numeric


def frame_cells(df) -> tuple[list[str], list[list[str]], list[bool]]:
    """A DataFrame as (column names, rows of cell texts, which columns are numeric)."""
    columns = [str(c) for c in df.columns]
    cols, numeric = [], []
    for i in range(len(columns)):
        texts, is_num = _column_texts(df.iloc[:, i].tolist())
        cols.append(texts)
        numeric.append(is_num)
    rows = [list(r) for r in zip(*cols)] if cols else []
    return columns, rows, numeric


def frame_text(df) -> str:
    """A plain-text table: text columns left-aligned, numbers right-aligned, two spaces between."""
    columns, rows, numeric = frame_cells(df)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(cells: Iterable[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(columns), *(line(r) for r in rows)])


def frame_html(df) -> str:
    """An HTML table with the alignment set on each cell (JupyterLab's CSS right-aligns every cell)."""
    columns, rows, numeric = frame_cells(df)
    esc = html.escape

    def align(num: bool) -> str:
        return "right" if num else "left"

    head = "".join(f'<th style="text-align: {align(n)}">{esc(c)}</th>' for c, n in zip(columns, numeric))
    body = "\n".join("<tr>" + "".join(f'<td style="text-align: {align(n)}">{esc(v)}</td>' for v, n in zip(r, numeric)) + "</tr>"
                     for r in rows)
    return f'<table class="swrun-table">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


class Table:
    """A DataFrame a notebook cell returns, shown with :func:`frame_html` / :func:`frame_text`
    instead of pandas' own repr (right-aligned text, ``NaN``, ``1.0``). A named index becomes a column."""

    def __init__(self, df):
        self.df = df.reset_index() if any(n is not None for n in df.index.names) else df

    def _repr_html_(self) -> str:
        return frame_html(self.df) + ("<p><i>(none)</i></p>" if self.df.empty else "")

    def __repr__(self) -> str:
        if not len(self.df.columns):
            return "(none)"
        return frame_text(self.df) + ("\n(none)" if self.df.empty else "")
