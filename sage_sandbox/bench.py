"""`python -m sage_sandbox.bench [-n 1000] [--concurrency 4] [--url URL]`: contact POSTs per second."""

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from .testing import obtain_tokens, start_sandbox


def post_contacts(base_url: str, access_token: str, count: int, concurrency: int) -> float:
    """POST `count` contacts over keep-alive sessions and return the requests per second achieved."""
    local = threading.local()
    headers = {"Authorization": f"Bearer {access_token}"}

    def post(number: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        response = local.session.post(f"{base_url}/v3.1/contacts", headers=headers, timeout=10, json={
            "contact": {"name": f"Bench Customer {number}", "contact_type_ids": ["CUSTOMER"]}})
        if response.status_code != 201:
            raise RuntimeError(f"contact POST answered {response.status_code}: {response.text[:200]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(post, range(count)))
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark against an in-process sandbox (or --url) and print requests/second."""
    parser = argparse.ArgumentParser(prog="python -m sage_sandbox.bench")
    parser.add_argument("-n", "--requests", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=4)
    parser.add_argument("--url", help="a running sandbox; its v3.1 rate limit is lifted for the run and restored")
    args = parser.parse_args(argv)

    sandbox = None
    if args.url:
        base_url = args.url.rstrip("/")
        previous = requests.get(f"{base_url}/_sandbox/state", timeout=10).json()["settings"]["sage_rate_limit"]
        requests.post(f"{base_url}/_sandbox/rate-limits", json={"sage": None}, timeout=10).raise_for_status()
    else:
        sandbox = start_sandbox({"SANDBOX_SAGE_RATE_LIMIT": 0})
        base_url = sandbox.url
    try:
        tokens = obtain_tokens(base_url)
        rate = post_contacts(base_url, tokens["access_token"], args.requests, args.concurrency)
    finally:
        if sandbox:
            sandbox.stop()
        else:
            requests.post(f"{base_url}/_sandbox/rate-limits", json={"sage": previous}, timeout=10)
    print(f"{args.requests} contact POSTs, concurrency {args.concurrency}: {rate:.0f} requests/second")


if __name__ == "__main__":
    main()
