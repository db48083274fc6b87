"""Every v3.1 response body the sandbox produces validates against Sage's published specification, in both shapes.

Schemas come from the shipped Swagger files; `$ref`s resolve against their `definitions`. To catch invented fields,
every object schema is made closed (`additionalProperties: false`) before validation. The list envelope is the live
one in both shapes: the spec declares bare arrays, so each `$items` element is validated against the item schema.

* `SANDBOX_V31_SHAPE = "spec"`: bodies must match the published schema exactly (numbers are JSON numbers, no nulls).
* `"live"` (the default): the live API deliberately differs in two ways, and only those are allowed: every field
  the schema types as a number arrives as a decimal string in Ruby BigDecimal style ("10.0", "-430035.84"), and any
  member may be an explicit null. `/businesses` items are `displayed_as, id, $path` (the schema has no `$path`).
"""

import copy
import json
import re
from datetime import date, datetime
from functools import cache
from pathlib import Path

import jsonschema
import pytest

from .helpers import FLEET_BUSINESS, LEAD_BUSINESS, new_contact, new_invoice, sales_ledger

SPEC_DIR = Path(__file__).resolve().parent / "spec"  # copies of Sage's published v3.1 specification
ACCOUNTS_SPEC = SPEC_DIR / "sage-accounting-v3.1.swagger.json"
CORE_SPEC = SPEC_DIR / "sage-accounting-v3.1-core.openapi.json"
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
BIG_DECIMAL = r"^-?\d+\.\d+$"  # at least one decimal place: "20.0", "120.5", "12.34"
ENVELOPE_KEYS = {"$total", "$page", "$next", "$back", "$itemsPerPage", "$items"}
ERROR_SCHEMA = {
    "type": "array", "minItems": 1,
    "items": {"type": "object", "additionalProperties": False,
              "required": ["$severity", "$dataCode", "$message", "$source"],
              "properties": {"$severity": {"enum": ["error"]}, "$dataCode": {"type": "string"},
                             "$message": {"type": "string"}, "$source": {"type": "string"}}},
}

# Draft 4 ships no date checks, so the two formats the spec uses are checked here.
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date", raises=ValueError)
def _is_date(value) -> bool:
    return not isinstance(value, str) or (len(value) == 10 and bool(date.fromisoformat(value)))


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value) -> bool:
    return not isinstance(value, str) or (bool(DATE_TIME.match(value)) and bool(datetime.fromisoformat(value)))


def _closed(node):
    if isinstance(node, dict):
        node = {k: _closed(v) for k, v in node.items()}
        if "properties" in node:
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [_closed(v) for v in node]
    return node


def _live(node):
    """Turn a schema into the live API's: numbers become BigDecimal strings and every member may be null."""
    if isinstance(node, list):
        return [_live(v) for v in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "number":
        return {"type": "string", "pattern": BIG_DECIMAL}
    node = {k: _live(v) for k, v in node.items()}
    if isinstance(node.get("properties"), dict):
        node["properties"] = {name: {"anyOf": [{"type": "null"}, schema]}
                              for name, schema in node["properties"].items()}
    return node


@cache
def _spec(path: Path, shape: str = "spec") -> dict:
    published = _closed(json.loads(path.read_text()))
    return _live(published) if shape == "live" else published


def _operation_schema(template: str, method: str, status: int, shape: str = "spec") -> tuple[dict, dict]:
    core = template.startswith(("/businesses", "/user"))
    spec = _spec(CORE_SPEC if core else ACCOUNTS_SPEC, shape)
    schema = spec["paths"][template][method.lower()]["responses"][str(status)].get("schema")
    return spec, schema


def _validate(spec: dict, schema: dict, instance) -> None:
    root = {"definitions": spec["definitions"], **copy.deepcopy(schema)}
    validator = jsonschema.Draft4Validator(root, format_checker=FORMATS)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def assert_matches_spec(response, template: str, method: str = "GET", shape: str = "spec") -> None:
    """Validate a response body against the schema Sage publishes for that operation and status, in `shape`."""
    if response.status_code >= 400:
        _validate({"definitions": {}}, ERROR_SCHEMA, response.json())
        return
    spec, schema = _operation_schema(template, method, response.status_code, shape)
    if schema is None:
        assert response.content == b"", "the spec documents no body for this answer"
        return
    body = response.json()
    if schema.get("type") == "array":
        per_page_key = "$items_per_page" if template == "/businesses" else "$itemsPerPage"
        assert set(body) == ENVELOPE_KEYS - {"$itemsPerPage"} | {per_page_key}
        assert isinstance(body["$total"], int) and isinstance(body["$page"], int)
        assert isinstance(body[per_page_key], int)
        assert all(body[k] is None or isinstance(body[k], str) for k in ("$next", "$back"))
        for item in body["$items"]:
            if template == "/businesses" and shape == "live":
                assert list(item) == ["displayed_as", "id", "$path"]
                assert item["$path"] == f"/businesses/{item['id']}"
                continue
            _validate(spec, schema["items"], item)
    else:
        _validate(spec, schema, body)


@pytest.fixture(params=["live", "spec"])
def shape(request):
    """Each test here runs against the live shape (the default) and the published spec's shape."""
    return request.param


@pytest.fixture
def sandbox_config(shape):
    return {"SANDBOX_V31_SHAPE": shape}


@pytest.fixture
def world(v31):
    """A lead business holding a fully filled contact, an invoice and a voided invoice."""
    contact = new_contact(v31, reference="FULL1", tax_number="GB123456789", notes="Fleet account",
                          credit_limit=5000, credit_days=14,
                          default_sales_ledger_account_id=sales_ledger(v31), default_sales_tax_rate_id="GB_STANDARD",
                          main_address={"address_line_1": "1 Wharf Road", "city": "Portsmouth",
                                        "postal_code": "PO1 3AA", "country_id": "GB"},
                          delivery_address={"address_line_1": "Bay 4", "city": "Portsmouth"},
                          main_contact_person={"name": "Ada", "email": "ada@example.test", "telephone": "023"},
                          bank_account_details={"account_name": "Ada Motors", "sort_code": "12-34-56"})
    invoice = new_invoice(v31, contact["id"], reference="JOB-1001", notes="Thanks")
    voided = new_invoice(v31, contact["id"])
    v31.delete(f"/sales_invoices/{voided['id']}", params={"void_reason": "Raised twice"})
    return {"contact": contact, "invoice": invoice, "voided": voided}


READS = [
    ("/businesses", "/businesses", {}),
    ("/businesses/{key}", "/businesses/lead", {}),
    ("/businesses/{key}", f"/businesses/{FLEET_BUSINESS}", {}),
    ("/user", "/user", {}),
    ("/contacts", "/contacts", {}),
    ("/contacts", "/contacts", {"attributes": "all"}),
    ("/contacts", "/contacts", {"attributes": "name,reference,email,balance"}),
    ("/sales_invoices", "/sales_invoices", {}),
    ("/sales_invoices", "/sales_invoices", {"attributes": "all", "sort": "date:desc"}),
    ("/contact_types", "/contact_types", {"attributes": "all"}),
    ("/contact_types/{key}", "/contact_types/CUSTOMER", {}),
    ("/artefact_statuses", "/artefact_statuses", {"attributes": "all"}),
    ("/artefact_statuses/{key}", "/artefact_statuses/VOID", {}),
    ("/ledger_accounts", "/ledger_accounts", {"attributes": "all"}),
    ("/ledger_accounts", "/ledger_accounts", {"visible_in": "sales"}),
    ("/tax_rates", "/tax_rates", {"attributes": "all"}),
    ("/tax_rates/{key}", "/tax_rates/GB_STANDARD", {}),
]


@pytest.mark.parametrize("template, path, params", READS, ids=[f"{p}?{q}" for _, p, q in READS])
def test_read_bodies_match_the_published_schema(v31, world, shape, template, path, params):
    response = v31.get(path, params=params)
    assert response.status_code == 200
    assert_matches_spec(response, template, shape=shape)


def test_contact_get_create_update_delete_bodies_match_the_schema(v31, world, shape):
    contact_id = world["contact"]["id"]
    assert_matches_spec(v31.get(f"/contacts/{contact_id}"), "/contacts/{key}", shape=shape)
    created = v31.post("/contacts", json={"contact": {"name": "Minimal", "contact_type_ids": ["VENDOR"]}})
    assert_matches_spec(created, "/contacts", "POST", shape=shape)
    updated = v31.put(f"/contacts/{contact_id}", json={"contact": {"notes": "Updated", "main_address": {
        "region": "Hampshire"}}})
    assert_matches_spec(updated, "/contacts/{key}", "PUT", shape=shape)
    deleted = v31.delete(f"/contacts/{created.json()['id']}")
    assert_matches_spec(deleted, "/contacts/{key}", "DELETE", shape=shape)


def test_sales_invoice_get_create_and_void_bodies_match_the_schema(v31, world, shape):
    assert_matches_spec(v31.get(f"/sales_invoices/{world['invoice']['id']}"), "/sales_invoices/{key}", shape=shape)
    assert_matches_spec(v31.get(f"/sales_invoices/{world['voided']['id']}"), "/sales_invoices/{key}", shape=shape)
    created = v31.post("/sales_invoices", json={"sales_invoice": {
        "contact_id": world["contact"]["id"], "date": "2025-04-01", "status_id": "DRAFT",
        "invoice_lines": [{"description": "Tyres", "ledger_account_id": sales_ledger(v31), "unit_price": 80}]}})
    assert_matches_spec(created, "/sales_invoices", "POST", shape=shape)
    voided = v31.delete(f"/sales_invoices/{world['invoice']['id']}", params={"void_reason": "Customer cancelled"})
    assert_matches_spec(voided, "/sales_invoices/{key}", "DELETE", shape=shape)


def test_lookup_items_of_every_business_match_the_schema(v31, shape):
    for business in (LEAD_BUSINESS, FLEET_BUSINESS):
        headers = {"X-Business": business}
        for template in ("/contact_types", "/artefact_statuses", "/ledger_accounts", "/tax_rates"):
            assert_matches_spec(v31.get(template, params={"attributes": "all"}, headers=headers), template,
                                shape=shape)


def test_error_bodies_are_severity_arrays(http, v31, world):
    answers = [
        http.get("/v3.1/contacts"),
        v31.get("/contacts/0123456789abcdef0123456789abcdef"),
        v31.post("/contacts", json={"contact": {}}),
        v31.delete(f"/sales_invoices/{world['voided']['id']}", params={"void_reason": "again"}),
        v31.get("/nothing_here"),
    ]
    for response in answers:
        assert response.status_code >= 400
        assert_matches_spec(response, "/contacts")


def test_schema_check_rejects_an_invented_field():
    spec, schema = _operation_schema("/contacts/{key}", "GET", 200)
    with pytest.raises(AssertionError):
        _validate(spec, schema, {"id": "x", "made_up_field": 1})
    with pytest.raises(AssertionError):
        _validate(spec, schema, {"id": "x", "name": None})
    with pytest.raises(AssertionError):
        _validate(spec, schema, {"id": "x", "created_at": "2025-01-01 10:00"})
    with pytest.raises(AssertionError):
        _validate(spec, schema, {"id": "x", "balance": "10.0"})


def test_live_schema_check_wants_decimal_strings_and_allows_only_that_and_nulls():
    spec, schema = _operation_schema("/contacts/{key}", "GET", 200, "live")
    _validate(spec, schema, {"id": "x", "balance": "-430035.84", "credit_limit": "0.0", "credit_days": 30,
                             "tax_number": None, "main_address": {"id": "a", "city": None}})
    for wrong in ({"balance": 10.0}, {"balance": "10"}, {"balance": "ten"}, {"credit_days": "30"},
                  {"made_up_field": None}, {"main_address": {"made_up_field": 1}}):
        with pytest.raises(AssertionError):
            _validate(spec, schema, {"id": "x", **wrong})
