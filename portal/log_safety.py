"""The last line of defence that keeps passwords out of every log line, at every level.

Code that handles a password registers it with `protect()`: the Sage One AUS client its
credentials, and the sign-in, password-change and reset views the portal's own passwords (once they
opened an account or were accepted, so failed guesses can't crowd real secrets out). From
then on every log record made in this process, by any logger (the portal's, requests', urllib3's,
RQ's, Flask's), has the password removed before any handler sees it: in the message, its arguments,
the traceback and the stack. Not only the whole password is removed but every part of it that
could give it away: each run of `PART_LENGTH` characters, each non-ASCII character, and the forms
they take in logs (`\\u5bc6` escapes, UTF-8 bytes, percent-encoding). The code must still never log
a password; this only catches what slips through.

`install()` (called by `create_app`) puts the filter on the root logger and, because a logger's
filters see only records made on that very logger, also into the record factory, which every
logger in the process goes through.
"""
from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
PART_LENGTH = 6  # any run of this many characters of a password is a part of it
MAX_SECRETS = 512  # a long-running worker keeps the most recent ones

_lock = threading.Lock()
_secrets: OrderedDict[tuple[str, bool], None] = OrderedDict()
_pattern: re.Pattern | None = None
_installed = False


def _char_forms(char: str) -> set[str]:
    """How one character shows up in logs: itself, Python escapes, UTF-8 bytes and percent-encoding."""
    encoded = char.encode("utf-8")
    forms = {char, char.encode("unicode_escape").decode("ascii"), ascii(char)[1:-1],
             "".join(f"\\x{b:02x}" for b in encoded), quote(char, safe="")}
    forms.add(quote(char, safe="").lower())
    return {f for f in forms if f}


def _forms(secret: str, parts: bool) -> set[str]:
    forms = {secret, secret.encode("unicode_escape").decode("ascii"), ascii(secret)[1:-1],
             str(secret.encode("utf-8"))[2:-1], quote(secret, safe=""), quote_plus(secret)}
    if parts:
        if len(secret) > PART_LENGTH:
            forms.update(secret[i:i + PART_LENGTH] for i in range(len(secret) - PART_LENGTH + 1))
        for char in set(secret):
            if not char.isascii():
                forms.update(_char_forms(char))
    return {f for f in forms if f}


def _rebuild() -> None:
    global _pattern
    forms: set[str] = set()
    for secret, parts in _secrets:
        forms |= _forms(secret, parts)
    _pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))) if forms else None


def protect(secret: str | bytes | None, *, parts: bool = True) -> None:
    """Keep `secret` (and, with `parts`, every part of it) out of every log line from now on."""
    if isinstance(secret, bytes):
        secret = secret.decode("utf-8", "replace")
    if not secret:
        return
    with _lock:
        key = (secret, parts)
        if key in _secrets:
            _secrets.move_to_end(key)
            return
        _secrets[key] = None
        while len(_secrets) > MAX_SECRETS:
            _secrets.popitem(last=False)
        _rebuild()


def redact(text: str) -> str:
    """`text` with every protected secret (and part of one) replaced by "[redacted]"."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Remove protected secrets from a log record, in place."""
    if _pattern is None:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a malformed call; judge what there is
        message = f"{record.msg} {record.args!r}"
    clean = redact(message)
    if clean != message or redact(repr(record.args)) != repr(record.args):
        record.msg, record.args = clean, None
    if record.exc_info:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            # The raw exception would be formatted again by each handler; keep only the clean text.
            record.exc_info = None
        record.exc_text = clean
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactSecrets(logging.Filter):
    """A logging filter that removes protected secrets and passes every record on."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record)
        return True


def install() -> None:
    """Apply the filter to every log record of the process (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    root = logging.getLogger()
    root.addFilter(RedactSecrets())
    make_record = logging.getLogRecordFactory()

    def safe_record(*args, **kwargs) -> logging.LogRecord:
        return scrub(make_record(*args, **kwargs))

    logging.setLogRecordFactory(safe_record)

