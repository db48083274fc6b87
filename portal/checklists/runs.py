"""Checklist runs: start (evaluating every check), answer, note, act, pause, resume, finish.

Each service records what happened as ChecklistStepResult rows and an audit event with the
business id (so the run appears on the customer's timeline); the caller's request commits nothing
else. Checks run here only read; the rows written are the run's own.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import abort

from portal import audit, puppet, timefmt
from portal.checklists import actions, checks, scenarios
from portal.checklists.engine import (
    ACTION,
    CHECK,
    OUTCOME,
    QUESTION,
    SKIPPED,
    Scenario,
    Walk,
    as_moment,
    evidence_values,
    format_message,
    walk,
)
from portal.extensions import db
from portal.models import (
    Branch,
    Business,
    ChecklistRun,
    ChecklistStepResult,
    Invoice,
    Provider,
    PuppetSession,
    RunOutcome,
    RunStatus,
    User,
    unscoped,
    utcnow,
)
from portal.voids import find_invoice_unscoped

MAX_NOTE = 2000
MAX_MESSAGE = 5000


class RunError(ValueError):
    """The request can't be applied to the run; the message says why, in plain words, and `field`
    names the form field it is about (a start form shows it beside that field)."""

    def __init__(self, message: str, field: str = "form"):
        super().__init__(message)
        self.field = field


@dataclass
class RunView:
    """A run with its scenario and the walk its recorded rows select, for pages."""

    run: ChecklistRun
    scenario: Scenario
    walk: Walk
    values: dict

    @property
    def suggested_outcome(self) -> str | None:
        step = self.walk.outcome_step
        return step.outcome if step is not None else None

    @property
    def zone(self):
        """The customer's time zone, which the run's pages and messages write times in."""
        return timefmt.zone_for(self.run.business.time_zone)

    @property
    def suggested_message(self) -> str:
        step = self.walk.outcome_step
        return format_message(step.message, self.values, self.zone) if step is not None else ""


def scenario_or_404(slug: str) -> Scenario:
    """The scenario with this slug, or 404."""
    scenario = scenarios.get(slug)
    if scenario is None:
        abort(404)
    return scenario


def run_or_404(run_id: int) -> ChecklistRun:
    """The run with this id, or 404."""
    run = db.session.get(ChecklistRun, run_id)
    if run is None:
        abort(404)
    return run


def find_invoice(branch: Branch, number_or_id: str) -> Invoice | None:
    """The branch's invoice by number (or id), soft-deleted ones included, as the void finds it."""
    value = (number_or_id or "").strip()
    if not value:
        return None
    query = unscoped(Invoice).where(Invoice.branch_id == branch.id)
    invoice = db.session.scalar(query.where(Invoice.number == value))
    if invoice is None and value.isdigit() and len(value) < 10:
        invoice = find_invoice_unscoped(branch.id, int(value))
    return invoice


def context_for(run: ChecklistRun, puppet_session: PuppetSession | None = None) -> checks.CheckContext:
    """What the run's checks look at, read fresh."""
    branch = run.branch
    invoice_id = (run.subject or {}).get("invoice_id")
    invoice = find_invoice_unscoped(branch.id, invoice_id) if invoice_id and branch is not None else None
    return checks.CheckContext(business=run.business, branch=branch,
                               connection=branch.connection if branch is not None else None,
                               invoice=invoice, puppet_session=puppet_session)


def _base_values(run: ChecklistRun, scenario: Scenario) -> dict:
    """What every message may name: the customer, the branch, the run's subject and the provider."""
    values = {"business": run.business.name, "branch": run.branch.name if run.branch else "the branch"}
    values.update({k: v for k, v in (run.subject or {}).items() if v is not None})
    connection = run.branch.connection if run.branch is not None else None
    if connection is not None:
        values["provider"] = connection.provider.label
    else:  # not connected: the provider the scenario is about
        values["provider"] = Provider(scenario.provider).label if scenario.provider else Provider.SAGE.label
    return values


def view(run: ChecklistRun) -> RunView:
    """The run, its scenario and where the walk stands."""
    scenario = scenarios.get(run.scenario)
    rows = list(run.step_results)
    return RunView(run, scenario, walk(scenario, rows), {**evidence_values(rows), **_base_values(run, scenario)})


def _row(run: ChecklistRun, step_id: str, kind: str, by: User | None, **fields) -> ChecklistStepResult:
    row = ChecklistStepResult(run=run, step_id=step_id, kind=kind, recorded_by_id=by.id if by else None,
                              recorded_at=utcnow(), **fields)
    db.session.add(row)
    return row


def _evaluate(run: ChecklistRun, scenario: Scenario, by: User, puppet_session) -> None:
    ctx = context_for(run, puppet_session)
    for step in scenario.checks:
        result = checks.run_check(step.check, ctx)
        _row(run, step.id, "check", by, result=result.result, summary=result.summary, evidence=result.evidence)


def _audit(run: ChecklistRun, kind: str, summary: str, **details) -> None:
    audit.record(kind, summary, business_id=run.business_id, branch=run.branch,
                 details={"run_id": run.id, "scenario": run.scenario, **details})


def start(scenario: Scenario, business: Business, branch: Branch | None, by: User,
          puppet_session: PuppetSession | None = None, invoice_ref: str | None = None) -> ChecklistRun:
    """Start a run for a customer and evaluate every check; raises RunError for a bad subject."""
    if branch is not None and branch.business_id != business.id:
        raise RunError("That branch belongs to another business.", "branch_id")
    if branch is None and len(business.branches) == 1:
        branch = business.branches[0]
    if branch is None:
        raise RunError("Choose the branch this checklist is about.", "branch_id")
    subject = {}
    if scenario.needs_invoice:
        invoice = find_invoice(branch, invoice_ref)
        subject["invoice_number"] = (invoice_ref or "").strip() or None
        if not subject["invoice_number"]:
            raise RunError("Give the invoice number this checklist is about.", "invoice")
        if invoice is not None:
            subject.update(invoice_id=invoice.id, invoice_number=invoice.number)
    run = ChecklistRun(scenario=scenario.slug, business_id=business.id, branch_id=branch.id, subject=subject,
                       status=RunStatus.IN_PROGRESS, started_by_id=by.id, holder_id=by.id, started_at=utcnow())
    db.session.add(run)
    db.session.flush()
    _evaluate(run, scenario, by, puppet_session)
    _audit(run, "checklist.started", f"Checklist started by {by.email}: {scenario.title} ({branch.name})")
    db.session.commit()
    return run


def _open(run: ChecklistRun) -> None:
    if run.status == RunStatus.FINISHED:
        raise RunError("This checklist has finished; start a new one to work on it again.")
    if run.status == RunStatus.PAUSED:
        raise RunError("This checklist is paused; resume it first.")


def recheck(run: ChecklistRun, by: User, puppet_session: PuppetSession | None = None) -> None:
    """Evaluate every check again (new rows; the earlier evidence stays)."""
    _open(run)
    _evaluate(run, scenarios.get(run.scenario), by, puppet_session)
    _audit(run, "checklist.rechecked", f"Checklist #{run.id} checks run again by {by.email}")
    db.session.commit()


def _step_on_path(run: ChecklistRun, step_id: str, kinds: tuple[str, ...]):
    current = view(run)
    state = current.walk.state(step_id)
    if state is None or state.step.kind not in kinds:
        raise RunError("That step isn't on this checklist's current path.")
    return current, state


def answer(run: ChecklistRun, step_id: str, value: str, by: User, note: str = "") -> None:
    """Record the answer to a question on the current path (or skip an optional step)."""
    _open(run)
    _, state = _step_on_path(run, step_id, (QUESTION, ACTION))
    step = state.step
    allowed = {c for c, _ in step.choices} if step.kind == QUESTION else set()
    if not step.mandatory:
        allowed.add(SKIPPED)
    if value not in allowed:
        raise RunError("Choose one of the answers." if step.mandatory or step.kind == QUESTION
                       else "That step can only be run or skipped.")
    note = _clean_note(note)
    _row(run, step.id, "answer" if step.kind == QUESTION else "action", by, result=value, note=note or None,
         summary="Skipped" if value == SKIPPED else dict(step.choices).get(value, value))
    run.holder_id = by.id
    db.session.commit()


def _clean_note(text: str) -> str:
    text = (text or "").strip()
    if len(text) > MAX_NOTE:
        raise RunError(f"Keep a note under {MAX_NOTE} characters.")
    return text


def add_note(run: ChecklistRun, step_id: str, text: str, by: User) -> None:
    """Attach a note to a step."""
    _open(run)
    text = _clean_note(text)
    if not text:
        raise RunError("Write the note first.")
    scenario = scenarios.get(run.scenario)
    if step_id not in {s.id for s in scenario.steps}:
        raise RunError("That step isn't part of this checklist.")
    _row(run, step_id, "note", by, note=text)
    db.session.commit()


def run_action(run: ChecklistRun, step_id: str, actor: actions.Actor) -> actions.ActionResult:
    """Run the action of a step on the current path; raises RunError, ActionRefused or PuppetReadOnly.

    A refusal is recorded on the run and in the audit log before it is raised.
    """
    _open(run)
    _, state = _step_on_path(run, step_id, (ACTION,))
    name = state.step.action
    try:
        result = actions.REGISTRY[name](run, actor)
    except (actions.ActionRefused, puppet.PuppetReadOnly) as exc:
        db.session.rollback()
        message = getattr(exc, "description", None) or str(exc)
        _row(run, step_id, "action", actor.real, result="refused", summary=message, evidence={"action": name})
        _audit(run, "checklist.action_refused", f"Checklist #{run.id}: {actions.LABELS[name]} refused for "
                                                f"{actor.real.email}", action=name, reason=message)
        db.session.commit()
        raise
    _row(run, step_id, "action", actor.real, result="done", summary=result.summary,
         evidence={"action": name, **result.evidence})
    _audit(run, "checklist.action", f"Checklist #{run.id}: {result.summary}", action=name, **result.evidence)
    run.holder_id = actor.real.id
    db.session.commit()
    return result


def pause(run: ChecklistRun, by: User, note: str = "") -> None:
    """Pause a run so anyone in support can pick it up later."""
    _open(run)
    run.status = RunStatus.PAUSED
    run.paused_at = utcnow()
    run.pause_note = _clean_note(note) or None
    _audit(run, "checklist.paused", f"Checklist #{run.id} paused by {by.email}"
                                    + (f": {run.pause_note}" if run.pause_note else ""))
    db.session.commit()


def resume(run: ChecklistRun, by: User) -> None:
    """Resume a paused run; whoever resumes it holds it from now on."""
    if run.status != RunStatus.PAUSED:
        raise RunError("Only a paused checklist can be resumed.")
    previous = run.holder.email if run.holder else "someone"
    run.status = RunStatus.IN_PROGRESS
    run.holder_id = by.id
    run.paused_at = None
    _audit(run, "checklist.resumed", f"Checklist #{run.id} resumed by {by.email} (paused by {previous})")
    db.session.commit()


def finish(run: ChecklistRun, by: User, outcome: str, message: str) -> None:
    """End a run with an outcome and its message; mandatory steps must be done unless escalating."""
    _open(run)
    try:
        chosen = RunOutcome(outcome)
    except ValueError:
        raise RunError("Choose how the checklist ended.") from None
    message = (message or "").strip()
    if len(message) > MAX_MESSAGE:
        raise RunError(f"Keep the message under {MAX_MESSAGE} characters.")
    current = view(run)
    missing = current.walk.missing_mandatory
    if chosen != RunOutcome.ESCALATED and missing:
        raise RunError("Finish the required steps first: " + "; ".join(s.title for s in missing)
                       + ". (You can always escalate.)")
    if chosen == RunOutcome.CUSTOMER_ACTION and not message:
        raise RunError("Write the message to send the customer.")
    run.status = RunStatus.FINISHED
    run.outcome = chosen
    run.outcome_message = message or None
    run.finished_at = utcnow()
    run.finished_by_id = by.id
    run.holder_id = by.id
    run.diagnostics = diagnostics(run)
    _audit(run, "checklist.finished", f"Checklist finished by {by.email}: {current.scenario.title} — {chosen.label}",
           outcome=chosen.value)
    db.session.commit()


def diagnostics(run: ChecklistRun) -> str:
    """A plain-text summary of the run, its checks with evidence, answers, actions and notes, for a ticket.

    Read away from the page, so every time names its zone (the customer's).
    """
    current = view(run)
    zone = current.zone

    def at(moment) -> str:
        return timefmt.with_zone(moment, zone)

    lines = [
        f"Checklist #{run.id}: {current.scenario.title}",
        f"Customer: {run.business.name} (business #{run.business_id})"
        + (f", branch {run.branch.name} (#{run.branch_id})" if run.branch else ""),
        f"Started {at(run.started_at)} by {run.started_by.email if run.started_by else 'someone no longer here'}",
    ]
    if run.outcome is not None:
        lines.append(f"Outcome: {run.outcome.label} ({at(run.finished_at)})")
    for key, value in (run.subject or {}).items():
        lines.append(f"{key.replace('_', ' ').capitalize()}: {value}")
    lines.append("")
    for state in current.walk.path:
        step = state.step
        if step.kind == OUTCOME:
            lines.append(f"→ {step.title}")
            continue
        latest = state.latest
        if latest is not None and step.kind == CHECK:
            lines.append(f"[{checks.finding(step.check, latest.result).label}] {step.title} — {latest.summary}")
            lines.append(f"    checked {at(latest.recorded_at)}")
            for key, value in (latest.evidence or {}).items():
                if value is not None and value != "":
                    moment = as_moment(value)
                    lines.append(f"    {key.replace('_', ' ')}: {at(moment) if moment else value}")
        else:
            lines.append(f"[{latest.summary if latest is not None else 'not done'}] {step.title}")
        for row in state.history:
            if row.note:
                lines.append(f"    note ({row.recorded_by.email if row.recorded_by else 'someone'}): {row.note}")
    if run.outcome_message:
        lines += ["", "Message:", run.outcome_message]
    return "\n".join(lines)


def recent(limit: int = 20, business_id: int | None = None) -> list[ChecklistRun]:
    """The latest runs, newest first (optionally of one business)."""
    query = db.select(ChecklistRun).order_by(ChecklistRun.started_at.desc(), ChecklistRun.id.desc()).limit(limit)
    if business_id is not None:
        query = query.where(ChecklistRun.business_id == business_id)
    return db.session.scalars(query).all()


@dataclass
class ScenarioStats:
    scenario: Scenario
    total: int
    by_outcome: dict  # outcome value (or "open") -> count

    def share(self, key: str) -> int:
        return round(100 * self.by_outcome.get(key, 0) / self.total) if self.total else 0


def stats() -> list[ScenarioStats]:
    """How often each scenario was run and how its runs ended, most frequent first (one grouped query)."""
    rows = db.session.execute(
        db.select(ChecklistRun.scenario, ChecklistRun.outcome, db.func.count())
        .group_by(ChecklistRun.scenario, ChecklistRun.outcome)
    ).all()
    by_slug: dict[str, dict] = {}
    for slug, outcome, count in rows:
        key = outcome.value if outcome is not None else "open"
        by_slug.setdefault(slug, {})[key] = count
    result = [ScenarioStats(s, sum(by_slug.get(s.slug, {}).values()), by_slug.get(s.slug, {})) for s in scenarios.ALL]
    return sorted(result, key=lambda s: -s.total)
