"""A NUL character in text sent to PostgreSQL is replaced by U+FFFD, as a decoder replaces what it
cannot represent.

PostgreSQL refuses NUL in text ("text fields cannot contain NUL (0x00) bytes"), in a value to
store and in a value to compare alike, so a sign-in, a search or a puppet reason carrying one was a
500 there (SQLite takes it). Replaced, a NUL matches nothing and is stored as a visible mark, and
every page answers as it does on SQLite. Installed once for every PostgreSQL connection (psycopg).
"""
from __future__ import annotations

import sqlalchemy as sa

NUL, REPLACEMENT = "\x00", "\ufffd"
_installed = False
_NUL_SAFE: dict = {}


def _nul_safe(dumper_class):
    class NulSafe(dumper_class):
        def dump(self, obj):
            return super().dump(obj.replace(NUL, REPLACEMENT) if NUL in obj else obj)

    NulSafe.__name__ = f"NulSafe{dumper_class.__name__}"
    return NulSafe


def _on_connect(dbapi_connection, _record) -> None:
    adapters = getattr(dbapi_connection, "adapters", None)
    if adapters is None or not type(dbapi_connection).__module__.startswith("psycopg"):
        return
    from psycopg.types.string import StrBinaryDumper, StrDumperUnknown  # the defaults, in Python

    for dumper in (StrDumperUnknown, StrBinaryDumper):
        adapters.register_dumper(str, _NUL_SAFE.setdefault(dumper, _nul_safe(dumper)))


def install() -> None:
    """Listen for every new database connection (idempotent)."""
    global _installed
    if not _installed:
        sa.event.listen(sa.engine.Engine, "connect", _on_connect)
        _installed = True
