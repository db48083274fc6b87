"""Blueprints, error pages and what every template can see."""
from __future__ import annotations

import logging

from flask import Flask, g, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import Forbidden, HTTPException

from portal import access_log, dev_mail, headers, ids, puppet, timefmt

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    """Register every blueprint and the error handlers."""
    ids.init_app(app)  # before the routes are added: their <int:…> converters are made then
    access_log.install()
    from portal.checklists.views import bp as checklists_bp
    from portal.customer.views import bp as customer_bp
    from portal.health import bp as health_bp
    from portal.integrations.sage.views import bp as sage_bp
    from portal.integrations.sage_one_aus.views import bp as sage_one_aus_bp
    from portal.job_views import bp as jobs_bp
    from portal.operations.views import bp as operations_bp
    from portal.status import bp as status_bp
    from portal.support.views import bp as support_bp

    for blueprint in (customer_bp, support_bp, jobs_bp, health_bp, status_bp, sage_one_aus_bp, sage_bp,
                      checklists_bp, operations_bp):
        app.register_blueprint(blueprint)

    puppet.init_app(app)
    dev_mail.init_app(app)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)

    app.add_template_filter(_money, "money")
    timefmt.init_app(app)
    app.before_request(_times_in_the_business_zone)

    @app.context_processor
    def _layout_context():
        return {
            "puppet_session": puppet.current_session(),
            "real_user": puppet.real_user(),
            "puppet_just_ended": g.get("puppet_session_just_ended"),
        }

    app.after_request(_htmx_error_without_target)
    headers.init_app(app)


def _times_in_the_business_zone() -> None:
    # A customer (or a puppet session, which is the customer) reads times in their business's zone;
    # support pages about one customer switch to that customer's zone themselves.
    from flask_login import current_user

    business = getattr(current_user, "business", None) if current_user.is_authenticated else None
    if business is not None:
        timefmt.use_zone(business.time_zone)


def _money(amount) -> str:
    """An invoice total as the workshop's books hold it: AUD 1,234.50."""
    return f"AUD {amount:,.2f}" if amount is not None else "—"


def wants_fragment() -> bool:
    """An htmx request that swaps part of a page (a history restore needs the whole page)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


PAGE_ALERTS = "#page-alerts"


def _htmx_error_without_target(response):
    # htmx swaps 4xx/5xx answers (the htmx-config meta tag in base.html). A request whose element has
    # no target of its own (no HX-Target: a crafted htmx.ajax, a button with no id) would swap the
    # refusal over the body; the page's alert region shows it instead.
    if (request.htmx and response.status_code >= 400 and not request.htmx.target
            and "HX-Redirect" not in response.headers and "HX-Retarget" not in response.headers):
        response.headers["HX-Retarget"] = PAGE_ALERTS
        response.headers["HX-Reswap"] = "innerHTML"
    return response


FORBIDDEN_MESSAGE = ("This page isn't open to your sign-in: it belongs to another account or to another role. "
                     "Go to your start page; if you need it, ask your workshop's owner or a support lead.")

_TITLES = {
    400: "That request didn't make sense",
    403: "You can't do that here",
    404: "We couldn't find that page",
    405: "That isn't allowed here",
    429: "Slow down a moment",
}


def _render_error(status: int, title: str, message: str):
    template = "_error_fragment.html" if wants_fragment() else "error.html"
    return render_template(template, status=status, title=title, message=message), status


def _csrf_error(error: CSRFError):
    return _render_error(
        400,
        "This form has expired",
        "The page was open too long or came from somewhere else. Reload it and try again.",
    )


def _http_error(error: HTTPException):
    if error.code is None or error.code < 400:
        return error
    title = _TITLES.get(error.code, error.name)
    if error.code == 403 and error.description == Forbidden.description:  # werkzeug's words, not ours
        return _render_error(403, title, FORBIDDEN_MESSAGE)
    message = error.description if error.code in (403, 429) or getattr(error, "show_description", False) else {
        400: "Check what you entered and try again.",
        404: "The page may have moved, or it belongs to another account.",
        405: "Go back and use the buttons on the page.",
    }.get(error.code, error.description)
    return _render_error(error.code, title, message)


def _unexpected_error(error: Exception):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _render_error(
        500,
        "Something went wrong on our side",
        "Nothing was changed. Try again in a moment; if it keeps happening, contact support.",
    )
