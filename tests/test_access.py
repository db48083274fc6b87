"""Access matrix for the foundation routes: anonymous, customer, another business's customer,
support. Each integration and the console keep their own matrices beside their tests."""
import pytest

from portal import jobqueue
from tests import factories

ANON, CUSTOMER, OTHER, SUPPORT = "anonymous", "customer", "other-business", "support"


@pytest.fixture
def world(app):
    business = factories.business("Harbour Auto", branches=("Sydney",))
    other = factories.business("Elsewhere Motors", branches=("Perth",))
    people = {
        CUSTOMER: factories.customer(business),
        OTHER: factories.customer(other),
        SUPPORT: factories.support(),
    }
    job = jobqueue.enqueue("test.count", "tests.jobs_for_tests.count_contacts", branch=business.branches[0],
                           requested_by=people[CUSTOMER], description="Count", args=(business.branches[0].id,))
    return {"people": people, "job_id": job.id}


MATRIX = [
    # method, path, {who: expected status}
    ("GET", "/", {ANON: 302, CUSTOMER: 200, OTHER: 200, SUPPORT: 403}),
    ("GET", "/support/", {ANON: 302, CUSTOMER: 403, OTHER: 403, SUPPORT: 200}),
    ("POST", "/support/puppet/end", {ANON: 302, CUSTOMER: 403, OTHER: 403, SUPPORT: 302}),
    ("GET", "/account/password", {ANON: 302, CUSTOMER: 200, OTHER: 200, SUPPORT: 200}),
    ("GET", "/jobs/{job_id}", {ANON: 302, CUSTOMER: 200, OTHER: 404, SUPPORT: 200}),
    ("GET", "/jobs/no-such-job", {ANON: 302, CUSTOMER: 404, OTHER: 404, SUPPORT: 404}),
    ("GET", "/login", {ANON: 200, CUSTOMER: 302, OTHER: 302, SUPPORT: 302}),
]


@pytest.mark.parametrize("who", [ANON, CUSTOMER, OTHER, SUPPORT])
@pytest.mark.parametrize("method,path,expected", MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX])
def test_foundation_access_matrix(world, client, auth, who, method, path, expected):
    if who != ANON:
        auth.login(world["people"][who])
    response = client.open(path.format(**world), method=method)
    assert response.status_code == expected[who]


def test_forbidden_page_is_friendly_and_has_no_stack_trace(world, client, auth):
    auth.login(world["people"][CUSTOMER])
    response = client.get("/support/")
    body = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "You can&#39;t do that here" in body and "Traceback" not in body


def test_unknown_page_is_a_friendly_404(world, client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "We couldn&#39;t find that page" in response.get_data(as_text=True)


def test_unexpected_error_shows_a_friendly_500_without_details(app, client):
    @app.get("/_test/explode")
    def explode():
        raise RuntimeError("secret-detail-in-exception")

    response = client.get("/_test/explode")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong on our side" in body
    assert "secret-detail-in-exception" not in body and "Traceback" not in body
