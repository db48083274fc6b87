"""Access logs without query strings or referrer queries.

Query strings carry secrets on some URLs (the Sage OAuth callback's `code` and `state`, a
password-reset link's `token`), and a request log is read by more people and kept longer than the
secrets should be. So gunicorn's access log (GunicornLogger, named in gunicorn.conf.py) and
werkzeug's development-server log (QueryStringFilter) print the path alone, for every URL, and
leave out the successful polls and static files that would drown the lines worth reading.
"""
from __future__ import annotations

import logging
import re

from gunicorn.glogging import Logger

_QUERY = re.compile(r"\?[^\s\"\x1b]*")
# Requests that would fill a terminal without telling anyone anything when they succeed: a job's
# progress partial (polled every second), static files, the health check and metrics scrapes.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_QUIET = re.compile(r"^/(?:jobs/[^/]+|static/.*|favicon\.ico|healthz|metrics)$")


def quiet(method: str, path: str, status) -> bool:
    """Whether a request is left out of the access log: a successful GET of a quiet path."""
    try:
        ok = int(str(status).split()[0]) < 400
    except (ValueError, IndexError):
        ok = False
    return ok and method in ("GET", "HEAD") and bool(_QUIET.match(path or ""))


def strip_query(text: str) -> str:
    """`text` with every `?query` removed (a URL or a request line)."""
    return _QUERY.sub("", text) if isinstance(text, str) else text


class GunicornLogger(Logger):
    """gunicorn's logger, whose request-line, URL and referrer atoms carry no query string."""

    def access(self, resp, req, environ, request_time):
        if not quiet(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), resp.status):
            super().access(resp, req, environ, request_time)

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
        if isinstance(record.args, tuple) and len(record.args) >= 2 and isinstance(record.args[0], str):
            line, status = (_ANSI.sub("", str(arg)) for arg in record.args[:2])  # werkzeug colours a terminal's
            method, _, rest = line.partition(" ")
            if quiet(method, strip_query(rest.rsplit(" ", 1)[0]), status):
                return False  # werkzeug's line for a quiet request (see `quiet`)
        if isinstance(record.args, tuple):
            record.args = tuple(strip_query(arg) for arg in record.args)
        record.msg = strip_query(record.msg)
        return True


def install() -> None:
    """Put the filter on werkzeug's logger (once per process)."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, QueryStringFilter) for f in logger.filters):
        logger.addFilter(QueryStringFilter())
