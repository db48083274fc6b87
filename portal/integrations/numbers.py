"""Numbers as Sage sends them: live v3.1 sends money, quantities and rates as decimal strings
(`"10.0"`, `"-430035.84"`), the published spec says JSON numbers, and 2.0.0 sends numbers. Every
number the portal reads from Sage goes through `decimal_from`, so both shapes give the same Decimal.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation


class UnusableNumber(ValueError):
    """Sage sent something where a number belongs that is not one (the message names the field)."""


def decimal_from(value, what: str = "a number") -> Decimal:
    """`value` as a finite Decimal, from a JSON number or a decimal string; raises UnusableNumber."""
    if isinstance(value, bool) or value is None:
        raise UnusableNumber(f"Sage sent no usable value for {what}.")
    if isinstance(value, (int, float, Decimal)):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise UnusableNumber(f"Sage sent {type(value).__name__} where {what} belongs.")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise UnusableNumber(f"Sage sent “{text[:20]}” where {what} belongs, which is not a number.") from None
    if not number.is_finite():
        raise UnusableNumber(f"Sage sent “{text[:20]}” where {what} belongs, which is not a number.")
    return number


def decimal_or_none(value, what: str = "a number") -> Decimal | None:
    """Like decimal_from, but a missing or null member is None (Sage sends explicit nulls)."""
    return None if value is None or value == "" else decimal_from(value, what)
