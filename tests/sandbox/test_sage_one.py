"""Sage One AUS API 2.0.0: authentication order, lock-out, 415, routing, company scoping, saves and lists."""

import pytest
import requests

from sage_sandbox.seed import PASSWORD

from .helpers import API_KEY, CESSNOCK, MAITLAND, NEWCASTLE

JSON = {"Content-Type": "application/json"}


def url(sandbox, path, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{sandbox.url}/api/2.0.0/{path}" + (f"?{query}" if query else "")


def sales_account(aus) -> int:
    accounts = aus.get("/Account/Get", params={"$filter": "Name eq 'Sales'"}).json()["Results"]
    return accounts[0]["ID"]


def gst(aus) -> int:
    return aus.get("/TaxType/Get", params={"$filter": "Name eq 'GST'"}).json()["Results"][0]["ID"]


def new_customer(aus, **fields) -> dict:
    response = aus.post("/Customer/Save", json={"Name": "Ada Motors", **fields})
    assert response.status_code == 201, response.text
    return response.json()


def new_tax_invoice(aus, customer_id: int, **fields) -> dict:
    body = {"CustomerId": customer_id, "Date": "2025-03-01", "Reference": "JOB-1", "Lines": [
        {"LineType": 1, "SelectionId": sales_account(aus), "TaxTypeId": gst(aus), "Description": "Service",
         "Quantity": 2, "UnitPriceExclusive": 100.0}], **fields}
    response = aus.post("/TaxInvoice/Save", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# ------------------------------------------------------------------ authentication order

def test_call_without_credentials_gets_a_basic_challenge_then_succeeds_with_basic(sandbox):
    challenge = requests.get(url(sandbox, "Company/Get", apikey=API_KEY), headers=JSON)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"].startswith("Basic")
    answer = requests.get(url(sandbox, "Company/Get", apikey=API_KEY), headers=JSON,
                          auth=("newcastle@harbour-auto.test", PASSWORD))
    assert answer.status_code == 200
    assert [c["Name"] for c in answer.json()["Results"]] == ["Harbour Auto Newcastle"]


def test_missing_api_key_is_403_and_wrong_api_key_is_401(sandbox):
    auth = ("newcastle@harbour-auto.test", PASSWORD)
    assert requests.get(url(sandbox, "Company/Get"), headers=JSON, auth=auth).status_code == 403
    in_header = requests.get(url(sandbox, "Company/Get"), headers={**JSON, "apikey": API_KEY}, auth=auth)
    assert in_header.status_code == 403
    wrong = requests.get(url(sandbox, "Company/Get", apikey="nope"), headers=JSON, auth=auth)
    assert wrong.status_code == 401 and wrong.headers["X-APIKey"] == "Invalid"


@pytest.mark.parametrize("name", ["apikey", "ApiKey", "APIKEY"])
def test_api_key_parameter_name_is_case_insensitive(sandbox, name):
    response = requests.get(url(sandbox, "Company/Get", **{name: API_KEY}), headers=JSON,
                            auth=("newcastle@harbour-auto.test", PASSWORD))
    assert response.status_code == 200


def test_api_key_may_carry_braces_like_sages_guid_keys(sandbox):
    response = requests.get(url(sandbox, "Company/Get", apikey="{" + API_KEY + "}"), headers=JSON,
                            auth=("newcastle@harbour-auto.test", PASSWORD))
    assert response.status_code == 200


def test_wrong_password_is_401_with_challenge(sandbox):
    response = requests.get(url(sandbox, "Company/Get", apikey=API_KEY), headers=JSON,
                            auth=("newcastle@harbour-auto.test", "wrong"))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")


def test_more_than_twenty_failed_logins_in_an_hour_locks_the_username_for_a_day(sandbox):
    target = url(sandbox, "Company/Get", apikey=API_KEY)
    with requests.Session() as session:
        session.headers.update(JSON)
        statuses = [session.get(target, auth=("newcastle@harbour-auto.test", f"bad{n}")).status_code
                    for n in range(21)]
        assert statuses == [401] * 20 + [429]
        assert session.get(target, auth=("newcastle@harbour-auto.test", PASSWORD)).status_code == 429
        assert session.get(target, auth=("multi@harbour-auto.test", PASSWORD)).status_code == 200
        sandbox.state.advance_clock(86400 - 60)
        assert session.get(target, auth=("newcastle@harbour-auto.test", PASSWORD)).status_code == 429
        sandbox.state.advance_clock(61)
        assert session.get(target, auth=("newcastle@harbour-auto.test", PASSWORD)).status_code == 200


def test_failed_logins_older_than_an_hour_do_not_count(sandbox):
    target = url(sandbox, "Company/Get", apikey=API_KEY)
    for _ in range(15):
        requests.get(target, headers=JSON, auth=("newcastle@harbour-auto.test", "bad"))
    sandbox.state.advance_clock(3601)
    statuses = [requests.get(target, headers=JSON, auth=("newcastle@harbour-auto.test", "bad")).status_code
                for _ in range(20)]
    assert set(statuses) == {401}


def test_control_api_locks_a_username_and_changes_a_password(sandbox, http):
    target = url(sandbox, "Company/Get", apikey=API_KEY)
    assert http.post("/_sandbox/sage-one/users/newcastle@harbour-auto.test/lock", json={}).ok
    assert requests.get(target, headers=JSON, auth=("newcastle@harbour-auto.test", PASSWORD)).status_code == 429
    assert http.post("/_sandbox/sage-one/users/newcastle@harbour-auto.test/unlock").ok
    assert http.post("/_sandbox/sage-one/users/newcastle@harbour-auto.test/password",
                     json={"password": "changed-on-sage"}).ok
    assert requests.get(target, headers=JSON, auth=("newcastle@harbour-auto.test", PASSWORD)).status_code == 401
    assert requests.get(target, headers=JSON, auth=("newcastle@harbour-auto.test", "changed-on-sage")).ok
    assert http.post("/_sandbox/sage-one/users/nobody@x.test/lock", json={}).status_code == 404


# ------------------------------------------------------------------ content type and routing

@pytest.mark.parametrize("method, path", [("GET", "Company/Get"), ("GET", "Customer/Get"),
                                          ("POST", "Customer/Save"), ("DELETE", "Customer/Delete/1")])
def test_every_request_without_content_type_is_415(sandbox, method, path):
    response = requests.request(method, url(sandbox, path, apikey=API_KEY, CompanyId=NEWCASTLE),
                                auth=("newcastle@harbour-auto.test", PASSWORD))
    assert response.status_code == 415


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_SAGE_ONE_REQUIRE_CONTENT_TYPE": False}])
def test_content_type_rule_can_be_switched_off(sandbox):
    response = requests.get(url(sandbox, "Company/Get", apikey=API_KEY), auth=("newcastle@harbour-auto.test", PASSWORD))
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/api/2.0.0/customer/get", "/API/2.0.0/CUSTOMER/GET", "/Api/2.0.0/Customer/get",
                                  "/api/1.1.2/Customer/Get", "/api/2.1.1/Customer/Get"])
def test_routes_and_versions_match_case_insensitively(sandbox, aus, path):
    new_customer(aus)
    response = requests.get(f"{sandbox.url}{path}?APIKEY={API_KEY}&companyid={NEWCASTLE}", headers=JSON,
                            auth=("newcastle@harbour-auto.test", PASSWORD))
    assert response.status_code == 200 and response.json()["TotalResults"] == 1


def test_unknown_version_service_and_method_are_404_and_wrong_verb_is_405(aus):
    assert aus.get("/Customer/Get").status_code == 200
    assert aus.session.get(aus.base.replace("2.0.0", "3.0.0") + "/Customer/Get").status_code == 404
    assert aus.get("/Spaceship/Get").status_code == 404
    assert aus.get("/Customer/Launch").status_code == 404
    assert aus.get("/Customer/Save").status_code == 405


# ------------------------------------------------------------------ company scoping

def test_company_data_needs_company_id(aus):
    response = aus.get("/Customer/Get", params={"CompanyId": None})
    assert response.status_code == 400 and "CompanyId" in response.json()["Message"]


def test_company_of_another_user_is_not_found(aus):
    assert aus.get("/Customer/Get", params={"CompanyId": MAITLAND}).status_code == 404
    assert aus.get(f"/Company/Get/{MAITLAND}").status_code == 404


def test_ids_are_scoped_to_their_company(sandbox):
    with requests.Session() as multi:
        multi.auth = ("multi@harbour-auto.test", PASSWORD)
        multi.headers.update(JSON)
        base = f"{sandbox.url}/api/2.0.0"
        created = multi.post(f"{base}/Customer/Save", params={"apikey": API_KEY, "CompanyId": MAITLAND},
                             json={"Name": "Maitland Only"}).json()
        elsewhere = multi.get(f"{base}/Customer/Get/{created['ID']}", params={"apikey": API_KEY, "CompanyId": CESSNOCK})
        assert elsewhere.status_code == 404
        home = multi.get(f"{base}/Customer/Get/{created['ID']}", params={"apikey": API_KEY, "CompanyId": MAITLAND})
        assert home.status_code == 200 and home.json()["Name"] == "Maitland Only"
        assert multi.get(f"{base}/Customer/Get", params={"apikey": API_KEY, "CompanyId": CESSNOCK}).json()[
            "TotalResults"] == 0
        companies = multi.get(f"{base}/Company/Get", params={"apikey": API_KEY}).json()
        assert [c["ID"] for c in companies["Results"]] == [MAITLAND, CESSNOCK]


# ------------------------------------------------------------------ customers

def test_customer_save_without_id_creates_201_and_with_id_updates_200(aus):
    customer = new_customer(aus, Email="ada@example.test", Mobile="0400 000 000")
    assert isinstance(customer["ID"], int) and customer["Email"] == "ada@example.test"
    updated = aus.post("/Customer/Save", json={"ID": customer["ID"], "Name": "Ada Motors Pty Ltd"})
    assert updated.status_code == 200 and updated.json()["Name"] == "Ada Motors Pty Ltd"
    assert updated.json()["Email"] == "ada@example.test"
    assert aus.get(f"/Customer/Get/{customer['ID']}").json()["Name"] == "Ada Motors Pty Ltd"


def test_customer_without_name_is_400_with_a_message(aus):
    response = aus.post("/Customer/Save", json={"Email": "x@example.test"})
    assert response.status_code == 400 and "Name" in response.json()["Message"]


def test_saving_an_unknown_customer_id_is_404(aus):
    assert aus.post("/Customer/Save", json={"ID": 999999, "Name": "Ghost"}).status_code == 404


def test_customer_delete_removes_it_and_refuses_when_in_use(aus):
    spare = new_customer(aus, Name="Spare")
    assert aus.delete(f"/Customer/Delete/{spare['ID']}").status_code == 204
    assert aus.get(f"/Customer/Get/{spare['ID']}").status_code == 404
    busy = new_customer(aus, Name="Busy")
    new_tax_invoice(aus, busy["ID"])
    assert aus.delete(f"/Customer/Delete/{busy['ID']}").status_code == 409


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_SAGE_ONE_ERROR_FORMAT": "string"}])
def test_error_body_shape_is_switchable_to_a_bare_string(aus):
    response = aus.post("/Customer/Save", json={})
    assert response.status_code == 400 and isinstance(response.json(), str)


# ------------------------------------------------------------------ lists

@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_SAGE_ONE_RATE_LIMIT": 0}])
def test_lists_page_with_top_and_skip_capped_at_100(aus):
    for number in range(120):
        new_customer(aus, Name=f"Bulk {number:03d}")
    first = aus.get("/Customer/Get").json()
    assert first["TotalResults"] == 120 and first["ReturnedResults"] == 100
    rest = aus.get("/Customer/Get", params={"$skip": 100, "$top": 500}).json()
    assert rest["ReturnedResults"] == 20 and rest["Results"][0]["Name"] == "Bulk 100"
    few = aus.get("/Customer/Get", params={"$top": 5, "$skip": 10}).json()
    assert [c["Name"] for c in few["Results"]] == [f"Bulk {n:03d}" for n in range(10, 15)]


def test_filter_by_name_and_id(aus):
    ada = new_customer(aus, Name="Ada Motors")
    new_customer(aus, Name="Babbage Tyres")
    by_name = aus.get("/Customer/Get", params={"$filter": "Name eq 'Ada Motors'"}).json()
    assert [c["ID"] for c in by_name["Results"]] == [ada["ID"]]
    by_id = aus.get("/Customer/Get", params={"$filter": f"ID eq {ada['ID']}"}).json()
    assert by_id["TotalResults"] == 1
    contains = aus.get("/Customer/Get", params={"$filter": "substringof('tyres', Name)"}).json()
    assert [c["Name"] for c in contains["Results"]] == ["Babbage Tyres"]
    ordered = aus.get("/Customer/Get", params={"$orderby": "Name desc"}).json()
    assert [c["Name"] for c in ordered["Results"]] == ["Babbage Tyres", "Ada Motors"]
    assert aus.get("/Customer/Get", params={"$filter": "Name like 'x'"}).status_code == 400


def test_accounts_and_tax_types_are_seeded(aus):
    accounts = aus.get("/Account/Get").json()
    assert "Sales" in [a["Name"] for a in accounts["Results"]]
    tax_types = aus.get("/TaxType/Get").json()["Results"]
    assert {t["Name"]: t["Percentage"] for t in tax_types}["GST"] == 10.0


# ------------------------------------------------------------------ invoices and credit notes

def test_tax_invoice_save_computes_gst_and_numbers_the_invoice(aus):
    invoice = new_tax_invoice(aus, new_customer(aus)["ID"])
    assert invoice["Exclusive"] == 200.0 and invoice["Tax"] == 20.0 and invoice["Total"] == 220.0
    assert invoice["AmountDue"] == 220.0 and invoice["DocumentNumber"] == "INV0000001"
    assert invoice["Status"] == "Unpaid" and len(invoice["Lines"]) == 1
    listed = aus.get("/TaxInvoice/Get").json()["Results"][0]
    assert listed["Lines"] == []
    assert len(aus.get("/TaxInvoice/Get", params={"includeDetail": "true"}).json()["Results"][0]["Lines"]) == 1


def test_tax_invoice_needs_a_valid_selection_and_customer(aus):
    customer = new_customer(aus)
    response = aus.post("/TaxInvoice/Save", json={"CustomerId": customer["ID"], "Date": "2025-03-01", "Lines": [
        {"LineType": 1, "SelectionId": 1, "Description": "x", "UnitPriceExclusive": 1}]})
    assert response.status_code == 400 and response.json()["Message"] == "Valid Selection Required"
    missing = aus.post("/TaxInvoice/Save", json={"Date": "2025-03-01", "Lines": []})
    assert missing.status_code == 400


def test_tax_invoice_of_another_company_is_not_found(sandbox, aus):
    invoice = new_tax_invoice(aus, new_customer(aus)["ID"])
    sandbox.state.sage_one_users["newcastle@harbour-auto.test"].company_ids.append(MAITLAND)
    assert aus.get(f"/TaxInvoice/Get/{invoice['ID']}", params={"CompanyId": MAITLAND}).status_code == 404


def test_tax_invoice_has_no_delete_unless_switched_on(aus):
    invoice = new_tax_invoice(aus, new_customer(aus)["ID"])
    assert aus.delete(f"/TaxInvoice/Delete/{invoice['ID']}").status_code == 405


def test_credit_note_reverses_the_invoice_it_comes_from(aus):
    invoice = new_tax_invoice(aus, new_customer(aus)["ID"])
    response = aus.post("/CustomerReturn/Save", json={"FromDocumentId": invoice["ID"], "Date": "2025-03-02",
                                                      "Reference": "Reverses INV0000001"})
    assert response.status_code == 201
    note = response.json()
    assert note["FromDocumentId"] == invoice["ID"] and note["FromDocument"] == "INV0000001"
    assert note["Total"] == 220.0 and note["CustomerId"] == invoice["CustomerId"]
    reversed_invoice = aus.get(f"/TaxInvoice/Get/{invoice['ID']}").json()
    assert reversed_invoice["Status"] == "Reversed" and reversed_invoice["AmountDue"] == 0.0
    assert reversed_invoice["Locked"] is True
    again = aus.post("/CustomerReturn/Save", json={"FromDocumentId": invoice["ID"], "Date": "2025-03-03"})
    assert again.status_code == 400 and "already been reversed" in again.json()["Message"]
    assert aus.post("/TaxInvoice/Save", json={**invoice, "Reference": "edit"}).status_code == 400
    assert aus.get("/CustomerReturn/Get").json()["TotalResults"] == 1


def test_credit_note_must_reference_an_invoice_of_the_same_company(sandbox, aus):
    invoice = new_tax_invoice(aus, new_customer(aus)["ID"])
    sandbox.state.sage_one_users["newcastle@harbour-auto.test"].company_ids.append(MAITLAND)
    response = aus.post("/CustomerReturn/Save", params={"CompanyId": MAITLAND},
                        json={"FromDocumentId": invoice["ID"], "Date": "2025-03-02"})
    assert response.status_code == 400


# ------------------------------------------------------------------ rate limit

def test_more_than_100_calls_a_minute_blocks_the_caller_for_an_hour(sandbox, aus):
    statuses = [aus.get("/TaxType/Get").status_code for _ in range(101)]
    assert statuses == [200] * 100 + [429]
    blocked = aus.get("/TaxType/Get")
    assert blocked.status_code == 429 and "blocked" in blocked.headers["X-RequestLimit-ExceededReason"]
    sandbox.state.advance_clock(3000)
    assert aus.get("/TaxType/Get").status_code == 429  # calling during the block extends it
    sandbox.state.advance_clock(3000)
    assert aus.get("/TaxType/Get").status_code == 429
    sandbox.state.advance_clock(3601)
    assert aus.get("/TaxType/Get").status_code == 200


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_SAGE_ONE_RATE_LIMIT": 3, "SANDBOX_SAGE_ONE_BLOCK_SECONDS": 10}])
def test_rate_limit_is_per_company_and_configurable(sandbox):
    with requests.Session() as multi:
        multi.auth = ("multi@harbour-auto.test", PASSWORD)
        multi.headers.update(JSON)
        target = f"{sandbox.url}/api/2.0.0/TaxType/Get"
        maitland = [multi.get(target, params={"apikey": API_KEY, "CompanyId": MAITLAND}).status_code
                    for _ in range(4)]
        assert maitland == [200, 200, 200, 429]
        assert multi.get(target, params={"apikey": API_KEY, "CompanyId": CESSNOCK}).status_code == 200
        sandbox.state.advance_clock(11)
        assert multi.get(target, params={"apikey": API_KEY, "CompanyId": MAITLAND}).status_code == 200


def test_rate_limit_can_be_turned_off_through_the_control_api(http, aus):
    assert http.post("/_sandbox/rate-limits", json={"sage_one": 2}).json()["sage_one"] == 2
    assert [aus.get("/TaxType/Get").status_code for _ in range(3)] == [200, 200, 429]
    assert http.post("/_sandbox/rate-limits", json={"sage_one": 0}).json()["sage_one"] is None
    assert all(aus.get("/TaxType/Get").status_code == 200 for _ in range(5))


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_SAGE_ONE_ALLOW_INVOICE_DELETE": True}])
def test_tax_invoice_delete_can_be_switched_on(aus):
    invoice = new_tax_invoice(aus, new_customer(aus)["ID"])
    assert aus.delete(f"/TaxInvoice/Delete/{invoice['ID']}").status_code == 204
    assert aus.get(f"/TaxInvoice/Get/{invoice['ID']}").status_code == 404
