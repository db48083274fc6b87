"""The one shape every checklist has: scenarios as data, walked step by step.

A scenario is an ordered list of steps. A step is a *check* (a read-only function from checks.py,
evaluated against live data), a *question* for the support person, an *action* they may run
(through the same service and guards as the integration's own page), or an *outcome* that ends the
walk with a suggested ending and a message. Checks and questions branch: `next` maps a check's
result or an answer to the step that follows; anything unmapped goes to `default_next`, and with
no `default_next` to the following step in the list.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from portal import timefmt

CHECK, QUESTION, ACTION, OUTCOME = "check", "question", "action", "outcome"
SKIPPED = "skipped"


@dataclass(frozen=True)
class Step:
    """One step of a scenario (see the module docstring for the four kinds)."""

    id: str
    kind: str
    title: str
    help: str = ""
    mandatory: bool = True
    check: str | None = None  # CHECK: the name of a function in checks.REGISTRY
    choices: tuple[tuple[str, str], ...] = ()  # QUESTION: (value, label) pairs
    action: str | None = None  # ACTION: the name of an action in actions.REGISTRY
    outcome: str | None = None  # OUTCOME: resolved / customer_action / escalated
    message: str = ""  # OUTCOME: the message to send, formatted with the runs' evidence
    next: dict = field(default_factory=dict)  # result or answer -> step id
    default_next: str | None = None


@dataclass(frozen=True)
class Scenario:
    """A troubleshooting scenario: when it applies, and the steps that work through it."""

    slug: str
    title: str
    summary: str
    steps: tuple[Step, ...]
    provider: str | None = None  # "sage", "sage_one_aus" or None for either
    needs_invoice: bool = False

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    @property
    def checks(self) -> list[Step]:
        return [s for s in self.steps if s.kind == CHECK]

    def following(self, step: Step, value: str | None) -> Step | None:
        """The step after `step` given its result or answer (None once the list runs out)."""
        target = step.next.get(value) if value is not None else None
        target = target or step.default_next
        if target:
            return self.step(target)
        index = self.steps.index(step)
        return self.steps[index + 1] if index + 1 < len(self.steps) else None


@dataclass
class StepState:
    """Where one step on the current path stands."""

    step: Step
    value: str | None = None  # the check's result, the answer, or the action's result
    latest: object | None = None  # the latest ChecklistStepResult of that kind for the step
    history: list = field(default_factory=list)  # every row recorded on the step, oldest first
    is_current: bool = False

    @property
    def complete(self) -> bool:
        if self.step.kind == OUTCOME:
            return True
        # A refused action waits: the person may try again or skip it.
        return self.value is not None and not (self.step.kind == ACTION and self.value == "refused")

    @property
    def notes(self) -> list:
        return [r for r in self.history if r.kind == "note"]


@dataclass
class Walk:
    """The path through a scenario that the recorded results and answers select."""

    path: list[StepState]
    current: StepState | None

    @property
    def outcome_step(self) -> Step | None:
        last = self.path[-1].step if self.path else None
        return last if last is not None and last.kind == OUTCOME else None

    @property
    def missing_mandatory(self) -> list[Step]:
        return [s.step for s in self.path if s.step.mandatory and not s.complete]

    def state(self, step_id: str) -> StepState | None:
        return next((s for s in self.path if s.step.id == step_id), None)


_VALUE_KIND = {CHECK: "check", QUESTION: "answer", ACTION: "action"}


def walk(scenario: Scenario, rows: list) -> Walk:
    """Follow the scenario from its first step using the latest recorded row of each step.

    The walk stops at the first step still waiting for the person (an unanswered question, an action
    not yet run or skipped) or at an outcome. Checks are evaluated when a run starts, so they never
    stop the walk unless a check has no result yet.
    """
    by_step: dict[str, list] = {}
    for row in rows:
        by_step.setdefault(row.step_id, []).append(row)
    path: list[StepState] = []
    seen: set[str] = set()
    step = scenario.steps[0] if scenario.steps else None
    while step is not None and step.id not in seen:
        seen.add(step.id)
        history = by_step.get(step.id, [])
        kind = _VALUE_KIND.get(step.kind)
        valued = [r for r in history if r.kind == kind] if kind else []
        latest = valued[-1] if valued else None
        state = StepState(step, latest.result if latest else None, latest, history)
        path.append(state)
        if step.kind == OUTCOME or not state.complete:
            state.is_current = True
            return Walk(path, state)
        step = scenario.following(step, state.value)
    return Walk(path, None)


_OPTIONAL = re.compile(r"\[\[((?:(?!\[\[|\]\]).)*)\]\]", re.S)  # an innermost [[ … ]]
_FIELD = re.compile(r"\{(\w+)\}")


def evidence_values(rows: list) -> dict:
    """Every evidence value the run has seen, the latest row of a key winning, for formatting messages."""
    values: dict = {}
    for row in rows:
        if row.kind == "check":
            values.update({k: v for k, v in (row.evidence or {}).items() if v not in (None, "")})
    return values


def missing_fields(template: str, values: dict) -> set[str]:
    """The {placeholders} outside every optional [[ … ]] part that `values` has no value for."""
    return {name for name in _FIELD.findall(_drop_optional(template)) if name not in values}


def _drop_optional(template: str) -> str:
    while _OPTIONAL.search(template):
        template = _OPTIONAL.sub("", template)
    return template


def format_message(template: str, values: dict, zone: ZoneInfo | None = None) -> str:
    """Fill a message template from the run's values.

    A part written [[ like this {value} ]] appears only when every value it names is known, so a
    sentence never shows a blank or a placeholder ("… (Sage id {sage_id})" is left out when no Sage
    id was seen). Parts nest. Moments (ISO text from checks.moment) are written with their zone named,
    since a message is read away from the page. A value missing outside every optional part is a
    mistake in the scenario (tests/checklists walks every path to prove there is none); it reads "—".
    """

    def text(name: str) -> str | None:
        value = values.get(name)
        if value is None or value == "":
            return None
        moment = as_moment(value)
        return timefmt.with_zone(moment, zone) if moment is not None else str(value)

    def optional(match: re.Match) -> str:
        part = match.group(1)
        filled = [text(name) for name in _FIELD.findall(part)]
        return part if all(v is not None for v in filled) else ""

    while _OPTIONAL.search(template):
        # Decide each innermost part on its own values, keeping its placeholders for the pass below.
        template = _OPTIONAL.sub(optional, template)
    return _FIELD.sub(lambda m: text(m.group(1)) or "—", template).strip()


def as_moment(value) -> datetime | None:
    """A check's moment (ISO 8601 text with an offset, as checks.moment writes it) back as a datetime."""
    if isinstance(value, str) and _ISO.match(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)$")
