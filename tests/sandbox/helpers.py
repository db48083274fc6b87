"""HTTP helpers and seeded ids shared by the sandbox tests."""

import requests

from sage_sandbox.seed import hex_id

LEAD_BUSINESS = hex_id("business", "Harbour Auto Pty Ltd")
FLEET_BUSINESS = hex_id("business", "Harbour Auto Fleet Services")
SOLO_BUSINESS = hex_id("business", "Solo Tyres & Exhausts")
NEWCASTLE, MAITLAND, CESSNOCK = 20001, 20002, 20003
API_KEY = "portal-dev-apikey"


class Api:
    """A requests session bound to a base URL; paths are appended to it."""

    def __init__(self, base: str, session: requests.Session):
        self.base = base
        self.session = session

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.request("PUT", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)


def new_contact(v31: Api, business: str | None = None, **fields) -> dict:
    """Create a customer contact and return its body."""
    body = {"name": "Ada Motors", "contact_type_ids": ["CUSTOMER"], **fields}
    headers = {"X-Business": business} if business else {}
    response = v31.post("/contacts", json={"contact": body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def sales_ledger(v31: Api, business: str | None = None) -> str:
    """Return the id of the 4000 Sales ledger account."""
    headers = {"X-Business": business} if business else {}
    items = v31.get("/ledger_accounts", params={"attributes": "nominal_code"}, headers=headers).json()["$items"]
    return next(a["id"] for a in items if a["nominal_code"] == 4000)


def new_invoice(v31: Api, contact_id: str, business: str | None = None, **fields) -> dict:
    """Create a one-line sales invoice and return its body."""
    body = {"contact_id": contact_id, "date": "2025-03-01", "invoice_lines": [{
        "description": "Service and oil change", "ledger_account_id": sales_ledger(v31, business),
        "unit_price": 120.0, "quantity": 2, "tax_rate_id": "GB_STANDARD"}], **fields}
    headers = {"X-Business": business} if business else {}
    response = v31.post("/sales_invoices", json={"sales_invoice": body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def assert_error_array(response: requests.Response, status: int, data_code: str, source: str | None = None):
    """Assert a v3.1 `$severity` error array with the given status and $dataCode (and $source)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and body
    assert set(body[0]) == {"$severity", "$dataCode", "$message", "$source"}
    assert body[0]["$severity"] == "error"
    assert data_code in [e["$dataCode"] for e in body]
    if source is not None:
        assert source in [e["$source"] for e in body]
    return body
