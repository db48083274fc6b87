"""Every path of every scenario: each result of each check, each answer, each action run or skipped,
ends in an outcome whose message is whole and grammatical, with or without the evidence it may name.
Labels say what was found."""
from __future__ import annotations

import itertools
import re
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from portal.checklists import checks, scenarios
from portal.checklists.engine import ACTION, CHECK, OUTCOME, QUESTION, SKIPPED, format_message, missing_fields, walk

SYDNEY = ZoneInfo("Australia/Sydney")
# What every run knows whatever its checks saw (runs._base_values).
BASE = {"business": "Harbour Auto", "branch": "Sydney", "invoice_number": "INV-00042", "provider": "Sage"}
# Evidence as the checks write it, for every value a message may name.
EVIDENCE = {
    "username": "nc@harbour.test", "locked_until": "2026-12-02T08:18:00+00:00", "done": 120, "total": 400,
    "eta": "3 minutes", "contacts_pending": 280, "failures": 2, "refresh_token_expires_at": "2026-12-20T01:00:00+00:00",
    "rate_limited_until": "2026-12-02T08:18:00+00:00", "last_job_error": "Sage refused the sign-in.",
    "job": "Sync contacts to Sage", "job_status": "queued", "void_failure": "Sage did not answer; try again.",
    "sage_id": "84eab7ad4ed8", "ids_cleared_at": "2026-11-30T23:05:00+00:00", "sage_business": "Harbour Auto Pty Ltd",
    "previous_sage_id": "1f00aa", "void_outcome": "voided", "void_message": "Invoice INV-00042 is now void in Sage.",
}
BROKEN = [re.compile(p) for p in (r"[{}]", r"\[\[|\]\]", r"\bNone\b", r"\(unknown\)", r"\(\s*\)", r"—", r"  ",
                                  r" [.,;:)]", r"\(voided\)", r"\.\.(?!\.)", r"^[a-z]")]


def _row(step_id, kind, result):
    return SimpleNamespace(step_id=step_id, kind=kind, result=result, evidence={}, note=None)


def _paths(scenario):
    """Every (check results, answers) combination's walk, as (path of (step id, value), outcome step)."""
    check_steps = scenario.checks
    seen = set()
    for combo in itertools.product(*[list(checks.RESULTS[s.check]) for s in check_steps]):
        rows = [_row(s.id, "check", r) for s, r in zip(check_steps, combo, strict=True)]
        stack = [rows]
        while stack:
            rows = stack.pop()
            current = walk(scenario, rows)
            key = tuple((s.step.id, s.value) for s in current.path)
            if current.current is not None and current.current.step.kind != OUTCOME:
                step = current.current.step
                if step.kind == QUESTION:
                    choices = [c for c, _ in step.choices]
                elif step.kind == ACTION:
                    choices = ["done"] + ([] if step.mandatory else [SKIPPED])
                else:  # a check with no result cannot happen: every check has a row
                    raise AssertionError(f"{scenario.slug}: the walk stopped at check {step.id}")
                kind = "answer" if step.kind == QUESTION else "action"
                stack.extend(rows + [_row(step.id, kind, c)] for c in choices)
                continue
            if key not in seen:
                seen.add(key)
                yield key, current.outcome_step


def _assert_whole(text: str, where: str) -> None:
    for line in text.splitlines():
        for pattern in BROKEN:
            assert not pattern.search(line), f"{where}: {pattern.pattern!r} in {line!r}"


@pytest.mark.parametrize("scenario", scenarios.ALL, ids=lambda s: s.slug)
def test_every_path_ends_in_an_outcome_with_a_whole_message(scenario):
    reached = set()
    count = 0
    for path, outcome in _paths(scenario):
        count += 1
        assert outcome is not None, f"{scenario.slug}: {path} ends without an outcome"
        reached.add(outcome.id)
        where = f"{scenario.slug} via {' → '.join(f'{s}={v}' for s, v in path)}"
        # Whatever evidence a path saw, the message needs only what every run knows.
        assert not missing_fields(outcome.message, BASE), where
        for values in (BASE, {**EVIDENCE, **BASE}, {**BASE, "provider": "Sage One AUS"}):
            _assert_whole(format_message(outcome.message, values, SYDNEY), where)
    assert count > 1
    outcomes = {s.id for s in scenario.steps if s.kind == OUTCOME}
    assert reached == outcomes, f"{scenario.slug}: outcomes no path reaches: {outcomes - reached}"


def test_each_branch_a_scenario_names_is_a_result_its_check_gives_or_an_answer_it_offers():
    for scenario in scenarios.ALL:
        ids = {s.id for s in scenario.steps}
        for step in scenario.steps:
            if step.kind == CHECK:
                allowed = set(checks.RESULTS[step.check])
            elif step.kind == QUESTION:
                allowed = {c for c, _ in step.choices}
            else:
                allowed = {"done", SKIPPED}
            assert set(step.next) <= allowed, (scenario.slug, step.id, set(step.next) - allowed)
            assert set(step.next.values()) | {step.default_next} - {None} <= ids | {None}


def test_every_check_label_says_what_was_found():
    for name, results in checks.RESULTS.items():
        for result, found in results.items():
            assert re.match(r"^(Found|Not found|Needs a look)(: \S.*)?$", found.label), (name, result, found.label)
            assert found.tone in (checks.GOOD, checks.WARNING, checks.BAD, checks.NEUTRAL)
    step_titles = [s.title for sc in scenarios.ALL for s in sc.steps if s.kind == CHECK]
    assert not [t for t in step_titles if t.endswith("?")], "a check names what it looks for, not a question"


def _message(scenario, outcome_id, values):
    return format_message(scenario.step(outcome_id).message, {**values, **BASE}, SYDNEY)


def test_the_void_outcomes_say_what_is_true():
    void = scenarios.SAGE_VOID_STILL_SHOWN
    done = _message(void, "done", EVIDENCE)
    assert "Invoice INV-00042 is void in Sage. If you still see it, refresh the page in Sage" in done
    cleanup = _message(void, "manual_cleanup", EVIDENCE)
    assert ("Invoice INV-00042 is still not void in Sage, and the portal can't finish it from here (the last "
            "attempt ended: “Sage did not answer; try again.”). Please void it by hand in Sage: find invoice "
            "INV-00042 (its Sage id is 84eab7ad4ed8) and void it there.") in cleanup
    bare = _message(void, "manual_cleanup", {})
    assert ("Invoice INV-00042 is still not void in Sage, and the portal can't finish it from here. Please void it "
            "by hand in Sage: find invoice INV-00042 and void it there.") in bare
    other = _message(void, "other_business", EVIDENCE)
    assert other.startswith("Hello,\n\nOn 1 Dec 2026, 10:05 am Sydney time (AEDT), Sydney switched to another Sage "
                            "business (Harbour Auto Pty Ltd)")
    assert "never sent" not in other and "is in the earlier business (with the id 1f00aa)" in other
    assert "Sydney switched to another Sage business, and the portal" in _message(void, "other_business", {})
    never = _message(void, "never_sent", {})
    assert "Invoice INV-00042 was never sent to Sage from the portal" in never


def test_messages_name_the_zone_of_times_read_away_from_the_page():
    wait = _message(scenarios.SAGE_RATE_LIMITED, "wait", EVIDENCE)
    assert "Sage asked us to slow down for Sydney until 2 Dec 2026, 7:18 pm Sydney time (AEDT)." in wait
    perth = format_message(scenarios.SAGE_RATE_LIMITED.step("wait").message, {**EVIDENCE, **BASE},
                           ZoneInfo("Australia/Perth"))
    assert "until 2 Dec 2026, 4:18 pm Perth time (AWST)" in perth
    assert "UTC" not in wait and "+00:00" not in wait
