"""Fuzzing every route's form fields and query parameters with Hypothesis: oversize, unicode, NUL,
markup, SQL-like, missing, repeated and wrong-type values never give a 5xx, never come back as live
markup, and a refused request changes nothing.

Bounded so the suite stays fast: PORTAL_FUZZ_EXAMPLES examples per route and person (default 3);
set it higher (e.g. 200) for a deeper run.
"""
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from portal.extensions import db
from tests import factories
from tests.conftest import AuthActions
from tests.test_route_matrix import _url

EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "3"))
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
# Every field a template submits, plus the query parameters the views read.
FIELDS = sorted(set(re.findall(r'name="([a-z_]+)"', " ".join(p.read_text() for p in TEMPLATES.rglob("*.html"))))
                | {"q", "page", "vpage", "health", "stale_hours", "kind", "state", "search", "business_id", "branch_id",
                   "invoice", "token", "next", "user_id", "from", "to", "email", "step", "value", "outcome"}
                - {"csrf_token"})
MARKUP = '<b data-fuzz="1">x</b>'
# Routes with an expectation of their own, fuzzed by the tests below the general one: logout ends the
# session it runs in, Sage's callback refuses every crafted answer with a 400 page, healthz answers
# 503 with no worker by design, and the audit CSV streams.
DEDICATED = {"auth.logout", "sage.callback", "health.healthz", "support.audit_csv"}
SKIP = DEDICATED | {"static"}

values = st.one_of(
    st.text(max_size=20),
    st.text(min_size=3000, max_size=5000, alphabet="a9"),
    st.sampled_from(["", "\x00", "a\x00b", MARKUP, "' OR 1=1 --", "1; DROP TABLE users", "999999999999999999999999",
                     "-1", "0", "1.5", "NaN", "１２", "é́", "\u202e", "[]", "{}", "%00", "../../etc/passwd"]),
    st.integers(min_value=-2**70, max_value=2**70).map(str),
)
forms = st.dictionaries(st.sampled_from(FIELDS), st.lists(values, min_size=1, max_size=3), max_size=6)


def _snapshot():
    db.session.expire_all()
    return {t.name: db.session.execute(db.select(db.func.count()).select_from(t)).scalar()
            for t in db.metadata.sorted_tables if t.name != "audit_events"}


def _rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIP:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


@pytest.mark.parametrize("who", ["customer", "support"])
def test_fuzzed_fields_never_give_a_5xx_live_markup_or_a_change_when_refused(app, client, sandbox, who):
    business = factories.business(branches=("Sydney",))
    branch = business.branches[0]
    customer = factories.customer(business)
    invoice = factories.invoice(branch, factories.contacts(branch, 1)[0], sage_id="abc")
    AuthActions(client).login(customer if who == "customer" else factories.support(lead=True))
    urls = [(rule, method, _url(rule, branch_id=branch.id, invoice_id=invoice.id, business_id=business.id))
            for rule, method in _rules(app)]

    @settings(max_examples=EXAMPLES * len(urls), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(urls), forms)
    def probe(target, fields):
        rule, method, url = target
        pairs = MultiDict([(name, value) for name, vals in fields.items() for value in vals])
        before = _snapshot()
        if method == "GET":
            response = client.get(url, query_string=pairs)
        else:
            response = client.open(url, method=method, data=pairs)
        status = response.status_code
        assert status < 500, (method, rule.rule, pairs, status)
        assert MARKUP.encode() not in response.data and b'<b data-fuzz' not in response.data, (method, rule.rule)
        if status >= 400:
            assert _snapshot() == before, (method, rule.rule, pairs, status)

    probe()


def _pairs(fields) -> MultiDict:
    return MultiDict([(name, value) for name, vals in fields.items() for value in vals])


def _fuzzed(test):
    return settings(max_examples=EXAMPLES * 10, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))(test)


def _plain(response) -> str:
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and 'File "' not in body, body[:500]
    assert MARKUP not in body and "<b data-fuzz" not in body
    return body


def test_every_route_the_general_fuzzing_skips_has_its_own_fuzz_test(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert DEDICATED <= endpoints, DEDICATED - endpoints
    assert SKIP - DEDICATED == {"static"}


@pytest.mark.parametrize("who", ["anonymous", "customer", "support"])
def test_fuzzed_logout_never_gives_a_5xx_and_always_ends_the_session(app, client, redis_client, who):
    customer = factories.customer(factories.business())
    support = factories.support()
    auth = AuthActions(client)

    @_fuzzed
    @given(forms)
    def probe(fields):
        if who == "customer":
            auth.login(customer)
        elif who == "support":  # a support login may sign out before its second step, too
            auth.login(support, second_step=False)
        sessions_before = sorted(redis_client.scan_iter("portal:session:*"))
        response = client.post("/logout", data=_pairs(fields))
        _plain(response)
        if fields.get("csrf_token", [""])[0]:  # a crafted token in the form wins over the page's: refused, nothing ends
            assert response.status_code == 400, (fields, response.status_code)
            assert sorted(redis_client.scan_iter("portal:session:*")) == sessions_before
            client.post("/logout")
        else:
            assert response.status_code == 302, (fields, response.status_code)
            assert response.headers["Location"].endswith("/login"), response.headers["Location"]
        assert not list(redis_client.scan_iter("portal:session:*")), "the login session outlived logout"
        assert client.get("/").status_code == 302

    probe()


@pytest.fixture
def registered_worker(app, redis_client):
    """A real RQ worker registered on the portal queue (as a running `flask worker` is), not working."""
    from rq import Worker

    from portal.jobqueue import get_queue

    worker = Worker([get_queue()], connection=redis_client)
    worker.register_birth()
    yield worker
    worker.register_death()


def _health_report(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    _plain(response)
    report = response.get_json()
    assert {"database", "redis", "workers", "status"} <= set(report)
    return report


@pytest.mark.parametrize("worker", [False, True], ids=["no worker", "a worker"])
@pytest.mark.parametrize("who", ["anonymous", "customer", "support"])
def test_fuzzed_healthz_answers_200_or_503_as_json_never_a_5xx_or_a_traceback(app, client, request, who, worker):
    if worker:
        request.getfixturevalue("registered_worker")
    if who != "anonymous":
        person = factories.customer(factories.business()) if who == "customer" else factories.support()
        AuthActions(client).login(person)

    @_fuzzed
    @given(forms, st.sampled_from(["GET", "HEAD"]))
    def probe(fields, method):
        response = client.open("/healthz", method=method, query_string=_pairs(fields))
        if method == "HEAD":
            assert response.status_code == (200 if worker else 503)
            return
        report = _health_report(response, 200 if worker else 503)
        assert report["status"] == ("ok" if worker else "degraded") and report["database"] == "up"

    probe()


def test_healthz_with_redis_unreachable_answers_503_as_json(app_settings):
    from devtools.redis_server import free_port
    from portal import create_app

    down = create_app(dict(app_settings, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    response = down.test_client().get("/healthz", query_string={"q": MARKUP})
    report = _health_report(response, 503)
    assert report["redis"] == "down" and report["status"] == "degraded"
    assert "127.0.0.1" not in response.get_data(as_text=True)  # never the error text, which names the URL


REFUSED_PAGE = "Sage sign-in refused"
crafted = st.one_of(st.none(), values, st.sampled_from(["access_denied", "server_error", "invalid_scope",
                                                        "GB/" + "0" * 48, "GB%2Fabc", "state-of-another"]))


def _start_sage_connect(client, branch) -> str:
    """Begin a real connect from the branch page; the single-use state the portal sent to Sage."""
    from urllib.parse import parse_qs, urlsplit

    response = client.post(f"/integrations/sage/branches/{branch.id}/connect")
    assert response.status_code == 302, response.status_code
    return parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]


@pytest.mark.parametrize("state_from", ["crafted", "a real connect"])
def test_crafted_sage_callbacks_get_a_clear_400_refusal_and_connect_nothing(app, client, sandbox, state_from):
    from portal.models import Connection

    business = factories.business(branches=("Sydney",))
    branch = business.branches[0]
    AuthActions(client).login(factories.customer(business))

    @_fuzzed
    @given(crafted, crafted, crafted)
    def probe(state, code, error):
        if state_from == "a real connect":
            state = _start_sage_connect(client, branch)
            if code is None and error is None:  # with a real state, Sage's answer is what is crafted
                code = "crafted"
        query = {k: v for k, v in {"state": state, "code": code, "error": error}.items() if v is not None}
        before = _snapshot()
        response = client.get("/integrations/sage/callback", query_string=query)
        assert response.status_code == 400, (query, response.status_code)
        body = _plain(response)
        assert REFUSED_PAGE in body and 'role="alert"' in body and "Nothing was connected or changed." in body
        assert db.session.scalar(db.select(db.func.count()).select_from(Connection)) == 0
        assert _snapshot() == before, query
        if state_from == "a real connect":  # the state was spent: the same answer again is refused too
            again = client.get("/integrations/sage/callback", query_string=query)
            assert again.status_code == 400 and "expired or was already used" in _plain(again)

    probe()


def test_sage_callback_for_support_or_anonymous_is_refused_without_a_5xx(app, client):
    auth = AuthActions(client)

    @_fuzzed
    @given(crafted, crafted, crafted)
    def probe(state, code, error):
        query = {k: v for k, v in {"state": state, "code": code, "error": error}.items() if v is not None}
        response = client.get("/integrations/sage/callback", query_string=query)
        assert response.status_code in (302, 403), response.status_code
        _plain(response)

    probe()
    auth.login(factories.support())
    probe()


def _seed_awkward_audit_events(business) -> None:
    from portal import audit

    for summary in ["=HYPERLINK(\"http://evil\")", "+1", "-2", "@SUM(A1)", 'quote " and, comma', "line\nbreak",
                    MARKUP, "é́ \u202e １２", "\x00nul"]:
        audit.record("fuzz.event", summary, business_id=business.id, details={"value": summary})
    db.session.commit()


@pytest.mark.parametrize("who", ["lead", "support", "customer"])
def test_fuzzed_audit_csv_streams_a_well_formed_csv_or_refuses_never_a_5xx(app, client, who):
    import csv
    import io

    from portal.support.audit_log import CSV_COLUMNS

    business = factories.business()
    _seed_awkward_audit_events(business)
    person = {"lead": lambda: factories.support(lead=True), "support": factories.support,
              "customer": lambda: factories.customer(business)}[who]()
    AuthActions(client).login(person)
    if who == "lead":  # unfiltered, every awkward event comes back as one row, formulas quoted as text
        rows = list(csv.reader(io.StringIO(client.get("/support/audit.csv", buffered=True).get_data(as_text=True))))
        fuzz_rows = [row for row in rows if row[1] == "fuzz.event"]
        assert len(fuzz_rows) == 9 and "'=HYPERLINK(\"http://evil\")" in [row[2] for row in fuzz_rows]

    @_fuzzed
    @given(forms)
    def probe(fields):
        # Buffered: the whole stream is read while the request is served, as a browser reads it.
        response = client.get("/support/audit.csv", query_string=_pairs(fields), buffered=True)
        body = response.get_data(as_text=True)
        status = response.status_code
        assert status < 500, (fields, status)
        if who != "lead":
            assert status == 403, status
            return
        if status == 400:
            _plain(response)
            return
        assert status == 200, status
        assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(body)))
        assert tuple(rows[0]) == CSV_COLUMNS
        assert all(len(row) == len(CSV_COLUMNS) for row in rows[1:]), rows
        for row in rows[1:]:  # no cell runs as a spreadsheet formula
            assert row[2][:1] not in ("=", "+", "-", "@") and row[10][:1] not in ("=", "+", "-", "@"), row

    probe()
