"""Reading what Sage One AUS answers, as live Sage sends it.

Live 2.0.0 answers carry numbers either as JSON numbers or as strings (`"Total": "110.00"`,
`"Percentage": "10"`), and ids the same way; lists come in `{TotalResults, ReturnedResults, Results}`;
a TaxInvoice read with `includeCustomerDetails=true` nests its `Customer`. Every number is read
here as a Decimal (ids as integers) whatever form it takes. Anything the portal cannot use raises
SageOneUnusableAnswer with a message for the person who asked, and is logged for support, so the
record or run stops before the portal changes anything on the strength of it.
"""
from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation

from portal.integrations.sage_one_aus.errors import SageOneUnusableAnswer

log = logging.getLogger(__name__)


def unusable(what: str, problem: str, *, whole_run: bool = False) -> SageOneUnusableAnswer:
    """The error for an answer the portal can't use, logged for support (no values, only what was wrong)."""
    log.error("Sage One AUS answer not usable: %s: %s", what, problem)
    return SageOneUnusableAnswer(
        f"Sage One AUS answered {what} in a form the portal can't read ({problem}), so nothing was changed "
        "on the strength of it. Support has been told; try again later.", whole_run=whole_run)


def decimal(value, what: str, field: str) -> Decimal:
    """A number Sage sent as a JSON number or a string (`110`, `110.5`, `"110.00"`), as a Decimal."""
    if isinstance(value, bool) or value is None:
        raise unusable(what, f"{field} is not a number")
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise unusable(what, f"{field} is not a number") from None
    else:
        raise unusable(what, f"{field} is not a number")
    if not number.is_finite():
        raise unusable(what, f"{field} is not a number")
    return number


def optional_decimal(value, what: str, field: str, default: Decimal | None = None) -> Decimal | None:
    """Like `decimal`, but a missing (null or empty) value gives `default`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return decimal(value, what, field)


def integer(value, what: str, field: str) -> int:
    """An id or code Sage sent as a number or a string (`100001`, `"100001"`, `100001.0`), as an int."""
    number = decimal(value, what, field)
    if number != number.to_integral_value():
        raise unusable(what, f"{field} is not a whole number")
    return int(number)


def optional_integer(value, what: str, field: str) -> int | None:
    """Like `integer`, but null, empty or 0 mean "none"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return integer(value, what, field) or None


def flag(value, what: str, field: str) -> bool:
    """A yes/no Sage sent as a JSON boolean, 0/1 or "true"/"false"; missing means no."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "0", "1", ""):
        return value.strip().lower() in ("true", "1")
    raise unusable(what, f"{field} is not a yes/no value")


def text(value) -> str:
    """A text field, or "" when missing."""
    return "" if value is None else str(value)


def entity(body, what: str) -> dict:
    """A single record (`Get/{id}`, `Save`): a JSON object with an ID."""
    if not isinstance(body, dict):
        raise unusable(what, "not a record")
    if body.get("ID") is None:
        raise unusable(what, "the record has no ID")
    integer(body["ID"], what, "ID")
    return body


def results(body, what: str) -> tuple[list[dict], int]:
    """The records of a list answer and its TotalResults."""
    if not isinstance(body, dict) or not isinstance(body.get("Results"), list):
        raise unusable(what, "not a list of results")
    records = body["Results"]
    if not all(isinstance(record, dict) for record in records):
        raise unusable(what, "a result is not a record")
    total = body.get("TotalResults")
    total = len(records) if total is None else integer(total, what, "TotalResults")
    return records, total


def customer_id(document: dict, what: str) -> int:
    """A TaxInvoice's customer id: `CustomerId`, or the nested `Customer` of `includeCustomerDetails=true`."""
    raw = document.get("CustomerId")
    if raw in (None, "", 0):
        nested = document.get("Customer")
        raw = nested.get("ID") if isinstance(nested, dict) else None
    if raw in (None, "", 0):
        raise unusable(what, "no customer")
    return integer(raw, what, "CustomerId")
