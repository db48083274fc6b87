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
                | {"q", "page", "health", "stale_hours", "kind", "state", "search", "business_id", "branch_id",
                   "invoice", "token", "next", "user_id", "from", "to", "email", "step", "value", "outcome"}
                - {"csrf_token"})
MARKUP = '<b data-fuzz="1">x</b>'
# Routes that end the signed-in person's session or leave the portal: fuzzed elsewhere (auth tests).
# healthz answers 503 with no worker, by design; audit.csv streams (its filters are the audit page's,
# fuzzed there).
SKIP = {"auth.logout", "static", "sage.callback", "health.healthz", "support.audit_csv"}

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
