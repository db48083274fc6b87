"""v3.1 answers as live Sage does by default, and in the published spec's shape when SANDBOX_V31_SHAPE = "spec".

Live (reference Part F): decimal strings for money, quantities, rates and percentages; explicit nulls; list items
with base attributes and nested records as links unless `attributes=` / `nested_attributes=` ask; `$next`/`$back`
echoing the query as sent; numbers accepted as strings in request bodies. Also the daily request budget and the
429 counters in `/_sandbox/state`.
"""

from decimal import Decimal

import pytest

from sage_sandbox.v31_records import decimal_string

from .helpers import FLEET_BUSINESS, LEAD_BUSINESS, assert_error_array, new_contact, new_invoice, sales_ledger

SPEC = {"SANDBOX_V31_SHAPE": "spec"}
LONG_TOKENS = {"SANDBOX_ACCESS_TOKEN_SECONDS": 3 * 86400}  # so the clock can be moved by hours


def invoice_body(v31, contact_id: str, **line) -> dict:
    return {"sales_invoice": {"contact_id": contact_id, "date": "2025-03-01", "invoice_lines": [{
        "description": "Brake pads", "ledger_account_id": sales_ledger(v31), "tax_rate_id": "GB_STANDARD",
        **line}]}}


# ------------------------------------------------------------------ numbers

@pytest.mark.parametrize("value, text", [
    (Decimal("10"), "10.0"), (Decimal("-430035.84"), "-430035.84"), (Decimal("0"), "0.0"), (Decimal("-0.00"), "0.0"),
    (Decimal("20.00"), "20.0"), (Decimal("120.50"), "120.5"), (Decimal("12.34"), "12.34"), (20.0, "20.0"),
    (Decimal("1E+3"), "1000.0"), (Decimal("0.05"), "0.05"),
])
def test_decimals_are_written_in_ruby_bigdecimal_style(value, text):
    assert decimal_string(value) == text


def test_live_shape_sends_money_quantities_and_rates_as_decimal_strings(v31):
    contact = new_contact(v31)
    created = v31.post("/sales_invoices", json=invoice_body(v31, contact["id"], unit_price=120.5, quantity=2))
    invoice = created.json()
    assert (invoice["net_amount"], invoice["tax_amount"], invoice["total_amount"]) == ("241.0", "48.2", "289.2")
    assert invoice["outstanding_amount"] == "289.2" and invoice["exchange_rate"] == "1.0"
    assert invoice["total_quantity"] == "2.0" and invoice["total_paid"] == "0.0"
    line = invoice["invoice_lines"][0]
    assert (line["quantity"], line["unit_price"], line["net_amount"]) == ("2.0", "120.5", "241.0")
    assert line["discount_percentage"] == "0.0"
    read = v31.get(f"/contacts/{contact['id']}").json()
    assert read["balance"] == "289.2" and read["credit_limit"] == "0.0"
    assert read["credit_days"] == 30  # integers stay integers
    rate = v31.get("/tax_rates/GB_STANDARD").json()
    assert rate["percentage"] == "20.0" and rate["percentages"][0]["percentage"] == "20.0"
    assert v31.get("/ledger_accounts", params={"attributes": "nominal_code"}).json()["$items"][0][
        "nominal_code"] == 4000


@pytest.mark.parametrize("sandbox_config", [SPEC])
def test_spec_shape_sends_json_numbers(v31):
    contact = new_contact(v31)
    invoice = v31.post("/sales_invoices", json=invoice_body(v31, contact["id"], unit_price=120.5, quantity=2)).json()
    assert invoice["total_amount"] == 289.2 and isinstance(invoice["net_amount"], float)
    assert invoice["invoice_lines"][0]["quantity"] == 2.0
    assert v31.get("/tax_rates/GB_STANDARD").json()["percentage"] == 20.0
    assert v31.get(f"/contacts/{contact['id']}").json()["balance"] == 289.2


def test_live_shape_sends_null_members_explicitly(v31):
    contact = v31.get(f"/contacts/{new_contact(v31)['id']}").json()
    assert contact["reference"] is None and contact["tax_number"] is None and contact["deleted_at"] is None
    assert contact["main_address"] is None and contact["email"] is None
    business = v31.get("/businesses/lead").json()
    assert business["address_line_2"] is None and business["website"] is None


@pytest.mark.parametrize("sandbox_config", [SPEC])
def test_spec_shape_leaves_null_members_out(v31):
    contact = v31.get(f"/contacts/{new_contact(v31)['id']}").json()
    assert not {"reference", "tax_number", "deleted_at", "main_address", "email"} & set(contact)
    assert None not in contact.values()
    empty = v31.get("/contacts").json()
    assert empty["$next"] is None and empty["$back"] is None  # the envelope keeps its nulls in both shapes


# ------------------------------------------------------------------ numbers sent as strings

def test_invoice_lines_accept_numbers_sent_as_strings(v31):
    contact = new_contact(v31)
    response = v31.post("/sales_invoices", json=invoice_body(v31, contact["id"], unit_price="12.50", quantity="2"))
    assert response.status_code == 201, response.text
    line = response.json()["invoice_lines"][0]
    assert (line["unit_price"], line["quantity"], line["net_amount"]) == ("12.5", "2.0", "25.0")
    assert response.json()["total_amount"] == "30.0"


@pytest.mark.parametrize("line, source", [
    ({"unit_price": "twelve"}, "invoice_lines.unit_price"),
    ({"unit_price": ""}, "invoice_lines.unit_price"),
    ({"unit_price": True}, "invoice_lines.unit_price"),
    ({"unit_price": "NaN"}, "invoice_lines.unit_price"),
    ({"unit_price": "10", "quantity": "-1"}, "invoice_lines.quantity"),
    ({"unit_price": "10", "quantity": "lots"}, "invoice_lines.quantity"),
])
def test_invoice_lines_still_refuse_what_is_not_a_number(v31, line, source):
    response = v31.post("/sales_invoices", json=invoice_body(v31, new_contact(v31)["id"], **line))
    assert_error_array(response, 422, "RecordInvalid", source)


def test_contact_numbers_may_be_sent_as_strings(v31):
    contact = new_contact(v31, credit_limit="5000.00", credit_days="14")
    assert contact["credit_limit"] == "5000.0" and contact["credit_days"] == 14
    for field, value in (("credit_limit", "lots"), ("credit_days", "14.5"), ("credit_days", False)):
        response = v31.post("/contacts", json={"contact": {"name": "X", "contact_type_ids": ["CUSTOMER"],
                                                           field: value}})
        assert_error_array(response, 422, "RecordInvalid", field)


# ------------------------------------------------------------------ list items: attributes and nested_attributes

@pytest.fixture
def filled(v31):
    contact = new_contact(v31, reference="NEST1", main_address={"address_line_1": "1 Wharf Road", "city": "Portsmouth"},
                          main_contact_person={"name": "Ada", "email": "ada@example.test"})
    invoice = new_invoice(v31, contact["id"])
    return contact, invoice


@pytest.mark.parametrize("sandbox_config", [{}, SPEC], ids=["live", "spec"])
def test_nested_records_in_list_items_are_links_unless_nested_attributes_asks(v31, filled):
    contact, invoice = filled
    item = v31.get("/contacts", params={"attributes": "all"}).json()["$items"][0]
    address = contact["main_address"]
    assert item["main_address"] == {"id": address["id"], "displayed_as": address["displayed_as"],
                                    "$path": address["$path"]}
    assert item["contact_types"] == [{"id": "CUSTOMER", "displayed_as": "Customer",
                                      "$path": "/contact_types/CUSTOMER"}]
    assert item["tax_treatment"]["home_tax"] is True  # a value object without an id stays whole
    assert item["name"] == "Ada Motors"

    full = v31.get("/contacts", params={"attributes": "all", "nested_attributes": "all"}).json()["$items"][0]
    assert full["main_address"]["city"] == "Portsmouth" and full["main_address"]["country"]["id"] == "GB"
    chosen = v31.get("/contacts", params={"attributes": "main_address,main_contact_person",
                                          "nested_attributes": "city,email"}).json()["$items"][0]
    assert set(chosen) == {"id", "displayed_as", "$path", "main_address", "main_contact_person"}
    assert set(chosen["main_address"]) == {"id", "displayed_as", "$path", "city"}
    assert chosen["main_contact_person"]["email"] == "ada@example.test"

    listed = v31.get("/sales_invoices", params={"attributes": "all"}).json()["$items"][0]
    assert set(listed["contact"]) == {"id", "displayed_as", "$path"}
    assert listed["invoice_lines"] == [{"id": invoice["invoice_lines"][0]["id"],
                                        "displayed_as": "Service and oil change"}]
    lines = v31.get("/sales_invoices", params={"attributes": "invoice_lines",
                                               "nested_attributes": "unit_price"}).json()["$items"][0]
    assert set(lines["invoice_lines"][0]) == {"id", "displayed_as", "unit_price"}
    # a record read on its own keeps its nested records whole
    assert v31.get(f"/contacts/{contact['id']}").json()["main_address"]["city"] == "Portsmouth"


def test_businesses_list_items_are_base_attributes_with_path(v31):
    body = v31.get("/businesses").json()
    assert list(body) == ["$total", "$page", "$next", "$back", "$items_per_page", "$items"]
    assert body["$items"][0] == {"displayed_as": "Harbour Auto Pty Ltd", "id": LEAD_BUSINESS,
                                 "$path": f"/businesses/{LEAD_BUSINESS}"}
    named = v31.get("/businesses", params={"attributes": "name,city"}).json()["$items"][1]
    assert named == {"displayed_as": "Harbour Auto Fleet Services", "id": FLEET_BUSINESS,
                     "$path": f"/businesses/{FLEET_BUSINESS}", "name": "Harbour Auto Fleet Services",
                     "city": "Southampton"}


@pytest.mark.parametrize("sandbox_config", [SPEC])
def test_spec_shape_lists_whole_business_records(v31):
    item = v31.get("/businesses").json()["$items"][0]
    assert item["name"] == "Harbour Auto Pty Ltd" and item["country"]["id"] == "GB" and "$path" not in item


# ------------------------------------------------------------------ $next and $back

def test_next_and_back_echo_the_query_as_sent(v31):
    contact = new_contact(v31)
    for _ in range(3):
        new_invoice(v31, contact["id"])
    first = v31.get("/sales_invoices?items_per_page=1&attributes=date&sort=date:asc").json()
    assert first["$next"] == "/sales_invoices?page=2&items_per_page=1&attributes=date&sort=date:asc"
    middle = v31.get("/sales_invoices?items_per_page=1&page=2&sort=date%3Adesc&search=SI-").json()
    assert middle["$next"] == "/sales_invoices?items_per_page=1&page=3&sort=date%3Adesc&search=SI-"
    assert middle["$back"] == "/sales_invoices?items_per_page=1&page=1&sort=date%3Adesc&search=SI-"
    followed = v31.get(first["$next"]).json()
    assert followed["$page"] == 2 and followed["$back"] == \
        "/sales_invoices?page=1&items_per_page=1&attributes=date&sort=date:asc"


# ------------------------------------------------------------------ daily budget and 429 counters

def _move_clock_to(sandbox, hour: int) -> None:
    """Advance the sandbox clock to the next `hour`:00:00 UTC."""
    now = sandbox.state.now()
    midnight = int(now // 86400) * 86400
    target = midnight + hour * 3600
    if target <= now:
        target += 86400
    sandbox.state.advance_clock(target - now)


def test_daily_budget_is_off_by_default(http, v31):
    assert http.get("/_sandbox/state").json()["settings"]["sage_daily_limit"] is None


@pytest.mark.parametrize("sandbox_config", [{**LONG_TOKENS, "SANDBOX_SAGE_DAILY_LIMIT": 3}])
def test_daily_budget_answers_429_until_it_renews_at_midnight(sandbox, http, v31):
    _move_clock_to(sandbox, 23)
    assert [v31.get("/contact_types").status_code for _ in range(3)] == [200] * 3
    refused = v31.get("/contact_types")
    body = assert_error_array(refused, 429, "TooManyRequests")
    assert "Daily limit of 3 requests" in body[0]["$message"]
    assert 3590 <= int(refused.headers["Retry-After"]) <= 3600
    assert v31.get("/contact_types", headers={"X-Business": FLEET_BUSINESS}).status_code == 200
    sandbox.state.advance_clock(3599 - 60)
    assert v31.get("/user").status_code == 429
    sandbox.state.advance_clock(62)  # past midnight UTC: a new day's budget
    assert v31.get("/contact_types").status_code == 200
    state = http.get("/_sandbox/state").json()
    assert state["businesses"][LEAD_BUSINESS]["rate_limited"] == {"per_minute": 0, "per_day": 2}
    assert state["businesses"][LEAD_BUSINESS]["requests_today"] == 1
    assert state["rate_limits"]["v3.1_per_day_429"] == 2 and state["rate_limits"]["v3.1_per_minute_429"] == 0


@pytest.mark.parametrize("sandbox_config", [{**LONG_TOKENS, "SANDBOX_SAGE_DAILY_LIMIT": 5,
                                              "SANDBOX_SAGE_RATE_LIMIT": 2}])
def test_minute_limit_and_daily_budget_are_counted_apart(sandbox, http, v31):
    _move_clock_to(sandbox, 9)
    assert [v31.get("/user").status_code for _ in range(4)] == [200, 200, 429, 429]
    sandbox.state.advance_clock(61)
    assert [v31.get("/user").status_code for _ in range(3)] == [200, 200, 429]
    sandbox.state.advance_clock(61)
    assert [v31.get("/user").status_code for _ in range(2)] == [200, 429]  # the fifth admitted call of the day
    refused = v31.get("/user")
    assert "Daily limit" in refused.json()[0]["$message"]
    counts = http.get("/_sandbox/state").json()["businesses"][LEAD_BUSINESS]["rate_limited"]
    assert counts == {"per_minute": 3, "per_day": 2}


def test_control_api_sets_the_daily_budget(http, v31):
    assert http.post("/_sandbox/rate-limits", json={"sage_daily": 1}).json()["sage_daily"] == 1
    assert [v31.get("/user").status_code for _ in range(2)] == [200, 429]
    assert http.post("/_sandbox/rate-limits", json={"sage_daily": 0}).json()["sage_daily"] is None
    assert v31.get("/user").status_code == 200
    assert http.post("/_sandbox/rate-limits", json={"sage_daily": -1}).status_code == 400

