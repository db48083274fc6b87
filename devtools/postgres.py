"""Print a PostgreSQL URL for the database tests when one answers, else nothing."""
from __future__ import annotations

import os

import sqlalchemy as sa

CANDIDATES = ("postgresql+psycopg://postgres@127.0.0.1:5432/postgres",)


def find() -> str | None:
    """PORTAL_TEST_DATABASE_URL if set, else the first local server that answers."""
    configured = os.environ.get("PORTAL_TEST_DATABASE_URL")
    for url in ([configured] if configured else CANDIDATES):
        try:
            engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            return url
        except Exception:  # noqa: BLE001 - any failure means "no usable PostgreSQL here"
            continue
    return None


if __name__ == "__main__":
    print(find() or "")
