"""The v3.1 OAuth dance over real HTTP: consent page, codes, token grants, rotation and revocation."""

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from sage_sandbox.seed import PASSWORD, user_uuid
from sage_sandbox.testing import authorize

CALLBACK = "http://127.0.0.1:5000/integrations/sage/callback"
AUTHORIZE = {"client_id": "portal-dev-client", "redirect_uri": CALLBACK, "response_type": "code",
             "scope": "full_access", "state": "csrf-123", "filter": "apiv3.1"}


def token_request(http, **fields):
    body = {"client_id": "portal-dev-client", "client_secret": "portal-dev-secret", **fields}
    return http.post("/token", data=body)


def exchange(http, code, redirect_uri=CALLBACK, **extra):
    return token_request(http, grant_type="authorization_code", code=code, redirect_uri=redirect_uri, **extra)


def test_consent_page_shows_sign_in_form_for_registered_client(http):
    response = http.get("/oauth2/auth/central", params=AUTHORIZE)
    assert response.status_code == 200
    assert 'name="password"' in response.text and 'value="allow"' in response.text and 'value="deny"' in response.text


def test_approving_redirects_with_region_prefixed_url_encoded_code_country_and_state(http):
    response = http.post("/oauth2/auth/central", data={**AUTHORIZE, "email": "sage@harbour-auto.test",
                                                       "password": PASSWORD, "decision": "allow"},
                         allow_redirects=False)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    assert "code=GB%2F" in location
    query = parse_qs(urlsplit(location).query)
    assert query["code"][0].startswith("GB/")
    assert query["country"] == ["GB"] and query["state"] == ["csrf-123"]


def test_refusing_consent_redirects_with_access_denied_and_state(http):
    response = http.post("/oauth2/auth/central", data={**AUTHORIZE, "decision": "deny"}, allow_redirects=False)
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query == {"error": ["access_denied"], "state": ["csrf-123"]}


def test_wrong_password_rerenders_consent_page_without_redirecting(http):
    response = http.post("/oauth2/auth/central", data={**AUTHORIZE, "email": "sage@harbour-auto.test",
                                                       "password": "nope", "decision": "allow"},
                         allow_redirects=False)
    assert response.status_code == 401
    assert "Location" not in response.headers
    assert "do not match" in response.text


@pytest.mark.parametrize("redirect_uri", [
    "http://evil.test/callback",
    CALLBACK + "/",
    CALLBACK + "?extra=1",
    "http://127.0.0.1:5000/integrations/sage/CALLBACK",
])
def test_unregistered_redirect_uri_shows_error_page_and_never_redirects(http, redirect_uri):
    for method in ("get", "post"):
        params = {**AUTHORIZE, "redirect_uri": redirect_uri, "decision": "allow",
                  "email": "sage@harbour-auto.test", "password": PASSWORD}
        if method == "get":
            response = http.get("/oauth2/auth/central", params=params, allow_redirects=False)
        else:
            response = http.post("/oauth2/auth/central", data=params, allow_redirects=False)
        assert response.status_code == 400
        assert "Location" not in response.headers
        assert "redirect_uri" in response.text


def test_unknown_client_shows_error_page(http):
    response = http.get("/oauth2/auth/central", params={**AUTHORIZE, "client_id": "someone-else"},
                        allow_redirects=False)
    assert response.status_code == 400 and "Location" not in response.headers


def test_unsupported_response_type_and_scope_are_redirected_as_oauth_errors(http):
    response = http.get("/oauth2/auth/central", params={**AUTHORIZE, "response_type": "token"},
                        allow_redirects=False)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["unsupported_response_type"]
    response = http.get("/oauth2/auth/central", params={**AUTHORIZE, "scope": "everything"}, allow_redirects=False)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_scope"]


def test_redirect_uri_registered_through_control_api_is_accepted(sandbox, http):
    extra = "http://127.0.0.1:8123/integrations/sage/callback"
    assert http.post("/_sandbox/redirect-uris", json={"uri": extra}).status_code == 200
    callback = authorize(sandbox.url, redirect_uri=extra)
    assert callback["code"].startswith("GB/")


def test_code_exchange_returns_exactly_the_seven_documented_fields(sandbox, http):
    response = exchange(http, authorize(sandbox.url)["code"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "scope", "token_type", "expires_in", "refresh_token",
                         "refresh_token_expires_in", "requested_by_id"}
    assert body["token_type"] == "bearer" and body["scope"] == "full_access"
    assert body["expires_in"] == 300 and body["refresh_token_expires_in"] == 2678400
    assert body["requested_by_id"] == user_uuid("sage@harbour-auto.test")
    assert body["access_token"].count(".") == 2 and len(body["access_token"]) <= 2048
    assert response.headers["Cache-Control"] == "no-store"


def test_code_is_single_use(sandbox, http):
    code = authorize(sandbox.url)["code"]
    assert exchange(http, code).status_code == 200
    again = exchange(http, code)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_code_expires_after_sixty_seconds(sandbox, http):
    code = authorize(sandbox.url)["code"]
    sandbox.state.advance_clock(61)
    response = exchange(http, code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_CODE_SECONDS": 0}])
def test_code_lifetime_is_configurable(sandbox, http):
    response = exchange(http, authorize(sandbox.url)["code"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_code_is_still_valid_just_before_sixty_seconds(sandbox, http):
    code = authorize(sandbox.url)["code"]
    sandbox.state.advance_clock(58)
    assert exchange(http, code).status_code == 200


def test_token_exchange_requires_the_redirect_uri_used_to_authorize(sandbox, http):
    code = authorize(sandbox.url)["code"]
    response = exchange(http, code, redirect_uri="http://localhost:5000/integrations/sage/callback")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_unknown_code_is_invalid_grant(http):
    response = exchange(http, "GB/not-a-code")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_invalid_client_with_400(sandbox, http):
    code = authorize(sandbox.url)["code"]
    response = http.post("/token", data={"client_id": "portal-dev-client", "client_secret": "wrong",
                                         "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK})
    assert response.status_code == 400 and response.json()["error"] == "invalid_client"


def test_client_credentials_may_also_come_as_http_basic(sandbox, http):
    code = authorize(sandbox.url)["code"]
    response = http.post("/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
                         auth=("portal-dev-client", "portal-dev-secret"))
    assert response.status_code == 200


def test_json_token_request_is_invalid_request(sandbox, http):
    code = authorize(sandbox.url)["code"]
    response = http.post("/token", json={"client_id": "portal-dev-client", "client_secret": "portal-dev-secret",
                                         "grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_unknown_grant_type_is_unsupported_grant_type(http):
    response = token_request(http, grant_type="password")
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_refresh_rotates_both_tokens_and_the_old_refresh_token_dies(http, tokens):
    refreshed = token_request(http, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200
    body = refreshed.json()
    assert len(body) == 7
    assert body["refresh_token"] != tokens["refresh_token"] and body["access_token"] != tokens["access_token"]
    reused = token_request(http, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    again = token_request(http, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert again.status_code == 200


def test_refresh_token_expires_after_thirty_one_days_and_each_rotation_restarts_the_clock(sandbox, http, tokens):
    sandbox.state.advance_clock(2678400 - 10)
    rotated = token_request(http, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    sandbox.state.advance_clock(2678400 - 10)
    assert token_request(http, grant_type="refresh_token", refresh_token=rotated["refresh_token"]).status_code == 200
    sandbox.state.advance_clock(2678400 + 1)
    stale = token_request(http, grant_type="refresh_token", refresh_token=rotated["refresh_token"])
    assert stale.status_code == 400


def test_revoke_answers_success_ok_and_kills_the_refresh_token(http, tokens):
    response = http.post("/revoke", data={"client_id": "portal-dev-client", "client_secret": "portal-dev-secret",
                                          "token": tokens["refresh_token"]})
    assert response.status_code == 200 and response.json() == {"success": "ok"}
    refresh = token_request(http, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_revoke_leaves_the_access_token_to_live_out_its_five_minutes(sandbox, http, tokens):
    http.post("/revoke", data={"client_id": "portal-dev-client", "client_secret": "portal-dev-secret",
                               "token": tokens["refresh_token"]})
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert http.get("/v3.1/user", headers=headers).status_code == 200


def test_revoke_checks_the_client(http, tokens):
    response = http.post("/revoke", data={"client_id": "portal-dev-client", "client_secret": "bad",
                                          "token": tokens["refresh_token"]})
    assert response.status_code == 400 and response.json()["error"] == "invalid_client"


def test_control_api_revokes_a_refresh_token(http, tokens):
    assert http.post("/_sandbox/refresh-tokens/revoke", json={"refresh_token": tokens["refresh_token"]}).ok
    refresh = token_request(http, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refresh.json() == {"error": "invalid_grant", "error_description": refresh.json()["error_description"]}


def test_pkce_s256_code_requires_the_matching_verifier(sandbox, http):
    verifier = "a-sufficiently-long-code-verifier-for-the-sandbox-0123456789"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    data = {**AUTHORIZE, "code_challenge": challenge, "code_challenge_method": "S256",
            "email": "sage@harbour-auto.test", "password": PASSWORD, "decision": "allow"}

    def code():
        location = http.post("/oauth2/auth/central", data=data, allow_redirects=False).headers["Location"]
        return parse_qs(urlsplit(location).query)["code"][0]

    assert exchange(http, code()).json()["error"] == "invalid_grant"
    assert exchange(http, code(), code_verifier="wrong").json()["error"] == "invalid_grant"
    assert exchange(http, code(), code_verifier=verifier).status_code == 200


def test_a_non_ascii_password_on_the_consent_page_is_refused_not_a_500(sandbox):
    with pytest.raises(RuntimeError, match="401"):
        authorize(sandbox.url, password="pässwörd")
