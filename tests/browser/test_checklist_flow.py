"""A support person runs "Sage sync is uploading all contacts again" from the suggestion to the outcome."""
import pytest
from playwright.sync_api import expect
from rq import Queue

from portal.extensions import db
from portal.models import ChecklistRun, JobStatus, Provider, RunOutcome, utcnow
from tests import factories
from tests.browser.conftest import sign_in
from tests.checklists.helpers import job

pytestmark = pytest.mark.browser


def test_support_runs_the_mass_resync_checklist_from_the_suggestion_to_the_outcome(app, page, redis_client):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    branch = business.branches[0]
    factories.connection(branch, Provider.SAGE, sage_business_name="Harbour Auto Pty", mass_resync_started_at=utcnow(),
                         mass_resync_total=120)
    factories.contacts(branch, 6)
    running = job(branch, "sage.sync_contacts", JobStatus.RUNNING, description="Sync contacts to Sage")
    rq_job = Queue(app.config["RQ_QUEUE"], connection=redis_client).enqueue("jobs.sage.sync_contacts",
                                                                            job_id=running.id)
    rq_job.meta.update({"done": 50, "total": 120, "batches_done": 1, "batches_total": 3, "failures": 0,
                        "eta_seconds": 180})
    rq_job.save_meta()
    support = factories.support()

    sign_in(page, support.email, factories.PASSWORD)
    page.goto(f"/support/customers/{business.id}")
    suggestions = page.locator("#suggested-checklists")
    expect(suggestions.get_by_text("Sage sync is uploading all contacts again")).to_be_visible()
    suggestions.get_by_role("button",
                            name="Start checklist: Sage sync is uploading all contacts again for Sydney").click()

    expect(page.get_by_role("heading", name="Sage sync is uploading all contacts again")).to_be_visible()
    progress_step = page.locator("#step-progress")
    expect(progress_step.locator(".state")).to_have_text("Found: running, no failures")
    expect(progress_step.get_by_text("50 of 120 done")).to_be_visible()
    expect(progress_step.locator("dt", has_text="Batches left")).to_be_visible()
    expect(page.locator("#step-expected")).to_contain_text("Expected: let it complete")

    expect(page.get_by_label("Resolved")).to_be_checked()
    assert "50 of 120" in page.locator("textarea#message").input_value()
    page.get_by_role("button", name="Finish the checklist").click()

    expect(page.locator("#outcome")).to_contain_text("Resolved")
    expect(page.locator("#diagnostics")).to_contain_text("batches left: 2")
    db.session.expire_all()
    run = db.session.scalars(db.select(ChecklistRun)).one()
    assert run.outcome == RunOutcome.RESOLVED and run.finished_by_id == support.id
