"""Conformance of tools/infakt_simulator.py with the documented inFakt API (infakt-api.md).

Every test talks to the simulator over real HTTP (a subprocess started by conftest.py).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

SIMULATOR_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "infakt_simulator.py"
ACCOUNT = "61109010140000071219812874"
TASK_TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")
KSEF_NUMBER = re.compile(r"^\d{10}-\d{8}-[0-9A-F]{12}-[0-9A-F]{2}$")
NOT_FOUND = {"error": "Zasób którego szukasz nie został znaleziony."}
NO_KSEF = {"error": "Użytkownik nie jest zintegrowany z KSeF."}
PENDING = (100, 120, 140)


# -------------------------------------------------------------------------------- helpers


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False  # never route loopback through a proxy
    yield session
    session.close()


def call(http, sim, method, path, key=None, **kwargs):
    headers = kwargs.pop("headers", {})
    headers.setdefault("X-inFakt-ApiKey", sim.api_key if key is None else key)
    if not headers["X-inFakt-ApiKey"]:
        del headers["X-inFakt-ApiKey"]
    kwargs.setdefault("timeout", 5)
    return http.request(method, sim.base_url + path, headers=headers, **kwargs)


def invoice_payload(**overrides):
    payload = {
        "payment_method": "transfer",
        "bank_account": ACCOUNT,
        "client_company_name": "Przykładowa Firma Sp. z o.o.",
        "client_business_activity_kind": "other_business",
        "client_tax_code": "525-22-48-481",
        "client_street": "Prosta",
        "client_city": "Warszawa",
        "client_post_code": "00-001",
        "client_country": "PL",
        "services": [
            {"name": "Usługa programistyczna", "tax_symbol": "23", "quantity": 2,
             "unit_net_price": 10000},
        ],
    }
    payload.update(overrides)
    return payload


def post_task(http, sim, payload, path="/async/invoices.json", wrapper="invoice", **extra):
    body = {wrapper: payload}
    body.update(extra)
    response = call(http, sim, "POST", path, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def wait_task(http, sim, ref, kind="invoices", timeout=5.0):
    deadline = time.monotonic() + timeout
    codes = []
    while True:
        response = call(http, sim, "GET", f"/async/{kind}/status/{ref}.json")
        assert response.status_code == 200, response.text
        body = response.json()
        codes.append(body["processing_code"])
        if body["processing_code"] not in PENDING:
            body["_codes"] = codes
            return body
        assert time.monotonic() < deadline, f"task {ref} still pending: {codes}"
        time.sleep(0.02)


def create_invoice(http, sim, payload=None, **overrides):
    envelope = post_task(http, sim, payload or invoice_payload(**overrides))
    status = wait_task(http, sim, envelope["invoice_task_reference_number"])
    assert status["processing_code"] == 201, status
    response = call(http, sim, "GET", f"/invoices/{status['invoice_uuid']}.json")
    assert response.status_code == 200
    return response.json()


def task_errors(http, sim, payload, kind="invoices", wrapper="invoice"):
    envelope = post_task(http, sim, payload, path=f"/async/{kind}.json", wrapper=wrapper)
    status = wait_task(http, sim, envelope["invoice_task_reference_number"], kind=kind)
    assert status["processing_code"] == 422, status
    assert status["invoice_uuid"] is None
    errors = status["invoice_errors"]
    assert all(isinstance(v, list) and v for v in errors.values()), errors
    return errors


def wait_until(predicate, timeout=5.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(interval)


def active_webhook(sim, receiver, secret="s3cr3t-hmac", **cfg):
    sim.configure(webhook_url=receiver.url, webhook_secret=secret, **cfg)
    result = sim.verify_webhook()
    assert result["verified"] is True, result
    return secret


# -------------------------------------------------------------------------------- auth, basics


def test_missing_and_unknown_api_key_give_401(http, simulator):
    for key in ("", "wrong-key"):
        response = call(http, simulator, "GET", "/invoices.json", key=key)
        assert response.status_code == 401
        assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert call(http, simulator, "GET", "/invoices.json").status_code == 200


def test_plan_without_api_gives_402(http, simulator):
    simulator.configure(api_keys=[{"key": "test-key", "plan_api": False}])
    response = call(http, simulator, "GET", "/invoices.json")
    assert response.status_code == 402
    assert "error" in response.json()


def test_missing_scopes_give_403(http, simulator):
    simulator.configure(api_keys=[{"key": "test-key", "scopes": ["api:invoices:read"]},
                                  {"key": "writer", "scopes": ["api:invoices:write"]}])
    assert call(http, simulator, "GET", "/invoices.json").status_code == 200
    denied = call(http, simulator, "POST", "/async/invoices.json",
                  json={"invoice": invoice_payload()})
    assert denied.status_code == 403 and "api:invoices:write" in denied.json()["error"]
    # KSeF 2.0's integration status needs only api:invoices:read (PM, GH ksef.md)
    assert call(http, simulator, "GET", "/ksef2/integration.json").status_code == 200
    assert call(http, simulator, "GET", "/invoices.json", key="writer").status_code == 403
    assert call(http, simulator, "POST", "/async/invoices.json", key="writer",
                json={"invoice": invoice_payload()}).status_code == 201
    assert len(simulator.state()["tasks"]) == 1


def test_unknown_path_and_missing_json_suffix_give_404(http, simulator):
    for path in ("/nothing_here.json", "/invoices", "/invoices/abc/unknown.json"):
        response = call(http, simulator, "GET", path)
        assert response.status_code == 404
        assert response.json() == NOT_FOUND


def test_legacy_v3_base_path_is_accepted(http, simulator):
    response = http.get(simulator.root_url + "/v3/invoices.json",
                        headers={"X-inFakt-ApiKey": simulator.api_key}, timeout=5)
    assert response.status_code == 200 and "entities" in response.json()


def test_malformed_json_gives_400(http, simulator):
    response = call(http, simulator, "POST", "/async/invoices.json", data=b"{not json",
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "error" in response.json()
    assert simulator.state()["tasks"] == []


@pytest.mark.parametrize(("path", "body"), [
    ("/async/invoices.json", {"services": []}),
    ("/async/invoices.json", {"invoice": {}}),
    ("/async/corrective_invoices.json", {"invoice": invoice_payload()}),
])
def test_wrapper_key_is_required(http, simulator, path, body):
    response = call(http, simulator, "POST", path, json=body)
    assert response.status_code in (400, 422)
    assert "error" in response.json()
    assert simulator.state()["tasks"] == []


# -------------------------------------------------------------------------------- async tasks


def test_async_create_envelope_and_lifecycle(http, simulator):
    response = call(http, simulator, "POST", "/async/invoices.json",
                    json={"invoice": invoice_payload(), "send_to_ksef": False})
    assert response.status_code == 201
    envelope = response.json()
    assert set(envelope) == {"timestamps", "invoice_task_reference_number", "processing_code",
                             "processing_description", "invoice_kind"}
    assert envelope["processing_code"] == 100
    assert envelope["processing_description"] == "Zlecenie przyjęte"
    assert envelope["invoice_kind"] == "invoice"
    assert TASK_TS.match(envelope["timestamps"]["task_created_at"])
    ref = envelope["invoice_task_reference_number"]
    first = call(http, simulator, "GET", f"/async/invoices/status/{ref}.json").json()
    assert first["processing_code"] in PENDING and "invoice_uuid" not in first
    final = wait_task(http, simulator, ref)
    assert final["processing_code"] == 201
    assert final["processing_description"] == "Faktura stworzona"
    assert final["action"] == "create_invoice"
    assert final["_codes"][0] in (100, 120) and set(final["_codes"][:-1]) <= set(PENDING)
    assert re.fullmatch(r"[0-9a-f-]{36}", final["invoice_uuid"])
    state = simulator.state()
    assert [i["uuid"] for i in state["invoices"]] == [final["invoice_uuid"]]
    assert state["tasks"][0]["code"] == 201 and state["counters"]["creates"] == 1


def test_task_goes_through_120_and_140(http, simulator):
    simulator.configure(task_delay=0.6)
    envelope = post_task(http, simulator, invoice_payload())
    final = wait_task(http, simulator, envelope["invoice_task_reference_number"])
    assert {100, 120, 140} <= set(final["_codes"])
    assert final["processing_code"] == 201


def test_task_delay_zero_is_finished_on_first_poll(http, simulator):
    simulator.configure(task_delay=0)
    envelope = post_task(http, simulator, invoice_payload())
    status = call(http, simulator, "GET", "/async/invoices/status/"
                  f"{envelope['invoice_task_reference_number']}.json").json()
    assert status["processing_code"] == 201 and status["invoice_uuid"]


def test_invoice_is_materialised_without_polling(http, simulator):
    simulator.configure(task_delay=0.05)
    post_task(http, simulator, invoice_payload())
    wait_until(lambda: simulator.state()["invoices"], timeout=3)
    assert not any(r["route"] == "invoice_task_status" for r in simulator.state()["requests"])


def test_unknown_task_reference_gives_404(http, simulator):
    response = call(http, simulator, "GET", "/async/invoices/status/no-such-ref.json")
    assert response.status_code == 404 and response.json() == NOT_FOUND
    envelope = post_task(http, simulator, invoice_payload())
    ref = envelope["invoice_task_reference_number"]
    wrong_kind = call(http, simulator, "GET", f"/async/corrective_invoices/status/{ref}.json")
    assert wrong_kind.status_code == 404


def test_failed_task_has_documented_error_shape(http, simulator):
    simulator.configure(task_delay=0)
    payload = invoice_payload()
    del payload["payment_method"]
    envelope = post_task(http, simulator, payload)
    status = wait_task(http, simulator, envelope["invoice_task_reference_number"])
    assert status["processing_code"] == 422
    assert status["processing_description"] == "Nie udało się stworzyć faktury"
    assert status["invoice_errors"] == {
        "payment_method": ["Proszę wybrać odpowiedni sposób płatności."]}
    assert simulator.state()["invoices"] == []


# -------------------------------------------------------------------------------- money, read-back


def test_invoice_read_back_and_money(http, simulator):
    simulator.configure(task_delay=0)
    invoice = create_invoice(http, simulator, services=[
        {"name": "Netto x ilość", "tax_symbol": "23", "quantity": "0.5", "unit_net_price": 12345},
        {"name": "Z brutto", "tax_symbol": "8", "gross_price": 10001},
        {"name": "Netto wprost", "tax_symbol": "5", "net_price": 999, "quantity": 3},
        {"name": "Rabat", "tax_symbol": "23", "quantity": 3, "unit_net_price": 3333,
         "discount": 10},
        {"name": "Zwolnione", "tax_symbol": "np", "unit_net_price": 5000},
    ])
    today = simulator.today()
    assert isinstance(invoice["id"], int)
    assert invoice["kind"] == "vat" and invoice["status"] == "draft"
    assert re.fullmatch(rf"\d+/{today.month:02d}/{today.year}", invoice["number"])
    assert invoice["currency"] == "PLN" and invoice["payment_method"] == "transfer"
    assert invoice["bank_account"] == ACCOUNT
    assert invoice["client_company_name"] == "Przykładowa Firma Sp. z o.o."
    assert invoice["client_tax_code"] == "525-22-48-481"
    assert invoice["ksef_data"] is None and invoice["ksef_number"] is None
    assert invoice["paid_date"] is None and invoice["created_at"]
    rows = invoice["services"]
    assert [type(r["id"]) for r in rows] == [int] * 5
    assert [r["discount"] for r in rows] == ["0.0", "0.0", "0.0", "10.0", "0.0"]
    # 12345 * 0.5 = 6172.5 -> 6173; tax 23% = 1419.79 -> 1420
    assert (rows[0]["net_price"], rows[0]["tax_price"], rows[0]["gross_price"]) == (
        6173, 1420, 7593)
    # from gross: tax = 10001 * 8 / 108 = 740.8 -> 741
    assert (rows[1]["net_price"], rows[1]["tax_price"], rows[1]["gross_price"]) == (
        9260, 741, 10001)
    assert (rows[2]["net_price"], rows[2]["tax_price"], rows[2]["gross_price"]) == (
        999, 50, 1049)
    # 3333 * 3 * 0.9 = 8999.1 -> 8999; tax = 2069.77 -> 2070
    assert (rows[3]["net_price"], rows[3]["tax_price"], rows[3]["gross_price"]) == (
        8999, 2070, 11069)
    assert (rows[4]["net_price"], rows[4]["tax_price"], rows[4]["gross_price"]) == (
        5000, 0, 5000)
    for field in ("net_price", "tax_price", "gross_price"):
        assert invoice[field] == sum(r[field] for r in rows)
        assert isinstance(invoice[field], int)
    assert invoice["gross_price"] == 34712
    assert invoice["paid_price"] == 0 and invoice["left_to_pay"] == 34712


def test_numbers_are_sequential_and_given_number_is_kept(http, simulator):
    simulator.configure(task_delay=0)
    first = create_invoice(http, simulator)
    second = create_invoice(http, simulator)
    assert int(second["number"].split("/")[0]) == int(first["number"].split("/")[0]) + 1
    own = create_invoice(http, simulator, number="FV/77/2025", invoice_date="2025-03-05")
    assert own["number"] == "FV/77/2025" and own["invoice_date"] == "2025-03-05"
    nxt = call(http, simulator, "GET", "/invoices/next_number.json",
               params={"kind": "vat", "date": "2025-03-05"}).json()
    assert nxt == {"next_number": "1/03/2025", "invoice_date": "2025-03-05",
                   "invoice_kind": "vat"}


# -------------------------------------------------------------------------------- lists, filters


def test_list_envelope_paging_and_limits(http, simulator):
    simulator.configure(task_delay=0)
    for _ in range(3):
        create_invoice(http, simulator)
    page = call(http, simulator, "GET", "/invoices.json", params={"limit": 2}).json()
    assert set(page) == {"metainfo", "entities"}
    assert set(page["metainfo"]) == {"count", "total_count", "next", "previous"}
    # count as real inFakt reports it: not the rows returned but the rows left from the
    # offset capped at the default page size of 10, whatever the limit (OL live capture)
    assert page["metainfo"]["count"] == 3 and page["metainfo"]["total_count"] == 3
    assert len(page["entities"]) == 2
    assert "offset=2" in page["metainfo"]["next"]
    rest = call(http, simulator, "GET", "/invoices.json",
                params={"limit": 2, "offset": 2}).json()
    assert len(rest["entities"]) == 1 and rest["metainfo"]["count"] == 1
    ids = {e["uuid"] for e in page["entities"]} | {e["uuid"] for e in rest["entities"]}
    assert len(ids) == 3
    default = call(http, simulator, "GET", "/invoices.json").json()
    assert default["metainfo"]["count"] == 3
    huge = call(http, simulator, "GET", "/invoices.json", params={"limit": 500}).json()
    assert "limit=100" in huge["metainfo"]["next"]


def test_q_number_eq_and_unknown_filter_ignored(http, simulator):
    simulator.configure(task_delay=0)
    wanted = create_invoice(http, simulator, number="18/03/2023", client_tax_code="111-222-33-44")
    create_invoice(http, simulator, number="19/03/2023")
    found = call(http, simulator, "GET", "/invoices.json",
                 params={"q[number_eq]": "18/03/2023"}).json()
    assert [e["uuid"] for e in found["entities"]] == [wanted["uuid"]]
    assert found["metainfo"]["total_count"] == 1
    none = call(http, simulator, "GET", "/invoices.json", params={"q[number_eq]": "1/01/1999"})
    assert none.status_code == 200 and none.json()["entities"] == []
    ignored = call(http, simulator, "GET", "/invoices.json",
                   params={"q[external_id_eq]": "whatever"})
    assert ignored.status_code == 200 and ignored.json()["metainfo"]["total_count"] == 2
    by_nip = call(http, simulator, "GET", "/invoices.json",
                  params={"q[clean_client_nip_eq]": "1112223344"}).json()
    assert [e["uuid"] for e in by_nip["entities"]] == [wanted["uuid"]]
    unpaid = call(http, simulator, "GET", "/invoices.json",
                  params={"q[paid_date_null]": "true"}).json()
    assert unpaid["metainfo"]["total_count"] == 2


# -------------------------------------------------------------------------------- validation


def _without(payload, *keys):
    for key in keys:
        payload.pop(key, None)
    return payload


VALIDATION_CASES = [
    ("missing payment method", lambda: _without(invoice_payload(), "payment_method"),
     "payment_method"),
    ("unknown payment method", lambda: invoice_payload(payment_method="bitcoin"),
     "payment_method"),
    ("transfer with unknown account",
     lambda: invoice_payload(bank_account="PL27114020040000300201355387"), "bank_account"),
    ("bad tax symbol", lambda: invoice_payload(services=[
        {"name": "X", "tax_symbol": "19", "unit_net_price": 100}]), "services.tax_symbol"),
    ("empty tax symbol", lambda: invoice_payload(services=[
        {"name": "X", "tax_symbol": "", "unit_net_price": 100}]), "services.tax_symbol"),
    ("no services", lambda: invoice_payload(services=[]), "services"),
    ("service without name", lambda: invoice_payload(services=[
        {"tax_symbol": "23", "unit_net_price": 100}]), "services.name"),
    ("company buyer without name",
     lambda: _without(invoice_payload(), "client_company_name"), "client_company_name"),
    ("no kind and no names", lambda: _without(
        invoice_payload(), "client_company_name", "client_business_activity_kind"),
     "client_company_name"),
    ("private person without last name", lambda: _without(invoice_payload(
        client_business_activity_kind="private_person", client_first_name="Jan"),
        "client_company_name"), "client_last_name"),
    ("unknown exchange date kind", lambda: invoice_payload(
        currency="EUR", vat_exchange_date_kind="nbp"), "vat_exchange_date_kind"),
    ("zw line without exemption reason", lambda: invoice_payload(services=[
        {"name": "Szkolenie", "tax_symbol": "zw", "unit_net_price": 100}]),
     "vat_exemption_reason"),
    ("grosze must be integers", lambda: invoice_payload(services=[
        {"name": "X", "tax_symbol": "23", "unit_net_price": 12.34}]),
     "services.unit_net_price"),
]


@pytest.mark.parametrize(("case", "make", "field"), VALIDATION_CASES,
                         ids=[c[0] for c in VALIDATION_CASES])
def test_validation_errors_end_the_task_with_422(http, simulator, case, make, field):
    simulator.configure(task_delay=0)
    errors = task_errors(http, simulator, make())
    assert field in errors, errors
    assert simulator.state()["invoices"] == []


def test_transfer_without_bank_account_uses_the_default_one(http, simulator):
    """OL: "'transfer' 422s unless the seller has a bank account configured on the Infakt
    side"; GH's example sends transfer without bank_account."""
    simulator.configure(task_delay=0)
    invoice = create_invoice(http, simulator, _without(invoice_payload(), "bank_account"))
    assert invoice["bank_account"] == ACCOUNT
    simulator.configure(bank_accounts=[])
    errors = task_errors(http, simulator, _without(invoice_payload(), "bank_account"))
    assert "bank_account" in errors


def test_missing_payment_method_message_is_documented(http, simulator):
    simulator.configure(task_delay=0)
    errors = task_errors(http, simulator, _without(invoice_payload(), "payment_method"))
    assert errors["payment_method"] == ["Proszę wybrać odpowiedni sposób płatności."]


def test_missing_buyer_entirely_reports_base(http, simulator):
    simulator.configure(task_delay=0)
    errors = task_errors(http, simulator, _without(
        invoice_payload(), "client_company_name", "client_business_activity_kind"))
    assert errors["base"] == ["client_id required"]


@pytest.mark.parametrize("overrides", [
    {"currency": "EUR", "vat_exchange_date_kind": "vat"},
    {"services": [{"name": "Szkolenie", "tax_symbol": "zw", "unit_net_price": 100}],
     "vat_exemption_reason": 1},
    {"payment_method": "cash", "bank_account": None},
    {"client_business_activity_kind": "private_person", "client_company_name": None,
     "client_first_name": "Jan", "client_last_name": "Kowalski"},
    {"client_business_activity_kind": None, "client_company_name": None,
     "client_first_name": "Anna", "client_last_name": "Nowak"},
])
def test_valid_variants_are_accepted(http, simulator, overrides):
    simulator.configure(task_delay=0)
    invoice = create_invoice(http, simulator, **overrides)
    for key, value in overrides.items():
        if key != "services" and value is not None:
            assert invoice[key] == value


def test_unverified_bank_account_is_refused(http, simulator):
    simulator.configure(task_delay=0, bank_accounts=[
        {"id": 7, "account_number": ACCOUNT, "bank_name": "Bank", "verified": False}])
    errors = task_errors(http, simulator, invoice_payload())
    assert "bank_account" in errors


def test_duplicate_number_refused_only_when_checked(http, simulator):
    simulator.configure(task_delay=0)
    create_invoice(http, simulator, number="FV/1/2025", check_duplicate_number=True)
    errors = task_errors(http, simulator, invoice_payload(
        number="FV/1/2025", check_duplicate_number=True))
    assert errors["number"] and all(isinstance(m, str) for m in errors["number"])
    assert len(simulator.state()["invoices"]) == 1
    create_invoice(http, simulator, number="FV/1/2025")  # not checked: accepted
    found = call(http, simulator, "GET", "/invoices.json",
                 params={"q[number_eq]": "FV/1/2025"}).json()
    assert found["metainfo"]["total_count"] == 2


# -------------------------------------------------------------------------------- corrective


def corrective_payload(original, **overrides):
    payload = {
        "corrected_invoice_number": original["number"],
        "corrected_invoice_date": original["invoice_date"],
        "correction_reason": "mistake",
        "payment_method": "transfer",
        "bank_account": ACCOUNT,
        "client_company_name": original["client_company_name"],
        "client_business_activity_kind": "other_business",
        "client_tax_code": original["client_tax_code"],
        "services": [
            {"group": "1", "correction": False, "name": "Usługa programistyczna",
             "tax_symbol": "23", "quantity": 2, "unit_net_price": 10000},
            {"group": "1", "correction": True, "name": "Usługa programistyczna",
             "tax_symbol": "23", "quantity": 1, "unit_net_price": 10000},
            {"group": "2", "correction": False, "name": "Dojazd", "tax_symbol": "8",
             "quantity": 1, "unit_net_price": 1000},
            {"group": "2", "correction": True, "name": "Dojazd", "tax_symbol": "8",
             "quantity": "0", "unit_net_price": 1000},
        ],
    }
    payload.update(overrides)
    return payload


def test_corrective_invoice_totals_are_after_minus_before(http, simulator):
    simulator.configure(task_delay=0)
    original = create_invoice(http, simulator)
    response = call(http, simulator, "POST", "/async/corrective_invoices.json",
                    json={"corrective_invoice": corrective_payload(original),
                          "send_to_ksef": False})
    assert response.status_code == 201
    envelope = response.json()
    assert envelope["invoice_kind"] == "corrective_invoice"
    assert envelope["processing_code"] == 100
    status = wait_task(http, simulator, envelope["invoice_task_reference_number"],
                       kind="corrective_invoices")
    assert status["processing_code"] == 201
    assert status["invoice_kind"] == "corrective_invoice"
    uuid = status["invoice_uuid"]
    correction = call(http, simulator, "GET", f"/corrective_invoices/{uuid}.json").json()
    assert correction["kind"] == "correction"
    today = simulator.today()
    assert re.fullmatch(rf"\d+/KOR/{today.month:02d}/{today.year}", correction["number"])
    assert correction["corrected_invoice_number"] == original["number"]
    assert correction["corrected_invoice_uuid"] == original["uuid"]
    assert correction["correction_reason"] == "Błąd rachunkowy lub inna oczywista omyłka"
    rows = correction["services"]
    assert [r["group"] for r in rows] == [1, 1, 2, 2]
    assert [r["correction"] for r in rows] == [False, True, False, True]
    assert [r["gross_price"] for r in rows] == [24600, 12300, 1080, 0]  # absolute per row
    assert (correction["net_price"], correction["tax_price"], correction["gross_price"]) == (
        -11000, -2380, -13380)
    assert call(http, simulator, "GET", f"/invoices/{uuid}.json").status_code == 404
    assert call(http, simulator, "GET", f"/corrective_invoices/{original['uuid']}.json"
                ).status_code == 404
    listing = call(http, simulator, "GET", "/corrective_invoices.json").json()
    assert [e["uuid"] for e in listing["entities"]] == [uuid]
    invoices = call(http, simulator, "GET", "/invoices.json").json()
    assert [e["uuid"] for e in invoices["entities"]] == [original["uuid"]]


def test_corrective_can_reference_by_uuid_and_increase_total(http, simulator):
    simulator.configure(task_delay=0)
    original = create_invoice(http, simulator)
    payload = corrective_payload(original, corrected_invoice_number=None,
                                 corrected_invoice_uuid=original["uuid"],
                                 correction_reason="other")
    payload["services"] = payload["services"][:2]
    payload["services"][1]["quantity"] = 3
    envelope = post_task(http, simulator, payload, path="/async/corrective_invoices.json",
                         wrapper="corrective_invoice")
    status = wait_task(http, simulator, envelope["invoice_task_reference_number"],
                       kind="corrective_invoices")
    correction = call(http, simulator, "GET",
                      f"/corrective_invoices/{status['invoice_uuid']}.json").json()
    assert correction["gross_price"] == 12300
    assert correction["correction_reason_symbol"] == "other"


@pytest.mark.parametrize(("change", "field"), [
    ({"corrected_invoice_number": "999/01/2000"}, "corrected_invoice_number"),
    ({"correction_reason": "because"}, "correction_reason"),
    ({"client_company_name": None, "client_business_activity_kind": None},
     "client_company_name"),
    ("unpaired", "services.group"),
    ("no_group", "services.group"),
])
def test_corrective_validation(http, simulator, change, field):
    simulator.configure(task_delay=0)
    original = create_invoice(http, simulator)
    payload = corrective_payload(original)
    if change == "unpaired":
        payload["services"] = payload["services"][:3]
    elif change == "no_group":
        del payload["services"][0]["group"]
    else:
        payload.update(change)
    errors = task_errors(http, simulator, payload, kind="corrective_invoices",
                         wrapper="corrective_invoice")
    assert field in errors, errors
    assert simulator.state()["corrective_invoices"] == []


# -------------------------------------------------------------------------------- PDF


def _check_pdf_structure(pdf):
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", pdf).group(1))
    assert pdf[startxref:startxref + 4] == b"xref"
    header = re.match(rb"xref\s+0 (\d+)\s+", pdf[startxref:])
    count = int(header.group(1))
    entries = pdf[startxref + header.end():].split(b"\n")[:count]
    for number, entry in enumerate(entries[1:], start=1):
        offset = int(entry[:10])
        assert pdf[offset:].startswith(b"%d 0 obj" % number), (number, offset)
    stream = re.search(rb"/Length (\d+) >>\nstream\n", pdf)
    length = int(stream.group(1))
    assert pdf[stream.end() + length:].startswith(b"\nendstream")


def test_pdf_download_is_a_real_pdf_and_marks_printed(http, simulator):
    simulator.configure(task_delay=0)
    invoice = create_invoice(http, simulator)
    response = call(http, simulator, "GET", f"/invoices/{invoice['uuid']}/pdf.json",
                    params={"document_type": "original", "locale": "pl"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/pdf")
    pdf = response.content
    _check_pdf_structure(pdf)
    assert invoice["number"].encode() in pdf
    assert b"Razem brutto: 246,00 PLN" in pdf
    after = call(http, simulator, "GET", f"/invoices/{invoice['uuid']}.json").json()
    assert after["status"] == "printed"


def test_pdf_requires_document_type_and_keeps_paid_date(http, simulator):
    simulator.configure(task_delay=0)
    invoice = create_invoice(http, simulator, status="paid",
                             paid_date=simulator.today().isoformat())
    assert invoice["paid_date"] and invoice["left_to_pay"] == 0
    missing = call(http, simulator, "GET", f"/invoices/{invoice['uuid']}/pdf.json")
    assert missing.status_code == 400 and "error" in missing.json()
    ok = call(http, simulator, "GET", f"/invoices/{invoice['uuid']}/pdf.json",
              params={"document_type": "duplicate"})
    assert ok.status_code == 200 and ok.content.startswith(b"%PDF-")
    after = call(http, simulator, "GET", f"/invoices/{invoice['uuid']}.json").json()
    assert after["status"] == "printed" and after["paid_date"] == invoice["paid_date"]
    unknown = call(http, simulator, "GET", "/invoices/nope/pdf.json",
                   params={"document_type": "original"})
    assert unknown.status_code == 404


def test_corrective_pdf(http, simulator):
    simulator.configure(task_delay=0)
    original = create_invoice(http, simulator)
    envelope = post_task(http, simulator, corrective_payload(original),
                         path="/async/corrective_invoices.json", wrapper="corrective_invoice")
    uuid = wait_task(http, simulator, envelope["invoice_task_reference_number"],
                     kind="corrective_invoices")["invoice_uuid"]
    response = call(http, simulator, "GET", f"/corrective_invoices/{uuid}/pdf.json",
                    params={"document_type": "original", "locale": "en"})
    assert response.status_code == 200
    _check_pdf_structure(response.content)
    assert b"Razem brutto: -133,80 PLN" in response.content
    assert call(http, simulator, "GET", f"/corrective_invoices/{uuid}.json"
                ).json()["status"] == "printed"


# -------------------------------------------------------------------------------- mark paid


@pytest.mark.parametrize("where", ["query", "body", "nested"])
def test_mark_paid_lifecycle_and_already_paid(http, simulator, where):
    simulator.configure(task_delay=0.05)
    invoice = create_invoice(http, simulator, invoice_date="2025-01-10")
    paid_date = "2025-01-15"
    kwargs = {}
    if where == "query":
        kwargs["params"] = {"paid_date": paid_date}
    elif where == "body":
        kwargs["json"] = {"paid_date": paid_date}
    else:
        kwargs["json"] = {"invoice": {"paid_date": paid_date}}
    response = call(http, simulator, "POST", f"/async/invoices/{invoice['uuid']}/paid.json",
                    **kwargs)
    assert response.status_code == 201
    envelope = response.json()
    assert envelope["action"] == "mark_as_paid"
    assert envelope["invoice_uuid"] == invoice["uuid"]
    assert envelope["processing_code"] == 100
    status = wait_task(http, simulator, envelope["invoice_task_reference_number"])
    assert status["processing_code"] == 200
    assert status["processing_description"] == "Faktura została oznaczona jako zapłacona"
    paid = call(http, simulator, "GET", f"/invoices/{invoice['uuid']}.json").json()
    assert paid["paid_date"] == paid_date and paid["status"] == "paid"
    assert paid["paid_price"] == paid["gross_price"] and paid["left_to_pay"] == 0
    again = call(http, simulator, "POST", f"/async/invoices/{invoice['uuid']}/paid.json",
                 **kwargs).json()
    status = wait_task(http, simulator, again["invoice_task_reference_number"])
    assert status["processing_code"] == 422
    assert status["processing_description"] == "Nie udało się oznaczyć faktury jako zapłaconej"
    # a plain string, as in PM's "Błąd przetwarzania" example
    assert status["invoice_errors"] == {"status": "Faktura już została oznaczona jako zapłacona."}


def test_mark_paid_defaults_to_today_and_rejects_date_before_issue(http, simulator):
    simulator.configure(task_delay=0)
    invoice = create_invoice(http, simulator, invoice_date="2025-02-10")
    early = call(http, simulator, "POST", f"/async/invoices/{invoice['uuid']}/paid.json",
                 json={"paid_date": "2025-02-01"}).json()
    status = wait_task(http, simulator, early["invoice_task_reference_number"])
    assert status["processing_code"] == 422 and "paid_date" in status["invoice_errors"]
    ok = call(http, simulator, "POST", f"/async/invoices/{invoice['uuid']}/paid.json").json()
    assert wait_task(http, simulator, ok["invoice_task_reference_number"]
                     )["processing_code"] == 200
    paid = call(http, simulator, "GET", f"/invoices/{invoice['uuid']}.json").json()
    assert paid["paid_date"] == simulator.today().isoformat()
    missing = call(http, simulator, "POST", "/async/invoices/not-a-uuid/paid.json")
    assert missing.status_code == 404


def test_corrective_paid_is_sync_204(http, simulator):
    simulator.configure(task_delay=0)
    original = create_invoice(http, simulator)
    payload = corrective_payload(original)
    payload["services"][1]["quantity"] = 3  # +1 line -> positive correction
    envelope = post_task(http, simulator, payload, path="/async/corrective_invoices.json",
                         wrapper="corrective_invoice")
    uuid = wait_task(http, simulator, envelope["invoice_task_reference_number"],
                     kind="corrective_invoices")["invoice_uuid"]
    response = call(http, simulator, "POST", f"/corrective_invoices/{uuid}/paid.json")
    assert response.status_code == 204 and response.content == b""
    assert call(http, simulator, "GET", f"/corrective_invoices/{uuid}.json"
                ).json()["paid_date"] == simulator.today().isoformat()
    assert call(http, simulator, "POST", f"/corrective_invoices/{uuid}/paid.json"
                ).status_code == 422


# -------------------------------------------------------------------------------- KSeF


def test_ksef_without_integration_gives_422(http, simulator):
    simulator.configure(task_delay=0, ksef_integration=False)
    invoice = create_invoice(http, simulator)
    for path in (f"/invoices/{invoice['uuid']}/send_to_ksef.json",
                 f"/ksef2/documents/{invoice['uuid']}/send.json"):
        response = call(http, simulator, "POST", path)
        assert response.status_code == 422
        assert response.json() == NO_KSEF
    integration = call(http, simulator, "GET", "/ksef2/integration.json").json()
    assert integration["active"] is False
    assert set(integration) == {"active", "incomes_last_fetched_at", "costs_last_fetched_at"}
    assert call(http, simulator, "POST", "/invoices/nope/send_to_ksef.json").status_code == 404


def test_ksef_success_flow(http, simulator):
    simulator.configure(task_delay=0, ksef_delay=0.15, ksef_outcome="success")
    invoice = create_invoice(http, simulator)
    response = call(http, simulator, "POST", f"/invoices/{invoice['uuid']}/send_to_ksef.json")
    assert response.status_code == 200
    sent = response.json()
    assert sent["status"] == "pending" and sent["ksef_number"] is None
    assert sent["invoice_uuid"] == invoice["uuid"] and sent["invoice_kind"] == "vat"
    assert set(sent) == {"request_uuid", "invoice_uuid", "invoice_kind", "ksef_number", "status",
                         "status_description", "timestamps"}
    assert sent["status_description"] == "Faktura została wysłana do przetworzenia w KSeF."
    assert TASK_TS.match(sent["timestamps"]["request_created_at"])
    status_path = f"/ksef2/documents/{invoice['uuid']}/status.json"
    assert call(http, simulator, "GET", status_path).json()["status"] == "pending"

    def finished():
        body = call(http, simulator, "GET", status_path).json()
        return body if body["status"] != "pending" else None

    done = wait_until(finished, timeout=3)
    assert done["status"] == "success" and KSEF_NUMBER.match(done["ksef_number"])
    assert done["request_uuid"] == sent["request_uuid"]
    assert TASK_TS.match(done["timestamps"]["request_finished_at"])
    assert done["status_description"] == "Faktura została przetworzona."  # PM
    read = call(http, simulator, "GET", f"/invoices/{invoice['uuid']}.json").json()
    assert read["ksef_number"] == done["ksef_number"]
    assert read["ksef_data"]["status"] == "success"
    assert read["status"] == "sent"  # after KSeF success (OL live)
    again = call(http, simulator, "POST", f"/invoices/{invoice['uuid']}/send_to_ksef.json")
    assert again.status_code == 422 and "error" in again.json()


def test_ksef_error_flow_and_resend(http, simulator):
    simulator.configure(task_delay=0, ksef_delay=0, ksef_outcome="error")
    invoice = create_invoice(http, simulator)
    assert call(http, simulator, "POST", f"/invoices/{invoice['uuid']}/send_to_ksef.json"
                ).status_code == 200
    state = simulator.wait_idle()
    assert state["invoices"][0]["ksef_data"]["status"] == "error"
    assert state["invoices"][0]["ksef_number"] is None
    simulator.configure(ksef_outcome="success")
    assert call(http, simulator, "POST", f"/invoices/{invoice['uuid']}/send_to_ksef.json"
                ).status_code == 200
    state = simulator.wait_idle()
    assert state["invoices"][0]["ksef_data"]["status"] == "success"


def test_ksef_pending_forever(http, simulator):
    simulator.configure(task_delay=0, ksef_delay=0, ksef_outcome="pending-forever")
    invoice = create_invoice(http, simulator)
    call(http, simulator, "POST", f"/invoices/{invoice['uuid']}/send_to_ksef.json")
    time.sleep(0.2)
    body = call(http, simulator, "GET", f"/ksef2/documents/{invoice['uuid']}/status.json").json()
    assert body["status"] == "pending" and body["ksef_number"] is None


def test_send_to_ksef_at_creation(http, simulator):
    simulator.configure(task_delay=0, ksef_delay=0.05)
    envelope = post_task(http, simulator, invoice_payload(), send_to_ksef=True)
    uuid = wait_task(http, simulator, envelope["invoice_task_reference_number"])["invoice_uuid"]
    state = simulator.wait_idle()
    invoice = next(i for i in state["invoices"] if i["uuid"] == uuid)
    assert invoice["ksef_data"]["status"] == "success"
    assert KSEF_NUMBER.match(invoice["ksef_number"])


def test_corrective_send_to_ksef(http, simulator):
    simulator.configure(task_delay=0, ksef_delay=0)
    original = create_invoice(http, simulator)
    envelope = post_task(http, simulator, corrective_payload(original),
                         path="/async/corrective_invoices.json", wrapper="corrective_invoice")
    uuid = wait_task(http, simulator, envelope["invoice_task_reference_number"],
                     kind="corrective_invoices")["invoice_uuid"]
    sent = call(http, simulator, "POST", f"/corrective_invoices/{uuid}/send_to_ksef.json")
    assert sent.status_code == 200 and sent.json()["invoice_kind"] == "corrective_invoice"
    simulator.wait_idle()
    status = call(http, simulator, "GET", f"/ksef2/documents/{uuid}/status.json").json()
    assert status["status"] == "success" and status["invoice_kind"] == "corrective_invoice"


# -------------------------------------------------------------------------------- delete, misc


def test_delete_invoice(http, simulator):
    simulator.configure(task_delay=0)
    invoice = create_invoice(http, simulator)
    response = call(http, simulator, "DELETE", f"/invoices/{invoice['uuid']}.json")
    assert response.status_code == 204 and response.content == b""
    assert call(http, simulator, "GET", f"/invoices/{invoice['uuid']}.json").status_code == 404
    assert call(http, simulator, "DELETE", f"/invoices/{invoice['uuid']}.json"
                ).status_code == 404


def test_reference_endpoints(http, simulator):
    accounts = call(http, simulator, "GET", "/bank_accounts.json").json()
    assert accounts["metainfo"]["total_count"] == 1
    account = accounts["entities"][0]
    assert account["id"] == 1 and account["currency"] == "PLN" and account["default"] is True
    assert account["account_number"] == ACCOUNT
    rates = call(http, simulator, "GET", "/vat_rates.json").json()["entities"]
    assert {r["symbol"] for r in rates} == {"23", "8", "5", "0", "zw", "np", "oo", "22", "7", "3"}
    assert {"id", "rate", "name", "symbol", "valid_from", "valid_until"} <= set(rates[0])
    exemptions = call(http, simulator, "GET", "/vat_exemptions.json").json()["entities"]
    assert exemptions and all(isinstance(e["id"], int) for e in exemptions)
    simulator.configure(bank_accounts=[
        {"id": 5, "account_number": "27114020040000300201355387", "currency": "EUR"}])
    configured = call(http, simulator, "GET", "/bank_accounts.json").json()["entities"]
    assert [a["id"] for a in configured] == [5]


def test_clients_create_search_and_use(http, simulator):
    simulator.configure(task_delay=0)
    created = call(http, simulator, "POST", "/clients.json", json={"client": {
        "company_name": "Klient S.A.", "nip": "525-224-84-81", "country": "PL",
        "city": "Kraków", "postal_code": "30-001", "email": "faktury@klient.example"}})
    assert created.status_code == 201
    client = created.json()
    assert isinstance(client["id"], int) and client["uuid"]
    bad = call(http, simulator, "POST", "/clients.json", json={"client": {"nip": "1"}})
    assert bad.status_code == 422 and "country" in bad.json()["errors"]
    by_clean = call(http, simulator, "GET", "/clients.json",
                    params={"q[clean_nip_eq]": "5252248481"}).json()
    assert [c["id"] for c in by_clean["entities"]] == [client["id"]]
    by_nip = call(http, simulator, "GET", "/clients.json",
                  params={"q[nip_eq]": "525-224-84-81"}).json()
    assert by_nip["metainfo"]["total_count"] == 1
    assert call(http, simulator, "GET", "/clients.json", params={"q[nip_eq]": "5252248481"}
                ).json()["metainfo"]["total_count"] == 0
    payload = _without(invoice_payload(client_id=client["id"]), "client_company_name",
                       "client_tax_code", "client_business_activity_kind", "client_city")
    invoice = create_invoice(http, simulator, payload)
    assert invoice["client_id"] == client["id"]
    assert invoice["client_company_name"] == "Klient S.A."
    assert invoice["client_tax_code"] == "525-224-84-81"
    email = call(http, simulator, "POST", f"/invoices/{invoice['uuid']}/deliver_via_email.json",
                 json={"print_type": "original", "locale": "pl"})
    assert email.status_code == 202 and email.content == b""
    assert call(http, simulator, "GET", f"/invoices/{invoice['uuid']}.json"
                ).json()["status"] == "sent"


# -------------------------------------------------------------------------------- rate limits


def test_rate_limits_per_window(http, simulator):
    simulator.configure(rate_window=1.0, rate_limit_get=3, rate_limit_write=2)
    codes = [call(http, simulator, "GET", "/invoices.json").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = call(http, simulator, "GET", "/bank_accounts.json")
    assert limited.status_code == 429
    assert isinstance(limited.json()["error"], str)
    assert "Retry-After" not in limited.headers
    writes = [call(http, simulator, "POST", "/async/invoices.json",
                   json={"invoice": invoice_payload()}).status_code for _ in range(3)]
    assert writes == [201, 201, 429]
    assert simulator.state()["counters"]["rate_limited"] == 3  # control API not limited
    time.sleep(1.05)
    assert call(http, simulator, "GET", "/invoices.json").status_code == 200


def test_rate_limit_retry_after_when_configured(http, simulator):
    simulator.configure(rate_window=5.0, rate_limit_get=1, retry_after=7)
    assert call(http, simulator, "GET", "/invoices.json").status_code == 200
    limited = call(http, simulator, "GET", "/invoices.json")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"


# -------------------------------------------------------------------------------- faults


def test_fault_fail_next(http, simulator):
    spec = {"fail_next": 2, "status": 503, "methods": ["POST"], "path_contains": "/async/invoices"}
    created = simulator.fault(**spec)
    assert created[0]["type"] == "fail_next" and created[0]["remaining"] == 2
    assert simulator.state()["faults"][0]["remaining"] == 2
    assert call(http, simulator, "GET", "/invoices.json").status_code == 200  # not matching
    for _ in range(2):
        failed = call(http, simulator, "POST", "/async/invoices.json",
                      json={"invoice": invoice_payload()})
        assert failed.status_code == 503 and "error" in failed.json()
    assert simulator.state()["tasks"] == []
    ok = call(http, simulator, "POST", "/async/invoices.json", json={"invoice": invoice_payload()})
    assert ok.status_code == 201
    state = simulator.state()
    assert len(state["tasks"]) == 1 and state["faults"] == []


def test_fault_drop_after_create_keeps_the_invoice(http, simulator):
    simulator.configure(task_delay=0)
    simulator.fault(drop_after_create=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        call(http, simulator, "POST", "/async/invoices.json", json={"invoice": invoice_payload()})
    state = simulator.wait_idle()
    assert len(state["tasks"]) == 1 and len(state["invoices"]) == 1
    assert state["counters"]["dropped_connections"] == 1
    assert state["requests"][-1]["status"] == "dropped"
    assert call(http, simulator, "POST", "/async/invoices.json",
                json={"invoice": invoice_payload()}).status_code == 201


def test_fault_drop_before_processing_creates_nothing(http, simulator):
    simulator.fault(drop_before_processing=1, methods="POST")
    with pytest.raises(requests.exceptions.ConnectionError):
        call(http, simulator, "POST", "/async/invoices.json", json={"invoice": invoice_payload()})
    assert simulator.state()["tasks"] == []


def test_fault_latency(http, simulator):
    simulator.fault(latency=0.3, count=1)
    started = time.monotonic()
    assert call(http, simulator, "GET", "/invoices.json").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    call(http, simulator, "GET", "/invoices.json")
    assert time.monotonic() - started < 0.25


def test_fault_timeout_next_processes_but_answers_late(http, simulator):
    simulator.configure(task_delay=0)
    simulator.fault(timeout_next=1, seconds=0.8, path_contains="/async/invoices")
    with pytest.raises(requests.exceptions.Timeout):
        call(http, simulator, "POST", "/async/invoices.json",
             json={"invoice": invoice_payload()}, timeout=0.3)
    assert len(simulator.wait_idle()["invoices"]) == 1  # the create was processed: in doubt


def test_faults_can_be_cleared_and_bad_specs_refused(http, simulator):
    simulator.fault(fail_next=5, status=500)
    simulator.clear_faults()
    assert simulator.state()["faults"] == []
    assert call(http, simulator, "GET", "/invoices.json").status_code == 200
    response = http.post(simulator.root_url + "/_simulator/faults", json={"explode": 1},
                         timeout=5)
    assert response.status_code == 400


# -------------------------------------------------------------------------------- webhooks


def test_webhook_verification_echo(http, simulator, webhook_receiver):
    simulator.configure(webhook_url=webhook_receiver.url, webhook_secret="hmac-secret-xyz")
    assert simulator.state()["webhook"]["status"] == "to_verify"
    result = simulator.verify_webhook()
    assert result["verified"] is True and result["status"] == 200
    ping = webhook_receiver.requests[0]
    assert set(ping["json"]) == {"verification_code"}
    assert result["body"] == ping["json"]
    # Signed like every delivery (no recorded example shows the ping's headers; medusa-infakt's
    # live receiver checks the signature before echoing, which works only on a signed ping).
    assert ping["headers"]["X-Infakt-Signature"] == hmac.new(
        b"hmac-secret-xyz", ping["body"], hashlib.sha256).hexdigest()
    state = simulator.state()
    assert state["webhook"]["status"] == "active" and state["webhook"]["secret_set"] is True
    assert "hmac-secret-xyz" not in json.dumps(state)


@pytest.mark.parametrize("broken", ["status", "no_echo"])
def test_webhook_verification_failure(http, simulator, webhook_receiver, broken):
    simulator.configure(webhook_url=webhook_receiver.url, webhook_secret="abc", task_delay=0)
    if broken == "status":
        webhook_receiver.set_status(500)
    else:
        webhook_receiver.set_echo(False)
    result = simulator.verify_webhook()
    assert result["verified"] is False
    assert simulator.state()["webhook"]["status"] == "to_verify"
    create_invoice(http, simulator)
    time.sleep(0.2)
    assert webhook_receiver.events() == []  # nothing delivered before verification
    assert simulator.state()["counters"]["webhook_events_skipped"] >= 1


def test_webhook_delivery_is_signed_and_shaped_like_the_docs(http, simulator, webhook_receiver):
    secret = active_webhook(simulator, webhook_receiver)
    simulator.configure(task_delay=0.05)
    envelope = post_task(http, simulator, invoice_payload())  # no polling: worker delivers
    delivered = webhook_receiver.wait_for(1, name="async_invoice_creation_success")[0]
    raw = delivered["body"]
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(delivered["headers"]["X-Infakt-Signature"].lower(), expected)
    assert delivered["headers"]["User-Agent"] == "Infakt-Webhooks/2"
    assert delivered["headers"]["Content-Type"].startswith("application/json")
    body = json.loads(raw)
    assert set(body) == {"event", "resource"}
    assert set(body["event"]) == {"uuid", "name", "retry_counter", "created_at"}
    assert body["event"]["retry_counter"] == 0
    assert set(body["resource"]) == {"timestamps", "invoice_kind", "invoice_uuid",
                                     "processing_code", "processing_description",
                                     "invoice_task_reference_number"}
    assert body["resource"]["processing_code"] == 201
    assert body["resource"]["processing_description"] == "Faktura stworzona"
    assert body["resource"]["invoice_kind"] == "invoice"
    ref = envelope["invoice_task_reference_number"]
    assert body["resource"]["invoice_task_reference_number"] == ref
    draft = webhook_receiver.wait_for(1, name="draft_invoice_created")[0]["json"]
    assert draft["resource"]["uuid"] == body["resource"]["invoice_uuid"]
    assert draft["resource"]["status"] == "draft"
    tampered = raw.replace(b"201", b"202")
    assert hmac.new(secret.encode(), tampered, hashlib.sha256).hexdigest() != expected
    deliveries = simulator.state()["webhook_deliveries"]
    assert {d["event_name"] for d in deliveries} >= {"async_invoice_creation_success"}
    assert all(d["status"] == 200 and d["success"] for d in deliveries)


def test_webhook_creation_error_event(http, simulator, webhook_receiver):
    active_webhook(simulator, webhook_receiver)
    simulator.configure(task_delay=0)
    post_task(http, simulator, _without(invoice_payload(), "payment_method"))
    body = webhook_receiver.wait_for(1, name="async_invoice_creation_error")[0]["json"]
    resource = body["resource"]
    assert resource["invoice_uuid"] is None and resource["processing_code"] == 422
    assert resource["processing_description"] == "Nie udało się stworzyć faktury"
    assert resource["invoice_errors"] == {
        "payment_method": ["Proszę wybrać odpowiedni sposób płatności."]}


def test_webhook_paid_deleted_minimal_data(http, simulator, webhook_receiver):
    active_webhook(simulator, webhook_receiver, webhook_data="minimal",
                   webhook_events=["invoice_paid", "invoice_deleted"])
    simulator.configure(task_delay=0)
    original = create_invoice(http, simulator)
    payload = corrective_payload(original)
    payload["services"][1]["quantity"] = 3  # a positive correction, to be paid
    envelope = post_task(http, simulator, payload, path="/async/corrective_invoices.json",
                         wrapper="corrective_invoice")
    uuid = wait_task(http, simulator, envelope["invoice_task_reference_number"],
                     kind="corrective_invoices")["invoice_uuid"]
    assert call(http, simulator, "POST", f"/corrective_invoices/{uuid}/paid.json"
                ).status_code == 204
    paid = webhook_receiver.wait_for(1, name="invoice_paid")[0]["json"]
    assert paid["resource"] == {"uuid": uuid}
    call(http, simulator, "DELETE", f"/invoices/{original['uuid']}.json")
    deleted = webhook_receiver.wait_for(1, name="invoice_deleted")[0]["json"]
    assert deleted["resource"] == {"uuid": original["uuid"]}
    assert {r["json"]["event"]["name"] for r in webhook_receiver.events()} == {
        "invoice_paid", "invoice_deleted"}


def test_webhook_async_mark_paid_sends_the_async_event_not_invoice_paid(
        http, simulator, webhook_receiver):
    """The form's "…zapłacona przez async API inFakt" event has no documented name: the
    simulator sends OL's guess (the client and simulator agree; no recorded source)."""
    active_webhook(simulator, webhook_receiver)
    simulator.configure(task_delay=0)
    invoice = create_invoice(http, simulator, status="printed")
    envelope = call(http, simulator, "POST", f"/async/invoices/{invoice['uuid']}/paid.json",
                    params={"paid_date": invoice["invoice_date"]}).json()
    done = webhook_receiver.wait_for(1, name="invoice_marked_as_paid_via_async_api")[0]["json"]
    resource = done["resource"]
    assert resource["invoice_task_reference_number"] == envelope[
        "invoice_task_reference_number"]
    assert resource["processing_code"] == 200 and resource["invoice_uuid"] == invoice["uuid"]
    assert resource["action"] == "mark_as_paid"
    again = call(http, simulator, "POST", f"/async/invoices/{invoice['uuid']}/paid.json").json()
    error = webhook_receiver.wait_for(
        1, name="invoice_marking_as_paid_error_via_async_api")[0]["json"]["resource"]
    assert error["invoice_task_reference_number"] == again["invoice_task_reference_number"]
    assert error["processing_code"] == 422 and error["invoice_errors"]
    simulator.wait_idle()
    assert not webhook_receiver.events("invoice_paid")


def test_webhook_ksef_events(http, simulator, webhook_receiver):
    active_webhook(simulator, webhook_receiver,
                   webhook_events=["send_to_ksef_success", "send_to_ksef_error"])
    simulator.configure(task_delay=0, ksef_delay=0)
    first = create_invoice(http, simulator)
    call(http, simulator, "POST", f"/invoices/{first['uuid']}/send_to_ksef.json")
    ok = webhook_receiver.wait_for(1, name="send_to_ksef_success")[0]["json"]["resource"]
    assert set(ok) == {"status", "ksef_number", "invoice_uuid", "invoice_kind", "request_uuid",
                       "status_description", "timestamps"}
    assert ok["status"] == "success" and KSEF_NUMBER.match(ok["ksef_number"])
    assert set(ok["timestamps"]) == {"request_created_at", "request_finished_at"}
    simulator.configure(ksef_outcome="error")
    second = create_invoice(http, simulator)
    call(http, simulator, "POST", f"/invoices/{second['uuid']}/send_to_ksef.json")
    failed = webhook_receiver.wait_for(1, name="send_to_ksef_error")[0]["json"]["resource"]
    assert failed["status"] == "error" and failed["invoice_uuid"] == second["uuid"]


@pytest.mark.parametrize("enabled", [True, False])
def test_webhook_async_events_for_corrective_tasks(http, simulator, webhook_receiver, enabled):
    active_webhook(simulator, webhook_receiver, webhook_async_corrective=enabled,
                   webhook_events=["async_invoice_creation_success"])
    simulator.configure(task_delay=0)
    original = create_invoice(http, simulator)
    webhook_receiver.wait_for(1, name="async_invoice_creation_success")
    envelope = post_task(http, simulator, corrective_payload(original),
                         path="/async/corrective_invoices.json", wrapper="corrective_invoice")
    simulator.wait_idle()
    events = webhook_receiver.events("async_invoice_creation_success")
    kinds = [e["json"]["resource"]["invoice_kind"] for e in events]
    if enabled:
        assert kinds == ["invoice", "corrective_invoice"]
        assert events[1]["json"]["resource"]["invoice_task_reference_number"] == envelope[
            "invoice_task_reference_number"]
    else:
        assert kinds == ["invoice"]


def test_webhook_redelivery_then_success(http, simulator, webhook_receiver):
    active_webhook(simulator, webhook_receiver, webhook_retry_delay=0.05,
                   webhook_events=["async_invoice_creation_success"])
    simulator.configure(task_delay=0)
    webhook_receiver.set_status(500)
    post_task(http, simulator, invoice_payload())
    webhook_receiver.wait_for(2, name="async_invoice_creation_success")
    webhook_receiver.set_status(201)
    wait_until(lambda: any(d["success"] for d in simulator.state()["webhook_deliveries"]))
    time.sleep(0.15)
    events = [r["json"]["event"] for r in webhook_receiver.events()]
    state = simulator.state()
    assert len(events) >= 3 and len({e["uuid"] for e in events}) == 1
    assert [e["retry_counter"] for e in events] == list(range(len(events)))
    statuses = [d["status"] for d in state["webhook_deliveries"]]
    assert statuses == [500] * (len(events) - 1) + [201]
    assert state["webhook"]["status"] == "active"


def test_webhook_disabled_after_ten_failures(http, simulator, webhook_receiver):
    active_webhook(simulator, webhook_receiver, webhook_retry_delay=0.02,
                   webhook_events=["async_invoice_creation_success"])
    simulator.configure(task_delay=0)
    webhook_receiver.set_status(404)
    post_task(http, simulator, invoice_payload())
    received = webhook_receiver.wait_for(10, name="async_invoice_creation_success")
    time.sleep(0.25)
    events = [r["json"]["event"] for r in webhook_receiver.events()]
    assert len(received) == 10 and len(events) == 10
    assert [e["retry_counter"] for e in events] == list(range(10))
    state = simulator.state()
    assert state["webhook"]["status"] == "disabled_by_infakt"
    assert [d["status"] for d in state["webhook_deliveries"]] == [404] * 10
    webhook_receiver.set_status(200)
    create_invoice(http, simulator)
    time.sleep(0.2)
    assert len(webhook_receiver.events()) == 10  # disabled: nothing more is sent


# -------------------------------------------------------------------------------- control API


def test_state_shape_reset_and_secrets(http, simulator):
    simulator.configure(task_delay=0, webhook_url="http://127.0.0.1:9/x",
                        webhook_secret="top-secret-value")
    create_invoice(http, simulator)
    call(http, simulator, "GET", "/invoices.json", key="bad")
    state = simulator.state()
    assert {"invoices", "corrective_invoices", "tasks", "webhook", "webhook_deliveries",
            "requests", "counters", "faults"} <= set(state)
    task = state["tasks"][0]
    assert {"ref", "kind", "action", "code", "created_at", "invoice_uuid", "errors"} <= set(task)
    assert state["requests"][-1] == {**state["requests"][-1], "method": "GET",
                                     "path": "/api/v3/invoices.json", "status": 401}
    assert state["counters"]["requests_total"] == len(state["requests"])
    text = json.dumps(state)
    assert "top-secret-value" not in text and "test-key" not in text
    assert simulator.reset(config=False)["reset"] is True
    state = simulator.state()
    assert state["invoices"] == [] and state["tasks"] == [] and state["requests"] == []
    assert state["config"]["task_delay"] == 0  # config kept
    simulator.reset(config=True)
    assert simulator.state()["config"]["task_delay"] == 0.2
    bad = http.post(simulator.root_url + "/_simulator/config", json={"no_such_key": 1},
                    timeout=5)
    assert bad.status_code == 400


def test_in_process_api(http):
    spec = importlib.util.spec_from_file_location("infakt_simulator_inproc", SIMULATOR_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with module.InfaktSimulator(api_keys=("k1",), task_delay=0) as sim:
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/api/v3" and sim.port > 0
        response = http.post(sim.base_url + "/async/invoices.json",
                             json={"invoice": invoice_payload()},
                             headers={"X-inFakt-ApiKey": "k1"}, timeout=5)
        assert response.status_code == 201
        assert sim.flush(timeout=3) is True
        assert len(sim.state()["invoices"]) == 1
        sim.add_fault(fail_next=1, status=500)
        assert http.get(sim.base_url + "/invoices.json", headers={"X-inFakt-ApiKey": "k1"},
                        timeout=5).status_code == 500
        sim.reset()
        assert sim.state()["invoices"] == []
        port = sim.port
    with pytest.raises(requests.exceptions.ConnectionError):
        http.get(f"http://127.0.0.1:{port}/api/v3/invoices.json", timeout=1)


def test_cli_prints_ready_line_and_stops_on_sigterm(http, simulator_launcher):
    handle = simulator_launcher("--quiet", "--api-key", "a", "--api-key", "b")
    assert urllib.parse.urlsplit(handle.base_url).hostname == "127.0.0.1"
    assert handle.base_url.endswith("/api/v3")
    for key in ("a", "b"):
        response = http.get(handle.base_url + "/invoices.json", timeout=5,
                            headers={"X-inFakt-ApiKey": key})
        assert response.status_code == 200
    assert http.get(handle.base_url + "/invoices.json", timeout=5,
                    headers={"X-inFakt-ApiKey": "sim-api-key"}).status_code == 401
    handle.process.send_signal(signal.SIGTERM)
    assert handle.process.wait(5) == 0
    assert handle.stderr() == ""  # --quiet: nothing per request


def test_cli_prints_the_accepted_api_keys(simulator_launcher):
    handle = simulator_launcher("--quiet", "--api-key", "first-key", "--api-key", "second")
    line = handle.process.stdout.readline()
    assert line.startswith("Accepted API keys: first-key, second")


def test_cli_port_taken_is_one_clear_line_and_a_nonzero_exit(simulator_launcher):
    handle = simulator_launcher("--quiet")
    result = subprocess.run(
        [sys.executable, str(SIMULATOR_SCRIPT), "--port", str(handle.port), "--quiet"],
        capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"127.0.0.1:{handle.port}" in lines[0] and "already in use" in lines[0]


def test_cli_bad_timezone_or_now_is_refused_cleanly():
    for args in (["--timezone", "Mars/Olympus"], ["--now", "yesterday-ish"]):
        result = subprocess.run([sys.executable, str(SIMULATOR_SCRIPT), "--port", "0", *args],
                                capture_output=True, text=True, timeout=20)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
