#!/usr/bin/env bash
# The Debian packages `make test` needs that this machine lacks: installed when run as root with
# apt-get, else named, and the run stops before any test starts.
#
#   chromium      browser tests (Playwright drives /usr/bin/chromium; never a downloaded browser)
#   redis-server  the private Redis of each run (unless PORTAL_TEST_REDIS_URL is set)
#   postgresql    the private PostgreSQL cluster, when no PostgreSQL answers (devtools/postgres.py)
#   npm           htmx, copied to static/vendor at set-up
#   python3-venv  the virtual environment, when .venv is not there yet
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

need=()
chromium="${PORTAL_CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] || have "$chromium" || need+=(chromium)
[ -n "${PORTAL_TEST_REDIS_URL:-}" ] || have redis-server || need+=(redis-server)
have npm || need+=(npm)
if [ -z "${PORTAL_TEST_DATABASE_URL:-}" ] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
    && ! { have initdb && have postgres; }; then
  # No server binaries: a PostgreSQL already listening on the default port will do.
  (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null || need+=(postgresql)
fi
if [ ! -x .venv/bin/python ] && ! "${PYTHON:-python3}" -c "import ensurepip, venv" 2>/dev/null; then
  need+=(python3-venv)
fi

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && have apt-get; then
  echo "Installing what the tests need: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  exit 0
fi

echo "make test needs these Debian packages, which this machine lacks: ${need[*]}" >&2
echo "Install them (sudo apt-get install --no-install-recommends ${need[*]}) and run it again." >&2
exit 1
