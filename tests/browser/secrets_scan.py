"""The secrets scan run after every browser journey (the `secrets_scan` fixture).

Needles: every password the journey could know (the test and demo passwords, the sandbox's Sage and
Sage One logins, every password typed into a form), every OAuth access and refresh token the
sandbox issued, every customer's private key (raw, base64 and hex), the TOTP secrets of support
users, and the Sage app's own secrets.

Haystacks: every row of every table (read through SQLAlchemy) and, on SQLite, the raw database file;
every Redis key and value of every type (compressed or base64-wrapped values opened as RQ stores
them); the worker's log; every log record of this process (the web server and the sandbox) at DEBUG;
and every text response body and header the browser received.

A hit is a needle as is (or a key's base64/hex): a password hash or an encrypted or wrapped key is
not one. Typed passwords are in requests, which are not scanned: only what comes back is.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import logging
import zlib
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from flask import url_for
from sqlalchemy.engine import make_url

from portal import keys, two_factor
from portal.extensions import db, get_redis
from portal.models import Role, User

MIN_PASSWORD_LENGTH = 6  # shorter typed values ("1", "abc") would match anything; no test uses one
TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml", "+xml", "+json")
TOTP = "TOTP secret"
SANDBOX_PASSWORD = "the sandbox password"
SANDBOX_SIGN_IN = "/oauth2/auth/central"


class _Lines(logging.Handler):
    """Keeps every record of the process, formatted with its traceback and stack, as a handler would."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{self.format(record)} {record.args!r}")
        except Exception:  # a malformed call is still kept, raw
            self.lines.append(f"{record.name} {record.msg!r} {record.args!r}")


class SecretsScan:
    """What one browser test's processes kept and sent, searched for every secret of the test."""

    def __init__(self, app, *, sandbox=None, worker_log: Path | None = None):
        self.app = app
        self.sandbox = sandbox
        self.worker_log = worker_log
        self.responses: list[tuple[str, bytes]] = []  # (where, headers + text body)
        self._paths: dict[str, str] = {}
        self._origins: dict[str, str] = {}
        self._numbers = itertools.count(1)
        self.typed: set[str] = set()
        self._log = _Lines()

    # ------------------------------------------------------------------ collecting

    @contextlib.contextmanager
    def capturing_logs(self):
        """Every log record of this process at DEBUG, including loggers Alembic's fileConfig disabled."""
        root = logging.getLogger()
        level = root.level
        disabled = [lg for lg in logging.root.manager.loggerDict.values()
                    if isinstance(lg, logging.Logger) and lg.disabled]
        for logger in disabled:
            logger.disabled = False
        root.addHandler(self._log)
        root.setLevel(logging.DEBUG)
        try:
            yield
        finally:
            root.removeHandler(self._log)
            root.setLevel(level)
            for logger in disabled:
                logger.disabled = True

    def watch(self, context) -> None:
        """Record what the browser types into password fields and every text response it receives."""
        context.on("request", self._on_request)
        context.on("response", self._on_response)

    def _on_request(self, request) -> None:
        if request.method != "POST" or not request.post_data:
            return
        for name, value in parse_qsl(request.post_data, keep_blank_values=True):
            if "password" in name and len(value) >= MIN_PASSWORD_LENGTH:
                self.typed.add(value)

    def _on_response(self, response) -> None:
        headers = response.headers
        # Numbered on arrival: handlers overlap while a body is fetched.
        where = f"response {next(self._numbers)}: {response.status} {response.request.method} {response.url}"
        head = "\n".join(f"{k}: {v}" for k, v in headers.items()).encode()
        body = b""
        content_type = headers.get("content-type", "")
        if any(t in content_type for t in TEXT_TYPES) and not 300 <= response.status < 400:
            try:
                body = response.body()
            except Exception:  # the browser already dropped it (a page navigated away mid-load)
                body = b""
        self.responses.append((where, head + b"\n\n" + body))
        url = urlsplit(response.url)
        self._paths[where] = url.path
        self._origins[where] = f"{url.scheme}://{url.netloc}"

    # ------------------------------------------------------------------ needles

    def _passwords(self) -> dict[str, str]:
        from portal import demo
        from sage_sandbox import seed
        from tests import factories

        found = {"the test password": factories.PASSWORD, "the demo password": demo.DEMO_PASSWORD,
                 SANDBOX_PASSWORD: seed.PASSWORD}
        for value in sorted(self.typed):
            found.setdefault(f"a password typed in the browser ({value[:2]}…)", value)
        if self.sandbox is not None:
            state = self.sandbox.state
            with state.lock:
                for user in state.sage_users.values():
                    found.setdefault(f"the Sage password of {user.email}", user.password)
                for user in state.sage_one_users.values():
                    found.setdefault(f"the Sage One AUS password of {user.username}", user.password)
        return found

    def needles(self) -> dict[str, bytes]:
        """Every secret of this test, named, as the bytes that would show up if it leaked."""
        passwords = self._passwords()
        found: dict[str, bytes] = {}
        by_value: dict[str, str] = {}
        for what, value in passwords.items():
            if value and value not in by_value:
                by_value[value] = what
                found[what] = value.encode()
        if self.sandbox is not None:
            state = self.sandbox.state
            with state.lock:
                for user in state.sage_one_users.values():  # the Basic auth header a log could print
                    found[f"the Sage One AUS login of {user.username} (Basic auth)"] = base64.b64encode(
                        f"{user.username}:{user.password}".encode())
                for n, token in enumerate(state.access_tokens, 1):
                    found[f"OAuth access token {n} (of {state.access_tokens[token].user_email})"] = token.encode()
                for n, token in enumerate(state.refresh_tokens, 1):
                    found[f"OAuth refresh token {n} (of {state.refresh_tokens[token].user_email})"] = token.encode()
        found["the Sage OAuth client secret"] = self.app.config["SAGE_CLIENT_SECRET"].encode()
        found["the Sage One AUS API key"] = self.app.config["SAGE_ONE_API_KEY"].encode()
        found["the app's encryption key"] = self.app.config["ENCRYPTION_KEY"].encode()

        db.session.remove()
        for user in db.session.scalars(db.select(User).order_by(User.id)):
            if user.role == Role.CUSTOMER and user.wrapped_private_key:
                key = self._private_key(user, passwords.values())
                for form, value in _key_forms(key).items():
                    found[f"the private key of {user.email}{form}"] = value
            if user.role == Role.SUPPORT and two_factor.is_enrolled(user):
                found[f"{TOTP} of {user.email}"] = two_factor.secret_of(user).encode()
        db.session.remove()
        return found

    @staticmethod
    def _private_key(user, passwords) -> bytes:
        for password in dict.fromkeys(passwords):
            try:
                return keys.unwrap_private_key(user, password)
            except keys.WrongPassword:
                continue
        raise AssertionError(f"no password known to the test opens the private key of {user.email}: "
                             "the scan could not look for it")

    # ------------------------------------------------------------------ haystacks

    def haystacks(self) -> dict[str, bytes]:
        """Every place a secret could have leaked to, named."""
        places: dict[str, bytes] = {}
        places.update(_database_rows())
        places.update(_database_file(self.app))
        places.update(_redis_values())
        if self.worker_log is not None and self.worker_log.exists():
            places["the worker's log"] = self.worker_log.read_bytes()
        places["this process's log (web server, sandbox)"] = "\n".join(self._log.lines).encode()
        redis_log = _redis_log()
        if redis_log is not None:
            places["Redis's own log"] = redis_log
        for where, text in self.responses:
            places[where] = text
        return places

    def _excluded(self, what: str, where: str) -> bool:
        """Pages that must show a secret, and only that secret."""
        with self.app.test_request_context():
            setup = url_for("auth.two_factor_setup")
        # The enrolment page shows the TOTP secret being set up (for an app that can't scan the QR
        # code), on the GET and again on a refused first code; nothing else may show it.
        if what.startswith(TOTP):
            return self._paths.get(where) == setup
        # The sandbox's sign-in page stands in for Sage's own and prints its seeded logins as a hint;
        # it is not the portal's page, and no other secret may be on it.
        if what == SANDBOX_PASSWORD and self.sandbox is not None:
            return self._origins.get(where) == self.sandbox.url and self._paths.get(where) == SANDBOX_SIGN_IN
        return False

    def hits(self) -> list[str]:
        """Where each secret was found ("<secret> in <place>"); empty when nothing leaked."""
        needles = self.needles()
        found = []
        for where, haystack in self.haystacks().items():
            for what, needle in needles.items():
                if needle in haystack and not self._excluded(what, where):
                    found.append(f"{what} in {where}")
        return found

    def assert_no_secrets(self) -> None:
        assert self._log.lines, "the web process's log was not captured"
        found = self.hits()
        assert found == [], "secrets leaked:\n  " + "\n  ".join(found)


def _key_forms(key: bytes) -> dict[str, bytes]:
    urlsafe = base64.urlsafe_b64encode(key)
    return {"": key, " (base64)": base64.b64encode(key), " (base64, unpadded)": base64.b64encode(key).rstrip(b"="),
            " (urlsafe base64)": urlsafe, " (urlsafe base64, unpadded)": urlsafe.rstrip(b"="),
            " (hex)": key.hex().encode(), " (HEX)": key.hex().upper().encode()}


def _as_bytes(value) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "backslashreplace")


def _database_rows() -> dict[str, bytes]:
    places = {}
    db.session.remove()
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            parts = [b"\x00".join(_as_bytes(v) for v in row) for row in conn.execute(table.select())]
            places[f"the database table {table.name}"] = b"\n".join(parts)
    return places


def _database_file(app) -> dict[str, bytes]:
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if not url.drivername.startswith("sqlite") or not url.database:
        return {}
    db.session.remove()
    db.engine.dispose()  # checkpoints the write-ahead log into the file
    files = [Path(url.database), Path(f"{url.database}-wal"), Path(f"{url.database}-journal")]
    places = {f"the SQLite file {f.name}": f.read_bytes() for f in files if f.exists()}
    assert places, "the SQLite database file was not found"
    return places


def _opened(value: bytes) -> bytes:
    """A Redis value with what it holds: RQ compresses job data and tracebacks with zlib, and keeps
    results as base64 (of zlib, for tracebacks)."""
    parts = [value]
    candidates = [value]
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(value, validate=True))
    for candidate in candidates:
        with contextlib.suppress(zlib.error):
            parts.append(zlib.decompress(candidate))
    parts.extend(candidates[1:])
    return b"\n".join(parts)


def _redis_values() -> dict[str, bytes]:
    redis = get_redis()
    places = {}
    for name in sorted(redis.scan_iter(count=1000)):
        kind = redis.type(name)
        items: list[bytes] = [name]
        if kind == b"string":
            items.append(redis.get(name) or b"")
        elif kind == b"hash":
            for k, v in redis.hgetall(name).items():
                items += [k, v]
        elif kind == b"list":
            items += redis.lrange(name, 0, -1)
        elif kind == b"set":
            items += sorted(redis.smembers(name))
        elif kind == b"zset":
            items += [member for member, _ in redis.zrange(name, 0, -1, withscores=True)]
        elif kind == b"stream":
            for entry_id, fields in redis.xrange(name):
                items.append(_as_bytes(entry_id))
                for k, v in fields.items():
                    items += [k, v]
        elif kind != b"none":  # expired between SCAN and TYPE
            raise AssertionError(f"Redis key {name!r} has a type the scan does not read: {kind!r}")
        places[f"Redis key {name.decode('utf-8', 'replace')} ({kind.decode()})"] = b"\n".join(
            _opened(_as_bytes(item)) for item in items)
    return places


def _redis_log() -> bytes | None:
    """The private redis-server's own log file, when Redis says where it is and it is readable."""
    with contextlib.suppress(Exception):
        directory = get_redis().config_get("dir").get("dir")
        logfile = get_redis().config_get("logfile").get("logfile")
        if logfile:
            path = Path(logfile) if Path(logfile).is_absolute() else Path(directory) / logfile
            return path.read_bytes()
    return None
