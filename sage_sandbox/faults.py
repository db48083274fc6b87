"""Fault injection for API requests: added latency, a share of 500s and a share of dropped connections."""

import socket
import time

from flask import current_app, jsonify, request

from .state import SandboxState

API_BLUEPRINTS = ("sandbox_oauth", "sandbox_v31", "sandbox_sage_one")


class DroppedConnection(Exception):
    """Raised when no server socket is available to drop; the server then aborts the response."""


def _state() -> SandboxState:
    return current_app.extensions["sage_sandbox"]


def inject_faults():
    """Before an API request: sleep if latency is on, then maybe drop the connection or answer 500."""
    if request.blueprint not in API_BLUEPRINTS:
        return None  # the control API and pages must stay reachable to turn faults off
    state = _state()
    with state.lock:
        latency = state.latency_ms
        drop = state.drop_rate and state.random.random() < state.drop_rate
        fail = not drop and state.error_rate and state.random.random() < state.error_rate
        if drop:
            state.counters["faults_dropped"] += 1
        if fail:
            state.counters["faults_5xx"] += 1
    if latency:
        time.sleep(latency / 1000)  # outside the lock so slow answers do not serialise the server
    if drop:
        return drop_connection()
    if fail:
        return server_error()
    return None


def drop_connection():
    """Shut the client's socket so it sees the connection closed with no response at all."""
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        raise DroppedConnection("connection dropped by the sandbox")
    try:
        # shutdown rather than close: werkzeug's next write then fails with a BrokenPipe it handles quietly.
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    response = current_app.response_class(b"", status=200)
    response.headers["Connection"] = "close"
    return response


def server_error():
    """Answer with the 500 shape of whichever API was called."""
    if request.blueprint == "sandbox_v31":
        body, status = [{"$severity": "error", "$dataCode": "UnexpectedError",
                         "$message": "An unexpected error occurred.", "$source": ""}], 500
    elif request.blueprint == "sandbox_oauth":
        body, status = {"error": "server_error"}, 500
    else:
        body, status = {"Message": "An error has occurred."}, 500
    response = jsonify(body)
    response.status_code = status
    return response
