"""Control API switches (faults, reset, state), the overview page, and the in-process helpers."""

import subprocess
import sys
import time

import pytest
import requests

from sage_sandbox import create_app
from sage_sandbox.bench import post_contacts
from sage_sandbox.testing import start_sandbox

from .helpers import FLEET_BUSINESS, LEAD_BUSINESS, NEWCASTLE, new_contact, new_invoice


def test_added_latency_delays_api_answers_but_not_the_control_api(http, v31):
    assert http.post("/_sandbox/faults", json={"latency_ms": 150}).json()["latency_ms"] == 150
    started = time.perf_counter()
    assert v31.get("/user").status_code == 200
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    http.get("/_sandbox/state")
    assert time.perf_counter() - started < 0.15


def test_error_share_of_one_answers_every_api_call_with_500_in_each_apis_shape(http, v31, aus):
    http.post("/_sandbox/faults", json={"error_rate": 1})
    failed = v31.get("/contacts")
    assert failed.status_code == 500 and failed.json()[0]["$dataCode"] == "UnexpectedError"
    assert aus.get("/Customer/Get").status_code == 500
    token = http.post("/token", data={"grant_type": "refresh_token"})
    assert token.status_code == 500 and token.json() == {"error": "server_error"}
    http.post("/_sandbox/faults", json={"error_rate": 0})
    assert v31.get("/contacts").status_code == 200


def test_drop_share_of_one_closes_connections_without_an_answer(http, v31, aus):
    http.post("/_sandbox/faults", json={"drop_rate": 1})
    with pytest.raises(requests.ConnectionError):
        v31.get("/contacts")
    with pytest.raises(requests.ConnectionError):
        aus.get("/Customer/Get")
    assert http.get("/_sandbox/state").json()["requests"]["faults_dropped"] == 2
    http.post("/_sandbox/faults", json={"drop_rate": 0})
    assert v31.get("/contacts").status_code == 200


def test_fault_shares_apply_to_roughly_that_share_of_calls(sandbox, v31):
    sandbox.state.set_fault_rates(error_rate=0.5, seed_value=7)
    statuses = [v31.get("/contact_types").status_code for _ in range(60)]
    assert 15 <= statuses.count(500) <= 45 and statuses.count(200) == 60 - statuses.count(500)


def test_fault_switches_reject_shares_outside_zero_to_one(http):
    assert http.post("/_sandbox/faults", json={"error_rate": 2}).status_code == 400
    assert http.post("/_sandbox/faults", json={"latency_ms": "slow"}).status_code == 400


def test_state_counts_what_each_business_and_company_holds(http, v31, aus):
    contact = new_contact(v31)
    new_invoice(v31, contact["id"])
    new_contact(v31, business=FLEET_BUSINESS)
    aus.post("/Customer/Save", json={"Name": "Newcastle Customer"})
    state = http.get("/_sandbox/state").json()
    assert state["businesses"][LEAD_BUSINESS]["contacts"] == 1
    assert state["businesses"][LEAD_BUSINESS]["invoices"] == 1
    assert state["businesses"][FLEET_BUSINESS]["contacts"] == 1
    assert state["companies"][str(NEWCASTLE)]["customers"] == 1
    assert state["requests"]["v3.1"] == 4 and state["requests"]["sage_one"] == 1


def test_reset_puts_everything_back_to_the_seed(sandbox, http, v31):
    new_contact(v31)
    http.post("/_sandbox/faults", json={"latency_ms": 5})
    http.post("/_sandbox/redirect-uris", json={"uri": "http://127.0.0.1:9/cb"})
    assert http.post("/_sandbox/reset").ok
    state = http.get("/_sandbox/state").json()
    assert state["businesses"][LEAD_BUSINESS]["contacts"] == 0
    assert state["settings"]["latency_ms"] == 0
    assert "http://127.0.0.1:9/cb" not in state["settings"]["redirect_uris"]
    assert v31.get("/user").status_code == 401  # tokens are part of the state too


def test_control_api_mints_tokens_for_a_seeded_user(http):
    tokens = http.post("/_sandbox/tokens", json={"email": "solo@harbour-auto.test"}).json()
    user = http.get("/v3.1/user", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert user["email"] == "solo@harbour-auto.test"
    assert http.post("/_sandbox/tokens", json={"email": "ghost@x.test"}).status_code == 404


def test_overview_page_shows_synced_contacts_invoices_and_credit_notes(http, v31, aus):
    contact = new_contact(v31, name="Sync Landed Motors")
    invoice = new_invoice(v31, contact["id"])
    v31.delete(f"/sales_invoices/{invoice['id']}", params={"void_reason": "Wrong customer"})
    customer = aus.post("/Customer/Save", json={"Name": "Hunter Valley Fleet"}).json()
    account = aus.get("/Account/Get").json()["Results"][0]["ID"]
    tax_invoice = aus.post("/TaxInvoice/Save", json={"CustomerId": customer["ID"], "Date": "2025-03-01", "Lines": [
        {"LineType": 1, "SelectionId": account, "Description": "Brakes", "UnitPriceExclusive": 50}]}).json()
    aus.post("/CustomerReturn/Save", json={"FromDocumentId": tax_invoice["ID"], "Date": "2025-03-02"})
    page = http.get("/_sandbox/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    for text in ("Sync Landed Motors", "SI-1", "VOID", "Wrong customer", "Hunter Valley Fleet", "INV0000001",
                 "CN0000001", "Reversed", "Harbour Auto Fleet Services", "Harbour Auto Newcastle"):
        assert text in page.text
    assert http.get("/", allow_redirects=False).headers["Location"].endswith("/_sandbox/")


def test_start_sandbox_serves_on_an_ephemeral_port_and_stops(http):
    with start_sandbox() as other:
        assert other.url.startswith("http://127.0.0.1:") and other.url != http.base
        assert requests.get(f"{other.url}/_sandbox/state", timeout=5).ok
        assert other.state is other.app.extensions["sage_sandbox"]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{other.url}/_sandbox/state", timeout=2)


def test_create_app_applies_config_overrides():
    app = create_app({"SANDBOX_CLIENT_ID": "other-client", "SANDBOX_SAGE_RATE_LIMIT": None})
    state = app.extensions["sage_sandbox"]
    assert state.client_id == "other-client" and state.sage_rate_limit is None


def test_bench_posts_contacts_and_reports_a_rate(sandbox, http):
    http.post("/_sandbox/rate-limits", json={"sage": None})
    token = sandbox.state.issue_tokens("sage@harbour-auto.test")["access_token"]
    rate = post_contacts(sandbox.url, token, count=40, concurrency=2)
    assert rate > 0
    assert http.get("/_sandbox/state").json()["businesses"][LEAD_BUSINESS]["contacts"] == 40


def test_command_line_prints_usage():
    result = subprocess.run([sys.executable, "-m", "sage_sandbox", "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and "--port" in result.stdout


def test_state_reports_the_v31_shape_and_refuses_an_unknown_one(http):
    assert http.get("/_sandbox/state").json()["settings"]["v31_shape"] == "live"
    assert create_app({"SANDBOX_V31_SHAPE": "spec"}).extensions["sage_sandbox"].config["SANDBOX_V31_SHAPE"] == "spec"
    with pytest.raises(ValueError):
        create_app({"SANDBOX_V31_SHAPE": "numbers"})


def test_state_starts_with_every_rate_limit_counter_at_zero(http):
    state = http.get("/_sandbox/state").json()
    assert set(state["rate_limits"].values()) == {0}
    assert state["businesses"][LEAD_BUSINESS]["rate_limited"] == {"per_minute": 0, "per_day": 0}
    assert state["companies"][str(NEWCASTLE)]["blocks"] == 0
    assert state["companies"][str(NEWCASTLE)]["rate_limited"] == 0
