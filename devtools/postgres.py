"""A PostgreSQL for the tests: the one that answers, else a private, throw-away cluster.

`python -m devtools.postgres` prints the URL of a PostgreSQL that answers (PORTAL_TEST_DATABASE_URL
if set, else the first of PORTAL_TEST_POSTGRES_CANDIDATES, default 127.0.0.1:5432), or nothing.

`python -m devtools.postgres run -- COMMAND…` runs COMMAND with PORTAL_TEST_DATABASE_URL set: to
PORTAL_TEST_DATABASE_URL itself when set (it must answer), else to a candidate that answers, else
to a private cluster started for the run (Debian's `postgresql` package: `initdb` in a scratch
folder, loopback only, nothing kept) and removed afterwards, like the private Redis of
`devtools/redis_server.py`. initdb refuses to run as root, so as root the cluster belongs to the
`postgres` user (or `nobody`).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from devtools.redis_server import free_port

DEFAULT_CANDIDATES = ("postgresql+psycopg://postgres@127.0.0.1:5432/postgres",)


def candidates() -> tuple[str, ...]:
    """The servers to probe when PORTAL_TEST_DATABASE_URL is not set."""
    configured = os.environ.get("PORTAL_TEST_POSTGRES_CANDIDATES", "").split()
    return tuple(configured) or DEFAULT_CANDIDATES


def answers(url: str, timeout: int = 2) -> bool:
    """True when a PostgreSQL server accepts a connection and a query at `url`."""
    engine = sa.create_engine(url, connect_args={"connect_timeout": timeout}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means "no usable PostgreSQL here"
        return False
    finally:
        engine.dispose()


def find() -> str | None:
    """PORTAL_TEST_DATABASE_URL if set and answering, else the first candidate that answers."""
    configured = os.environ.get("PORTAL_TEST_DATABASE_URL")
    for url in ([configured] if configured else candidates()):
        if answers(url):
            return url
    return None


def server_binaries() -> Path | None:
    """The folder holding `initdb` and `postgres`: Debian's newest /usr/lib/postgresql/N/bin, else PATH."""
    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if debian:
        return Path(debian[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).resolve().parent
    return None


def _owner() -> pwd.struct_passwd | None:
    """Who runs the private cluster: None for the current user, unless that is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("initdb refuses to run as root, and there is no postgres or nobody user to run it as")


@dataclass
class PrivatePostgres:
    url: str
    process: subprocess.Popen
    directory: str

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_private_postgres(port: int | None = None) -> PrivatePostgres:
    """initdb a cluster in a scratch folder and start it on 127.0.0.1; raises RuntimeError if it can't.

    Durability is off (fsync, synchronous_commit, full_page_writes): the cluster is thrown away.
    """
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    owner = _owner()
    as_owner = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner else {}
    directory = tempfile.mkdtemp(prefix="portal-postgres-")
    data = Path(directory, "data")
    if owner:
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    env = dict(os.environ, LC_ALL="C", LANG="C")
    if owner:
        env["HOME"] = directory
    log_path = Path(directory, "postgres.log")
    port = port or free_port()
    process = None
    try:
        with open(log_path, "ab") as log:
            if owner:
                os.chown(log_path, owner.pw_uid, owner.pw_gid)
            initdb = subprocess.run(
                [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                 "--locale=C", "--no-sync", "--no-instructions"],
                cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, check=False, **as_owner)
            if initdb.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{log_path.read_text(errors='replace')[-2000:]}")
            process = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", directory,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT, **as_owner)
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if answers(url, timeout=1):
                return PrivatePostgres(url, process, directory)
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start on port {port}:\n{log_path.read_text(errors='replace')[-2000:]}")
    except BaseException:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(directory, ignore_errors=True)
        raise


def run(command: list[str]) -> int:
    """Run `command` with PORTAL_TEST_DATABASE_URL pointing at a PostgreSQL; its exit code."""
    configured = os.environ.get("PORTAL_TEST_DATABASE_URL")
    private = None
    if configured:
        if not answers(configured):
            print(f"PORTAL_TEST_DATABASE_URL does not answer: {configured}", file=sys.stderr)
            return 2
        url = configured
        print("PostgreSQL: PORTAL_TEST_DATABASE_URL", flush=True)
    else:
        url = find()
        if url:
            print(f"PostgreSQL answers at {sa.engine.make_url(url).render_as_string()}", flush=True)
        else:
            private = start_private_postgres()
            url = private.url
            print(f"No PostgreSQL answered ({', '.join(candidates())}); started a private one at {url}", flush=True)
    try:
        return subprocess.run(command, env=dict(os.environ, PORTAL_TEST_DATABASE_URL=url), check=False).returncode
    except KeyboardInterrupt:
        return 130
    finally:
        if private is not None:
            private.stop()


def main(argv: list[str]) -> int:
    if not argv:
        print(find() or "")
        return 0
    if argv[0] == "run":
        command = argv[1:]
        if command[:1] == ["--"]:
            command = command[1:]
        if command:
            return run(command)
    print("usage: python -m devtools.postgres [run -- COMMAND…]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
