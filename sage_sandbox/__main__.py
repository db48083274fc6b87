"""`python -m sage_sandbox [--host 127.0.0.1] [--port 5001]`: serve the sandbox."""

import argparse
import os

from werkzeug.serving import run_simple

from . import create_app
from .testing import QuietRequestHandler


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve the sandbox with a threaded server until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m sage_sandbox", description="Serve the local Sage sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "5001")))
    args = parser.parse_args(argv)
    app = create_app()
    print(f"Sage sandbox on http://{args.host}:{args.port}/_sandbox/  (v3.1, OAuth, Sage One AUS 2.0.0)", flush=True)
    run_simple(args.host, args.port, app, threaded=True, request_handler=QuietRequestHandler,
               use_reloader=False, use_debugger=False)


if __name__ == "__main__":
    main()
