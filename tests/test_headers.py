"""Security headers: a Content-Security-Policy with no inline script or style, no caching of any
page or fragment, HSTS in production; and no template that would need an inline exception."""
import base64
import json
import re
from pathlib import Path

from portal import create_app
from tests import factories

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
INLINE = re.compile(r"<script(?![^>]*\bsrc=)|<style\b|\sstyle=|\son[a-z]+=|hx-on", re.I)


def _csp(response) -> dict:
    policy = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def test_every_page_has_a_policy_that_allows_no_inline_script_or_style(client, auth):
    user = factories.customer(factories.business())
    for response in (client.get("/login"), auth.login(user), client.get("/"),
                     client.get("/", headers={"HX-Request": "true"}), client.get("/nowhere")):
        csp = _csp(response)
        assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
        assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
        assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_no_template_has_inline_script_style_or_event_handlers():
    offenders = [
        f"{path.relative_to(TEMPLATES)}:{n}: {line.strip()}"
        for path in TEMPLATES.rglob("*.html")
        if path.parent.name != "sandbox"  # the Sage sandbox is its own app, not served by the portal
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if INLINE.search(line)
    ]
    assert offenders == []


def test_htmx_injects_no_indicator_styles_and_the_stylesheet_has_them(client):
    page = client.get("/login").get_data(as_text=True)
    config = json.loads(re.search(r'<meta name="htmx-config" content=\'([^\']+)\'>', page).group(1))
    assert config["includeIndicatorStyles"] is False
    css = (TEMPLATES.parent / "static" / "portal.css").read_text()
    assert ".htmx-indicator" in css and ".htmx-request .htmx-indicator" in css


def test_signed_in_pages_and_fragments_are_never_stored(client, auth):
    business = factories.business(branches=("Sydney",))
    auth.login(factories.customer(business))
    for response in (client.get("/"), client.get("/", headers={"HX-Request": "true"}),
                     client.get(f"/integrations/sage/branches/{business.branches[0].id}")):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
    support_client = client.application.test_client()
    assert support_client.get("/static/portal.css").headers.get("Cache-Control") != "no-store"


def test_hsts_is_sent_in_production_only(app_settings, client, monkeypatch):
    assert "Strict-Transport-Security" not in client.get("/login", base_url="https://localhost").headers
    monkeypatch.setenv("PORTAL_SECRET_KEY", "p" * 40)
    monkeypatch.setenv("PORTAL_ENCRYPTION_KEY", base64.urlsafe_b64encode(b"e" * 32).decode())
    production = create_app(dict(app_settings, ENV_NAME="production"))
    response = production.test_client().get("/healthz", base_url="https://portal.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
