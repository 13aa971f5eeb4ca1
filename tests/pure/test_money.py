"""Money conversion: integer grosze with Decimal, ROUND_HALF_UP, never float arithmetic."""

from decimal import Decimal

import pytest

from infakt_api.money import (
    format_quantity,
    from_grosze,
    round_half_up,
    round_to_int,
    to_decimal,
    to_grosze,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12.34"), 1234),
        ("12.34", 1234),
        (12, 1200),
        (0, 0),
        ("0.005", 1),  # half up
        ("0.004", 0),
        ("33.335", 3334),
        ("2.675", 268),  # float(2.675) would round down
        ("-1.005", -101),  # half away from zero
        ("1 234,50", 123450),  # spaces and a decimal comma
        (Decimal("1E+2"), 10000),
        ("100", 10000),
    ],
)
def test_to_grosze(value, expected):
    assert to_grosze(value) == expected
    assert isinstance(to_grosze(value), int)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.1, 10), (0.29, 29), (1.15, 115), (2.675, 268), (19.99, 1999), (1e-7, 0)],
)
def test_to_grosze_float_reads_repr(value, expected):
    # float arithmetic would give 0.29 * 100 = 28.999999999999996 and 1.15 * 100 = 114.99...
    assert to_grosze(value) == expected


@pytest.mark.parametrize("value", [None, True, False, [], object()])
def test_to_grosze_type_errors(value):
    with pytest.raises(TypeError):
        to_grosze(value)


@pytest.mark.parametrize("value", ["", "abc", "1.2.3", "NaN", "Infinity", Decimal("NaN")])
def test_to_grosze_value_errors(value):
    with pytest.raises(ValueError):
        to_grosze(value)


def test_from_grosze():
    assert from_grosze(1234) == Decimal("12.34")
    assert str(from_grosze(1234)) == "12.34"
    assert str(from_grosze(100)) == "1.00"
    assert from_grosze(-8174) == Decimal("-81.74")
    assert from_grosze(0) == Decimal("0")
    assert from_grosze("250") == Decimal("2.50")
    assert from_grosze(Decimal(5)) == Decimal("0.05")


@pytest.mark.parametrize("value", [1.5, "1.5", Decimal("1.5"), "abc"])
def test_from_grosze_rejects_fractions(value):
    with pytest.raises((TypeError, ValueError)):
        from_grosze(value)


def test_from_grosze_rejects_bool():
    with pytest.raises(TypeError):
        from_grosze(True)


@pytest.mark.parametrize("value", ["0.01", "12.34", "-81.74", "99999999.99", "0.05"])
def test_round_trip(value):
    assert from_grosze(to_grosze(value)) == Decimal(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, "2"),
        ("2.000", "2"),
        (Decimal("2.50"), "2.5"),
        (0.5, "0.5"),
        ("0.125", "0.125"),
        (Decimal("1E+2"), "100"),
        (Decimal("1000"), "1000"),
        (Decimal("0.0000"), "0"),
        (Decimal("-0"), "0"),
        ("-1.50", "-1.5"),
        (Decimal("1E-7"), "0.0000001"),
    ],
)
def test_format_quantity(value, expected):
    assert format_quantity(value) == expected
    assert "E" not in format_quantity(value)


def test_rounding_helpers():
    assert round_half_up("2.5") == Decimal(3)
    assert round_half_up("-2.5") == Decimal(-3)
    assert round_half_up("1.005", 2) == Decimal("1.01")
    assert round_to_int(Decimal("9999.5")) == 10000
    assert to_decimal(0.1) == Decimal("0.1")
