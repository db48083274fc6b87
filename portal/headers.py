"""Security headers on every response, set by Flask-Talisman, and no caching of dynamic pages.

The Content-Security-Policy allows no inline script or style at all: templates load their
JavaScript and CSS from static/ only, and htmx is told (the htmx-config meta tag in base.html)
not to inject its indicator styles, which live in static/portal.css instead.
"""
from __future__ import annotations

from flask import Flask, request
from flask_talisman import Talisman

CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
}

talisman = Talisman()


def init_app(app: Flask) -> None:
    """Install the headers; HSTS only in production (sent on HTTPS requests)."""
    production = app.config.get("ENV_NAME") == "production"
    talisman.init_app(
        app,
        # TLS ends at the proxy in front of gunicorn; redirecting here would also break plain-HTTP
        # health checks. Browsers are kept on HTTPS by HSTS.
        force_https=False,
        strict_transport_security=production,
        strict_transport_security_max_age=app.config["HSTS_SECONDS"],
        strict_transport_security_include_subdomains=True,
        session_cookie_secure=app.config["SESSION_COOKIE_SECURE"],
        session_cookie_http_only=True,
        frame_options="DENY",
        referrer_policy="same-origin",
        content_security_policy=CONTENT_SECURITY_POLICY,
        content_security_policy_nonce_in=[],
    )

    @app.after_request
    def _no_store(response):
        # Every page and fragment but static files may carry a person's data or a form token:
        # nothing in between (or the browser's back button) may keep it.
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
            # Any page may answer an htmx request differently (a fragment, an error fragment, an
            # HX-Redirect), so every one says so, whichever kind of request it answered.
            response.vary.add("HX-Request")
        return response
