"""Database ids from URLs, forms and query strings, bounded to what an id column can hold.

Every id column is an INTEGER (PostgreSQL: 32-bit signed). A larger number can name no row, and
handing it to the database fails (SQLite: OverflowError; PostgreSQL: out of range) instead of
finding nothing; so an oversize id in a path matches no route (404) and in a form is refused (400).
"""
from __future__ import annotations

from flask import Flask, abort
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

MAX_ID = 2**31 - 1


class BoundedIntConverter(IntegerConverter):
    """`<int:…>` for ids: a number above MAX_ID is a 404 whatever the method."""

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        if number > MAX_ID:
            # Not ValidationError: werkzeug would then answer 405 to a POST whose path also has a
            # GET route (it compares methods before converting), where no such page exists at all.
            raise NotFound()
        return number


def init_app(app: Flask) -> None:
    """Make every `<int:…>` route bounded; call before any blueprint registers its routes."""
    app.url_map.converters["int"] = BoundedIntConverter


def parse_id(value) -> int | None:
    """The id in `value` (a form or query string), or None when missing, not a number or out of range."""
    text = str(value).strip() if value is not None else ""
    if not text.isdecimal() or not text.isascii() or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


def form_id(value) -> int:
    """The id in a submitted field, or 400 when it is missing, not a number or out of range."""
    number = parse_id(value)
    if number is None:
        abort(400)
    return number
