"""Runs: evidence stored, branching, outcomes and messages, pause/resume, the timeline, stats."""
from __future__ import annotations

from datetime import timedelta

import pytest

from portal.checklists import runs, scenarios
from portal.extensions import db
from portal.models import (
    AuditEvent,
    ChecklistStepResult,
    ConnectionState,
    Provider,
    RunOutcome,
    RunStatus,
    utcnow,
)
from portal.support import timeline
from tests import factories


@pytest.fixture
def login_changed(app):
    business = factories.business(branches=("Newcastle",))
    until = utcnow() + timedelta(hours=3)
    factories.connection(business.branches[0], Provider.SAGE_ONE_AUS, ConnectionState.CREDENTIALS_REJECTED,
                         sage_one_username="old@harbour.test", login_failures=4)
    return business, until


def test_starting_a_run_stores_every_checks_result_and_evidence(login_changed):
    business, _ = login_changed
    support = factories.support()
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, support)
    rows = db.session.scalars(db.select(ChecklistStepResult).where(ChecklistStepResult.run_id == run.id)).all()
    assert {r.step_id for r in rows} == {"username", "failures", "lockout"}
    failures = next(r for r in rows if r.step_id == "failures")
    assert failures.result == "fail" and failures.evidence["login_failures"] == 4
    assert failures.recorded_at is not None and failures.recorded_by_id == support.id


def test_the_walk_branches_on_an_answer_and_fills_the_message_from_evidence(login_changed):
    business, _ = login_changed
    support = factories.support()
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, support)
    view = runs.view(run)
    assert view.walk.current.step.id == "which_change"

    runs.answer(run, "which_change", "new_username", support, note="Customer moved to a new Sage login")
    view = runs.view(run)
    assert view.walk.outcome_step.id == "disconnect_reauth"
    assert view.suggested_outcome == "customer_action"
    assert "connected to Sage One AUS as old@harbour.test" in view.suggested_message
    assert "Disconnect Sage One AUS" in view.suggested_message

    runs.answer(run, "which_change", "new_password", support)
    assert runs.view(run).walk.outcome_step.id == "reenter_password"


def test_the_walk_branches_on_a_check_result(app):
    business = factories.business(branches=("Newcastle",))
    factories.connection(business.branches[0], Provider.SAGE_ONE_AUS, ConnectionState.CREDENTIALS_REJECTED,
                         sage_one_username="old@harbour.test", locked_until=utcnow() + timedelta(hours=5))
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, factories.support())
    view = runs.view(run)
    # The lock-out check failed, so the walk skips the question and goes straight to waiting for the lock.
    assert [s.step.id for s in view.walk.path] == ["username", "failures", "lockout", "wait_for_lock"]
    assert "old@harbour.test" in view.suggested_message


def test_finishing_needs_the_mandatory_steps_except_to_escalate(login_changed):
    business, _ = login_changed
    support = factories.support()
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, support)
    with pytest.raises(runs.RunError, match="required steps"):
        runs.finish(run, support, "resolved", "")
    runs.finish(run, support, "escalated", "Customer unreachable")
    assert run.status == RunStatus.FINISHED and run.outcome == RunOutcome.ESCALATED
    assert "Checklist #" in run.diagnostics and "login failures: 4" in run.diagnostics


def test_customer_action_outcome_keeps_the_edited_message(login_changed):
    business, _ = login_changed
    support = factories.support()
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, support)
    runs.answer(run, "which_change", "new_username", support)
    with pytest.raises(runs.RunError, match="message"):
        runs.finish(run, support, "customer_action", "  ")
    runs.finish(run, support, "customer_action", "Hi Sam, please disconnect and reconnect with your new login.")
    assert run.outcome == RunOutcome.CUSTOMER_ACTION
    assert run.outcome_message == "Hi Sam, please disconnect and reconnect with your new login."
    with pytest.raises(runs.RunError, match="finished"):
        runs.answer(run, "which_change", "new_password", support)


def test_a_paused_run_is_resumed_by_another_support_person(login_changed):
    business, _ = login_changed
    first, second = factories.support(), factories.support()
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, first)
    runs.pause(run, first, "Waiting for the customer")
    with pytest.raises(runs.RunError, match="paused"):
        runs.answer(run, "which_change", "new_username", first)
    runs.resume(run, second)
    assert run.status == RunStatus.IN_PROGRESS and run.holder_id == second.id
    runs.answer(run, "which_change", "new_username", second)
    runs.finish(run, second, "customer_action", runs.view(run).suggested_message)
    assert run.finished_by_id == second.id


def test_a_run_appears_on_the_customers_timeline(login_changed):
    business, _ = login_changed
    support = factories.support()
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, support)
    runs.pause(run, support)
    runs.resume(run, support)
    runs.finish(run, support, "escalated", "")
    kinds = [e.kind for e in db.session.scalars(
        db.select(AuditEvent).where(AuditEvent.business_id == business.id).order_by(AuditEvent.id))]
    assert kinds == ["checklist.started", "checklist.paused", "checklist.resumed", "checklist.finished"]
    entries = [e for e in timeline.for_business(business.id) if e.category == "checklist"]
    assert len(entries) == 4 and entries[0].category_label == "Checklist"


def test_notes_are_kept_on_their_step(login_changed):
    business, _ = login_changed
    support = factories.support()
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, support)
    runs.add_note(run, "failures", "Customer says they changed their password yesterday", support)
    state = runs.view(run).walk.state("failures")
    assert [n.note for n in state.notes] == ["Customer says they changed their password yesterday"]
    assert "changed their password yesterday" in runs.diagnostics(run)


def test_a_recheck_keeps_the_earlier_evidence(login_changed):
    business, _ = login_changed
    support = factories.support()
    run = runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, support)
    connection = business.branches[0].connection
    connection.state, connection.login_failures = ConnectionState.CONNECTED, 0
    db.session.commit()
    runs.recheck(run, support)
    history = [r.result for r in runs.view(run).walk.state("failures").history if r.kind == "check"]
    assert history == ["fail", "pass"]


def test_the_void_scenario_needs_an_invoice_number(app):
    business = factories.business()
    factories.connection(business.branches[0], Provider.SAGE)
    with pytest.raises(runs.RunError, match="invoice"):
        runs.start(scenarios.SAGE_VOID_STILL_SHOWN, business, None, factories.support(), invoice_ref="")


def test_stats_count_scenarios_and_outcomes(login_changed):
    business, _ = login_changed
    support = factories.support()
    for outcome in ("escalated", "escalated"):
        runs.finish(runs.start(scenarios.SAGE_ONE_AUS_LOGIN_CHANGED, business, None, support), support, outcome, "")
    runs.start(scenarios.SAGE_ONE_AUS_PUPPET_AUTH, business, None, support)
    stats = runs.stats()
    assert stats[0].scenario.slug == "sage-one-aus-login-changed" and stats[0].total == 2
    assert stats[0].by_outcome == {"escalated": 2} and stats[0].share("escalated") == 100
    assert stats[1].scenario.slug == "sage-one-aus-puppet-auth" and stats[1].by_outcome == {"open": 1}
