"""Money and quantity conversion for inFakt (integer grosze, exact ``Decimal`` arithmetic).

inFakt exchanges every amount as an integer number of minor units (grosze). The conversion
happens once, here, with ``Decimal`` and ROUND_HALF_UP; floats are only ever read through
their shortest ``repr`` (``0.1`` means ``Decimal("0.1")``), never used in arithmetic.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


def to_decimal(value):
    """Exact ``Decimal`` of ``value`` (Decimal, int, str, or float read via ``repr``).

    Strings may use a decimal comma (``"12,50"``) and contain spaces (``"1 234.50"``).
    Raises ``TypeError`` for other types (and ``bool``), ``ValueError`` for junk, NaN
    and infinities.
    """
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip().replace(" ", "").replace("\u00a0", "")
        if "," in text and "." not in text and text.count(",") == 1:
            text = text.replace(",", ".")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise TypeError(f"not a number: {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def round_half_up(value, places=0):
    """``Decimal`` rounded half away from zero to ``places`` decimals."""
    exponent = Decimal(1).scaleb(-places)
    return to_decimal(value).quantize(exponent, rounding=ROUND_HALF_UP)


def round_to_int(value):
    """``int`` rounded half away from zero."""
    return int(round_half_up(value, 0))


def to_grosze(value):
    """Major units (e.g. PLN) to integer grosze, rounded half up to a whole grosz.

    >>> to_grosze("12.345")
    1235
    >>> to_grosze(0.1)
    10
    """
    amount = to_decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    return int(amount * HUNDRED)


def from_grosze(value):
    """Integer grosze to a ``Decimal`` with two places (``1234`` -> ``Decimal("12.34")``)."""
    if isinstance(value, bool):
        raise TypeError("grosze must be an integer")
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("+-").isdigit():
            raise ValueError(f"grosze must be an integer: {value!r}")
        value = int(text)
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError(f"grosze must be an integer: {value!r}")
        value = int(value)
    if not isinstance(value, int):
        raise TypeError(f"grosze must be an integer, not {type(value).__name__}")
    return Decimal(value).scaleb(-2)


def format_quantity(value):
    """Normalised plain decimal string of a quantity: ``2``, ``0.5``, ``1000``, ``0.125``."""
    number = to_decimal(value)
    if number == 0:
        return "0"
    text = format(number.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
