"""Text a person searches for, as a LIKE pattern that matches it anywhere and literally.

A search box's `%` or `_` is a character the person typed, not a wildcard: "100%" must not match
every row, "INV_1" must not match "INV-1". A pattern built by `contains` goes with `escape=ESCAPE`;
`ilike` pairs the two, so a search cannot leave the escape out.
"""
from __future__ import annotations

from sqlalchemy import ColumnElement

ESCAPE = "\\"


def contains(text: str) -> str:
    """`%text%`, with LIKE's wildcards and the escape character in `text` escaped."""
    escaped = text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    return f"%{escaped}%"


def ilike(column, pattern) -> ColumnElement[bool]:
    """`column` matches `pattern` (from `contains`, or a bind parameter holding one), ignoring case."""
    return column.ilike(pattern, escape=ESCAPE)
