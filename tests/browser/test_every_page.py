"""Every page a customer, support or a puppet session reaches, at a phone's width and a desktop's:
nothing scrolls sideways and axe-core finds no accessibility violation.

The pages come from `app.url_map` (GET routes), so a new page is walked as soon as it exists; only the
endpoints in SKIPPED are left out, each with its reason. Screenshots land in PORTAL_SCREENSHOTS
(a directory outside the repository) when it is set.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from portal.models import ChecklistRun, Invoice, Job, Provider, SyncState, utcnow
from tests import factories
from tests.browser.conftest import sign_in
from tests.browser.helpers import start_puppet
from tests.integrations.sage.conftest import SAGE_USER

pytestmark = pytest.mark.browser

WIDTHS = (390, 1280)
AXE = "/static/vendor/axe.min.js"

SKIPPED = {
    "static": "files (CSS, scripts, the favicon), not pages",
    "health.healthz": "JSON for load balancers and monitors",
    "metrics.scrape": "Prometheus text for the configured scrapers (tests/test_metrics.py)",
    "support.audit_csv": "a CSV download",
    "checklists.diagnostics": "a plain-text download",
    "jobs.progress": "an htmx fragment (the progress partial every page includes)",
    "sage.callback": "Sage's redirect back after its consent page: it needs the state of a connect in progress",
    "dev_mail.mailbox": "development only (make run's mail sink)",
}

# Who reaches which endpoints (by blueprint or name); every GET endpoint is in one of these or SKIPPED.
ANONYMOUS = ("auth.login", "auth.forgot_password", "auth.reset_password", "status.page")
CUSTOMER = ("customer.", "sage.", "sage_one_aus.", "auth.change_password")
SUPPORT = ("support.", "checklists.", "operations.", "auth.change_password", "auth.two_factor_setup",
           "auth.second_step")
PUPPET = ("customer.", "sage.", "sage_one_aus.")


def _reaches(endpoint: str, prefixes) -> bool:
    return any(endpoint == p or (p.endswith(".") and endpoint.startswith(p)) for p in prefixes)


def _get_endpoints(app) -> dict[str, object]:
    rules = {}
    for rule in app.url_map.iter_rules():
        if "GET" in rule.methods and rule.endpoint not in rules:
            rules[rule.endpoint] = rule
    return rules


@pytest.fixture
def world(app, page, sandbox, live_server):
    """Harbour Auto: Sydney on Sage (signed in through the sandbox), Parramatta not connected, Newcastle
    on Sage One AUS; waiting, failed and synced records; a queued job; a support lead."""
    business = factories.business("Harbour Auto", branches=("Sydney", "Parramatta", "Newcastle"))
    sydney, parramatta, newcastle = business.branches
    parramatta.shares_with_head_office = True
    owner = factories.customer(business, email="owner@harbour-auto.test")
    owner.name = "Hannah Owner"
    factories.customer(business, email="workshop.manager.with.a.long.address@harbour-auto.test")
    db.session.commit()
    for branch in (sydney, newcastle):
        factories.contacts(branch, 30)
        failed = factories.contacts(branch, 3, sync_state=SyncState.FAILED,
                                    sync_error="Sage refused the email address: it is not a valid address")
        synced = factories.contacts(branch, 2, sync_state=SyncState.SYNCED, sage_id="c-1")
        factories.invoice(branch, failed[0], amount="1234.50")
        for n in range(2):
            factories.invoice(branch, synced[n], amount="220.00", sync_state=SyncState.SYNCED, sage_id=f"i-{n}")
    factories.connection(newcastle, Provider.SAGE_ONE_AUS, sage_one_username="newcastle@harbour-auto.test",
                         sage_one_company_name="Harbour Auto Newcastle", credentials_owner_id=owner.id,
                         last_sync_at=utcnow())
    support = factories.support(email="support@portal.test", lead=True)

    sign_in(page, owner.email, factories.PASSWORD)  # Sydney connects through Sage's consent page
    page.goto(f"/integrations/sage/branches/{sydney.id}")
    page.get_by_role("button", name="Connect Sage").click()
    page.get_by_label("Email").fill(SAGE_USER)
    page.get_by_label("Password").fill("sandbox-password")
    page.get_by_role("button", name="Allow").click()
    expect(page.get_by_text("Connected to Sage")).to_be_visible()
    page.get_by_role("button", name="Sync contacts").click()  # no worker: it waits in the queue
    expect(page.locator("#running .job")).to_have_count(1)
    page.get_by_role("button", name="Sign out").click()
    return {"business": business, "sydney": sydney, "newcastle": newcastle, "owner": owner, "support": support}


def _ids(world, endpoint: str) -> dict:
    branch = world["newcastle"] if endpoint.startswith("sage_one_aus.") else world["sydney"]
    invoice = next(i for i in db.session.scalars(db.select(Invoice).where(
        Invoice.branch_id == branch.id, Invoice.sage_id.is_not(None))))
    run = db.session.scalar(db.select(ChecklistRun).order_by(ChecklistRun.id.desc()))
    job = db.session.scalar(db.select(Job).order_by(Job.created_at.desc()))
    return {"branch_id": branch.id, "invoice_id": invoice.id, "business_id": world["business"].id,
            "run_id": run.id if run else 0, "token": "a-link-that-has-expired", "job_id": job.id if job else "none"}


def _query(world, endpoint: str) -> dict:
    if endpoint == "checklists.start":
        return {"scenario": "sync-failed-or-stuck", "business_id": world["business"].id}
    return {}


def _url(app, rule, world) -> str:
    with app.test_request_context():
        from flask import url_for

        args = {name: value for name, value in _ids(world, rule.endpoint).items() if name in rule.arguments}
        return url_for(rule.endpoint, **args, **_query(world, rule.endpoint))


def _check(page, label: str, problems: list) -> None:
    """Measure the page at each width, run axe, keep a screenshot."""
    shots = os.environ.get("PORTAL_SCREENSHOTS")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(50)
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if scroll > inner:
            wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .slice(0, 3).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
                                      (e.className && typeof e.className === 'string'
                                       ? '.' + e.className.split(' ')[0] : ''))""")
            problems.append(f"{label} @{width}: {scroll} px wide ({', '.join(wide)})")
        if shots:
            name = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
            page.screenshot(path=str(Path(shots) / f"{name}-{width}.png"), full_page=True)
        if not page.evaluate("typeof axe !== 'undefined'"):
            page.add_script_tag(url=AXE)
        result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        for violation in result["violations"]:
            targets = "; ".join(" ".join(node["target"]) for node in violation["nodes"][:3])
            problems.append(f"{label} @{width}: axe {violation['id']} ({violation['help']}): {targets}")


def _walk(app, page, world, prefixes, who: str, problems: list, visited: set) -> None:
    for endpoint, rule in sorted(_get_endpoints(app).items()):
        if endpoint in SKIPPED or not _reaches(endpoint, prefixes):
            continue
        url = _url(app, rule, world)
        response = page.goto(url)
        assert response is not None and response.status < 500, (who, url, response and response.status)
        assert "text/html" in response.headers.get("content-type", ""), (who, url)
        visited.add(endpoint)
        _check(page, f"{who} {endpoint}", problems)


def test_every_page_fits_a_phone_and_a_desktop_and_axe_finds_nothing(app, page, world):
    problems, visited = [], set()
    _walk(app, page, world, ANONYMOUS, "anonymous", problems, visited)

    sign_in(page, world["owner"].email, factories.PASSWORD)
    _walk(app, page, world, CUSTOMER, "customer", problems, visited)
    page.goto("/")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, world["support"].email, factories.PASSWORD)
    page.goto(f"/support/checklists/start?scenario=sync-failed-or-stuck&business_id={world['business'].id}")
    page.get_by_role("button", name=re.compile("Start")).first.click()
    expect(page).to_have_url(re.compile(r"/support/checklists/runs/\d+"))
    page.goto("/support/?q=harb")  # the console with results listed
    _check(page, "support console search", problems)
    page.goto("/support/checklists/start?q=harb")  # a checklist's start: the customer search with results
    _check(page, "checklist start search", problems)
    _walk(app, page, world, SUPPORT, "support", problems, visited)

    start_puppet(page, "Harbour Auto", "Ticket #4821: the Sydney sync looks stuck")
    _walk(app, page, world, PUPPET, "puppet", problems, visited)

    forgotten = set(_get_endpoints(app)) - visited - set(SKIPPED)
    assert forgotten == set(), f"GET endpoints no audience walked (add them or a reason to SKIPPED): {forgotten}"
    assert problems == [], "\n".join(problems)
