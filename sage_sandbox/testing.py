"""Run the sandbox on an ephemeral loopback port, and drive its OAuth consent page, for tests and benches."""

import threading
from urllib.parse import parse_qs, urlsplit

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from . import create_app
from .config import DEFAULTS
from .seed import PASSWORD
from .state import SandboxState


class QuietRequestHandler(WSGIRequestHandler):
    """Request handler that does not log every request (the sandbox is hit thousands of times)."""

    def log_request(self, code="-", size="-"):
        pass


class RunningSandbox:
    """A sandbox served in a daemon thread; use `.url`, `.app`, `.state`, and `.stop()` (or `with`)."""

    def __init__(self, config: dict | None = None, host: str = "127.0.0.1", port: int = 0):
        self.app = create_app(config)
        self.state: SandboxState = self.app.extensions["sage_sandbox"]
        self._server = make_server(host, port, self.app, threaded=True, request_handler=QuietRequestHandler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_port}"
        # A short poll interval makes stop() quick, which keeps per-test sandboxes cheap.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="sage-sandbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "RunningSandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_sandbox(config: dict | None = None) -> RunningSandbox:
    """Start a fresh sandbox on 127.0.0.1 with an ephemeral port."""
    return RunningSandbox(config)


def authorize(base_url: str, email: str = "sage@harbour-auto.test", password: str = PASSWORD, *,
              client_id: str = DEFAULTS["SANDBOX_CLIENT_ID"],
              redirect_uri: str = DEFAULTS["SANDBOX_REDIRECT_URIS"][0], state: str = "xyz",
              scope: str = "full_access", session: requests.Session | None = None) -> dict:
    """Sign in and approve on the consent page; return the callback's query parameters (code, country, state)."""
    http = session or requests.Session()
    response = http.post(f"{base_url}/oauth2/auth/central", data={
        "client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": scope,
        "state": state, "email": email, "password": password, "decision": "allow",
    }, allow_redirects=False, timeout=10)
    if response.status_code != 302:
        raise RuntimeError(f"consent page answered {response.status_code}: {response.text[:200]}")
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    return {key: values[0] for key, values in query.items()}


def obtain_tokens(base_url: str, email: str = "sage@harbour-auto.test", password: str = PASSWORD, *,
                  client_id: str = DEFAULTS["SANDBOX_CLIENT_ID"],
                  client_secret: str = DEFAULTS["SANDBOX_CLIENT_SECRET"],
                  redirect_uri: str = DEFAULTS["SANDBOX_REDIRECT_URIS"][0],
                  scope: str = "full_access", session: requests.Session | None = None) -> dict:
    """Run the whole authorization-code dance over HTTP and return the token response."""
    http = session or requests.Session()
    callback = authorize(base_url, email, password, client_id=client_id, redirect_uri=redirect_uri,
                         scope=scope, session=http)
    response = http.post(f"{base_url}/token", data={
        "client_id": client_id, "client_secret": client_secret, "grant_type": "authorization_code",
        "code": callback["code"], "redirect_uri": redirect_uri,
    }, timeout=10)
    response.raise_for_status()
    return response.json()
