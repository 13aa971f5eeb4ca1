"""The additions of infakt_api for the real inFakt API: timeouts, KSeF 2.0, document kinds
(advance and final invoices), period listing, reference lists, legal content, totals checks.

The client tests run against the simulator subprocess (conftest.py); the payload tests are
plain functions.
"""

import datetime
import time
from decimal import Decimal
from unittest import mock

import pytest
import requests

from infakt_api import payload as P
from infakt_api.client import (
    DOCUMENT_KINDS,
    InfaktClient,
    RequestTimeout,
    document_kind,
    kind_of_task,
)
from infakt_api.errors import InfaktNotFound, InfaktUnexpectedResponse

ACCOUNT = "61109010140000071219812874"
BUYER = {"company_name": "ACME Sp. z o.o.", "nip": "5260001246", "city": "Gdańsk",
         "street": "ul. Długa 5/3", "post_code": "80-001"}
LINE = {"name": "Konsultacje", "quantity": 2, "tax_symbol": "23", "unit_net_price": "100.00",
        "net_price": "200.00"}


# -------------------------------------------------------------------------------- timeouts


def test_request_timeout_is_a_pair_that_compares_with_numbers_by_its_read_part():
    timeout = RequestTimeout()
    assert timeout == (5.0, 30.0) and isinstance(timeout, tuple)
    assert (timeout.connect_seconds, timeout.read_seconds, timeout.total) == (5.0, 30.0, 35.0)
    assert not timeout < 10 and timeout > 10 and 10 < timeout and timeout >= 30
    assert RequestTimeout(5, 3) < 10 and float(RequestTimeout(1, 3)) == 3.0
    assert RequestTimeout(1, 2) < (1, 3)  # plain tuples still compare as tuples
    assert repr(timeout) == "RequestTimeout(connect=5, read=30)"
    assert RequestTimeout.coerce(None) == (5.0, 30.0)
    assert RequestTimeout.coerce(7) == (7.0, 7.0)
    assert RequestTimeout.coerce((2, 9)) == (2.0, 9.0)
    for bad in (0, -1, "5", True, (1, 2, 3), float("inf")):
        with pytest.raises(ValueError):
            RequestTimeout.coerce(bad)


def test_client_default_timeout_and_worst_case():
    client = InfaktClient("k")
    assert isinstance(client.timeout, RequestTimeout) and client.timeout == (5.0, 30.0)
    assert client.worst_case_seconds == 35.0
    assert InfaktClient("k", timeout=0.5).worst_case_seconds == 1.0  # a number: both parts
    assert InfaktClient("k", timeout=(3, 12)).timeout.read_seconds == 12.0


def _odoo_like_send(original):
    """What Odoo's test harness does to every request (BaseCase._request_handler)."""

    def send(session, request, **kwargs):
        timeout = kwargs.get("timeout")
        if timeout and timeout < 10:  # a plain tuple raises TypeError here
            kwargs["timeout"] = 10
        return original(session, request, **kwargs)

    return send


def test_request_timeout_survives_odoos_test_harness(simulator):
    original = requests.Session.send
    with mock.patch.object(requests.Session, "send", _odoo_like_send(original)):
        with pytest.raises(TypeError):  # the crash this class avoids
            _odoo_like_send(original)(requests.Session(), None, timeout=(5.0, 30.0))
        for timeout in (None, (2, 5), 3):
            client = InfaktClient(simulator.api_key, environment="custom",
                                  base_url=simulator.base_url, timeout=timeout)
            client.session.trust_env = False
            assert client.test_connection()["entities"] == []
            client.close()


def test_requests_receives_connect_and_read(simulator):
    client = InfaktClient(simulator.api_key, environment="custom", base_url=simulator.base_url,
                          timeout=(1.5, 4))
    client.session.trust_env = False
    seen = {}
    original = requests.adapters.HTTPAdapter.send

    def spy(adapter, request, **kwargs):
        seen["timeout"] = kwargs["timeout"]
        return original(adapter, request, **kwargs)

    with mock.patch.object(requests.adapters.HTTPAdapter, "send", spy):
        client.test_connection()
    assert seen["timeout"] == (1.5, 4.0)
    client.close()


# -------------------------------------------------------------------------------- kinds


def test_document_kinds():
    assert set(DOCUMENT_KINDS) == {"invoice", "corrective", "advance", "final"}
    assert document_kind().collection == "invoices"
    assert document_kind(corrective=True).collection == "corrective_invoices"
    assert document_kind("corrective_invoice").name == "corrective"
    assert document_kind("advance_invoice").wrapper == "advance_invoice"
    assert document_kind("final").create_path == "/async/final_invoices.json"
    assert document_kind("final").status_path("a/b") == "/async/final_invoices/status/a%2Fb.json"
    assert kind_of_task({"invoice_kind": "advance_invoice"}) == "advance"
    assert kind_of_task({"invoice_kind": "oss_invoice"}) is None
    with pytest.raises(ValueError):
        document_kind("margin")
    with pytest.raises(ValueError):
        document_kind("advance", corrective=True)


@pytest.fixture
def client(simulator):
    simulator.configure(task_delay=0, ksef_delay=0)
    infakt = InfaktClient(simulator.api_key, environment="custom", base_url=simulator.base_url,
                          timeout=(5, 10))
    infakt.session.trust_env = False
    yield infakt
    infakt.close()


def wait(client, reference, kind):
    deadline = time.monotonic() + 10
    while True:
        status = client.task_status(reference, kind=kind)
        if not status.pending:
            return status
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_advance_and_final_invoices_end_to_end(client, simulator):
    today = simulator.today()
    first = client.create_advance_invoice(P.build_advance_invoice(
        lines=[LINE], buyer=BUYER, advance_price="100.00", advance_date=today,
        invoice_date=today, payment_method="transfer", bank_account=ACCOUNT), send_to_ksef=True)
    assert kind_of_task(first) == "advance"
    status = wait(client, first["invoice_task_reference_number"], "advance")
    assert status.done and status.invoice_kind == "advance_invoice"
    advance = client.get_document(status.invoice_uuid, kind="advance")
    assert advance == client.get_advance_invoice(status.invoice_uuid)
    assert advance["kind"] == "advance" and advance["advance_price"] == 10000
    assert advance["gross_price"] == 24600 and advance["left_to_pay"] == 14600
    with pytest.raises(InfaktNotFound):
        client.get_invoice(status.invoice_uuid)  # every kind has its own path
    simulator.wait_idle()
    assert client.get_ksef_status(advance["uuid"])["invoice_kind"] == "advance"

    second = client.create_advance_invoice(P.build_advance_invoice(
        buyer=BUYER, advance_price=50, payment_method="transfer", bank_account=ACCOUNT,
        previous_advance_id=advance["id"]))
    second_uuid = wait(client, second["invoice_task_reference_number"], "advance").invoice_uuid
    second_doc = client.get_advance_invoice(second_uuid)
    assert second_doc["previous_advance_id"] == advance["id"]
    assert second_doc["left_to_pay"] == 24600 - 15000

    final = client.create_final_invoice(P.build_final_invoice(
        lines=[LINE], buyer=BUYER, previous_advance_id=second_doc["id"], invoice_date=today,
        payment_method="transfer", bank_account=ACCOUNT))
    status = wait(client, final["invoice_task_reference_number"], "final")
    assert status.done
    document = client.get_final_invoice(status.invoice_uuid)
    assert [a["id"] for a in document["previous_advances"]] == [advance["id"], second_doc["id"]]
    assert document["left_to_pay"] == 24600 - 15000
    pdf = client.download_pdf(status.invoice_uuid, kind="final")
    assert pdf.startswith(b"%PDF") and b"Faktura koncowa" in pdf
    assert client.mark_document_paid(status.invoice_uuid, today, kind="final") is None
    assert client.get_final_invoice(status.invoice_uuid)["paid_date"] == today.isoformat()
    sent = client.send_to_ksef(status.invoice_uuid, kind="final")
    assert sent["invoice_kind"] == "final"
    assert [a["number"] for a in client.find_documents_by_number(
        document["number"], kind="final")] == [document["number"]]


def test_advance_task_status_is_not_found_on_the_invoice_path(client):
    envelope = client.create_advance_invoice(P.build_advance_invoice(
        lines=[LINE], buyer=BUYER, advance_price=10, payment_method="transfer",
        bank_account=ACCOUNT))
    with pytest.raises(InfaktNotFound):
        client.task_status(envelope["invoice_task_reference_number"])
    assert wait(client, envelope["invoice_task_reference_number"], "advance").done


def test_mark_document_paid_of_an_invoice_is_the_async_task(client, simulator):
    envelope = client.create_invoice(P.build_invoice(
        lines=[LINE], buyer=BUYER, invoice_date=simulator.today(), payment_method="transfer",
        bank_account=ACCOUNT))
    uuid = wait(client, envelope["invoice_task_reference_number"], "invoice").invoice_uuid
    task = client.mark_document_paid(uuid, simulator.today())
    assert task["action"] == "mark_as_paid"
    assert wait(client, task["invoice_task_reference_number"], "invoice").code == 200


def test_send_to_ksef2_and_integration(client, simulator):
    envelope = client.create_invoice(P.build_invoice(
        lines=[LINE], buyer=BUYER, invoice_date=simulator.today(), payment_method="transfer",
        bank_account=ACCOUNT))
    uuid = wait(client, envelope["invoice_task_reference_number"], "invoice").invoice_uuid
    assert client.get_ksef_integration() == {
        "active": True, "incomes_last_fetched_at": None, "costs_last_fetched_at": None}
    sent = client.send_to_ksef2(uuid)
    assert sent["status"] == "pending" and sent["request_uuid"]
    simulator.wait_idle()
    assert client.get_ksef_status(uuid)["status"] == "success"
    assert client.get_invoice(uuid)["status"] == "sent"
    paths = [r["path"] for r in simulator.state()["requests"]]
    assert not any("/ksef/" in path for path in paths)


# -------------------------------------------------------------------------------- listing


def test_period_listing_against_the_simulator(client, simulator):
    def make(day, number):
        body = P.build_invoice(lines=[LINE], buyer=BUYER, invoice_date=day, number=number,
                               payment_method="transfer", bank_account=ACCOUNT)
        return wait(client, client.create_invoice(body)["invoice_task_reference_number"],
                    "invoice")

    for day, number in (("2026-02-28", "F/1"), ("2026-03-01", "M/1"), ("2026-03-15", "M/2"),
                        ("2026-03-31", "M/3"), ("2026-04-01", "A/1")):
        make(day, number)
    original = client.find_invoices_by_number("M/2")[0]
    corrective = P.build_corrective_invoice(
        pairs=[(LINE, dict(LINE, quantity=1, net_price="100.00"))], buyer=BUYER,
        invoice_date="2026-03-20", corrected_invoice_number="M/2",
        corrected_invoice_uuid=original["uuid"], payment_method="transfer",
        bank_account=ACCOUNT)
    assert wait(client, client.create_corrective_invoice(corrective)[
        "invoice_task_reference_number"], "corrective").done
    found = list(client.iter_period_documents("2026-03-01", datetime.date(2026, 3, 31)))
    assert sorted(d["number"] for kind, d in found if kind == "invoice") == ["M/1", "M/2", "M/3"]
    assert [kind for kind, _d in found].count("corrective") == 1
    listing = client.list_period_documents("2026-03-01", "2026-03-31")
    assert listing.complete and listing.ignored == 0
    assert {k: len(v) for k, v in listing.documents.items()} == {"invoice": 3, "corrective": 1}
    requests_seen = [r for r in simulator.state()["requests"] if r["path"].endswith(
        "/invoices.json")]
    assert "q%5Binvoice_date_gteq%5D=2026-03-01" in requests_seen[-1]["query"]
    with pytest.raises(ValueError):
        list(client.iter_period_documents("2026-04-01", "2026-03-01"))


def test_period_listing_max_pages_guard(client, simulator):
    for index in range(3):
        client.create_invoice(P.build_invoice(
            lines=[LINE], buyer=BUYER, invoice_date=f"2026-03-0{index + 1}",
            payment_method="transfer", bank_account=ACCOUNT))
    simulator.wait_idle()
    with mock.patch("infakt_api.client.LIST_LIMIT", 2):
        with pytest.raises(InfaktUnexpectedResponse):
            list(client.iter_period_documents("2026-03-01", "2026-03-31", kinds=("invoice",),
                                              max_pages=1))
        listing = client.list_period_documents("2026-03-01", "2026-03-31",
                                               kinds=("invoice",), max_pages=1)
        assert not listing.complete and len(listing.documents["invoice"]) == 2
        full = client.list_period_documents("2026-03-01", "2026-03-31", kinds=("invoice",),
                                            max_pages=5)
        assert full.complete and len(full.documents["invoice"]) == 3


def test_reference_lists_from_the_simulator(client):
    exemptions = client.list_vat_exemptions()
    assert exemptions[0] == {"id": 1, "description": "zwolnienie podmiotowe",
                             "legal_basis_rule": "art. 113 ust. 1 i 9",
                             "legal_basis_source": "Ustawa o podatku od towarów i usług"}
    assert [g["name"] for g in client.list_gtus()] == [f"GTU_{i:02d}" for i in range(1, 14)]
    assert client.find_document_marking_id("TP") == P.TP_MARKING_ID
    assert len(client.list_transaction_kinds()) == 5


# -------------------------------------------------------------------------------- payloads


def test_legal_fields_of_an_invoice():
    body = P.build_invoice(
        lines=[dict(LINE, gtu_id="6"), dict(LINE, name="Bez GTU", gtu_id=False)], buyer=BUYER,
        invoice_date="2026-03-01", payment_method="cash", vat_exemption_reason="37",
        split_payment_type="optional", sale_type="merchandise",
        document_markings_ids=["3", 3, 13], transaction_kind_id=1)
    assert body["services"][0]["gtu_id"] == 6 and "gtu_id" not in body["services"][1]
    assert body["vat_exemption_reason"] == 37
    assert body["split_payment_type"] == "optional"
    assert body["document_markings_ids"] == [3, 13]
    assert body["transaction_kind_id"] == 1 and body["sale_type"] == "merchandise"
    assert P.build_invoice(lines=[LINE], buyer=BUYER, invoice_date="2026-03-01",
                           payment_method="cash", split_payment=True)[
        "split_payment_type"] == "required"


@pytest.mark.parametrize("change, message", [
    ({"discount": "120"}, "line 1 ('Konsultacje'): discount must be a percentage between 0 "
                          "and 100, not 120"),
    ({"discount": -5}, "between 0 and 100"),
    ({"quantity": -2}, "line 1 ('Konsultacje'): the quantity (-2) and the net total (200.00) "
                       "have opposite signs"),
    ({"gtu_id": "GTU_06"}, "line 1 ('Konsultacje'): gtu_id (GTU code id) must be an inFakt id"),
    ({"tax_symbol": "abc"}, "line 1 ('Konsultacje'): invalid tax_symbol"),
    ({"name": " "}, "line 1: the line has no name"),
    ({"quantity": "dużo"}, "line 1 ('Konsultacje'): quantity is not a number"),
    ({"unit_net_price": None}, "line 1 ('Konsultacje'): unit_net_price (the net unit price) "
                               "is required"),
])
def test_line_errors_name_the_line(change, message):
    with pytest.raises(ValueError) as info:
        P.build_invoice(lines=[dict(LINE, **change)], buyer=BUYER, invoice_date="2026-03-01",
                        payment_method="cash")
    assert message in str(info.value)


def test_second_line_is_named_and_negative_lines_are_fine():
    negative = dict(LINE, name="Rabat", quantity=-1, unit_net_price="10.00", net_price="-10.00")
    body = P.build_invoice(lines=[LINE, negative], buyer=BUYER, invoice_date="2026-03-01",
                           payment_method="cash")
    assert body["services"][1]["net_price"] == -1000
    with pytest.raises(ValueError, match=r"^line 2 \('Rabat'\): the quantity"):
        P.build_invoice(lines=[LINE, dict(negative, net_price="10.00")], buyer=BUYER,
                        invoice_date="2026-03-01", payment_method="cash")


@pytest.mark.parametrize("kwargs, message", [
    ({"vat_exemption_reason": "art. 43"}, "vat_exemption_reason must be an inFakt id"),
    ({"vat_exemption_reason": 0}, None),  # Odoo's empty value: left out
    ({"document_markings_ids": ["TP"]}, "document_markings_ids must be an inFakt id"),
    ({"split_payment": "maybe"}, "split_payment must be True, 'required' or 'optional'"),
    ({"sale_type": "goods"}, "sale_type must be one of"),
    ({"transaction_kind_id": 1.5}, "transaction_kind_id must be an inFakt id"),
])
def test_document_field_errors(kwargs, message):
    build = dict(lines=[LINE], buyer=BUYER, invoice_date="2026-03-01", payment_method="cash")
    if message is None:
        assert "vat_exemption_reason" not in P.build_invoice(**build, **kwargs)
        return
    with pytest.raises(ValueError, match=message):
        P.build_invoice(**build, **kwargs)


def test_corrective_rows_are_always_priced_from_net():
    gross = {"name": "Książka", "quantity": 3, "tax_symbol": "5", "price_mode": "gross",
             "gross_price": "100.00"}
    with_net = dict(gross, unit_net_price=Decimal("95.24") / 3, net_price="95.24")
    services = P.build_correction_services([(gross, None), (with_net, with_net)])
    assert all("gross_price" not in row for row in services)
    before, after, before2, after2 = services
    # derived as inFakt splits 100.00 gross at 5 %: tax 4.76, net 95.24
    assert (before["unit_net_price"], before["net_price"]) == (3175, 9524)
    assert after["quantity"] == "0" and after["net_price"] == 0
    # the net Odoo computed is taken as given
    assert (before2["unit_net_price"], before2["net_price"]) == (3175, 9524)
    assert P.correction_totals(services) == {"net": -9524, "tax": -476, "gross": -10000}
    net_only = P.build_correction_services([(LINE, dict(LINE, quantity=1, net_price=None))])
    assert net_only[1]["net_price"] == 10000  # computed when not given
    with pytest.raises(ValueError, match=r"^correction pair 1, after line \('Konsultacje'\)"):
        P.build_correction_services([(LINE, dict(LINE, discount=150))])


def test_discount_sends_a_number_and_the_line_total():
    row = P.build_service(dict(LINE, net_price=None, discount="12.5",
                               unit_net_price_before_discount="114.29"))
    assert row["discount"] == Decimal("12.5") and row["net_price"] == 20000
    assert row["unit_net_price_before_discount"] == 11429


def test_totals_differences():
    body = P.build_invoice(
        lines=[LINE, {"name": "Pół", "quantity": "0.5", "tax_symbol": "8",
                      "unit_net_price": "19.99"}],
        buyer=BUYER, invoice_date="2026-03-01", payment_method="cash")
    computed = P.payload_totals(body)
    assert computed == {"net": 21000, "tax": 4680, "gross": 25680}
    assert P.totals_differences(body, computed) == {}
    assert P.totals_differences(body["services"], {"net": 21000}) == {}
    assert P.totals_differences(body, {"net": 20999, "tax": 4680, "gross": 25679}) == {
        "net": {"infakt": 21000, "expected": 20999, "difference": 1},
        "gross": {"infakt": 25680, "expected": 25679, "difference": 1}}
    corrective = P.build_corrective_invoice(
        pairs=[(LINE, None)], buyer=BUYER, invoice_date="2026-03-02",
        corrected_invoice_number="1/03/2026", payment_method="cash")
    assert P.totals_differences(corrective, {"net": -20000, "tax": -4600, "gross": -24600}) == {}


def test_advance_and_final_builders_validate():
    with pytest.raises(ValueError, match="needs its lines"):
        P.build_advance_invoice(buyer=BUYER, advance_price=10, payment_method="cash")
    with pytest.raises(ValueError, match="advance_price"):
        P.build_advance_invoice(lines=[LINE], buyer=BUYER, advance_price=0,
                                payment_method="cash")
    with pytest.raises(ValueError, match="previous_advance_id"):
        P.build_final_invoice(lines=[LINE], buyer=BUYER, previous_advance_id=None,
                              payment_method="cash")
    with pytest.raises(ValueError, match="previous_advance_id must be an inFakt id"):
        P.build_final_invoice(lines=[LINE], buyer=BUYER, previous_advance_id="uuid-abc",
                              payment_method="cash")
    advance = P.build_advance_invoice(lines=[LINE], buyer=BUYER, advance_price="12.34",
                                      payment_method="cash", not_income=False)
    assert advance["advance_price"] == 1234 and advance["not_income"] is False
