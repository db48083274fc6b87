"""The Sage sandbox: a local fake of Sage Accounting v3.1 (with OAuth) and Sage One AUS API 2.0.0."""

from pathlib import Path

from flask import Flask
from werkzeug.exceptions import HTTPException

from . import accounting_v31, control, oauth, pages, sage_one
from .config import DEFAULTS
from .errors import handle_http_error
from .faults import inject_faults
from .state import SandboxState

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

__all__ = ["create_app", "SandboxState", "DEFAULTS"]


def create_app(config: dict | None = None) -> Flask:
    """Build the sandbox app; `config` overrides the SANDBOX_* defaults."""
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=None)
    app.config.from_mapping(DEFAULTS)
    app.config.update(config or {})
    app.json.sort_keys = False
    app.json.compact = True

    app.extensions["sage_sandbox"] = SandboxState({k: app.config[k] for k in DEFAULTS})
    app.wsgi_app = sage_one.CaseInsensitiveApiPrefix(app.wsgi_app)
    app.before_request(inject_faults)
    app.register_error_handler(HTTPException, handle_http_error)
    for blueprint in (oauth.bp, accounting_v31.bp, sage_one.bp, control.bp, pages.bp):
        app.register_blueprint(blueprint)
    return app
