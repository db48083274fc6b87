"""Text a person searches for, as a LIKE pattern that matches it anywhere and literally.

A search box's `%` or `_` is a character the person typed, not a wildcard: "100%" must not match
every row, "INV_1" must not match "INV-1". Every pattern built here goes with `escape=ESCAPE`.
"""
from __future__ import annotations

ESCAPE = "\\"


def contains(text: str) -> str:
    """`%text%`, with LIKE's wildcards and the escape character in `text` escaped."""
    escaped = text.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    return f"%{escaped}%"
