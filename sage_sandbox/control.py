"""The JSON control API under /_sandbox: switches for tests, demos and benchmarks."""

from flask import Blueprint, current_app, jsonify, request

from .state import SandboxState

bp = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")


class ControlError(Exception):
    """A bad control request, answered as {"error": ...}."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@bp.errorhandler(ControlError)
def _control_error(error: ControlError):
    response = jsonify({"error": error.message})
    response.status_code = error.status
    return response


def _state() -> SandboxState:
    return current_app.extensions["sage_sandbox"]


def _body() -> dict:
    body = request.get_json(silent=True, force=True)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def _number(body: dict, name: str, required: bool = False):
    value = body.get(name)
    if value is None:
        if required:
            raise ControlError(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(f"{name} must be a number")
    return value


def _ok(**extra):
    return jsonify({"ok": True, **extra})


@bp.get("/state")
def read_state():
    """Return counts per business and company, settings and request counters."""
    return jsonify(_state().snapshot())


@bp.post("/reset")
def reset():
    """Put the whole sandbox back to the seed."""
    _state().reset()
    return _ok()


@bp.post("/redirect-uris")
def add_redirect_uri():
    """Register another exact-match OAuth redirect URI: {"uri": "..."}."""
    uri = _body().get("uri")
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
        raise ControlError("uri must be an absolute http(s) URL")
    state = _state()
    state.add_redirect_uri(uri)
    return _ok(redirect_uris=list(state.redirect_uris))


@bp.post("/clock")
def advance_clock():
    """Move the sandbox clock forward: {"advance_seconds": 61}."""
    seconds = _number(_body(), "advance_seconds", required=True)
    if seconds < 0:
        raise ControlError("advance_seconds cannot be negative")
    _state().advance_clock(seconds)
    return _ok(clock_offset_seconds=_state().clock_offset)


@bp.post("/faults")
def set_faults():
    """Set any of {"latency_ms", "error_rate", "drop_rate", "seed"}; rates are shares between 0 and 1."""
    body = _body()
    state = _state()
    latency = _number(body, "latency_ms")
    try:
        state.set_fault_rates(_number(body, "error_rate"), _number(body, "drop_rate"), body.get("seed"))
    except ValueError as error:
        raise ControlError(str(error)) from None
    if latency is not None:
        state.set_latency(latency)
    return _ok(latency_ms=state.latency_ms, error_rate=state.error_rate, drop_rate=state.drop_rate)


@bp.post("/access-tokens/expire")
def expire_access_tokens():
    """Expire one access token ({"access_token"}) or all of a user's ({"email"})."""
    body = _body()
    state = _state()
    if body.get("access_token"):
        if not state.expire_access_token(body["access_token"]):
            raise ControlError("unknown access token", 404)
        return _ok(expired=1)
    if body.get("email"):
        return _ok(expired=state.expire_access_tokens_for_user(body["email"].strip().lower()))
    raise ControlError("give access_token or email")


@bp.post("/refresh-tokens/revoke")
def revoke_refresh_token():
    """Revoke a refresh token: {"refresh_token": "..."}."""
    token = _body().get("refresh_token")
    if not token:
        raise ControlError("refresh_token is required")
    if not _state().revoke_refresh_token(token):
        raise ControlError("unknown refresh token", 404)
    return _ok()


@bp.post("/tokens")
def issue_tokens():
    """Mint a token pair for a seeded Sage user without the browser: {"email", "scope"?}."""
    body = _body()
    try:
        tokens = _state().issue_tokens(body.get("email") or "", body.get("scope") or "full_access")
    except KeyError as error:
        raise ControlError(str(error), 404) from None
    return jsonify(tokens)


def _sage_one_call(function, *args):
    try:
        function(*args)
    except KeyError as error:
        raise ControlError(str(error.args[0]), 404) from None


@bp.post("/sage-one/users/<username>/lock")
def lock_sage_one_user(username: str):
    """Lock a Sage One username (optionally {"seconds": n}; default the configured lock-out)."""
    _sage_one_call(_state().lock_sage_one_user, username, _number(_body(), "seconds"))
    return _ok()


@bp.post("/sage-one/users/<username>/unlock")
def unlock_sage_one_user(username: str):
    """Lift a Sage One username lock and clear its failed logins."""
    _sage_one_call(_state().unlock_sage_one_user, username)
    return _ok()


@bp.post("/sage-one/users/<username>/password")
def set_sage_one_password(username: str):
    """Change a Sage One user's password: {"password": "..."}."""
    password = _body().get("password")
    if not isinstance(password, str) or not password:
        raise ControlError("password is required")
    _sage_one_call(_state().set_sage_one_password, username, password)
    return _ok()


@bp.post("/rate-limits")
def set_rate_limits():
    """Change limits: {"sage": n|0|null, "sage_daily": n|0|null, "sage_one": n|0|null,
    "sage_one_block_seconds": n}; only keys given."""
    body = _body()
    state = _state()
    for key in ("sage", "sage_daily", "sage_one"):
        if key in body:
            value = body[key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ControlError(f"{key} must be a non-negative integer or null")
    block = _number(body, "sage_one_block_seconds")
    if "sage" in body:
        state.set_sage_rate_limit(body["sage"])
    if "sage_daily" in body:
        state.set_sage_daily_limit(body["sage_daily"])
    if "sage_one" in body or block is not None:
        state.set_sage_one_rate_limit(body.get("sage_one", state.sage_one_rate_limit), block)
    return _ok(sage=state.sage_rate_limit, sage_daily=state.sage_daily_limit, sage_one=state.sage_one_rate_limit,
               sage_one_block_seconds=state.sage_one_block_seconds)
