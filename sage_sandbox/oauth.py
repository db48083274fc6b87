"""Sage v3.1 OAuth 2.0: the consent page, the token endpoint and revocation."""

import base64
import hashlib
import hmac
import json
import secrets
from urllib.parse import urlencode

from flask import Blueprint, current_app, jsonify, redirect, render_template, request

from .state import AccessToken, AuthorizationCode, RefreshToken, SandboxState

bp = Blueprint("sandbox_oauth", __name__)

SCOPES = ("full_access", "readonly")


class OAuthError(Exception):
    """A token-endpoint failure, answered as {"error": ...} with HTTP 400."""

    def __init__(self, error: str, description: str = ""):
        super().__init__(description or error)
        self.error = error
        self.description = description


def _state() -> SandboxState:
    return current_app.extensions["sage_sandbox"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_like(claims: dict) -> str:
    # Sage's tokens are RS512 JWTs; clients only store them, so a JWT-shaped opaque value is faithful enough.
    header = _b64(json.dumps({"alg": "RS512", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}.{_b64(secrets.token_bytes(64))}"


def issue_token_pair(state: SandboxState, user_email: str, client_id: str, scope: str) -> dict:
    """Mint an access and a refresh token for a user and return the seven-field token response."""
    with state.lock:
        user = state.sage_user(user_email)
        if user is None:
            raise KeyError(f"no Sage user {user_email!r}")
        now = state.now()
        access_seconds = int(state.config["SANDBOX_ACCESS_TOKEN_SECONDS"])
        refresh_seconds = int(state.config["SANDBOX_REFRESH_TOKEN_SECONDS"])
        claims = {"sub": user.id, "iat": int(now), "jti": secrets.token_hex(8)}
        access = _jwt_like({**claims, "exp": int(now) + access_seconds, "scope": scope})
        refresh = _jwt_like({**claims, "exp": int(now) + refresh_seconds, "typ": "refresh"})
        state.access_tokens[access] = AccessToken(access, user.email, client_id, scope, now + access_seconds)
        state.refresh_tokens[refresh] = RefreshToken(refresh, user.email, client_id, scope, now + refresh_seconds)
        return {
            "access_token": access,
            "scope": scope,
            "token_type": "bearer",
            "expires_in": access_seconds,
            "refresh_token": refresh,
            "refresh_token_expires_in": refresh_seconds,
            "requested_by_id": user.id,
        }


def _with_query(uri: str, params: dict) -> str:
    params = {k: v for k, v in params.items() if v is not None}
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"


def _authorize_params(source) -> dict:
    return {name: source.get(name) for name in (
        "client_id", "redirect_uri", "response_type", "scope", "state", "country", "locale", "filter",
        "code_challenge", "code_challenge_method")}


def _refuse_page(message: str):
    return render_template("sandbox/oauth_error.html", message=message), 400


@bp.route("/oauth2/auth/central", methods=["GET", "POST"])
def authorize():
    """Show the consent page, or handle its sign-in and approve/deny answer by redirecting back."""
    state = _state()
    source = request.form if request.method == "POST" else request.args
    params = _authorize_params(source)
    with state.lock:
        state.counters["oauth"] += 1
        # Never redirect to an unverified URI: that would make the sandbox an open redirector.
        if params["client_id"] != state.client_id:
            return _refuse_page("Unknown client_id. The application is not registered with this sandbox.")
        if not params["redirect_uri"] or params["redirect_uri"] not in state.redirect_uris:
            return _refuse_page("The redirect_uri does not match any callback URL registered for this application.")
    back = params["redirect_uri"]
    if params["response_type"] != "code":
        return redirect(_with_query(back, {"error": "unsupported_response_type", "state": params["state"]}))
    scope = params["scope"] or "full_access"
    if scope not in SCOPES:
        return redirect(_with_query(back, {"error": "invalid_scope", "state": params["state"]}))
    if params["code_challenge"] and (params["code_challenge_method"] or "plain") not in ("S256", "plain"):
        return redirect(_with_query(back, {"error": "invalid_request", "state": params["state"]}))

    if request.method == "GET":
        return render_template("sandbox/consent.html", params=params, scope=scope, error=None, email="")

    if request.form.get("decision") != "allow":
        return redirect(_with_query(back, {"error": "access_denied", "state": params["state"]}))
    email = (request.form.get("email") or "").strip().lower()
    with state.lock:
        user = state.sage_user(email)
        password = (request.form.get("password") or "").encode()  # bytes: compare_digest refuses non-ASCII text
        if user is None or not hmac.compare_digest(user.password.encode(), password):
            page = render_template("sandbox/consent.html", params=params, scope=scope, email=email,
                                   error="That email and password do not match a Sage account.")
            return page, 401
        country = state.businesses[user.business_ids[0]].country
        code = f"{country}/{secrets.token_hex(24)}"
        state.codes[code] = AuthorizationCode(
            code, state.client_id, user.email, back, scope,
            state.now() + float(state.config["SANDBOX_CODE_SECONDS"]),
            params["code_challenge"],
            params["code_challenge_method"] or ("plain" if params["code_challenge"] else None))
    return redirect(_with_query(back, {"code": code, "country": country, "state": params["state"]}))


def _client_credentials() -> tuple[str | None, str | None]:
    if request.authorization and request.authorization.type == "basic":
        return request.authorization.username, request.authorization.password
    return request.form.get("client_id"), request.form.get("client_secret")


def _check_client(state: SandboxState) -> str:
    client_id, secret = _client_credentials()
    if not client_id or not secret:
        raise OAuthError("invalid_client", "client_id and client_secret are required")
    if client_id != state.client_id or not hmac.compare_digest(secret.encode(), state.client_secret.encode()):
        raise OAuthError("invalid_client", "Client authentication failed")
    return client_id


def _require_form():
    if request.mimetype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "The request body must be application/x-www-form-urlencoded")


def _form_client(state: SandboxState) -> str:
    """Count a call to the token or revoke endpoint, then check its form body and client; the
    client id, or OAuthError."""
    with state.lock:
        state.counters["oauth"] += 1
    _require_form()
    return _check_client(state)


def _verify_pkce(grant: AuthorizationCode, verifier: str | None) -> bool:
    if not grant.code_challenge:
        return True
    if not verifier:
        return False
    if grant.code_challenge_method == "S256":
        return hmac.compare_digest(_b64(hashlib.sha256(verifier.encode()).digest()), grant.code_challenge)
    return hmac.compare_digest(verifier, grant.code_challenge)


def exchange_code(state: SandboxState, client_id: str, form) -> dict:
    """Trade a single-use authorization code for tokens; raises OAuthError."""
    code = form.get("code")
    if not code:
        raise OAuthError("invalid_request", "code is required")
    with state.lock:
        grant = state.codes.get(code)
        if grant is None or grant.used:
            raise OAuthError("invalid_grant", "The authorization code is unknown or has already been used")
        grant.used = True  # burnt even if the rest of the exchange fails, as a real server does
        if grant.expires_at <= state.now():
            raise OAuthError("invalid_grant", "The authorization code has expired")
        if grant.client_id != client_id:
            raise OAuthError("invalid_grant", "The authorization code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the one used to authorize")
        if not _verify_pkce(grant, form.get("code_verifier")):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        return issue_token_pair(state, grant.user_email, client_id, grant.scope)


def rotate_refresh_token(state: SandboxState, client_id: str, form) -> dict:
    """Trade a refresh token for a new pair; the old refresh token stops working. Raises OAuthError."""
    token = form.get("refresh_token")
    if not token:
        raise OAuthError("invalid_request", "refresh_token is required")
    with state.lock:
        record = state.refresh_tokens.get(token)
        if record is None or record.revoked:
            raise OAuthError("invalid_grant", "The refresh token is unknown, already used or revoked")
        if record.expires_at <= state.now():
            raise OAuthError("invalid_grant", "The refresh token has expired")
        if record.client_id != client_id:
            raise OAuthError("invalid_grant", "The refresh token was issued to another client")
        record.revoked = True
        return issue_token_pair(state, record.user_email, client_id, record.scope)


def _oauth_error_response(error: OAuthError):
    body = {"error": error.error}
    if error.description:
        body["error_description"] = error.description
    response = jsonify(body)
    response.status_code = 400
    return response


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


@bp.post("/token")
def token():
    """Exchange an authorization code or a refresh token for a new token pair."""
    state = _state()
    try:
        client_id = _form_client(state)
        grant_type = request.form.get("grant_type")
        if grant_type == "authorization_code":
            body = exchange_code(state, client_id, request.form)
        elif grant_type == "refresh_token":
            body = rotate_refresh_token(state, client_id, request.form)
        elif not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        else:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    except OAuthError as error:
        return _no_store(_oauth_error_response(error))
    return _no_store(jsonify(body))


@bp.post("/revoke")
def revoke():
    """Revoke a refresh token; unknown tokens are accepted silently (RFC 7009)."""
    state = _state()
    try:
        client_id = _form_client(state)
        token_value = request.form.get("token")
        if not token_value:
            raise OAuthError("invalid_request", "token is required")
        with state.lock:
            record = state.refresh_tokens.get(token_value)
            if record is not None and record.client_id == client_id:
                record.revoked = True
    except OAuthError as error:
        return _oauth_error_response(error)
    return jsonify({"success": "ok"})
