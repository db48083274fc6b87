"""Access logs without query strings or referrer queries.

Query strings carry secrets on some URLs (the Sage OAuth callback's `code` and `state`, a
password-reset link's `token`), and a request log is read by more people and kept longer than the
secrets should be. So gunicorn's access log (GunicornLogger, named in gunicorn.conf.py) and
werkzeug's development-server log (QueryStringFilter) print the path alone, for every URL.
"""
from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger

_QUERY = re.compile(r"\?[^\s\"\x1b]*")


def strip_query(text: str) -> str:
    """`text` with every `?query` removed (a URL or a request line)."""
    return _QUERY.sub("", text) if isinstance(text, str) else text


class GunicornLogger(Logger):
    """gunicorn's logger, whose request-line, URL and referrer atoms carry no query string."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["r"] = f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')} {environ['SERVER_PROTOCOL']}"
        atoms["q"] = ""
        atoms["f"] = strip_query(atoms.get("f", "-"))
        if "{referer}i" in atoms:
            atoms["{referer}i"] = strip_query(atoms["{referer}i"])
        return atoms


class QueryStringFilter(logging.Filter):
    """Drops query strings from werkzeug's request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(strip_query(arg) for arg in record.args)
        record.msg = strip_query(record.msg)
        return True


def install() -> None:
    """Put the filter on werkzeug's logger (once per process)."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, QueryStringFilter) for f in logger.filters):
        logger.addFilter(QueryStringFilter())
