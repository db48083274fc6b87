"""v3.1 API rules: bearer auth, X-Business isolation, contacts, sales invoices, voids, paging, rate limit."""

import pytest

from .helpers import (
    FLEET_BUSINESS,
    LEAD_BUSINESS,
    SOLO_BUSINESS,
    assert_error_array,
    new_contact,
    new_invoice,
    sales_ledger,
)

# ------------------------------------------------------------------ authentication

def test_request_without_bearer_token_is_401_authorization_failure(http):
    assert_error_array(http.get("/v3.1/contacts"), 401, "AuthorizationFailure")


def test_request_with_unknown_bearer_token_is_401(http):
    response = http.get("/v3.1/contacts", headers={"Authorization": "Bearer nonsense"})
    assert_error_array(response, 401, "AuthorizationFailure")


def test_access_token_expires_after_five_minutes(sandbox, v31):
    sandbox.state.advance_clock(299)
    assert v31.get("/contacts").status_code == 200
    sandbox.state.advance_clock(2)
    assert_error_array(v31.get("/contacts"), 401, "AuthorizationFailure")


def test_control_api_expires_an_access_token_now(http, v31, tokens):
    assert http.post("/_sandbox/access-tokens/expire", json={"access_token": tokens["access_token"]}).ok
    assert_error_array(v31.get("/user"), 401, "AuthorizationFailure")


def test_control_api_expires_every_access_token_of_a_user(http, v31):
    assert http.post("/_sandbox/access-tokens/expire", json={"email": "sage@harbour-auto.test"}).json()["expired"] == 1
    assert_error_array(v31.get("/user"), 401, "AuthorizationFailure")


def test_refreshed_access_token_works_after_the_old_one_expired(sandbox, http, tokens):
    sandbox.state.advance_clock(301)
    refreshed = http.post("/token", data={"client_id": "portal-dev-client", "client_secret": "portal-dev-secret",
                                          "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert http.get("/v3.1/contacts", headers=headers).status_code == 200


def test_readonly_token_cannot_write(sandbox, http):
    from sage_sandbox.testing import obtain_tokens

    readonly = obtain_tokens(sandbox.url, scope="readonly")
    headers = {"Authorization": f"Bearer {readonly['access_token']}"}
    assert http.get("/v3.1/contacts", headers=headers).status_code == 200
    response = http.post("/v3.1/contacts", headers=headers,
                         json={"contact": {"name": "X", "contact_type_ids": ["CUSTOMER"]}})
    assert_error_array(response, 403, "MultiUserAccessDenied")


# ------------------------------------------------------------------ businesses and X-Business

def test_businesses_lists_both_of_the_users_businesses_unpaged(v31):
    body = v31.get("/businesses").json()
    assert [b["id"] for b in body["$items"]] == [LEAD_BUSINESS, FLEET_BUSINESS]
    assert body["$items_per_page"] == 2147483647 and body["$total"] == 2


def test_businesses_lead_is_the_first_business(v31):
    assert v31.get("/businesses/lead").json()["name"] == "Harbour Auto Pty Ltd"
    assert v31.get(f"/businesses/{FLEET_BUSINESS}").json()["name"] == "Harbour Auto Fleet Services"


def test_another_users_business_is_not_found(v31):
    assert_error_array(v31.get(f"/businesses/{SOLO_BUSINESS}"), 404, "RecordNotFound")


def test_user_returns_the_signed_in_sage_user(v31):
    assert v31.get("/user").json()["email"] == "sage@harbour-auto.test"


def test_without_x_business_the_lead_business_is_used(v31):
    contact = new_contact(v31)
    assert v31.get(f"/contacts/{contact['id']}", headers={"X-Business": LEAD_BUSINESS}).status_code == 200


def test_data_is_isolated_per_business(v31):
    fleet_contact = new_contact(v31, business=FLEET_BUSINESS, name="Fleet Only")
    assert_error_array(v31.get(f"/contacts/{fleet_contact['id']}"), 404, "RecordNotFound")
    assert v31.get("/contacts").json()["$total"] == 0
    fleet = v31.get("/contacts", headers={"X-Business": FLEET_BUSINESS}).json()
    assert [c["id"] for c in fleet["$items"]] == [fleet_contact["id"]]
    response = v31.delete(f"/contacts/{fleet_contact['id']}", headers={"X-Business": LEAD_BUSINESS})
    assert_error_array(response, 404, "RecordNotFound")


def test_x_business_of_another_user_is_refused(v31):
    assert_error_array(v31.get("/contacts", headers={"X-Business": SOLO_BUSINESS}), 404, "RecordNotFound",
                       "X-Business")


def test_invoice_cannot_use_a_contact_of_another_business(v31):
    fleet_contact = new_contact(v31, business=FLEET_BUSINESS)
    response = v31.post("/sales_invoices", json={"sales_invoice": {
        "contact_id": fleet_contact["id"], "date": "2025-03-01",
        "invoice_lines": [{"description": "x", "ledger_account_id": sales_ledger(v31), "unit_price": 1}]}})
    assert_error_array(response, 422, "RecordInvalid", "contact_id")


# ------------------------------------------------------------------ contacts

def test_create_contact_returns_201_with_the_contact(v31):
    contact = new_contact(v31, reference="ADA01", main_contact_person={"email": "ada@example.test"})
    assert contact["name"] == "Ada Motors" and contact["displayed_as"] == "Ada Motors (ADA01)"
    assert contact["email"] == "ada@example.test"
    assert [t["id"] for t in contact["contact_types"]] == ["CUSTOMER"]
    assert len(contact["id"]) == 32 and contact["$path"] == f"/contacts/{contact['id']}"


@pytest.mark.parametrize("body, source", [
    ({"contact_type_ids": ["CUSTOMER"]}, "name"),
    ({"name": "No types"}, "contact_type_ids"),
    ({"name": "Bad type", "contact_type_ids": ["FRIEND"]}, "contact_type_ids"),
    ({"name": "x" * 101, "contact_type_ids": ["CUSTOMER"]}, "name"),
    ({"name": "Long ref", "contact_type_ids": ["CUSTOMER"], "reference": "ABCDEFGHIJK"}, "reference"),
])
def test_invalid_contact_is_422_record_invalid_with_source(v31, body, source):
    assert_error_array(v31.post("/contacts", json={"contact": body}), 422, "RecordInvalid", source)


def test_missing_name_and_types_report_both_fields(v31):
    body = assert_error_array(v31.post("/contacts", json={"contact": {}}), 422, "RecordInvalid")
    assert {e["$source"] for e in body} == {"name", "contact_type_ids"}


def test_contact_body_must_be_wrapped_in_contact_key(v31):
    response = v31.post("/contacts", json={"name": "Unwrapped", "contact_type_ids": ["CUSTOMER"]})
    assert_error_array(response, 422, "RecordInvalid", "contact")


def test_reference_is_unique_per_business_only(v31):
    new_contact(v31, reference="DUP1")
    response = v31.post("/contacts", json={"contact": {"name": "Other", "contact_type_ids": ["CUSTOMER"],
                                                       "reference": "DUP1"}})
    assert_error_array(response, 422, "RecordInvalid", "reference")
    new_contact(v31, business=FLEET_BUSINESS, reference="DUP1")


def test_update_contact_changes_only_given_fields(v31):
    contact = new_contact(v31, reference="UPD1", notes="first")
    response = v31.put(f"/contacts/{contact['id']}", json={"contact": {"notes": "second"}})
    assert response.status_code == 200
    assert response.json()["notes"] == "second" and response.json()["reference"] == "UPD1"


def test_update_cannot_take_another_contacts_reference(v31):
    new_contact(v31, reference="TAKEN")
    contact = new_contact(v31, name="Second")
    response = v31.put(f"/contacts/{contact['id']}", json={"contact": {"reference": "TAKEN"}})
    assert_error_array(response, 422, "RecordInvalid", "reference")


def test_delete_contact_is_204_then_404(v31):
    contact = new_contact(v31)
    response = v31.delete(f"/contacts/{contact['id']}")
    assert response.status_code == 204 and response.content == b""
    assert_error_array(v31.get(f"/contacts/{contact['id']}"), 404, "RecordNotFound")


def test_contact_with_invoices_cannot_be_deleted(v31):
    contact = new_contact(v31)
    new_invoice(v31, contact["id"])
    assert_error_array(v31.delete(f"/contacts/{contact['id']}"), 422, "RecordInvalid", "base")


def test_contact_list_filters_by_search_email_type_and_since(sandbox, v31):
    new_contact(v31, name="Alpha Garage", reference="ALP", main_contact_person={"email": "a@alpha.test"})
    new_contact(v31, name="Beta Parts", contact_type_ids=["VENDOR"])
    sandbox.state.advance_clock(10)
    later = new_contact(v31, name="Gamma Tyres")

    def names(**params):
        return [c["name"] for c in v31.get("/contacts", params={"attributes": "name", **params}).json()["$items"]]

    assert names(search="alp") == ["Alpha Garage"]
    assert names(email="A@ALPHA.TEST") == ["Alpha Garage"]
    assert names(contact_type_id="VENDOR") == ["Beta Parts"]
    assert names(updated_or_created_since=later["created_at"]) == ["Gamma Tyres"]
    assert_error_array(v31.get("/contacts", params={"updated_or_created_since": "yesterday"}), 422, "RecordInvalid")


def test_contact_list_items_carry_only_base_attributes_unless_asked(v31):
    new_contact(v31)
    item = v31.get("/contacts").json()["$items"][0]
    assert set(item) == {"id", "displayed_as", "$path"}
    item = v31.get("/contacts", params={"attributes": "name,email"}).json()["$items"][0]
    assert item == {"id": item["id"], "displayed_as": "Ada Motors", "$path": item["$path"], "name": "Ada Motors",
                    "email": None}  # live Sage sends null members as explicit nulls
    item = v31.get("/contacts", params={"attributes": "all"}).json()["$items"][0]
    assert "contact_types" in item and "created_at" in item


# ------------------------------------------------------------------ pagination

def test_list_envelope_pages_with_relative_next_and_back_echoing_other_params(v31):
    for number in range(5):
        new_contact(v31, name=f"Paged {number}")
    first = v31.get("/contacts", params={"items_per_page": 2, "search": "Paged"}).json()
    assert list(first) == ["$total", "$page", "$next", "$back", "$itemsPerPage", "$items"]
    assert first["$total"] == 5 and first["$page"] == 1 and first["$itemsPerPage"] == 2
    assert first["$back"] is None
    assert first["$next"] == "/contacts?page=2&items_per_page=2&search=Paged"
    second = v31.get(first["$next"]).json()
    assert second["$page"] == 2 and second["$back"] == "/contacts?page=1&items_per_page=2&search=Paged"
    last = v31.get("/contacts", params={"items_per_page": 2, "page": 3, "search": "Paged"}).json()
    assert last["$next"] is None and len(last["$items"]) == 1


def test_page_past_the_end_returns_the_last_page(v31):
    for number in range(3):
        new_contact(v31, name=f"C{number}")
    body = v31.get("/contacts", params={"items_per_page": 2, "page": 9}).json()
    assert body["$page"] == 2 and len(body["$items"]) == 1


def test_items_per_page_defaults_to_20_and_is_capped_at_200(v31):
    assert v31.get("/contacts").json()["$itemsPerPage"] == 20
    assert v31.get("/contacts", params={"items_per_page": 500}).json()["$itemsPerPage"] == 200
    assert v31.get("/contacts", params={"items_per_page": 0}).json()["$itemsPerPage"] == 1


def test_empty_list_is_one_empty_page(v31):
    body = v31.get("/sales_invoices").json()
    assert body == {"$total": 0, "$page": 1, "$next": None, "$back": None, "$itemsPerPage": 20, "$items": []}


# ------------------------------------------------------------------ sales invoices

def test_create_invoice_computes_totals_and_is_unpaid(v31):
    contact = new_contact(v31)
    invoice = new_invoice(v31, contact["id"])
    assert invoice["net_amount"] == "240.0" and invoice["tax_amount"] == "48.0" and invoice["total_amount"] == "288.0"
    assert invoice["status"]["id"] == "UNPAID" and invoice["displayed_as"] == "SI-1"
    assert invoice["contact"]["id"] == contact["id"] and invoice["due_date"] == "2025-03-31"
    assert v31.get(f"/sales_invoices/{invoice['id']}").json()["total_amount"] == "288.0"


def test_invoice_without_required_fields_lists_every_problem(v31):
    body = assert_error_array(v31.post("/sales_invoices", json={"sales_invoice": {}}), 422, "RecordInvalid")
    assert {e["$source"] for e in body} == {"contact_id", "date", "invoice_lines"}


def test_invoice_line_needs_description_ledger_account_and_unit_price(v31):
    contact = new_contact(v31)
    response = v31.post("/sales_invoices", json={"sales_invoice": {
        "contact_id": contact["id"], "date": "2025-03-01", "invoice_lines": [{"quantity": 1}]}})
    body = assert_error_array(response, 422, "RecordInvalid")
    assert {e["$source"] for e in body} == {"invoice_lines.description", "invoice_lines.ledger_account_id",
                                            "invoice_lines.unit_price"}


def test_invoice_list_filters_by_contact_and_status(v31):
    first, second = new_contact(v31, name="One"), new_contact(v31, name="Two")
    invoice = new_invoice(v31, first["id"])
    new_invoice(v31, second["id"])
    ids = [i["id"] for i in v31.get("/sales_invoices", params={"contact_id": first["id"]}).json()["$items"]]
    assert ids == [invoice["id"]]
    v31.delete(f"/sales_invoices/{invoice['id']}", params={"void_reason": "Raised in error"})
    void = v31.get("/sales_invoices", params={"status_id": "VOID"}).json()["$items"]
    assert [i["id"] for i in void] == [invoice["id"]]


def test_void_returns_200_with_status_void_and_reason(v31):
    invoice = new_invoice(v31, new_contact(v31)["id"])
    response = v31.delete(f"/sales_invoices/{invoice['id']}", params={"void_reason": "Duplicate job card"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"]["id"] == "VOID" and body["void_reason"] == "Duplicate job card"
    assert body["outstanding_amount"] == "0.0"
    assert v31.get(f"/sales_invoices/{invoice['id']}").json()["status"]["id"] == "VOID"


def test_void_without_reason_is_refused_unless_draft(v31):
    contact = new_contact(v31)
    invoice = new_invoice(v31, contact["id"])
    assert_error_array(v31.delete(f"/sales_invoices/{invoice['id']}"), 422, "RecordInvalid", "void_reason")
    draft = new_invoice(v31, contact["id"], status_id="DRAFT")
    response = v31.delete(f"/sales_invoices/{draft['id']}")
    assert response.status_code == 200 and response.json()["status"]["id"] == "VOID"


def test_voiding_twice_is_an_error_that_says_so(v31):
    invoice = new_invoice(v31, new_contact(v31)["id"])
    v31.delete(f"/sales_invoices/{invoice['id']}", params={"void_reason": "First"})
    body = assert_error_array(v31.delete(f"/sales_invoices/{invoice['id']}", params={"void_reason": "Again"}),
                              422, "RecordInvalid")
    assert "already been voided" in body[0]["$message"]


def test_void_of_another_business_invoice_is_not_found(v31):
    invoice = new_invoice(v31, new_contact(v31)["id"])
    response = v31.delete(f"/sales_invoices/{invoice['id']}", params={"void_reason": "x"},
                          headers={"X-Business": FLEET_BUSINESS})
    assert_error_array(response, 404, "RecordNotFound")


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_VOID_STATUS_CODE": 204, "SANDBOX_VOID_DRAFT_DELETES": True}])
def test_void_answer_and_draft_handling_are_switchable(v31):
    contact = new_contact(v31)
    invoice = new_invoice(v31, contact["id"])
    assert v31.delete(f"/sales_invoices/{invoice['id']}", params={"void_reason": "x"}).status_code == 204
    draft = new_invoice(v31, contact["id"], status_id="DRAFT")
    assert v31.delete(f"/sales_invoices/{draft['id']}").status_code == 204
    assert_error_array(v31.get(f"/sales_invoices/{draft['id']}"), 404, "RecordNotFound")


# ------------------------------------------------------------------ lookups and routing

def test_lookups_hold_what_an_invoice_needs(v31):
    assert {t["id"] for t in v31.get("/contact_types").json()["$items"]} == {"CUSTOMER", "VENDOR"}
    assert {"DRAFT", "UNPAID", "VOID"} <= {s["id"] for s in v31.get("/artefact_statuses").json()["$items"]}
    rates = v31.get("/tax_rates", params={"attributes": "percentage"}).json()["$items"]
    assert {r["id"]: r["percentage"] for r in rates}["GB_STANDARD"] == "20.0"
    sales = v31.get("/ledger_accounts", params={"visible_in": "sales", "attributes": "all"}).json()["$items"]
    assert "Sales (4000)" in [a["displayed_as"] for a in sales] and all(a["visible_in_sales"] for a in sales)


def test_unknown_path_and_wrong_verb_answer_error_arrays(v31):
    assert_error_array(v31.get("/no_such_resource"), 404, "RecordNotFound")
    assert_error_array(v31.request("PATCH", "/contacts"), 405, "MethodNotAllowed")


def test_non_json_body_is_415(v31):
    response = v31.post("/contacts", data="name=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error_array(response, 415, "UnsupportedMediaType")


# ------------------------------------------------------------------ rate limit

def test_rate_limit_is_100_per_minute_per_business_with_retry_after(sandbox, v31):
    for _ in range(99):  # the token fixture made no API calls; 100 are allowed
        assert v31.get("/contact_types").status_code == 200
    assert v31.get("/contact_types").status_code == 200
    limited = v31.get("/contact_types")
    assert_error_array(limited, 429, "TooManyRequests")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert v31.get("/contact_types", headers={"X-Business": FLEET_BUSINESS}).status_code == 200
    sandbox.state.advance_clock(61)
    assert v31.get("/contact_types").status_code == 200


def test_rate_limit_can_be_changed_and_turned_off_through_the_control_api(http, v31):
    assert http.post("/_sandbox/rate-limits", json={"sage": 3}).json()["sage"] == 3
    for _ in range(3):
        assert v31.get("/user").status_code == 200
    assert v31.get("/user").status_code == 429
    http.post("/_sandbox/rate-limits", json={"sage": None})
    assert all(v31.get("/user").status_code == 200 for _ in range(5))


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_SAGE_RATE_LIMIT": 2}])
def test_rate_limit_is_configurable(v31):
    assert [v31.get("/user").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("sandbox_config", [{"SANDBOX_REQUIRE_X_BUSINESS": True}])
def test_x_business_can_be_made_mandatory_for_users_with_several_businesses(v31):
    assert_error_array(v31.get("/contacts"), 401, "AuthorizationFailure")
    assert v31.get("/contacts", headers={"X-Business": LEAD_BUSINESS}).status_code == 200
    assert v31.get("/businesses").status_code == 200


def test_concurrent_writes_under_the_threaded_server_lose_nothing(sandbox, http, v31):
    from concurrent.futures import ThreadPoolExecutor

    http.post("/_sandbox/rate-limits", json={"sage": None})
    contact = new_contact(v31)
    ledger = sales_ledger(v31)
    token = v31.session.headers["Authorization"]

    def create(number):
        import requests

        return requests.post(f"{sandbox.url}/v3.1/sales_invoices", headers={"Authorization": token}, timeout=10,
                             json={"sales_invoice": {"contact_id": contact["id"], "date": "2025-03-01",
                                                     "invoice_lines": [{"description": f"Job {number}",
                                                                        "ledger_account_id": ledger,
                                                                        "unit_price": 10}]}}).json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        invoices = list(pool.map(create, range(40)))
    numbers = {i["invoice_number"] for i in invoices}
    assert numbers == {f"SI-{n}" for n in range(1, 41)}
    assert v31.get("/sales_invoices").json()["$total"] == 40


def test_a_reference_is_free_again_after_it_is_changed_or_its_contact_deleted(v31):
    renamed = new_contact(v31, reference="OLD1")
    assert v31.put(f"/contacts/{renamed['id']}", json={"contact": {"reference": "NEW1"}}).status_code == 200
    new_contact(v31, reference="OLD1")  # the old reference was released
    taken = v31.post("/contacts", json={"contact": {"name": "Copy", "contact_type_ids": ["CUSTOMER"],
                                                   "reference": "new1"}})
    assert_error_array(taken, 422, "RecordInvalid", "reference")
    assert v31.delete(f"/contacts/{renamed['id']}").status_code == 204
    new_contact(v31, reference="NEW1")
