"""Payload building from plain values: buyer, lines, documents, correction pairs, totals."""

import datetime
from decimal import Decimal

import pytest

from infakt_api.payload import (
    build_buyer,
    build_correction_services,
    build_corrective_invoice,
    build_invoice,
    build_service,
    clean_tax_code,
    correction_totals,
    format_date,
    service_totals,
    split_street,
    totals,
)

# --------------------------------------------------------------------------- buyer


def test_buyer_company():
    buyer = build_buyer({
        "company_name": "  ACME  Sp. z o.o. ",
        "is_company": True,
        "nip": "PL 123-456-32-18",
        "street": "ul. Długa 5/3",
        "city": "Kraków",
        "post_code": "30-001",
        "email": "biuro@acme.pl",
    })
    assert buyer == {
        "client_business_activity_kind": "other_business",
        "client_company_name": "ACME Sp. z o.o.",
        "client_tax_code": "1234563218",
        "client_street": "ul. Długa",
        "client_street_number": "5",
        "client_flat_number": "3",
        "client_city": "Kraków",
        "client_post_code": "30-001",
        "client_country": "PL",
    }


def test_buyer_person_split_from_full_name():
    buyer = build_buyer({"name": "Jan Maria Kowalski", "is_company": False, "country": "pl"})
    assert buyer == {
        "client_business_activity_kind": "private_person",
        "client_first_name": "Jan Maria",
        "client_last_name": "Kowalski",
        "client_country": "PL",
    }


def test_buyer_person_explicit_names_and_explicit_address_parts():
    buyer = build_buyer({
        "first_name": "Anna",
        "last_name": "Nowak",
        "is_company": False,
        "street": "Marszałkowska",
        "street_number": "10",
        "flat_number": "4",
        "city": "Warszawa",
        "post_code": "00-001",
    })
    assert buyer["client_business_activity_kind"] == "private_person"
    assert (buyer["client_first_name"], buyer["client_last_name"]) == ("Anna", "Nowak")
    assert "client_company_name" not in buyer
    assert buyer["client_street"] == "Marszałkowska"
    assert buyer["client_street_number"] == "10"
    assert buyer["client_flat_number"] == "4"


def test_buyer_person_single_word_name():
    buyer = build_buyer({"name": "Cher", "is_company": False})
    assert buyer["client_last_name"] == "Cher"
    assert "client_first_name" not in buyer


def test_buyer_foreign_vat_keeps_prefix():
    buyer = build_buyer({
        "company_name": "Muster GmbH",
        "is_company": True,
        "nip": "de 123 456 789",
        "country": "DE",
        "street": "Hauptstraße 5",
        "city": "Berlin",
        "post_code": "10115",
    })
    assert buyer["client_tax_code"] == "DE123456789"
    assert buyer["client_country"] == "DE"
    assert buyer["client_business_activity_kind"] == "other_business"


def test_buyer_is_company_inferred_and_client_id_passed():
    assert build_buyer({"company_name": "X"})["client_business_activity_kind"] == (
        "other_business")
    assert build_buyer({"first_name": "A", "last_name": "B"})[
        "client_business_activity_kind"] == "private_person"
    assert build_buyer({"company_name": "X", "client_id": 42})["client_id"] == 42


@pytest.mark.parametrize(
    ("value", "country", "expected"),
    [
        ("123-456-32-18", "PL", "1234563218"),
        ("PL1234563218", "PL", "1234563218"),
        ("pl 123 456 32 18", None, "1234563218"),
        ("DE123456789", "DE", "DE123456789"),
        ("PL1234563218", "DE", "PL1234563218"),  # a Polish VAT id of a foreign-address buyer
        ("ATU12345678", "AT", "ATU12345678"),
        ("", "PL", None),
        (None, "PL", None),
    ],
)
def test_clean_tax_code(value, country, expected):
    assert clean_tax_code(value, country) == expected


@pytest.mark.parametrize(
    ("street", "expected"),
    [
        ("ul. Długa 5/3", ("ul. Długa", "5", "3")),
        ("Marszałkowska 10 m. 4", ("Marszałkowska", "10", "4")),
        ("Aleje Jerozolimskie 123A", ("Aleje Jerozolimskie", "123A", None)),
        ("Al. 3 Maja 12", ("Al. 3 Maja", "12", None)),
        ("ul. 11 Listopada 5 lok. 7", ("ul. 11 Listopada", "5", "7")),
        ("os. Batorego 10 m 5", ("os. Batorego", "10", "5")),
        ("Piękna 24 / 26", ("Piękna", "24", "26")),
        ("Rynek 1, m. 2", ("Rynek", "1", "2")),
        ("Długa 12-14", ("Długa", "12-14", None)),
        ("ul. Żółkiewskiego 7b/12", ("ul. Żółkiewskiego", "7b", "12")),
        ("Długa", ("Długa", None, None)),
        ("  Długa   5  ", ("Długa", "5", None)),
        ("5/3", ("5/3", None, None)),
        ("", (None, None, None)),
        (None, (None, None, None)),
    ],
)
def test_split_street(street, expected):
    assert split_street(street) == expected


# --------------------------------------------------------------------------- lines


def test_service_net_mode():
    service = build_service({
        "name": "Usługa",
        "quantity": Decimal("2.000"),
        "unit": "szt.",
        "tax_symbol": 23,
        "unit_net_price": Decimal("100.00"),
        "pkwiu": "62.01",
        "gtu_id": 12,
    })
    assert service == {
        "name": "Usługa",
        "tax_symbol": "23",
        "quantity": "2",
        "unit": "szt.",
        "unit_net_price": 10000,
        "pkwiu": "62.01",
        "gtu_id": 12,
    }
    assert service_totals(service) == {"net": 20000, "tax": 4600, "gross": 24600}


def test_service_gross_mode_sends_no_net_fields():
    service = build_service({
        "name": "Book",
        "quantity": 1,
        "tax_symbol": "5",
        "price_mode": "gross",
        "unit_net_price": "95.24",  # ignored in gross mode
        "gross_price": "100.00",
    })
    assert service == {"name": "Book", "tax_symbol": "5", "quantity": "1", "gross_price": 10000}
    # tax = round_half_up(10000 * 5 / 105) = 476 (476.19)
    assert service_totals(service) == {"net": 9524, "tax": 476, "gross": 10000}


def test_service_name_truncated_and_validation():
    service = build_service({"name": "x" * 300, "tax_symbol": "zw", "unit_net_price": 1})
    assert len(service["name"]) == 256
    assert service["quantity"] == "1"
    with pytest.raises(ValueError):
        build_service({"name": "x", "unit_net_price": 1})  # no tax symbol
    with pytest.raises(ValueError):
        build_service({"name": "", "tax_symbol": "23", "unit_net_price": 1})
    with pytest.raises(ValueError):
        build_service({"name": "x", "tax_symbol": "23"})  # no price
    with pytest.raises(ValueError):
        build_service({"name": "x", "tax_symbol": "23", "price_mode": "gross"})
    with pytest.raises(ValueError):
        build_service({"name": "x", "tax_symbol": "abc", "unit_net_price": 1})
    with pytest.raises(ValueError):
        build_service({"name": "x", "tax_symbol": "23", "unit_net_price": 1,
                       "price_mode": "other"})


@pytest.mark.parametrize(
    ("symbol", "expected"), [("23%", "23"), ("ZW", "zw"), (" np ", "np"), (8, "8"), ("0", "0")])
def test_tax_symbol_normalised(symbol, expected):
    service = build_service({"name": "x", "tax_symbol": symbol, "unit_net_price": 1})
    assert service["tax_symbol"] == expected


def test_three_times_33_335_needs_the_line_net():
    # Odoo: 3 x 33.335 = 100.005 -> 100.01; unit price alone gives 3 x 33.34 = 100.02
    without = build_service({"name": "a", "quantity": 3, "tax_symbol": "23",
                             "unit_net_price": "33.335"})
    assert without["unit_net_price"] == 3334
    assert service_totals(without)["net"] == 10002
    with_net = build_service({"name": "a", "quantity": 3, "tax_symbol": "23",
                              "unit_net_price": "33.335", "net_price": "100.01"})
    assert with_net["unit_net_price"] == 3334
    assert with_net["net_price"] == 10001
    assert service_totals(with_net) == {"net": 10001, "tax": 2300, "gross": 12301}


def test_half_quantity_rounds_half_up():
    service = build_service({"name": "a", "quantity": "0.5", "tax_symbol": "23",
                             "unit_net_price": "19.99"})
    assert service["quantity"] == "0.5"
    # 1999 * 0.5 = 999.5 -> 1000; tax 230
    assert service_totals(service) == {"net": 1000, "tax": 230, "gross": 1230}


def test_discounted_price():
    # 12.99 with 10 % discount = 11.691 per unit; Odoo line net 2 x 11.691 = 23.382 -> 23.38
    unit = Decimal("12.99") * (1 - Decimal("10") / 100)
    service = build_service({"name": "a", "quantity": 2, "tax_symbol": "8",
                             "unit_net_price": unit, "net_price": Decimal("23.38")})
    assert service["unit_net_price"] == 1169
    assert service_totals(service) == {"net": 2338, "tax": 187, "gross": 2525}


def test_totals_mixed_rates():
    services = [
        build_service({"name": "a", "quantity": 1, "tax_symbol": "23", "unit_net_price": "0.01"}),
        build_service({"name": "b", "quantity": 7, "tax_symbol": "8", "unit_net_price": "1.07"}),
        build_service({"name": "c", "quantity": 1, "tax_symbol": "zw", "unit_net_price": "50"}),
        build_service({"name": "d", "quantity": 1, "tax_symbol": "np", "unit_net_price": "10"}),
        build_service({"name": "e", "quantity": 1, "tax_symbol": "23", "price_mode": "gross",
                       "gross_price": "123.00"}),
    ]
    # a: 1 + 0 (0.23 -> 0); b: 749 + 60 (59.92); c: 5000 + 0; d: 1000 + 0; e: 10000 + 2300
    assert totals(services) == {"net": 16750, "tax": 2360, "gross": 19110}
    assert totals([]) == {"net": 0, "tax": 0, "gross": 0}


# --------------------------------------------------------------------------- documents

LINE = {"name": "Konsultacje", "quantity": 2, "unit": "h", "tax_symbol": "23",
        "unit_net_price": Decimal("150.00")}
BUYER = {"company_name": "ACME", "is_company": True, "nip": "1234563218",
         "street": "Długa 5", "city": "Gdańsk", "post_code": "80-001"}


def test_build_invoice_minimal_pln():
    invoice = build_invoice(lines=[LINE], buyer=BUYER, invoice_date=datetime.date(2026, 3, 2),
                            payment_method="transfer",
                            bank_account="PL61 1090 1014 0000 0712 1981 2874")
    assert invoice["kind"] == "vat"
    assert invoice["invoice_date"] == "2026-03-02"
    assert invoice["currency"] == "PLN"
    assert invoice["payment_method"] == "transfer"
    assert invoice["check_duplicate_number"] is True
    assert invoice["client_company_name"] == "ACME"
    assert invoice["client_tax_code"] == "1234563218"
    assert invoice["services"] == [build_service(LINE)]
    for key in ("number", "sale_date", "payment_date", "notes", "vat_exchange_date_kind",
                "status", "paid_date", "split_payment_type", "swift"):
        assert key not in invoice
    assert None not in invoice.values()


def test_build_invoice_full():
    invoice = build_invoice(
        lines=[LINE, {**LINE, "name": "Dojazd", "tax_symbol": "8"}],
        buyer=build_buyer(BUYER),
        invoice_date="2026-03-02",
        sale_date=datetime.datetime(2026, 3, 1, 23, 59),
        payment_date="2026-03-16",
        number="FV/1/03/2026",
        check_duplicate_number=True,
        currency="eur",
        payment_method="transfer",
        bank_account="DE89370400440532013000",
        bank_name="Bank",
        swift="COBADEFFXXX",
        notes="Dziękujemy",
        vat_exemption_reason=3,
        sale_type="service",
        status="paid",
        paid_date=datetime.date(2026, 3, 2),
        split_payment=True,
    )
    assert invoice["number"] == "FV/1/03/2026"
    assert invoice["sale_date"] == "2026-03-01"
    assert invoice["payment_date"] == "2026-03-16"
    assert invoice["currency"] == "EUR"
    assert invoice["vat_exchange_date_kind"] == "vat"  # default for non-PLN
    assert invoice["status"] == "paid"
    assert invoice["paid_date"] == "2026-03-02"
    assert invoice["split_payment_type"] == "required"
    assert invoice["vat_exemption_reason"] == 3
    assert len(invoice["services"]) == 2


def test_build_invoice_explicit_exchange_kind_and_proforma():
    invoice = build_invoice(lines=[LINE], buyer=BUYER, invoice_date="2026-03-02",
                            currency="USD", vat_exchange_date_kind="pit",
                            payment_method="cash", kind="proforma", check_duplicate_number=False,
                            split_payment="optional")
    assert invoice["vat_exchange_date_kind"] == "pit"
    assert invoice["kind"] == "proforma"
    assert invoice["check_duplicate_number"] is False
    assert invoice["split_payment_type"] == "optional"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"payment_method": "bitcoin"},
        {"payment_method": None},
        {"lines": []},
        {"invoice_date": None},
        {"invoice_date": "02.03.2026"},
        {"kind": "margin"},
        {"vat_exchange_date_kind": "cit"},
        {"status": "booked"},
        {"split_payment": "sometimes"},
    ],
)
def test_build_invoice_rejects(kwargs):
    base = {"lines": [LINE], "buyer": BUYER, "invoice_date": "2026-03-02",
            "payment_method": "transfer"}
    base.update(kwargs)
    with pytest.raises(ValueError):
        build_invoice(**base)


def test_format_date():
    assert format_date(datetime.date(2026, 1, 5)) == "2026-01-05"
    assert format_date("2026-01-05") == "2026-01-05"
    assert format_date("2026-01-05T10:00:00") == "2026-01-05"
    assert format_date(None) is None
    with pytest.raises(ValueError):
        format_date("yesterday")
    with pytest.raises(TypeError):
        format_date(20260105)


# --------------------------------------------------------------------------- corrections

A = {"name": "Widget", "quantity": 3, "unit": "szt.", "tax_symbol": "23",
     "unit_net_price": Decimal("10.00")}
B = {"name": "Gadget", "quantity": 1, "unit": "szt.", "tax_symbol": "8",
     "unit_net_price": Decimal("99.99")}


def _rows(services, group):
    return [s for s in services if s["group"] == group]


def test_correction_full():
    services = build_correction_services([(A, {**A, "quantity": 0}), (B, None)])
    assert [s["group"] for s in services] == ["1", "1", "2", "2"]
    assert [s["correction"] for s in services] == [False, True, False, True]
    before, after = _rows(services, "1")
    assert before["quantity"] == "3"
    assert after["quantity"] == "0"
    assert _rows(services, "2")[1]["quantity"] == "0"
    original = totals([build_service(A), build_service(B)])
    assert correction_totals(services) == {key: -value for key, value in original.items()}
    # A: 3000 + 690; B: 9999 + 800 (799.92)
    assert correction_totals(services) == {"net": -12999, "tax": -1490, "gross": -14489}


def test_correction_partial_quantity():
    services = build_correction_services([(A, {**A, "quantity": 1}), (B, B)])
    assert correction_totals(services) == {"net": -2000, "tax": -460, "gross": -2460}


def test_correction_line_removal_zeroes_line_net():
    line = {**A, "quantity": 3, "unit_net_price": "33.335", "net_price": "100.01"}
    services = build_correction_services([(line, None)])
    before, after = services
    assert before == {**build_service(line), "group": "1", "correction": False}
    assert after["quantity"] == "0"
    assert after["net_price"] == 0
    assert after["correction"] is True
    assert correction_totals(services) == {"net": -10001, "tax": -2300, "gross": -12301}


def test_correction_price_reduction():
    services = build_correction_services([(B, {**B, "unit_net_price": Decimal("79.99")})])
    assert services[0]["unit_net_price"] == 9999
    assert services[1]["unit_net_price"] == 7999
    # before 9999 + 800; after 7999 + 640 (639.92)
    assert correction_totals(services) == {"net": -2000, "tax": -160, "gross": -2160}


def test_correction_added_line():
    services = build_correction_services([(A, A), (None, B)])
    added_before, added_after = _rows(services, "2")
    assert added_before["quantity"] == "0"
    assert added_before["correction"] is False
    assert added_after["quantity"] == "1"
    assert correction_totals(services) == {"net": 9999, "tax": 800, "gross": 10799}


def test_correction_pairs_validation():
    with pytest.raises(ValueError):
        build_correction_services([])
    with pytest.raises(ValueError):
        build_correction_services([(None, None)])
    with pytest.raises(ValueError):
        build_correction_services([A])


def test_build_corrective_invoice():
    body = build_corrective_invoice(
        pairs=[(A, {**A, "quantity": 2})],
        buyer=BUYER,
        invoice_date=datetime.date(2026, 3, 10),
        corrected_invoice_number="FV/1/03/2026",
        corrected_invoice_uuid="a1b2",
        corrected_invoice_date="2026-03-02",
        payment_method="transfer",
        currency="EUR",
    )
    assert body["corrected_invoice_number"] == "FV/1/03/2026"
    assert body["corrected_invoice_uuid"] == "a1b2"
    assert body["corrected_invoice_date"] == "2026-03-02"
    assert body["correction_reason"] == "other"
    assert body["invoice_date"] == "2026-03-10"
    assert body["vat_exchange_date_kind"] == "vat"
    assert body["client_company_name"] == "ACME"
    assert "kind" not in body
    assert [s["correction"] for s in body["services"]] == [False, True]
    assert correction_totals(body["services"]) == {"net": -1000, "tax": -230, "gross": -1230}


@pytest.mark.parametrize(
    "kwargs",
    [{"corrected_invoice_number": ""}, {"correction_reason": "refund"},
     {"payment_method": "gold"}, {"pairs": []}],
)
def test_build_corrective_invoice_rejects(kwargs):
    base = {"pairs": [(A, None)], "buyer": BUYER, "invoice_date": "2026-03-10",
            "corrected_invoice_number": "FV/1/03/2026", "payment_method": "transfer"}
    base.update(kwargs)
    with pytest.raises(ValueError):
        build_corrective_invoice(**base)


def test_odoo_false_values_mean_empty():
    buyer = build_buyer({"company_name": "ACME", "is_company": True, "nip": False,
                         "street": False, "city": False, "post_code": False, "country": False,
                         "first_name": False, "client_id": False})
    assert buyer == {"client_business_activity_kind": "other_business",
                     "client_company_name": "ACME", "client_country": "PL"}
    service = build_service({"name": "x", "tax_symbol": "23", "unit_net_price": 1,
                             "unit": False, "pkwiu": False, "gtu_id": False})
    assert service == {"name": "x", "tax_symbol": "23", "quantity": "1", "unit_net_price": 100}
    invoice = build_invoice(lines=[LINE], buyer=BUYER, invoice_date="2026-03-02",
                            sale_date=False, payment_date=False, number=False, notes=False,
                            payment_method="cash", bank_account=False, bank_name=False,
                            swift=False, vat_exchange_date_kind=False, vat_exemption_reason=False,
                            sale_type=False, status=False, paid_date=False, kind=False,
                            split_payment=False)
    assert False not in invoice.values()
    assert invoice["kind"] == "vat"
    assert "number" not in invoice
    assert invoice["check_duplicate_number"] is True


def test_net_line_with_discount_shows_it():
    service = build_service({
        "name": "Konsultacje", "quantity": "12", "tax_symbol": "23",
        "unit_net_price": "225.00", "net_price": "2700.00",
        "discount": "10", "unit_net_price_before_discount": "250.00",
    })
    assert service["discount"] == 10  # a JSON number (PM: integer percent)
    assert service["unit_net_price_before_discount"] == 25000
    assert service["unit_net_price"] == 22500
    assert service["net_price"] == 270000


def test_zero_discount_is_not_sent_and_bad_discount_refused():
    service = build_service({"name": "x", "quantity": 1, "tax_symbol": "23",
                             "unit_net_price": "10", "discount": 0})
    assert "discount" not in service
    with pytest.raises(ValueError):
        build_service({"name": "x", "quantity": 1, "tax_symbol": "23",
                       "unit_net_price": "10", "discount": "150"})
