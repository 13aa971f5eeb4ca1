"""Conformance with recorded inFakt examples (``tests/fixtures/infakt_examples``).

Three questions, one section each:

(a) does our client understand every recorded response (served byte for byte by a small
    loopback server, so the real HTTP path of the client is used)?
(b) do our payload builders produce the shape of the recorded requests (wrapper keys, field
    names, value types)?
(c) does the simulator answer like the recorded responses (same keys and value types for the
    same request)? When they disagree the recorded example wins.

Where the client and the simulator agree on something no recorded source shows, the test
name says ``unrecorded`` or a comment says so.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
import urllib.parse
import urllib.request
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from infakt_api import payload as P
from infakt_api.client import InfaktClient, kind_of_task, parse_task
from infakt_api.errors import (
    InfaktGone,
    InfaktNotFound,
    InfaktValidationError,
    classify_http_error,
)
from infakt_api.webhook import event_category, parse_event

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "infakt_examples"
ACCOUNT = "61109010140000071219812874"  # the simulator's default, verified account
PM_ACCOUNT = "70102010130000010200026526"  # the account of PM's multi-line example
TASK_TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")
EVENT_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?([+-]\d{2}:\d{2}|Z)$")


def load(name):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def all_fixtures():
    return sorted(p.name for p in FIXTURES.glob("*.json"))


def type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def assert_same_shape(recorded, ours, where="", exact_keys=False, skip=()):
    """Every key of ``recorded`` exists in ``ours`` with the same JSON type (a recorded
    ``null`` matches anything); nested objects and the first row of lists are compared too."""
    if isinstance(recorded, dict):
        assert isinstance(ours, dict), f"{where}: expected an object, got {ours!r}"
        missing = [k for k in recorded if k not in ours and k not in skip]
        assert not missing, f"{where}: keys missing {missing}"
        if exact_keys:
            extra = sorted(set(ours) - set(recorded))
            assert not extra, f"{where}: keys inFakt does not send {extra}"
        for key, value in recorded.items():
            if key in skip:
                continue
            assert_same_shape(value, ours[key], f"{where}.{key}")
    elif isinstance(recorded, list):
        assert isinstance(ours, list), f"{where}: expected a list, got {ours!r}"
        if recorded and ours:
            assert_same_shape(recorded[0], ours[0], f"{where}[0]")
    elif recorded is not None and ours is not None:
        assert type_name(recorded) == type_name(ours), (
            f"{where}: recorded {recorded!r} ({type_name(recorded)}), "
            f"ours {ours!r} ({type_name(ours)})")


def test_every_fixture_parses_and_is_documented():
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    names = all_fixtures()
    assert len(names) >= 76
    for name in names:
        load(name)
        assert name in readme, f"{name} has no origin in the fixtures README"


def test_shared_examples_are_verbatim_copies():
    shared = Path("/work/shared/infakt-examples")
    if not shared.is_dir():
        pytest.skip("the steering folder is not on this machine")
    for source in shared.glob("*.json"):
        assert (FIXTURES / source.name).read_bytes() == source.read_bytes(), source.name


# ============================================================================================
# (a) the client reads recorded responses
# ============================================================================================


class RecordedServer:
    """A loopback HTTP server answering from a table ``(method, path) -> handler``.

    A handler is ``(status, body)`` (``body`` a fixture name, a dict/list, bytes or None) or a
    callable ``handler(query, body) -> (status, body)``. Requests are recorded with their
    parsed JSON body.
    """

    def __init__(self):
        self.routes = {}
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                return

            def _serve(self):
                parts = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parsed = json.loads(raw) if raw else None
                query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                outer.requests.append({"method": self.command, "path": parts.path,
                                       "query": query, "json": parsed,
                                       "headers": dict(self.headers.items())})
                handler = outer.routes.get((self.command, parts.path))
                if handler is None:
                    status, body = 404, "gh_ksef_send_404_not_found.json"
                elif callable(handler):
                    status, body = handler(query, parsed)
                else:
                    status, body = handler
                if isinstance(body, str) and body.endswith(".json"):
                    data = (FIXTURES / body).read_bytes()
                elif isinstance(body, (dict, list)):
                    data = json.dumps(body, ensure_ascii=False).encode()
                else:
                    data = body or b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v3"

    def route(self, method, path, handler):
        self.routes[(method, "/api/v3" + path)] = handler

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorded():
    server = RecordedServer()
    yield server
    server.close()


@pytest.fixture
def rclient(recorded):
    client = InfaktClient("recorded-key", environment="custom", base_url=recorded.base_url,
                          timeout=(2, 5))
    client.session.trust_env = False
    yield client
    client.close()


TASK_FILES = [
    # file, kind for the status path, code, state, has invoice uuid, our kind from invoice_kind
    ("postman_task_status_201.json", "invoice", 201, "done", True, None),
    ("postman_task_status_422.json", "invoice", 422, "failed", False, None),
    ("postman_task_status_140.json", "invoice", 140, "pending", False, None),
    ("postman_corrective_task_status_201.json", "corrective", 201, "done", True, None),
    ("postman_corrective_task_status_422.json", "corrective", 422, "failed", False, None),
    ("openlinker_spec_corrective_task_status_201_shape.json", "corrective", 201, "done", True,
     "corrective"),
    ("postman_mark_paid_status_200.json", "invoice", 200, "done", True, "invoice"),
    ("postman_mark_paid_status_422.json", "invoice", 422, "failed", True, "invoice"),
    ("postman_advance_task_status_201.json", "advance", 201, "done", True, None),
    ("postman_final_task_status_201.json", "final", 201, "done", True, None),
]


@pytest.mark.parametrize("name, kind, code, state, has_uuid, our_kind", TASK_FILES)
def test_client_reads_recorded_task_status(recorded, rclient, name, kind, code, state,
                                           has_uuid, our_kind):
    collection = {"invoice": "invoices", "corrective": "corrective_invoices",
                  "advance": "advance_invoices", "final": "final_invoices"}[kind]
    recorded.route("GET", f"/async/{collection}/status/ref-1.json", (200, name))
    status = rclient.task_status("ref-1", kind=kind)
    assert status.code == code
    assert (status.done, status.failed, status.pending) == (
        state == "done", state == "failed", state == "pending")
    assert bool(status.invoice_uuid) == has_uuid
    assert kind_of_task(status.envelope) == our_kind
    if status.failed:
        assert status.errors and all(isinstance(v, list) for v in status.errors.values())
        assert isinstance(status.as_error(), InfaktValidationError)


def test_client_reads_the_plain_string_already_paid_error():
    status = parse_task(load("postman_mark_paid_status_422.json"))
    assert status.errors == {"status": ["Faktura już została oznaczona jako zapłacona."]}
    assert status.action == "mark_as_paid"


def test_legacy_corrective_flag_still_reads_the_corrective_path(recorded, rclient):
    recorded.route("GET", "/async/corrective_invoices/status/r.json",
                   (200, "postman_corrective_task_status_201.json"))
    assert rclient.task_status("r", corrective=True).done
    assert rclient.get_task_status("r", corrective=True)["processing_code"] == 201


@pytest.mark.parametrize("method, kind, path, status, name, task_kind", [
    ("create_invoice", "invoice", "/async/invoices.json", 201,
     "postman_async_invoice_response_201_accepted.json", "invoice"),
    ("create_invoice", "invoice", "/async/invoices.json", 201,
     "postman_async_invoice_response_201_accepted_no_kind.json", None),
    ("create_invoice", "invoice", "/async/invoices.json", 202,
     "gh_async_invoice_response_202.json", None),
    ("create_corrective_invoice", "corrective", "/async/corrective_invoices.json", 201,
     "postman_async_corrective_invoice_response_201_accepted.json", None),
    ("create_advance_invoice", "advance", "/async/advance_invoices.json", 201,
     "postman_async_advance_invoice_response_201_accepted.json", "advance"),
    ("create_final_invoice", "final", "/async/final_invoices.json", 201,
     "postman_async_final_invoice_response_201_accepted.json", None),
])
def test_client_reads_recorded_create_envelopes(recorded, rclient, method, kind, path, status,
                                                name, task_kind):
    recorded.route("POST", path, (status, name))
    envelope = getattr(rclient, method)({"any": "body"}, send_to_ksef=True)
    assert envelope == load(name)
    assert parse_task(envelope).pending and parse_task(envelope).code == 100
    assert kind_of_task(envelope) == task_kind
    wrapper = {"invoice": "invoice", "corrective": "corrective_invoice",
               "advance": "advance_invoice", "final": "final_invoice"}[kind]
    assert recorded.requests[-1]["json"] == {wrapper: {"any": "body"}, "send_to_ksef": True}


@pytest.mark.parametrize("kind, collection, name", [
    ("invoice", "invoices", "postman_invoice_show_200.json"),
    ("corrective", "corrective_invoices", "postman_corrective_invoice_show_200.json"),
    ("advance", "advance_invoices", "postman_advance_invoice_show_200.json"),
])
def test_client_reads_recorded_documents(recorded, rclient, kind, collection, name):
    recorded.route("GET", f"/{collection}/u-1.json", (200, name))
    assert rclient.get_document("u-1", kind=kind) == load(name)
    getter = {"invoice": rclient.get_invoice, "corrective": rclient.get_corrective_invoice,
              "advance": rclient.get_advance_invoice}[kind]
    assert getter("u-1") == load(name)


def test_client_reads_recorded_ksef2_answers(recorded, rclient):
    recorded.route("GET", "/ksef2/documents/ok/status.json",
                   (200, "postman_ksef2_status_success.json"))
    recorded.route("GET", "/ksef2/documents/bad/status.json",
                   (200, "postman_ksef2_status_error.json"))
    recorded.route("GET", "/ksef2/integration.json", (200, "postman_ksef2_integration_active.json"))
    recorded.route("POST", "/ksef2/documents/ok/send.json",
                   (200, "postman_ksef2_send_response_sent.json"))
    recorded.route("POST", "/ksef2/documents/no/send.json",
                   (200, "postman_ksef2_send_response_rejected.json"))
    recorded.route("POST", "/invoices/ok/send_to_ksef.json",
                   (200, "postman_send_to_ksef_response_200.json"))
    assert rclient.get_ksef_status("ok")["ksef_number"] == "7343521162-20231004-47A70D8BD670-57"
    assert rclient.get_ksef_status("bad")["status"] == "error"
    assert rclient.get_ksef_integration()["active"] is True
    assert rclient.send_to_ksef2("ok")["status"] == "sent"
    rejected = rclient.send_to_ksef2("no")
    assert rejected["status"] == "rejected" and rejected["request_uuid"] is None
    assert rclient.send_to_ksef("ok")["status"] == "sent"
    assert [r["path"] for r in recorded.requests[:3]] == [
        "/api/v3/ksef2/documents/ok/status.json", "/api/v3/ksef2/documents/bad/status.json",
        "/api/v3/ksef2/integration.json"]


def test_client_never_calls_the_retired_ksef1_namespace(recorded, rclient):
    recorded.route("GET", "/ksef2/documents/x/status.json",
                   (200, "postman_ksef2_status_success.json"))
    recorded.route("GET", "/ksef2/integration.json",
                   (200, "postman_ksef2_integration_inactive.json"))
    rclient.get_ksef_status("x")
    assert rclient.get_ksef_integration()["active"] is False
    assert not any("/ksef/" in r["path"] for r in recorded.requests)


def test_client_turns_the_recorded_410_into_infakt_gone(recorded, rclient):
    body = load("medusa_live_ksef1_integration_410.json")
    recorded.route("GET", "/ksef2/integration.json",
                   (410, "medusa_live_ksef1_integration_410.json"))
    with pytest.raises(InfaktGone) as info:
        rclient.get_ksef_integration()
    error = info.value
    assert error.status == 410 and not error.retryable
    assert error.infakt_message == body["error"]
    assert error.message.startswith("inFakt retired this API endpoint")
    assert body["error"] in str(error)
    gone = classify_http_error(410, json.dumps(body).encode(), method="POST")
    assert isinstance(gone, InfaktGone) and gone.infakt_message == body["error"]


@pytest.mark.parametrize("status, name, error_class", [
    (404, "gh_ksef_send_404_not_found.json", InfaktNotFound),
    (422, "gh_ksef_send_422_not_integrated.json", InfaktValidationError),
    (404, "postman_pdf_many_check_404.json", InfaktNotFound),
])
def test_client_reads_recorded_error_bodies(recorded, rclient, status, name, error_class):
    recorded.route("POST", "/ksef2/documents/x/send.json", (status, name))
    with pytest.raises(error_class) as info:
        rclient.send_to_ksef2("x")
    assert load(name)["error"] in info.value.message
    assert info.value.field_errors == {"base": [load(name)["error"]]}


def test_client_reads_recorded_mark_paid(recorded, rclient):
    recorded.route("POST", "/async/invoices/e019/paid.json",
                   (201, "postman_mark_paid_response_201.json"))
    envelope = rclient.mark_paid("e019", datetime.date(2023, 12, 15))
    assert envelope == load("postman_mark_paid_response_201.json")
    task = parse_task(envelope)
    assert task.action == "mark_as_paid" and task.pending and task.invoice_uuid
    request = recorded.requests[-1]
    assert request["query"] == {"paid_date": "2023-12-15"}


def test_client_reads_recorded_lists(recorded, rclient):
    recorded.route("GET", "/invoices.json", (200, "postman_invoices_list_by_number_200.json"))
    recorded.route("GET", "/corrective_invoices.json",
                   (200, "postman_corrective_invoices_list_by_number_200.json"))
    invoices = rclient.find_invoices_by_number("18/03/2023")
    assert [i["number"] for i in invoices] == ["18/03/2023"]
    assert recorded.requests[-1]["query"]["q[number_eq]"] == "18/03/2023"
    correctives = rclient.find_corrective_invoices_by_number("1/KOR/01/2023")
    assert [c["number"] for c in correctives] == ["1/KOR/01/2023"]
    assert rclient.find_invoices_by_number("99/99/2099") == []  # filtered again client-side


def test_client_pages_the_live_clients_capture_by_total_count(recorded, rclient):
    """OL's live capture: limit=2, count 10, total 25. The client must not trust count."""
    capture = load("openlinker_fixture_clients_list_response.json")

    def pages(query, _body):
        offset = int(query.get("offset", 0))
        if offset == 0:
            return 200, capture
        return 200, {"metainfo": dict(capture["metainfo"], count=10), "entities": []}

    recorded.route("GET", "/clients.json", pages)
    assert rclient.find_clients_by_nip("526-000-12-46") == []  # no row has that NIP
    assert recorded.requests[0]["query"]["q[clean_nip_eq]"] == "5260001246"
    offsets = [int(r["query"]["offset"]) for r in recorded.requests]
    assert offsets == [0, len(capture["entities"])]  # went on from the rows returned


def test_client_reads_the_live_bank_accounts_capture(recorded, rclient):
    recorded.route("GET", "/bank_accounts.json",
                   (200, "openlinker_fixture_bank_accounts_list_response.json"))
    accounts = rclient.list_bank_accounts()
    assert accounts == load("openlinker_fixture_bank_accounts_list_response.json")["entities"]


def _paged(first, second):
    pages = {0: load(first), 10: load(second)}

    def handler(query, _body):
        page = pages.get(int(query.get("offset", 0)))
        if page is None:
            return 200, {"metainfo": dict(load(first)["metainfo"], count=0), "entities": []}
        return 200, page

    return handler


def test_client_lists_every_vat_exemption(recorded, rclient):
    """Recorded pages 1 and 2 (112 in total: the fake server ends after 20)."""
    recorded.route("GET", "/vat_exemptions.json",
                   _paged("postman_vat_exemptions_list_200_first_page.json",
                          "postman_vat_exemptions_list_200_second_page.json"))
    rows = rclient.list_vat_exemptions()
    assert len(rows) == 20 and [r["id"] for r in rows][:3] == [1, 3, 4]
    assert all(set(r) == {"id", "description", "legal_basis_rule", "legal_basis_source"}
               for r in rows)
    assert all(isinstance(r["id"], int) for r in rows)
    assert [int(r["query"]["offset"]) for r in recorded.requests] == [0, 10, 20]


def test_client_lists_gtus_markings_and_transaction_kinds(recorded, rclient):
    recorded.route("GET", "/gtus.json", (200, "postman_gtus_list_200_first_page.json"))
    recorded.route("GET", "/documents_markings/incomes.json",
                   _paged("postman_documents_markings_incomes_list_200_first_page.json",
                          "postman_documents_markings_incomes_list_200_second_page.json"))
    recorded.route("GET", "/transaction_kinds.json",
                   (200, "postman_transaction_kinds_list_200.json"))
    gtus = rclient.list_gtus()
    assert [g["name"] for g in gtus][:2] == ["GTU_01", "GTU_02"]
    markings = rclient.list_document_markings()
    assert len(markings) == 13
    # the TP (related parties) marker of JPK_V7 / KSeF
    assert rclient.find_document_marking_id("TP") == 3 == P.TP_MARKING_ID
    assert rclient.find_document_marking_id("tp") == 3
    assert rclient.find_document_marking_id("NOPE") is None
    assert [k["symbol"] for k in rclient.list_transaction_kinds()][0] == "free_transfer_of_goods"


def test_client_period_listing_ignores_count_and_rechecks_dates(recorded, rclient):
    """Pages built from the recorded invoice entity: count says 10 (as inFakt may report it),
    one row lies outside the range (as when inFakt ignores a filter)."""
    template = load("postman_invoices_list_by_number_200.json")["entities"][0]
    rows = []
    for index in range(150):
        row = dict(template, uuid=f"u-{index}", number=f"{index}/03/2023",
                   invoice_date=f"2023-03-{index % 28 + 1:02d}")
        rows.append(row)
    rows.append(dict(template, uuid="outside", invoice_date="2023-04-02"))

    def pages(query, _body):
        offset, limit = int(query["offset"]), int(query["limit"])
        return 200, {"metainfo": {"count": 10, "total_count": len(rows), "next": "x",
                                  "previous": "y"},
                     "entities": rows[offset:offset + limit]}

    recorded.route("GET", "/invoices.json", pages)
    recorded.route("GET", "/corrective_invoices.json",
                   (200, "postman_corrective_invoices_list_by_number_200.json"))
    found = list(rclient.iter_period_documents("2023-03-01", "2023-03-31"))
    invoices = [d for kind, d in found if kind == "invoice"]
    assert len(invoices) == 150 and "outside" not in {d["uuid"] for d in invoices}
    query = recorded.requests[0]["query"]
    assert query["q[invoice_date_gteq]"] == "2023-03-01"
    assert query["q[invoice_date_lteq]"] == "2023-03-31"
    assert query["limit"] == "100"
    listing = rclient.list_period_documents(datetime.date(2023, 3, 1), "2023-03-31",
                                            kinds=("invoice",), max_pages=1)
    assert not listing.complete and len(listing.documents["invoice"]) == 100


WEBHOOK_FILES = [
    ("postman_webhook_async_invoice_creation_success.json", "creation", False),
    ("postman_webhook_async_invoice_creation_error.json", "creation", True),
    ("postman_webhook_draft_invoice_created_full.json", "draft", False),
    ("postman_webhook_draft_invoice_created_minimal.json", "draft", False),
    ("postman_webhook_ksef_section_full_labelled_draft_invoice_created.json", "draft", False),
    ("postman_webhook_send_to_ksef_error.json", "ksef", True),
]


@pytest.mark.parametrize("name, category, is_error", WEBHOOK_FILES)
def test_client_parses_recorded_webhooks(name, category, is_error):
    event = parse_event(load(name))
    assert event.known and event.category == category and event.is_error == is_error
    assert event.invoice_uuid or event.resource.get("invoice_uuid") is None
    assert EVENT_TS.match(event.created_at)


def test_client_parses_the_live_webhook_capture():
    envelope = load("openlinker_live_webhook_envelope_event.json")
    envelope["event"]["name"] = "send_to_ksef_success"
    envelope["resource"] = load("openlinker_live_webhook_send_to_ksef_success_resource.json")
    event = parse_event(envelope)
    assert event.category == "ksef" and event.ksef_status == "success"
    assert event.ksef_number == "8201194127-20260630-981CFF400000-90"
    assert event.retry_counter == 1 and event.invoice_kind == "vat"
    placeholder = parse_event(load("openlinker_live_webhook_envelope_event.json"))
    assert event_category(placeholder.name) is None  # "<event_name>": acknowledged, ignored


# ============================================================================================
# (b) our builders produce the recorded request shapes
# ============================================================================================

# Field names of PM's definitions (Faktury VAT / korygujące / zaliczkowe / końcowe), written
# down once here; every key we send must be one of them.
PM_INVOICE_FIELDS = {
    "number", "check_duplicate_number", "kind", "currency", "vat_exchange_date_kind",
    "invoice_date", "sale_date", "payment_date", "paid_date", "invoice_date_kind",
    "continuous_service_start_on", "continuous_service_end_on", "status", "payment_method",
    "bank_account", "bank_name", "swift", "split_payment_type", "notes", "recipient_signature",
    "seller_signature", "receipt_number", "bdo_code", "client_id", "client_company_name",
    "client_first_name", "client_last_name", "client_business_activity_kind", "client_street",
    "client_street_number", "client_flat_number", "client_city", "client_post_code",
    "client_tax_code", "client_country", "sale_type", "vat_exemption_reason",
    "transaction_kind_id", "document_markings_ids", "not_income", "third_party_addresses",
    "transaction_terms", "services",
}
PM_CORRECTIVE_FIELDS = PM_INVOICE_FIELDS | {
    "corrected_invoice_number", "corrected_invoice_date", "corrected_invoice_uuid",
    "correction_reason"}
PM_ADVANCE_FIELDS = PM_INVOICE_FIELDS | {"advance_date", "advance_price", "previous_advance_id"}
PM_FINAL_FIELDS = PM_INVOICE_FIELDS | {"previous_advance_id", "paid_price"}
PM_SERVICE_FIELDS = {
    "name", "tax_symbol", "unit", "quantity", "unit_net_price", "net_price", "gross_price",
    "tax_price", "pkwiu", "cn", "pkob", "gtu_id", "discount", "unit_net_price_before_discount",
    "flat_rate_tax_symbol"}
MONEY = ("unit_net_price", "net_price", "gross_price", "tax_price",
         "unit_net_price_before_discount", "advance_price")

BUYER = {"company_name": "INFAKT Sp. z o.o.", "nip": "945-212-16-81", "street": "ul. Test-Krucza 4",
         "city": "Kraków", "post_code": "30-549"}
LINE = {"name": "Przykładowa Usługa", "quantity": 1, "tax_symbol": "23", "pkwiu": "84.11.12.0",
        "unit_net_price": "66.23", "net_price": "66.23"}
GROSS_LINE = {"name": "Książka", "quantity": 3, "tax_symbol": "5", "price_mode": "gross",
              "gross_price": "100.00"}


def recorded_service_keys(*names):
    keys = set()
    for name in names:
        body = load(name)
        document = next(iter(v for v in body.values() if isinstance(v, dict)))
        for row in document.get("services", ()):
            keys |= set(row)
    return keys


def check_service(row, corrective=False):
    assert set(row) <= PM_SERVICE_FIELDS | ({"group", "correction"} if corrective else set())
    for key in MONEY:
        if key in row:
            assert isinstance(row[key], int) and not isinstance(row[key], bool), (key, row)
    assert isinstance(row["tax_symbol"], str)  # PM sends 23 or "23"; read back as "23"
    assert isinstance(row["quantity"], str)  # corrective examples send "1.0"/"0" strings
    if "gtu_id" in row:
        assert isinstance(row["gtu_id"], int)
    if "discount" in row:
        assert isinstance(row["discount"], (int, Decimal))


def captured_body(recorded, rclient, method, document, send_to_ksef=False):
    path = {"create_invoice": "/async/invoices.json",
            "create_corrective_invoice": "/async/corrective_invoices.json",
            "create_advance_invoice": "/async/advance_invoices.json",
            "create_final_invoice": "/async/final_invoices.json"}[method]
    recorded.route("POST", path, (201, "postman_async_invoice_response_201_accepted.json"))
    getattr(rclient, method)(document, send_to_ksef=send_to_ksef)
    return recorded.requests[-1]["json"]


def test_invoice_body_has_the_recorded_shape(recorded, rclient):
    invoice = P.build_invoice(
        lines=[dict(LINE, gtu_id=12), GROSS_LINE], buyer=BUYER, invoice_date="2023-03-08",
        payment_method="transfer", bank_account=ACCOUNT, vat_exemption_reason="1",
        split_payment=True, sale_type="service", document_markings_ids=[P.TP_MARKING_ID],
        transaction_kind_id="2")
    body = captured_body(recorded, rclient, "create_invoice", invoice)
    recorded_body = load("postman_async_invoice_request.json")
    assert set(body) == set(recorded_body) == {"invoice", "send_to_ksef"}
    assert body["send_to_ksef"] is False
    sent = body["invoice"]
    assert set(sent) <= PM_INVOICE_FIELDS
    inline = load("postman_async_invoice_request_inline_client.json")["invoice"]
    assert {k for k in sent if k.startswith("client_")} <= set(inline)
    for row in sent["services"]:
        check_service(row)
    assert set(sent["services"][0]) <= recorded_service_keys(
        "postman_async_invoice_request_net.json") | {"unit", "quantity", "gtu_id"}
    assert set(sent["services"][1]) - {"unit", "quantity"} <= recorded_service_keys(
        "postman_async_invoice_request_gross.json")
    # legal content, typed as PM's definition (vat_exemption_reason read back as 1 in PM's
    # draft_invoice_created example)
    draft = load("postman_webhook_draft_invoice_created_full.json")["resource"]
    assert type(sent["vat_exemption_reason"]) is type(draft["vat_exemption_reason"]) is int
    assert sent["document_markings_ids"] == [3] and sent["transaction_kind_id"] == 2
    assert sent["split_payment_type"] == "required" and sent["sale_type"] == "service"


def test_corrective_body_has_the_recorded_shape(recorded, rclient):
    corrective = P.build_corrective_invoice(
        pairs=[(LINE, dict(LINE, unit_net_price="66.00", net_price="66.00")),
               (GROSS_LINE, None)],
        buyer={"client_id": 37}, invoice_date="2023-03-10",
        corrected_invoice_number="201/12/2020", payment_method="other")
    body = captured_body(recorded, rclient, "create_corrective_invoice", corrective, True)
    recorded_body = load("postman_async_corrective_invoice_request.json")
    assert set(body) == set(recorded_body) | {"send_to_ksef"}
    sent = body["corrective_invoice"]
    assert set(sent) <= PM_CORRECTIVE_FIELDS
    recorded_rows = recorded_body["corrective_invoice"]["services"]
    for row, example in zip(sent["services"], recorded_rows, strict=False):
        check_service(row, corrective=True)
        assert type(row["group"]) is type(example["group"]) is str
        assert type(row["correction"]) is type(example["correction"]) is bool
        assert type(row["quantity"]) is type(example["quantity"]) is str
        # priced from unit_net_price, never gross_price (read-only on corrective rows)
        assert "gross_price" not in row and isinstance(row["unit_net_price"], int)
    assert [r["quantity"] for r in sent["services"]][-1] == "0"


def test_advance_body_has_the_recorded_shape(recorded, rclient):
    advance = P.build_advance_invoice(
        lines=[LINE], buyer=BUYER, advance_price="400.00", advance_date="2023-05-09",
        payment_method="cash")
    body = captured_body(recorded, rclient, "create_advance_invoice", advance)
    recorded_body = load("postman_async_advance_invoice_request.json")
    assert set(body) == set(recorded_body)
    sent, example = body["advance_invoice"], recorded_body["advance_invoice"]
    assert set(sent) <= PM_ADVANCE_FIELDS
    assert set(example) - {"client_company_name"} <= set(sent)
    assert sent["advance_price"] == example["advance_price"] == 40000
    assert sent["advance_date"] == example["advance_date"]
    for row in sent["services"]:
        check_service(row)
    later = P.build_advance_invoice(buyer=BUYER, advance_price=400, payment_method="cash",
                                    advance_date="2023-05-09", previous_advance_id="68147")
    next_example = load("postman_async_advance_invoice_request_next_advance.json")
    assert "services" not in later and "services" not in next_example["advance_invoice"]
    assert type(later["previous_advance_id"]) is type(
        next_example["advance_invoice"]["previous_advance_id"]) is int


def test_final_body_has_the_recorded_shape(recorded, rclient):
    final = P.build_final_invoice(lines=[LINE], buyer=BUYER, previous_advance_id=73,
                                  paid_date="2023-05-09", payment_method="cash")
    body = captured_body(recorded, rclient, "create_final_invoice", final)
    recorded_body = load("postman_async_final_invoice_request_with_services.json")
    assert set(body) == set(recorded_body)
    sent, example = body["final_invoice"], recorded_body["final_invoice"]
    assert set(sent) <= PM_FINAL_FIELDS
    assert sent["previous_advance_id"] == example["previous_advance_id"] == 73
    assert sent["paid_date"] == example["paid_date"]
    assert set(sent["services"][0]) - {"unit", "quantity"} <= set(example["services"][0])


def test_mark_paid_request_matches_pm(recorded, rclient):
    """PM puts paid_date in the query; the body (also sent) is harmless."""
    recorded.route("POST", "/async/invoices/u/paid.json",
                   (201, "postman_mark_paid_response_201.json"))
    rclient.mark_paid("u", "2023-12-15")
    request = recorded.requests[-1]
    assert request["query"]["paid_date"] == "2023-12-15"
    assert set(request["json"]) <= {"paid_date"} | set(
        load("postman_mark_paid_request_allow_correction.json"))


# ============================================================================================
# (c) the simulator answers like the recorded responses
# ============================================================================================


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


def call(http, sim, method, path, **kwargs):
    kwargs.setdefault("timeout", 5)
    return http.request(method, sim.base_url + path,
                        headers={"X-inFakt-ApiKey": sim.api_key}, **kwargs)


def run_task(http, sim, collection, body, expect=201):
    response = call(http, sim, "POST", f"/async/{collection}.json", json=body)
    assert response.status_code == 201, response.text
    envelope = response.json()
    deadline = time.monotonic() + 5
    while True:
        status = call(http, sim, "GET", f"/async/{collection}/status/"
                      f"{envelope['invoice_task_reference_number']}.json").json()
        if status["processing_code"] not in (100, 120, 140):
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert status["processing_code"] == expect, status
    return envelope, status


@pytest.fixture
def sim(simulator):
    simulator.configure(task_delay=0, ksef_delay=0, bank_accounts=[
        {"id": 1, "account_number": ACCOUNT, "bank_name": "Santander", "default": True},
        {"id": 2, "account_number": PM_ACCOUNT, "bank_name": "PM bank"}],
        seed_clients=[{"id": 37, "company_name": "INFAKT Sp. z o.o.", "country": "PL",
                       "nip": "9452121681", "city": "Kraków"}])
    simulator.reset(config=False)  # keeps this configuration, seeds client 37
    return simulator


REQUEST_FILES = [
    "postman_async_invoice_request.json",
    "postman_async_invoice_request_continuous_service.json",
    "postman_async_invoice_request_gross.json",
    "postman_async_invoice_request_inline_client.json",
    "postman_async_invoice_request_multi_lines_transfer.json",
    "postman_async_invoice_request_net.json",
    "postman_async_invoice_request_third_party.json",
    "postman_async_invoice_request_transaction_terms.json",
    "gh_async_invoice_request.json",
]


@pytest.mark.parametrize("name", REQUEST_FILES)
def test_simulator_accepts_recorded_invoice_requests(http, sim, name):
    envelope, status = run_task(http, sim, "invoices", load(name))
    assert_same_shape(load("postman_async_invoice_response_201_accepted.json"), envelope,
                      "envelope", exact_keys=True)
    assert TASK_TS.match(envelope["timestamps"]["task_created_at"])
    assert_same_shape(load("postman_task_status_201.json"), status, "status")
    invoice = call(http, sim, "GET", f"/invoices/{status['invoice_uuid']}.json").json()
    assert_same_shape(load("postman_invoice_show_200.json"), invoice, "invoice",
                      skip=("ksef_data", "transaction_terms"))
    assert isinstance(invoice["client_id"], int)  # inFakt files inline buyers as clients


def test_simulator_reads_back_pms_inline_client_invoice_like_pm(http, sim):
    """PM's "Podgląd" is the invoice of its inline-client example: same values back."""
    _envelope, status = run_task(http, sim, "invoices",
                                 load("postman_async_invoice_request_inline_client.json"))
    ours = call(http, sim, "GET", f"/invoices/{status['invoice_uuid']}.json").json()
    pm = load("postman_invoice_show_200.json")
    for key in ("net_price", "tax_price", "gross_price", "left_to_pay", "paid_price", "kind",
                "status", "currency", "payment_method", "split_payment", "split_payment_type",
                "sale_type", "invoice_date_kind", "document_markings_ids",
                "transaction_kind_id", "not_income", "vat_exemption_reason"):
        assert ours[key] == pm[key], key
    for key in [k for k in pm if k.startswith("client_") and k != "client_id"]:
        assert ours[key] == pm[key], key
    assert ours["client_id"] in {c["id"] for c in sim.state()["clients"]}
    row, pm_row = ours["services"][0], pm["services"][0]
    for key in ("name", "tax_symbol", "unit", "quantity", "unit_net_price", "net_price",
                "gross_price", "tax_price", "symbol", "pkwiu", "cn", "pkob", "discount",
                "unit_net_price_before_discount", "gtu_id"):
        assert row[key] == pm_row[key], key
    assert ours["ksef_data"] is None  # not sent to KSeF


def test_simulator_reads_back_pms_corrective_like_pm(http, sim):
    original = load("postman_async_invoice_request_net.json")
    original["invoice"]["number"] = "201/12/2020"
    run_task(http, sim, "invoices", original)
    envelope, status = run_task(http, sim, "corrective_invoices",
                                load("postman_async_corrective_invoice_request.json"))
    assert_same_shape(load("postman_async_corrective_invoice_response_201_accepted.json"),
                      envelope, "envelope")
    assert_same_shape(load("postman_corrective_task_status_201.json"), status, "status")
    assert status["invoice_kind"] == "corrective_invoice"  # OL live (value of OL's fixture)
    ours = call(http, sim, "GET",
                f"/corrective_invoices/{status['invoice_uuid']}.json").json()
    pm = load("postman_corrective_invoice_show_200.json")
    assert_same_shape(pm, ours, "corrective", skip=("ksef_data",))
    for key in ("net_price", "tax_price", "gross_price", "kind", "correction_reason"):
        assert ours[key] == pm[key], key
    assert ours["client_id"] == 37  # the recorded request's client_id "37", read back as int
    keys = ("name", "tax_symbol", "quantity", "unit_net_price", "net_price", "gross_price",
            "tax_price", "group", "correction")
    assert [{k: r[k] for k in keys} for r in ours["services"]] == [
        {k: r[k] for k in keys} for r in pm["services"]]
    assert call(http, sim, "GET", f"/invoices/{status['invoice_uuid']}.json").status_code == 404


def test_simulator_ignores_gross_price_on_corrective_rows(http, sim):
    original = load("postman_async_invoice_request_net.json")
    original["invoice"]["number"] = "201/12/2020"
    run_task(http, sim, "invoices", original)
    body = load("postman_async_corrective_invoice_request.json")
    for row in body["corrective_invoice"]["services"]:
        row["gross_price"] = 1  # read-only: must not change any price
    _envelope, status = run_task(http, sim, "corrective_invoices", body)
    ours = call(http, sim, "GET",
                f"/corrective_invoices/{status['invoice_uuid']}.json").json()
    assert (ours["net_price"], ours["tax_price"], ours["gross_price"]) == (-6646, -1528, -8174)
    for row in body["corrective_invoice"]["services"]:
        del row["unit_net_price"]  # only gross_price left: no price at all
    _envelope, failed = run_task(http, sim, "corrective_invoices", body, expect=422)
    assert "services.unit_net_price" in failed["invoice_errors"]


def test_simulator_answers_pms_advance_and_final_requests_like_pm(http, sim):
    # the examples date from 2023-05-09 (the final's paid_date): move the simulator's clock
    # there so the documents are issued that day, as in PM
    pm_day = datetime.datetime(2023, 5, 9, 12, 0, tzinfo=datetime.timezone.utc)
    sim.configure(clock_offset=(pm_day - datetime.datetime.now(datetime.timezone.utc))
                  .total_seconds())
    assert sim.today() == datetime.date(2023, 5, 9)
    envelope, status = run_task(http, sim, "advance_invoices",
                                load("postman_async_advance_invoice_request.json"))
    assert_same_shape(load("postman_async_advance_invoice_response_201_accepted.json"),
                      envelope, "envelope", exact_keys=True)
    assert envelope["invoice_kind"] == "advance_invoice"
    assert_same_shape(load("postman_advance_task_status_201.json"), status, "status")
    first = call(http, sim, "GET", f"/advance_invoices/{status['invoice_uuid']}.json").json()
    later = load("postman_async_advance_invoice_request_next_advance.json")
    later["advance_invoice"]["previous_advance_id"] = first["id"]
    _envelope, status = run_task(http, sim, "advance_invoices", later)
    second = call(http, sim, "GET", f"/advance_invoices/{status['invoice_uuid']}.json").json()
    pm = load("postman_advance_invoice_show_200.json")
    assert_same_shape(pm, second, "advance", skip=("ksef_data",))
    for key in ("kind", "advance_price", "advance_date", "net_price", "tax_price",
                "gross_price", "left_to_pay", "not_income", "status", "sale_type"):
        assert second[key] == pm[key], key
    assert re.fullmatch(r"\d+/ZAL/05/2023", second["number"])  # PM: 13/ZAL/05/2023
    assert second["previous_advance_id"] == first["id"]
    assert [set(p) for p in second["previous_advances"]] == [set(pm["previous_advances"][0])]
    assert second["services"][0]["net_price"] == pm["services"][0]["net_price"]
    assert call(http, sim, "GET", f"/invoices/{second['uuid']}.json").status_code == 404

    final = load("postman_async_final_invoice_request.json")
    final["final_invoice"]["previous_advance_id"] = second["id"]
    envelope, status = run_task(http, sim, "final_invoices", final)
    assert_same_shape(load("postman_async_final_invoice_response_201_accepted.json"),
                      envelope, "envelope")
    assert_same_shape(load("postman_final_task_status_201.json"), status, "status")
    # no PM example shows a final invoice read back: kind, number and left_to_pay are the
    # simulator's (unrecorded) assumptions, the client only relies on uuid/number
    read = call(http, sim, "GET", f"/final_invoices/{status['invoice_uuid']}.json").json()
    assert read["kind"] == "final" and re.fullmatch(r"\d+/RZL/\d{2}/\d{4}", read["number"])
    assert [p["id"] for p in read["previous_advances"]] == [first["id"], second["id"]]
    assert read["paid_date"] == "2023-05-09"
    missing = load("postman_async_final_invoice_request_with_services.json")
    missing["final_invoice"]["previous_advance_id"] = 999999
    _envelope, failed = run_task(http, sim, "final_invoices", missing, expect=422)
    assert "previous_advance_id" in failed["invoice_errors"]


def test_simulator_next_numbers_like_pm(http, sim):
    for path, name in (("/invoices/next_number.json", "gh_next_number_response.json"),
                       ("/corrective_invoices/next_number.json",
                        "postman_corrective_next_number_response.json"),
                       ("/final_invoices/next_number.json",
                        "postman_final_next_number_response.json")):
        ours = call(http, sim, "GET", path).json()
        assert_same_shape(load(name), ours, path, exact_keys=True)
        assert ours["invoice_kind"] == load(name)["invoice_kind"]


def test_simulator_task_errors_like_pm(http, sim):
    body = load("postman_async_invoice_request_net.json")
    del body["invoice"]["payment_method"]
    _envelope, status = run_task(http, sim, "invoices", body, expect=422)
    pm = load("postman_task_status_422.json")
    assert_same_shape(pm, status, "status")
    assert status["invoice_errors"] == pm["invoice_errors"]
    assert status["processing_description"] == pm["processing_description"]


def test_simulator_mark_paid_like_pm(http, sim):
    _envelope, status = run_task(http, sim, "invoices",
                                 load("postman_async_invoice_request_net.json"))
    uuid = status["invoice_uuid"]
    today = sim.today().isoformat()
    response = call(http, sim, "POST", f"/async/invoices/{uuid}/paid.json",
                    params={"paid_date": today})
    assert response.status_code == 201
    envelope = response.json()
    assert_same_shape(load("postman_mark_paid_response_201.json"), envelope, "paid",
                      exact_keys=True)
    done = call(http, sim, "GET", "/async/invoices/status/"
                f"{envelope['invoice_task_reference_number']}.json").json()
    assert_same_shape(load("postman_mark_paid_status_200.json"), done, "paid status",
                      exact_keys=True)
    again = call(http, sim, "POST", f"/async/invoices/{uuid}/paid.json").json()
    failed = call(http, sim, "GET", "/async/invoices/status/"
                  f"{again['invoice_task_reference_number']}.json").json()
    pm = load("postman_mark_paid_status_422.json")
    assert_same_shape(pm, failed, "paid 422", exact_keys=True)
    assert failed["invoice_errors"] == pm["invoice_errors"]


def test_simulator_ksef2_like_pm(http, sim):
    _envelope, status = run_task(http, sim, "invoices",
                                 load("postman_async_invoice_request_net.json"))
    uuid = status["invoice_uuid"]
    sent = call(http, sim, "POST", f"/ksef2/documents/{uuid}/send.json").json()
    assert_same_shape(load("postman_ksef2_send_response_sent.json"), sent, "send",
                      exact_keys=True)
    assert TASK_TS.match(sent["timestamps"]["request_created_at"])
    sim.wait_idle()
    done = call(http, sim, "GET", f"/ksef2/documents/{uuid}/status.json").json()
    pm = load("postman_ksef2_status_success.json")
    assert_same_shape(pm, done, "status", exact_keys=True)
    assert done["status_description"] == pm["status_description"]
    assert TASK_TS.match(done["timestamps"]["request_finished_at"])
    invoice = call(http, sim, "GET", f"/invoices/{uuid}.json").json()
    assert_same_shape(load("postman_invoice_show_200.json")["ksef_data"], invoice["ksef_data"],
                      "ksef_data", exact_keys=True)
    assert invoice["status"] == "sent"  # OL live: sent after KSeF success
    integration = call(http, sim, "GET", "/ksef2/integration.json").json()
    assert_same_shape(load("postman_ksef2_integration_active.json"), integration,
                      "integration", exact_keys=True)
    sim.configure(ksef_integration=False)
    assert call(http, sim, "GET", "/ksef2/integration.json").json()["active"] is False


@pytest.mark.parametrize("method, path", [
    ("GET", "/ksef/integration.json"),
    ("GET", "/ksef/documents/any-uuid/status.json"),
    ("POST", "/ksef/documents/any-uuid/send.json"),
    ("POST", "/ksef/documents/send.json"),
])
def test_simulator_retired_ksef1_answers_410_like_the_live_probe(http, sim, method, path):
    response = call(http, sim, method, path)
    assert response.status_code == 410
    assert response.json() == load("medusa_live_ksef1_integration_410.json")


def test_simulator_bulk_ksef2_send_like_pm(http, sim):
    _envelope, status = run_task(http, sim, "invoices",
                                 load("postman_async_invoice_request_net.json"))
    uuid = status["invoice_uuid"]
    first = call(http, sim, "POST", "/ksef2/documents/send.json",
                 json={"uuids": [uuid, "unknown"]}).json()
    again = call(http, sim, "POST", "/ksef2/documents/send.json", json={"uuids": [uuid]}).json()
    pm = load("postman_ksef_bulk_send_response.json")
    assert_same_shape(pm, first, "bulk", exact_keys=True)
    assert len(first["entities"]) == 1  # unknown uuids are left out
    assert again["entities"][0]["status"] == "rejected"
    assert again["entities"][0]["request_uuid"] is None


def test_simulator_list_count_like_the_live_capture(http, sim):
    """OL live: GET /clients.json?limit=2 answered count 10 with 2 rows (total 25)."""
    for index in range(24):
        call(http, sim, "POST", "/clients.json", json={"client": {
            "company_name": f"Firma {index}", "country": "PL"}})
    page = call(http, sim, "GET", "/clients.json", params={"limit": 2}).json()
    live = load("openlinker_fixture_clients_list_response.json")
    assert_same_shape(live["metainfo"], page["metainfo"], "metainfo", exact_keys=True)
    assert (page["metainfo"]["count"], page["metainfo"]["total_count"], len(page["entities"])) \
        == (live["metainfo"]["count"], live["metainfo"]["total_count"], len(live["entities"]))


@pytest.mark.parametrize("path, names", [
    ("/vat_exemptions.json", ["postman_vat_exemptions_list_200_first_page.json",
                              "postman_vat_exemptions_list_200_second_page.json"]),
    ("/gtus.json", ["postman_gtus_list_200_first_page.json"]),
    ("/documents_markings/incomes.json",
     ["postman_documents_markings_incomes_list_200_first_page.json",
      "postman_documents_markings_incomes_list_200_second_page.json"]),
    ("/transaction_kinds.json", ["postman_transaction_kinds_list_200.json"]),
])
def test_simulator_serves_the_recorded_reference_lists(http, sim, path, names):
    for page, name in enumerate(names):
        ours = call(http, sim, "GET", path, params={"offset": page * 10}).json()
        pm = load(name)
        assert_same_shape(pm, ours, path, exact_keys=True)
        assert ours["entities"] == pm["entities"]
        if path != "/vat_exemptions.json":  # the simulator knows 20 of the 112 exemptions
            assert ours["metainfo"]["total_count"] == pm["metainfo"]["total_count"]
        assert ours["metainfo"]["count"] == pm["metainfo"]["count"] or path.startswith("/vat")


def test_simulator_vat_rates_like_pm(http, sim):
    ours = call(http, sim, "GET", "/vat_rates.json", params={"limit": 100}).json()
    pm = load("postman_vat_rates_list_200.json")
    assert ours["entities"] == pm["entities"]


@pytest.mark.parametrize("reason, accepted", [
    (1, True), ("1", True), (37, True), (112, True), (0, False), ("zw", False), (-3, False)])
def test_simulator_accepts_plausible_exemption_ids(http, sim, reason, accepted):
    """Only 20 of the 112 real ids are recorded and they are sparse: any positive integer is
    taken (refusing an id we do not list would refuse valid real ids)."""
    body = load("postman_async_invoice_request_net.json")
    body["invoice"]["services"][0]["tax_symbol"] = "zw"
    body["invoice"]["vat_exemption_reason"] = reason
    _envelope, status = run_task(http, sim, "invoices", body, expect=201 if accepted else 422)
    if accepted:
        read = call(http, sim, "GET", f"/invoices/{status['invoice_uuid']}.json").json()
        assert read["vat_exemption_reason"] == int(reason)
    else:
        assert "vat_exemption_reason" in status["invoice_errors"]


def test_simulator_legal_fields_are_validated_and_read_back(http, sim):
    body = load("postman_async_invoice_request_net.json")
    body["invoice"].update(split_payment_type="required", sale_type="merchandise",
                           document_markings_ids=[3], transaction_kind_id=2)
    body["invoice"]["services"][0]["gtu_id"] = 12
    _envelope, status = run_task(http, sim, "invoices", body)
    read = call(http, sim, "GET", f"/invoices/{status['invoice_uuid']}.json").json()
    assert read["split_payment"] is True and read["split_payment_type"] == "required"
    assert read["document_markings_ids"] == [3] and read["transaction_kind_id"] == 2
    assert read["sale_type"] == "merchandise" and read["services"][0]["gtu_id"] == 12
    for change in ({"document_markings_ids": [99]}, {"transaction_kind_id": 9},
                   {"services": [dict(body["invoice"]["services"][0], gtu_id=14)]}):
        bad = load("postman_async_invoice_request_net.json")
        bad["invoice"].update(change)
        run_task(http, sim, "invoices", bad, expect=422)


def _receiver(sim, webhook_receiver):
    sim.configure(webhook_url=webhook_receiver.url, webhook_secret="s")
    assert sim.verify_webhook()["verified"]


def test_simulator_webhooks_like_pm(http, sim, webhook_receiver):
    _receiver(sim, webhook_receiver)
    body = load("postman_async_invoice_request_net.json")
    _envelope, status = run_task(http, sim, "invoices", body)
    success = webhook_receiver.wait_for(1, name="async_invoice_creation_success")[0]["json"]
    pm = load("postman_webhook_async_invoice_creation_success.json")
    assert_same_shape(pm, success, "success", exact_keys=True)
    assert EVENT_TS.match(success["event"]["created_at"])
    assert TASK_TS.match(success["resource"]["timestamps"]["task_created_at"])
    draft = webhook_receiver.wait_for(1, name="draft_invoice_created")[0]["json"]
    pm_draft = load("postman_webhook_draft_invoice_created_full.json")
    assert_same_shape(pm_draft, draft, "draft")
    assert "services" not in draft["resource"] and "services" not in pm_draft["resource"]
    del body["invoice"]["payment_method"]
    run_task(http, sim, "invoices", body, expect=422)
    error = webhook_receiver.wait_for(1, name="async_invoice_creation_error")[0]["json"]
    assert_same_shape(load("postman_webhook_async_invoice_creation_error.json"), error,
                      "error", exact_keys=True)
    sim.configure(ksef_outcome="error")
    call(http, sim, "POST", f"/ksef2/documents/{status['invoice_uuid']}/send.json")
    ksef = webhook_receiver.wait_for(1, name="send_to_ksef_error")[0]["json"]
    assert_same_shape(load("postman_webhook_send_to_ksef_error.json"), ksef, "ksef",
                      exact_keys=True)
    live = load("openlinker_live_webhook_send_to_ksef_success_resource.json")
    assert set(live) == set(ksef["resource"])


def test_simulator_clock_follows_polish_time_and_can_be_moved(simulator_launcher):
    """At 23:30 UTC Poland is already on the next day: the simulator (like inFakt) says so;
    with --timezone UTC it keeps the UTC date. Checked by starting its clock at 23:30 UTC."""
    utc_day = datetime.datetime.now(datetime.timezone.utc).date()
    instant = f"{utc_day.isoformat()}T23:30:00Z"
    polish = simulator_launcher("--now", instant, "--quiet")
    utc = simulator_launcher("--now", instant, "--timezone", "UTC", "--quiet")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(polish.root_url + "/_simulator/clock", timeout=5) as response:
        clock = json.loads(response.read())
    assert clock["timezone"] == "Europe/Warsaw"
    assert clock["today"] == (utc_day + datetime.timedelta(days=1)).isoformat()
    assert clock["now"].startswith(clock["today"] + "T00:3")
    with opener.open(utc.root_url + "/_simulator/clock", timeout=5) as response:
        clock = json.loads(response.read())
    assert clock["today"] == utc_day.isoformat() and clock["now"].endswith("+00:00")


def test_simulator_clock_injection_in_process():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "infakt_simulator_clock", Path(__file__).resolve().parents[2] / "tools"
        / "infakt_simulator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    moment = datetime.datetime(2026, 11, 24, 23, 30, tzinfo=datetime.timezone.utc)
    sim = module.InfaktSimulator(port=0, clock=lambda: moment)
    assert sim.today() == datetime.date(2026, 11, 25)
    sim.configure(timezone="UTC")
    assert sim.today() == datetime.date(2026, 11, 24)
    sim.configure(timezone="Europe/Warsaw", clock_offset=-3600)
    assert sim.today() == datetime.date(2026, 11, 24)
    with pytest.raises(ValueError):
        sim.configure(timezone="Mars/Olympus")
