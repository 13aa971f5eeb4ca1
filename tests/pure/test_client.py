"""The inFakt client against the running simulator over real sockets (no mocking of requests).

Every error class is produced by a real HTTP exchange: the simulator (a subprocess) for inFakt's
own answers and injected faults, and small loopback servers below for what inFakt itself cannot
be asked to do (garbage bodies, redirects, a full accept queue, a port with nothing listening).
"""

import datetime
import json
import logging
import socket
import threading
import time
import urllib.request
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from infakt_api import payload as P
from infakt_api.client import (
    PRODUCTION_URL,
    SANDBOX_URL,
    InfaktClient,
    TaskStatus,
    base_url_for,
)
from infakt_api.errors import (
    InfaktAuthError,
    InfaktError,
    InfaktInDoubt,
    InfaktNotFound,
    InfaktPermissionError,
    InfaktPlanError,
    InfaktRateLimited,
    InfaktTransientError,
    InfaktUnexpectedResponse,
    InfaktValidationError,
)

BANK_ACCOUNT = "61 1090 1014 0000 0712 1981 2874"  # the simulator's verified default account
BUYER = {"company_name": "ACME Sp. z o.o.", "is_company": True, "nip": "PL 526-000-12-46",
         "street": "ul. Długa 5/3", "city": "Gdańsk", "post_code": "80-001"}
LINES = [
    # 3 x 33.335 = 100.005 -> Odoo's line net 100.01, sent as net_price
    {"name": "Konsultacje", "quantity": 3, "unit": "h", "tax_symbol": "23",
     "unit_net_price": Decimal("33.335"), "net_price": Decimal("100.01")},
    # 0.5 x 19.99 = 9.995 -> inFakt rounds half up to 10.00
    {"name": "Pół kilo", "quantity": Decimal("0.5"), "unit": "kg", "tax_symbol": "8",
     "unit_net_price": "19.99"},
    # 12.99 with a 10 % discount, two units
    {"name": "Rabatowany", "quantity": 2, "tax_symbol": "5",
     "unit_net_price": Decimal("12.99") * Decimal("0.9"), "net_price": "23.38"},
    # priced from gross
    {"name": "Książka", "quantity": 1, "tax_symbol": "5", "price_mode": "gross",
     "gross_price": "59.99"},
]


def unique_number():
    return f"T/{uuid.uuid4().hex[:10]}/2026"


def make_invoice(number=None, **overrides):
    kwargs = {
        "lines": LINES,
        "buyer": BUYER,
        "invoice_date": datetime.date.today(),
        "payment_date": datetime.date.today() + datetime.timedelta(days=14),
        "number": number,
        "payment_method": "transfer",
        "bank_account": BANK_ACCOUNT,
    }
    kwargs.update(overrides)
    return P.build_invoice(**kwargs)


def wait_task(client, reference, corrective=False, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        status = client.task_status(reference, corrective=corrective)
        if not status.pending:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"task {reference} still pending: {status}")
        time.sleep(0.05)


def wait_ksef(client, invoice_uuid, timeout=10.0):
    def done():
        status = client.get_ksef_status(invoice_uuid)
        return status if status["status"] in ("success", "error") else None

    return wait_until(done, timeout=timeout)


def wait_until(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def local_client(key, base_url, timeout=(5.0, 10.0)):
    """A client for a loopback server (proxy settings of the environment ignored)."""
    infakt = InfaktClient(key, environment="custom", base_url=base_url, timeout=timeout)
    infakt.session.trust_env = False
    return infakt


@pytest.fixture
def client(simulator):
    with local_client(simulator.api_key, simulator.base_url + "/") as infakt:
        yield infakt


def client_for(simulator, key=None, timeout=(5.0, 10.0)):
    return local_client(key or simulator.api_key, simulator.base_url, timeout)


def create_invoice_direct(simulator, number):
    """Create one invoice with plain urllib (the simulator's own protocol) and wait for it."""
    body = json.dumps({"invoice": make_invoice(number)}).encode()
    request = urllib.request.Request(
        simulator.base_url + "/async/invoices.json", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-inFakt-ApiKey": simulator.api_key})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as response:
        assert response.status in (200, 201, 202)
    state = simulator.wait_idle()
    return [i for i in state["invoices"] if i["number"] == number][0]


# --------------------------------------------------------------------------- configuration


def test_base_url_for():
    assert base_url_for("production") == PRODUCTION_URL == "https://api.infakt.pl/api/v3"
    assert base_url_for("sandbox") == SANDBOX_URL == "https://api.sandbox-infakt.pl/api/v3"
    assert base_url_for("production", "http://ignored/api/v3") == PRODUCTION_URL
    assert base_url_for("custom", "http://127.0.0.1:8765/api/v3/") == (
        "http://127.0.0.1:8765/api/v3")
    assert base_url_for("custom", " https://x.example/api/v3 ") == "https://x.example/api/v3"
    for bad in (None, "", "http://127.0.0.1:8765", "http://127.0.0.1/v3",
                "ftp://x/api/v3", "127.0.0.1:8765/api/v3", "http://x/api/v3?a=1"):
        with pytest.raises(ValueError):
            base_url_for("custom", bad)
    with pytest.raises(ValueError):
        base_url_for("staging")


def test_client_construction_and_repr():
    secret = "very-secret-key-123"
    infakt = InfaktClient(secret)
    try:
        assert infakt.base_url == PRODUCTION_URL
        assert secret not in repr(infakt)
        assert secret not in str(vars(infakt).get("base_url"))
        assert isinstance(infakt.session, requests.Session)
        assert infakt.timeout == (5.0, 30.0)
    finally:
        infakt.close()
    assert InfaktClient(secret, environment="sandbox").base_url == SANDBOX_URL
    for bad in ("", None, "   ", "key with space", "klucz-ż"):
        with pytest.raises(ValueError) as info:
            InfaktClient(bad)
        assert "space" not in str(info.value) and "ż" not in str(info.value)
    with pytest.raises(ValueError):
        InfaktClient(secret, environment="custom")


def test_session_is_reused(client, simulator):
    client.test_connection()
    first = client.session
    client.list_bank_accounts()
    assert client.session is first
    adapter = first.get_adapter(simulator.base_url)
    assert len(adapter.poolmanager.pools) == 1  # one pooled connection target


def test_external_session_not_closed(simulator):
    session = requests.Session()
    session.trust_env = False
    infakt = InfaktClient(simulator.api_key, environment="custom", base_url=simulator.base_url,
                          session=session)
    assert infakt.session is session
    infakt.test_connection()
    infakt.close()
    assert session.get(simulator.root_url + "/_simulator/health", timeout=5).ok
    session.close()


# --------------------------------------------------------------------------- happy path


def test_happy_path_invoice(client, simulator):
    number = unique_number()
    body = make_invoice(number)
    expected = P.totals(body["services"])
    envelope = client.create_invoice(body)
    assert envelope["processing_code"] == 100
    reference = envelope["invoice_task_reference_number"]

    status = wait_task(client, reference)
    assert isinstance(status, TaskStatus)
    assert status.done and not status.failed and not status.pending
    assert status.code == 201
    assert status.reference == reference
    assert status.invoice_kind == "invoice"
    assert status.invoice_uuid

    invoice = client.get_invoice(status.invoice_uuid)
    assert invoice["number"] == number
    assert {"net": invoice["net_price"], "tax": invoice["tax_price"],
            "gross": invoice["gross_price"]} == expected
    for service, sent in zip(invoice["services"], body["services"], strict=True):
        assert P.service_totals(sent) == {"net": service["net_price"],
                                          "tax": service["tax_price"],
                                          "gross": service["gross_price"]}
    assert invoice["client_tax_code"] == "5260001246"
    assert invoice["client_street_number"] == "5"
    assert invoice["client_flat_number"] == "3"

    found = client.find_invoices_by_number(number)
    assert [i["uuid"] for i in found] == [status.invoice_uuid]
    assert client.find_invoices_by_number(number + "X") == []

    pdf = client.download_pdf(status.invoice_uuid)
    assert pdf.startswith(b"%PDF")
    assert client.get_invoice(status.invoice_uuid)["status"] == "printed"
    assert client.download_pdf(status.invoice_uuid, document_type="copy",
                               locale="en").startswith(b"%PDF")
    with pytest.raises(ValueError):
        client.download_pdf(status.invoice_uuid, document_type="bogus")

    paid = client.mark_paid(status.invoice_uuid, datetime.date.today())
    assert paid["invoice_task_reference_number"]
    paid_status = wait_task(client, paid["invoice_task_reference_number"])
    assert paid_status.done and paid_status.code == 200
    assert paid_status.action == "mark_as_paid"
    assert client.get_invoice(status.invoice_uuid)["paid_date"] == (
        datetime.date.today().isoformat())
    # paying twice is a failed task with the field message
    again = wait_task(client, client.mark_paid(status.invoice_uuid, datetime.date.today())[
        "invoice_task_reference_number"])
    assert again.failed
    assert "status" in again.errors
    assert isinstance(again.as_error(), InfaktValidationError)

    assert client.get_ksef_integration()["active"] is True
    sent = client.send_to_ksef(status.invoice_uuid)
    assert sent["invoice_uuid"] == status.invoice_uuid
    ksef = wait_ksef(client, status.invoice_uuid)
    assert ksef["status"] == "success" and ksef["ksef_number"]
    assert client.get_invoice(status.invoice_uuid)["ksef_number"] == ksef["ksef_number"]

    state = simulator.state()
    assert [i["number"] for i in state["invoices"]] == [number]


def test_create_with_send_to_ksef(client, simulator):
    envelope = client.create_invoice(make_invoice(unique_number()), send_to_ksef=True)
    status = wait_task(client, envelope["invoice_task_reference_number"])
    assert status.done
    ksef = wait_ksef(client, status.invoice_uuid)
    assert ksef["ksef_number"]
    assert simulator.state()["tasks"][0]["send_to_ksef"] is True


def test_happy_path_corrective(client, simulator):
    number = unique_number()
    original_body = make_invoice(number)
    original = client.get_invoice(wait_task(
        client, client.create_invoice(original_body)["invoice_task_reference_number"]
    ).invoice_uuid)
    pairs = [
        (LINES[0], {**LINES[0], "quantity": 1, "net_price": Decimal("33.34")}),  # partial
        (LINES[1], None),  # line removed
        (LINES[2], LINES[2]),  # unchanged
        (LINES[3], {**LINES[3], "gross_price": "49.99"}),  # price reduction (gross)
        (None, {"name": "Nowa pozycja", "quantity": 1, "tax_symbol": "23",
                "unit_net_price": "5.00"}),  # line added
    ]
    body = P.build_corrective_invoice(
        pairs=pairs, buyer=BUYER, invoice_date=datetime.date.today(),
        corrected_invoice_number=original["number"], corrected_invoice_uuid=original["uuid"],
        corrected_invoice_date=original["invoice_date"], payment_method="transfer",
        bank_account=BANK_ACCOUNT, number=unique_number().replace("T/", "KOR/"))
    expected = P.correction_totals(body["services"])
    assert expected["gross"] < 0

    envelope = client.create_corrective_invoice(body)
    assert envelope["invoice_kind"] == "corrective_invoice"
    status = wait_task(client, envelope["invoice_task_reference_number"], corrective=True)
    assert status.done and status.invoice_kind == "corrective_invoice"
    with pytest.raises(InfaktNotFound):
        client.get_invoice(status.invoice_uuid)  # corrective uuids 404 on /invoices
    with pytest.raises(InfaktNotFound):
        client.get_task_status(envelope["invoice_task_reference_number"])  # wrong kind

    corrective = client.get_corrective_invoice(status.invoice_uuid)
    assert {"net": corrective["net_price"], "tax": corrective["tax_price"],
            "gross": corrective["gross_price"]} == expected
    assert corrective["corrected_invoice_number"] == number
    assert [c["uuid"] for c in client.find_corrective_invoices_by_number(
        body["number"])] == [status.invoice_uuid]
    assert client.find_invoices_by_number(body["number"]) == []
    assert client.download_pdf(status.invoice_uuid, corrective=True).startswith(b"%PDF")
    assert client.mark_corrective_paid(status.invoice_uuid, datetime.date.today()) is None
    assert client.get_corrective_invoice(status.invoice_uuid)["paid_date"]
    ksef = client.send_to_ksef(status.invoice_uuid, corrective=True)
    assert ksef["invoice_kind"] == "corrective_invoice"


def test_lists_and_clients(client, simulator):
    accounts = client.list_bank_accounts()
    assert isinstance(accounts, list)
    assert accounts[0]["account_number"] == "61109010140000071219812874"

    for nip in ("5260001246", "526-000-12-47"):
        body = json.dumps({"client": {"company_name": "Firma " + nip, "nip": nip,
                                      "country": "PL"}}).encode()
        request = urllib.request.Request(
            simulator.base_url + "/clients.json", data=body, method="POST",
            headers={"Content-Type": "application/json", "X-inFakt-ApiKey": simulator.api_key})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as r:
            assert r.status == 201
    found = client.find_clients_by_nip("PL 526-000-12-46")
    assert [c["company_name"] for c in found] == ["Firma 5260001246"]
    assert client.find_clients_by_nip("5260001248") == []
    assert client.find_clients_by_nip("") == []
    assert client.test_connection()["metainfo"]["total_count"] == 0


def test_find_by_number_pages_and_refilters(client, simulator):
    number = unique_number()
    create_invoice_direct(simulator, number)
    create_invoice_direct(simulator, "1" + number)  # contains the number, must not match
    found = client.find_invoices_by_number(number)
    assert [i["number"] for i in found] == [number]
    with pytest.raises(ValueError):
        client.find_invoices_by_number("  ")


# --------------------------------------------------------------------------- 4xx errors


def test_wrong_key_is_auth_error(simulator, caplog):
    secret = "wrong-key-" + uuid.uuid4().hex
    caplog.set_level(logging.DEBUG)
    infakt = client_for(simulator, key=secret)
    with pytest.raises(InfaktAuthError) as info:
        infakt.test_connection()
    error = info.value
    assert error.status == 401
    assert not error.retryable
    assert error.message  # inFakt's (Polish) message
    with pytest.raises(InfaktAuthError):
        infakt.create_invoice(make_invoice())
    infakt.close()
    for text in (str(error), repr(error), json.dumps(error.payload), caplog.text,
                 repr(infakt)):
        assert secret not in text
    assert simulator.state()["counters"]["unauthorized"] == 2


def test_key_without_api_plan(simulator):
    simulator.configure(api_keys=[simulator.api_key,
                                  {"key": "no-plan-key", "plan_api": False}])
    with client_for(simulator, key="no-plan-key") as infakt, \
            pytest.raises(InfaktPlanError) as info:
        infakt.test_connection()
    assert info.value.status == 402
    assert not info.value.retryable


def test_key_without_scope(simulator):
    simulator.configure(api_keys=[simulator.api_key,
                                  {"key": "read-only", "scopes": ["api:invoices:read"]}])
    with client_for(simulator, key="read-only") as infakt:
        assert infakt.test_connection()["entities"] == []
        with pytest.raises(InfaktPermissionError) as info:
            infakt.create_invoice(make_invoice())
        assert info.value.status == 403
        assert "api:invoices:write" in info.value.message
        # KSeF 2.0's integration status needs only api:invoices:read (PM, GH ksef.md)
        assert infakt.get_ksef_integration()["active"] is True
    with client_for(simulator, key="read-only") as infakt:
        simulator.configure(api_keys=[simulator.api_key,
                                      {"key": "read-only", "scopes": ["api:costs:read"]}])
        with pytest.raises(InfaktPermissionError):
            infakt.get_ksef_integration()
    assert simulator.state()["tasks"] == []


def test_async_validation_error(client, simulator):
    body = make_invoice(bank_account="00 0000 0000 0000 0000 0000 0000")
    body["client_company_name"] = ""
    envelope = client.create_invoice(body)
    status = wait_task(client, envelope["invoice_task_reference_number"])
    assert status.failed and status.code == 422
    assert "bank_account" in status.errors
    assert status.errors["client_company_name"]
    error = status.as_error()
    assert isinstance(error, InfaktValidationError)
    assert error.field_errors == status.errors
    assert "bank_account" in str(error)
    assert simulator.state()["invoices"] == []


def test_payment_method_validation_and_exchange_date_kind_filled_in(client):
    body = make_invoice(currency="EUR")
    del body["vat_exchange_date_kind"]
    body["payment_method"] = "bitcoin"
    status = wait_task(client, client.create_invoice(body)["invoice_task_reference_number"])
    assert status.failed
    # real inFakt fills vat_exchange_date_kind in itself (OL live, EUR invoice, 2026-08-14)
    assert set(status.errors) == {"payment_method"}
    assert "Proszę wybrać odpowiedni sposób płatności." in status.errors["payment_method"][-1]
    body["payment_method"] = "transfer"
    status = wait_task(client, client.create_invoice(body)["invoice_task_reference_number"])
    assert status.done
    assert client.get_invoice(status.invoice_uuid)["vat_exchange_date_kind"] == "vat"


def test_duplicate_number_refused(client, simulator):
    number = unique_number()
    first = wait_task(client, client.create_invoice(make_invoice(number))[
        "invoice_task_reference_number"])
    assert first.done
    second = wait_task(client, client.create_invoice(make_invoice(number))[
        "invoice_task_reference_number"])
    assert second.failed
    assert "number" in second.errors
    assert len(simulator.state()["invoices"]) == 1


def test_sync_validation_error(client):
    with pytest.raises(InfaktValidationError) as info:
        client.create_invoice({})
    assert info.value.status == 400
    assert info.value.field_errors["base"]


def test_ksef_without_integration(client, simulator):
    simulator.configure(ksef_integration=False)
    invoice = create_invoice_direct(simulator, unique_number())
    with pytest.raises(InfaktValidationError) as info:
        client.send_to_ksef(invoice["uuid"])
    assert info.value.message == "Użytkownik nie jest zintegrowany z KSeF."
    assert info.value.field_errors == {"base": ["Użytkownik nie jest zintegrowany z KSeF."]}


def test_not_found(client):
    missing = str(uuid.uuid4())
    for call in (lambda: client.get_invoice(missing),
                 lambda: client.get_corrective_invoice(missing),
                 lambda: client.get_task_status(missing),
                 lambda: client.get_task_status(missing, corrective=True),
                 lambda: client.download_pdf(missing),
                 lambda: client.get_ksef_status(missing),
                 lambda: client.mark_paid(missing, "2026-01-01"),
                 lambda: client.send_to_ksef(missing)):
        with pytest.raises(InfaktNotFound) as info:
            call()
        assert info.value.status == 404
        assert info.value.message == "Zasób którego szukasz nie został znaleziony."
    with pytest.raises(InfaktNotFound):
        client.get_invoice("../clients/1")  # path segments are escaped
    with pytest.raises(ValueError):
        client.get_invoice("")


# --------------------------------------------------------------------------- rate limits, 5xx


def test_rate_limited_429(client, simulator):
    simulator.configure(rate_limit_get=3, rate_window=2.0, retry_after=2)
    for _ in range(3):
        client.test_connection()
    with pytest.raises(InfaktRateLimited) as info:
        client.test_connection()
    assert info.value.status == 429
    assert info.value.retryable
    assert info.value.retry_after == 2.0
    time.sleep(2.1)
    assert client.test_connection()["entities"] == []


def test_rate_limited_429_on_post_is_not_in_doubt(client, simulator):
    simulator.configure(rate_limit_write=1, rate_window=30)
    client.create_invoice(make_invoice())
    with pytest.raises(InfaktRateLimited) as info:
        client.create_invoice(make_invoice())
    assert info.value.retry_after is None
    assert len(simulator.state()["tasks"]) == 1


def test_503_on_get_is_rate_limited(client, simulator):
    simulator.fault(fail_next=1, status=503, methods=["GET"], headers={"Retry-After": "5"})
    with pytest.raises(InfaktRateLimited) as info:
        client.test_connection()
    assert info.value.status == 503
    assert info.value.retry_after == 5.0
    assert client.test_connection()["entities"] == []


def test_503_on_post_is_rate_limited(client, simulator):
    simulator.fault(fail_next=1, status=503, methods=["POST"])
    with pytest.raises(InfaktRateLimited):
        client.create_invoice(make_invoice())
    assert simulator.state()["tasks"] == []


def test_500_on_get_is_transient(client, simulator):
    simulator.fault(fail_next=2, status=500, methods=["GET"])
    for _ in range(2):
        with pytest.raises(InfaktTransientError) as info:
            client.find_invoices_by_number("1/01/2026")
        assert info.value.status == 500
        assert info.value.retryable
    assert client.find_invoices_by_number("1/01/2026") == []


@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_on_post_is_in_doubt(client, simulator, status):
    simulator.fault(fail_next=1, status=status, methods=["POST"])
    with pytest.raises(InfaktInDoubt) as info:
        client.create_invoice(make_invoice())
    assert info.value.status == status
    assert not info.value.retryable
    assert not isinstance(info.value, InfaktTransientError)


def test_mark_paid_500_is_in_doubt(client, simulator):
    invoice = create_invoice_direct(simulator, unique_number())
    simulator.fault(fail_next=1, status=500, methods=["POST"])
    with pytest.raises(InfaktInDoubt):
        client.mark_paid(invoice["uuid"], datetime.date.today())


# --------------------------------------------------------------------------- lost answers


@pytest.mark.parametrize("reset", [False, True])
def test_dropped_connection_after_create_is_in_doubt(client, simulator, reset):
    number = unique_number()
    simulator.fault(drop_after_create=1, reset=reset)
    with pytest.raises(InfaktInDoubt) as info:
        client.create_invoice(make_invoice(number))
    assert info.value.status is None
    assert "may have been processed" in str(info.value)
    state = simulator.wait_idle()
    assert [i["number"] for i in state["invoices"]] == [number]  # exactly one exists
    found = client.find_invoices_by_number(number)
    assert len(found) == 1 and found[0]["number"] == number
    # the same client keeps working after the broken connection
    assert client.get_invoice(found[0]["uuid"])["uuid"] == found[0]["uuid"]


def test_dropped_corrective_is_in_doubt(client, simulator):
    original = create_invoice_direct(simulator, unique_number())
    body = P.build_corrective_invoice(
        pairs=[(LINES[1], None)], buyer=BUYER, invoice_date=datetime.date.today(),
        corrected_invoice_number=original["number"], payment_method="cash",
        number="KOR/" + uuid.uuid4().hex[:8])
    simulator.fault(drop_after_create=1)
    with pytest.raises(InfaktInDoubt):
        client.create_corrective_invoice(body)
    simulator.wait_idle()
    assert len(client.find_corrective_invoices_by_number(body["number"])) == 1


def test_read_timeout_on_post_is_in_doubt(simulator):
    number = unique_number()
    simulator.fault(latency=1.5, count=1, methods=["POST"])
    with client_for(simulator, timeout=(2.0, 0.5)) as infakt:
        started = time.monotonic()
        with pytest.raises(InfaktInDoubt) as info:
            infakt.create_invoice(make_invoice(number))
        assert time.monotonic() - started < 1.4
        assert "did not answer in time" in str(info.value)
        # the slow request was processed after all: reconcile by number
        found = wait_until(lambda: infakt.find_invoices_by_number(number), timeout=10)
        assert len(found) == 1
    assert len(simulator.wait_idle()["invoices"]) == 1


def test_read_timeout_on_get_is_transient(simulator):
    simulator.fault(latency=1.5, count=1, methods=["GET"])
    with client_for(simulator, timeout=(2.0, 0.5)) as infakt:
        with pytest.raises(InfaktTransientError) as info:
            infakt.test_connection()
        assert info.value.retryable
        assert infakt.test_connection()["entities"] == []


def test_timeout_after_processing_on_post_is_in_doubt(simulator):
    number = unique_number()
    simulator.fault(timeout_next=1, seconds=1.5, methods=["POST"])
    with client_for(simulator, timeout=(2.0, 0.5)) as infakt:
        with pytest.raises(InfaktInDoubt):
            infakt.create_invoice(make_invoice(number))
    assert [i["number"] for i in simulator.wait_idle()["invoices"]] == [number]


def test_drop_before_processing_on_get_is_transient(client, simulator):
    simulator.fault(drop_before_processing=1, methods=["GET"])
    with pytest.raises(InfaktTransientError):
        client.test_connection()


def test_drop_before_processing_on_post_is_in_doubt(client, simulator):
    # the client cannot know the server dropped it before processing: it was sent
    simulator.fault(drop_before_processing=1, methods=["POST"])
    with pytest.raises(InfaktInDoubt):
        client.create_invoice(make_invoice())
    assert simulator.state()["tasks"] == []


# --------------------------------------------------------------------------- never sent


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_transient_even_for_post():
    port = _free_port()
    with local_client("k", f"http://127.0.0.1:{port}/api/v3", (2.0, 2.0)) as infakt:
        for call in (lambda: infakt.create_invoice(make_invoice()),
                     lambda: infakt.mark_paid("abc", "2026-01-01"),
                     infakt.test_connection):
            with pytest.raises(InfaktTransientError) as info:
                call()
            assert not isinstance(info.value, InfaktInDoubt)
            assert info.value.retryable
            assert info.value.status is None


def test_dns_failure_is_transient_for_post():
    with local_client("k", "http://infakt-sim.invalid/api/v3", (2.0, 2.0)) as infakt:
        with pytest.raises(InfaktTransientError):
            infakt.create_invoice(make_invoice())


def test_connect_timeout_is_transient_for_post():
    # a listening socket whose accept queue is full never completes the TCP handshake
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        with local_client("k", f"http://127.0.0.1:{port}/api/v3", (0.3, 5.0)) as infakt:
            with pytest.raises(InfaktTransientError) as info:
                infakt.create_invoice(make_invoice())
            assert "timed out" in str(info.value)
    finally:
        for filler in fillers:
            filler.close()
        server.close()


# --------------------------------------------------------------------------- odd servers


class _OddHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        return

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen_headers.append(dict(self.headers))
        mode = self.server.mode
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.other_port}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"invoice_task_reference_number": "')
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "bigpage":  # ignores every filter, like inFakt with an unknown one
            rows = [{"number": f"{i}/01/2026"} for i in range(100)]
            body = json.dumps({"metainfo": {"count": 100, "total_count": 1000},
                               "entities": rows}).encode()
            self.server.mode_calls += 1
        else:
            body = {"html": b"<html>maintenance</html>", "empty": b"",
                    "list": b"[1, 2]", "json": b'{"ok": true}'}[mode]
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if mode == "html" else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer


@pytest.fixture
def odd_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OddHandler)
    server.daemon_threads = True
    server.mode = "html"
    server.seen_headers = []
    server.mode_calls = 0
    server.other_port = _free_port()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    server.client = local_client(
        "odd-key", f"http://127.0.0.1:{server.server_address[1]}/api/v3", (2.0, 2.0))
    yield server
    server.client.close()
    server.shutdown()
    server.server_close()


def test_unparsable_2xx(odd_server):
    infakt = odd_server.client
    with pytest.raises(InfaktUnexpectedResponse):
        infakt.get_invoice("x")
    with pytest.raises(InfaktUnexpectedResponse):
        infakt.download_pdf("x")  # not a PDF
    # a create answered 2xx without a readable task reference is in doubt, not an error
    with pytest.raises(InfaktInDoubt):
        infakt.create_invoice(make_invoice())
    odd_server.mode = "empty"
    with pytest.raises(InfaktUnexpectedResponse):
        infakt.test_connection()
    with pytest.raises(InfaktInDoubt):
        infakt.create_invoice(make_invoice())
    assert infakt.send_to_ksef("x") == {}
    odd_server.mode = "list"
    with pytest.raises(InfaktUnexpectedResponse):
        infakt.get_invoice("x")
    with pytest.raises(InfaktUnexpectedResponse):
        infakt.find_invoices_by_number("1")
    odd_server.mode = "json"
    with pytest.raises(InfaktInDoubt):
        infakt.mark_paid("x", "2026-01-01")  # 2xx without a task reference


def test_truncated_body(odd_server):
    odd_server.mode = "truncated"
    with pytest.raises(InfaktTransientError):
        odd_server.client.get_invoice("x")
    with pytest.raises(InfaktInDoubt):
        odd_server.client.create_invoice(make_invoice())


def test_find_by_number_never_guesses_not_found(odd_server):
    odd_server.mode = "bigpage"
    infakt = odd_server.client
    with pytest.raises(InfaktUnexpectedResponse):
        infakt.find_invoices_by_number("7/02/2026", max_pages=3)
    assert odd_server.mode_calls == 3
    found = infakt.find_invoices_by_number("7/01/2026", max_pages=2)
    assert found == [{"number": "7/01/2026"}] * 2  # the same page served twice
    # a filter the server ignores is re-checked client-side
    assert infakt.find_clients_by_nip("123") == []


def test_redirect_is_not_followed(odd_server):
    odd_server.mode = "redirect"
    with pytest.raises(InfaktUnexpectedResponse) as info:
        odd_server.client.test_connection()
    assert info.value.status == 302
    with pytest.raises(InfaktInDoubt):
        odd_server.client.create_invoice(make_invoice())
    assert len(odd_server.seen_headers) == 2  # nothing followed the Location


def test_request_headers(odd_server):
    odd_server.mode = "json"
    odd_server.client.get_invoice("x")
    headers = {k.lower(): v for k, v in odd_server.seen_headers[-1].items()}
    assert headers["x-infakt-apikey"] == "odd-key"
    assert headers["user-agent"] == "Odoo l10n_pl_infakt"
    assert headers["accept"] == "application/json"


def test_every_error_is_an_infakt_error():
    for cls in (InfaktAuthError, InfaktPlanError, InfaktPermissionError, InfaktValidationError,
                InfaktNotFound, InfaktRateLimited, InfaktTransientError, InfaktInDoubt,
                InfaktUnexpectedResponse):
        assert issubclass(cls, InfaktError)


def test_encode_json():
    from infakt_api.client import encode_json

    body = {"a": Decimal("12"), "b": Decimal("0.5"), "d": datetime.date(2026, 3, 2),
            "name": "Łódź"}
    assert json.loads(encode_json(body)) == {"a": 12, "b": 0.5, "d": "2026-03-02",
                                             "name": "Łódź"}
    assert "Łódź".encode() in encode_json(body)
    with pytest.raises(ValueError):
        encode_json({"x": float("nan")})
    with pytest.raises(TypeError):
        encode_json({"x": object()})


def test_on_request_hook_sees_every_request(simulator):
    seen = []
    client = InfaktClient(simulator.api_key, environment="custom", base_url=simulator.base_url,
                          on_request=lambda method, path: seen.append((method, path)))
    try:
        client.test_connection()
        client.list_bank_accounts()
    finally:
        client.close()
    assert [method for method, _path in seen] == ["GET", "GET"]
    assert seen[1][1].startswith("/bank_accounts")
