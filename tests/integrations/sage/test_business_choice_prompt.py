"""A branch signed in to Sage whose Sage login has several businesses, none chosen yet: the card and
the Sage page ask for the choice, and no sync is offered (or started) until it is made."""
from __future__ import annotations

import pytest

from portal.extensions import db
from portal.models import ConnectionState, Job
from tests.integrations.sage.conftest import LEAD_BUSINESS, MULTI_SAGE_USER, connect, sign_in_at_sage, start_connect

PROMPT = "Choose which Sage business this branch uses"


@pytest.fixture
def signed_in_without_business(client, auth, workshop, sandbox):
    """The callback has run for a Sage login with two businesses; the customer has not picked one."""
    auth.login(workshop.owner)
    callback = sign_in_at_sage(sandbox, start_connect(client, workshop.head_office_id), MULTI_SAGE_USER)
    response = client.get("/integrations/sage/callback", query_string=callback)
    assert response.headers["Location"].endswith(f"/integrations/sage/branches/{workshop.head_office_id}/business")
    return workshop


def _choose_url(workshop) -> str:
    return f"/integrations/sage/branches/{workshop.head_office_id}/business"


def test_the_callback_leaves_the_branch_connected_with_tokens_and_no_business(signed_in_without_business):
    connection = signed_in_without_business.connection()
    assert connection.state == ConnectionState.CONNECTED and connection.access_token_enc is not None
    assert connection.sage_business_id is None and connection.sage_business_name is None


def test_the_dashboard_card_asks_for_the_business_with_a_primary_button(client, signed_in_without_business):
    text = client.get("/").get_data(as_text=True)
    assert PROMPT in text
    assert f'class="btn btn-primary" href="{_choose_url(signed_in_without_business)}"' in text
    assert "/sync/" not in text


def test_the_sage_page_asks_for_the_business_and_offers_no_sync(client, signed_in_without_business):
    workshop = signed_in_without_business
    text = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert PROMPT in text
    assert f'class="btn btn-primary" href="{_choose_url(workshop)}"' in text
    assert "/sync/contacts" not in text and "/sync/invoices" not in text and "/mapping" not in text


def test_a_sync_posted_before_the_business_is_chosen_starts_nothing(client, signed_in_without_business):
    workshop = signed_in_without_business
    response = client.post(f"/integrations/sage/branches/{workshop.head_office_id}/sync/contacts")
    assert response.status_code == 302
    assert db.session.scalar(db.select(db.func.count()).select_from(Job)) == 0
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "before syncing" in page


def test_once_the_business_is_chosen_the_prompt_goes_and_syncs_are_offered(client, signed_in_without_business):
    workshop = signed_in_without_business
    client.post(_choose_url(workshop), data={"business_id": LEAD_BUSINESS})
    page = client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
    assert PROMPT not in page and "/sync/contacts" in page
    assert PROMPT not in client.get("/").get_data(as_text=True)


def test_a_single_business_login_never_shows_the_prompt(client, auth, workshop, sandbox):
    auth.login(workshop.owner)
    connect(client, sandbox, workshop.head_office_id)
    assert PROMPT not in client.get("/").get_data(as_text=True)
    assert PROMPT not in client.get(f"/integrations/sage/branches/{workshop.head_office_id}").get_data(as_text=True)
