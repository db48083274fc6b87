"""An id too large for any id column matches no page (404) and is refused in a form (400), on
SQLite and PostgreSQL alike, instead of failing in the database."""
import pytest

from tests import factories
from tests.support.helpers import customer_world

HUGE = "999999999999999999999999999999"
JUST_OVER = str(2**31)


def _int_rules(app):
    for rule in app.url_map.iter_rules():
        converters = rule._converters
        if any(type(c).__name__ == "BoundedIntConverter" for c in converters.values()):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule, method


def _path(rule, value: str) -> str:
    # Build by hand: url building would refuse the out-of-range number itself.
    path = rule.rule
    for name in rule._converters:
        path = path.replace(f"<int:{name}>", value).replace(f"<{name}>", "contacts")
    return path


@pytest.mark.postgres
@pytest.mark.parametrize("who", ["customer", "support"])
def test_every_id_in_a_path_that_no_column_can_hold_is_a_404(app, client, auth, who):
    business, customer = customer_world()
    auth.login(customer if who == "customer" else factories.support())
    rules = list(_int_rules(app))
    assert {r.endpoint for r, _ in rules} >= {"sage.branch", "sage_one_aus.show", "sage.void", "sage_one_aus.void",
                                             "support.customer", "checklists.run"}
    for rule, method in rules:
        for value in (HUGE, JUST_OVER):
            response = client.open(_path(rule, value), method=method, data={"reason": "x"})
            assert response.status_code == 404, (method, rule.rule, value, response.status_code)


@pytest.mark.postgres
def test_ids_in_forms_that_no_column_can_hold_are_a_400(app, client, auth):
    business, customer = customer_world()
    auth.login(factories.support())
    for value in (HUGE, JUST_OVER, "-1", "1e3", "١٢", ""):
        response = client.post(f"/support/customers/{business.id}/puppet",
                               data={"user_id": value, "reason": "Ticket 1"})
        assert response.status_code == 400, (value, response.status_code)
    for field in ("business_id", "branch_id"):
        for value in (HUGE, JUST_OVER):
            form = {"scenario": "sage-one-aus-puppet-auth", field: value}
            assert client.post("/support/checklists/start", data=form).status_code == 400, (field, value)
            assert client.get("/support/checklists/start", query_string=form).status_code == 400, (field, value)
    assert client.get("/support/", query_string={"page": HUGE, "stale_hours": HUGE}).status_code == 200
    assert client.get("/support/audit", query_string={"page": HUGE}).status_code in (200, 403)
