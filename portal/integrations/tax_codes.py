"""The job-management product's own tax codes on invoice lines, and the rate each one means.

A tax code is only ever mapped by default to a provider's tax rate of the same percentage: a
code missing here has no known rate, so it is never mapped without a person choosing.
"""
from __future__ import annotations

from decimal import Decimal

PERCENT_OF_CODE: dict[str, Decimal] = {
    "gst": Decimal("10"),
    "gst_free": Decimal("0"),
    "free": Decimal("0"),
    "exempt": Decimal("0"),
    "input_taxed": Decimal("0"),
    "zero": Decimal("0"),
    "vat_standard": Decimal("20"),
    "vat_reduced": Decimal("5"),
    "vat_zero": Decimal("0"),
    "vat_exempt": Decimal("0"),
}


def percent_of(code: str) -> Decimal | None:
    """The rate a local tax code means, or None when the portal does not know it."""
    return PERCENT_OF_CODE.get((code or "").strip().lower())


def describe(code: str) -> str:
    """“gst” (10%), or just “code” when its rate is unknown."""
    percent = percent_of(code)
    return f"“{code}” ({percent:g}%)" if percent is not None else f"“{code}”"
