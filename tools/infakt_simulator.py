#!/usr/bin/env python3
"""Local simulator of the inFakt REST API v3 (standard library only).

It follows ``infakt-api.md`` (the project's reference of the documented inFakt API), not any
particular client.  Run it from a shell::

    python3 tools/infakt_simulator.py --port 8765 --api-key my-key --task-delay 0.5

which serves ``http://127.0.0.1:8765/api/v3`` (``/v3`` is accepted as an alias; ``make
simulator`` runs it on port 8070 with the key ``sim-api-key``), or use it in-process::

    with InfaktSimulator(port=0, api_keys=("k",), task_delay=0) as sim:
        requests.get(sim.base_url + "/invoices.json", headers={"X-inFakt-ApiKey": "k"})

Control endpoints (no API key, never rate limited) live under ``/_simulator/``: ``state``,
``config``, ``reset``, ``faults``, ``webhooks/verify``, ``health``, ``clock``.  Nothing is done
at import time and all state lives on the :class:`InfaktSimulator` instance.

It follows real inFakt as recorded (the examples in ``tests/fixtures/infakt_examples``; when the
simulator and a recorded example disagree, the example wins): KSeF 1.0 paths answer 410, KSeF
goes through ``/ksef2/``, corrective rows are priced from ``unit_net_price`` only, inline buyers
become clients, ``metainfo.count`` is reported as inFakt does, advance and final invoices have
their own endpoints, and an async mark-paid sends the async mark-paid webhook events rather
than ``invoice_paid``.

Dates follow Polish time, as inFakt's do (``--timezone``/``timezone`` changes the zone, e.g.
``UTC``); ``--now 2026-11-24T23:30:00Z`` (or ``clock_offset``, or ``clock=`` in process) moves
the clock, and ``GET /_simulator/clock`` tells which day the simulator thinks it is.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

try:  # pragma: no cover - depends on the system tz database
    from zoneinfo import ZoneInfo
except ImportError:  # pragma: no cover
    ZoneInfo = None

# inFakt is a Polish service: its dates ("today", numbering months, KSeF numbers) follow
# Polish time. The simulator does the same by default; ``timezone`` (config, --timezone) can
# make it use UTC or any other zone, and ``clock_offset`` / ``clock=`` move its clock.
DEFAULT_TIMEZONE = "Europe/Warsaw"

__all__ = ["InfaktSimulator", "compute_signature", "main"]

# --------------------------------------------------------------------------------------------
# Constants (immutable)
# --------------------------------------------------------------------------------------------

API_PREFIXES = ("/api/v3", "/v3")
CONTROL_PREFIX = "/_simulator"
API_KEY_HEADER = "X-inFakt-ApiKey"

SCOPE_READ = "api:invoices:read"
SCOPE_WRITE = "api:invoices:write"
SCOPE_KSEF = "api:ksef:integration:write"
ALL_SCOPES = (
    "api:invoices:read",
    "api:invoices:write",
    "api:accounting:read",
    "api:accounting:write",
    "api:sensitive:bank_accounts:write",
    "api:costs:read",
    "api:costs:write",
    "api:ksef:integration:write",
)

PAYMENT_METHODS = frozenset((
    "transfer", "cash", "card", "barter", "check", "bill_of_sale", "delivery", "compensation",
    "accredited", "paypal", "instalment_sale", "payu", "tpay", "przelewy24", "dotpay", "other",
))
TAX_RATES = {
    "23": 23, "8": 8, "5": 5, "0": 0, "zw": 0, "np": 0, "oo": 0, "22": 22, "7": 7, "3": 3,
}
DOCUMENT_TYPES = frozenset((
    "original_copy", "original", "copy", "original_duplicate", "copy_duplicate", "duplicate",
    "regular", "double_regular",
))
LOCALES = frozenset(("pl", "en", "pe"))
INVOICE_STATUSES = frozenset(("draft", "sent", "printed", "paid"))
INVOICE_KINDS = frozenset(("vat", "proforma"))
ACTIVITY_KINDS = frozenset(("private_person", "self_employed", "other_business"))
COMPANY_KINDS = frozenset(("self_employed", "other_business"))
CORRECTION_REASONS = {
    "mistake": "Błąd rachunkowy lub inna oczywista omyłka",
    "other": "Inne: np. zwrot, rabat",
}
CURRENCIES = frozenset((
    "PLN", "EUR", "USD", "GBP", "CHF", "CZK", "DKK", "NOK", "SEK", "HUF", "RON", "BGN", "UAH",
    "JPY", "CAD", "AUD", "CNY", "HRK", "ISK", "TRY", "RUB", "ILS", "MXN", "BRL", "ZAR", "INR",
    "KRW", "SGD", "HKD", "NZD", "THB", "MYR", "PHP", "IDR", "CLP",
))
# inFakt's "Nowy webhook" form offers nine events (OL screenshot if4). PM names seven; the two
# async mark-paid ones have no documented name: the simulator uses OL's guesses.
EVENT_MARK_PAID_ASYNC = "invoice_marked_as_paid_via_async_api"
EVENT_MARK_PAID_ASYNC_ERROR = "invoice_marking_as_paid_error_via_async_api"
WEBHOOK_EVENTS = (
    "async_invoice_creation_success",
    "async_invoice_creation_error",
    "send_to_ksef_success",
    "send_to_ksef_error",
    "invoice_paid",
    "invoice_deleted",
    "draft_invoice_created",
    EVENT_MARK_PAID_ASYNC,
    EVENT_MARK_PAID_ASYNC_ERROR,
)
INVOICE_RESOURCE_EVENTS = frozenset(("invoice_paid", "invoice_deleted", "draft_invoice_created"))
WEBHOOK_STATES = frozenset(("to_verify", "active", "disabled", "disabled_by_infakt"))
KSEF_OUTCOMES = frozenset(("success", "error", "pending-forever", "pending"))

DESC = {
    100: "Zlecenie przyjęte",
    120: "Zlecenie czeka na przetworzenie",
    140: "Zlecenie jest w trakcie przetwarzania",
    201: "Faktura stworzona",
    200: "Faktura została oznaczona jako zapłacona",
}
DESC_CREATE_FAILED = "Nie udało się stworzyć faktury"
DESC_PAID_FAILED = "Nie udało się oznaczyć faktury jako zapłaconej"

MSG_NOT_FOUND = "Zasób którego szukasz nie został znaleziony."
MSG_NO_KSEF = "Użytkownik nie jest zintegrowany z KSeF."
MSG_PAYMENT_METHOD = "Proszę wybrać odpowiedni sposób płatności."
MSG_ALREADY_PAID = "Faktura już została oznaczona jako zapłacona."
MSG_DUPLICATE_NUMBER = "Numer faktury jest już zajęty."
MSG_UNAUTHORIZED = "Brak autoryzacji: nieprawidłowy lub brakujący klucz API."
MSG_PLAN = "Twój plan nie obejmuje dostępu do API."
MSG_RATE_LIMITED = "Przekroczono limit zapytań. Spróbuj ponownie później."
MSG_BAD_JSON = "Nieprawidłowy format JSON w treści zapytania."
MSG_FAULT = "Usługa chwilowo niedostępna (błąd wstrzyknięty przez symulator)."
# Live body of the retired KSeF 1.0 namespace, HTTP 410 (MED live probe, kept as MED pinned it,
# without diacritics).
MSG_KSEF1_GONE = "API KSeF 1.0 zostalo wylaczone. Prosze przejsc na KSeF 2.0."
# KSeF texts as PM shows them (KSeF 2.0 › Wysyłka faktur).
KSEF_DESC_SENT = "Faktura została wysłana do przetworzenia w KSeF."
KSEF_DESC_SUCCESS = "Faktura została przetworzona."
KSEF_DESC_REJECTED = "Faktura nie może zostać wysłana do KSeF."

# Kinds of income documents: our name -> (collection path, body wrapper, task invoice_kind,
# ksef_data invoice_kind, read-back kind, number infix). PM: "Faktury VAT", "Faktury
# korygujące VAT", "Faktury zaliczkowe" (…/ZAL/…, kind "advance"), "Faktury końcowe"
# (…/RZL/…). The final task's invoice_kind "final_invoice" follows the advance one.
DOC_KINDS = {
    "invoice": ("invoices", "invoice", "invoice", "vat", "vat", ""),
    "corrective": ("corrective_invoices", "corrective_invoice", "corrective_invoice",
                   "corrective_invoice", "correction", "/KOR"),
    "advance": ("advance_invoices", "advance_invoice", "advance_invoice", "advance",
                "advance", "/ZAL"),
    "final": ("final_invoices", "final_invoice", "final_invoice", "final", "final", "/RZL"),
}
TASK_KIND_TO_DOC = {spec[2]: name for name, spec in DOC_KINDS.items()}
DEFAULT_PAGE_SIZE = 10

# GET /vat_rates.json as PM shows it ("rate" is a string).
VAT_RATES = (
    (7, "23", "23.0", "23%", "2011-01-01", None),
    (1, "22", "22.0", "22%", "1900-01-01", "2010-12-31"),
    (8, "8", "8.0", "8%", "2011-01-01", None),
    (2, "7", "7.0", "7%", "1900-01-01", "2010-12-31"),
    (9, "5", "5.0", "5%", "2011-01-01", None),
    (3, "3", "3.0", "3%", "1900-01-01", "2010-12-31"),
    (4, "0", "0.0", "0%", "1900-01-01", None),
    (6, "zw", "0.0", "zw.", "1900-01-01", None),
    (5, "np", "0.0", "np.", "1900-01-01", None),
    (36, "oo", "0.0", "o.o.", "1900-01-01", None),
)
# The first two pages of GET /vat_exemptions.json as PM shows them (112 entries in total, sparse
# integer ids; entity {id, description, legal_basis_rule, legal_basis_source}).
_UST = "Ustawa o podatku od towarów i usług"
VAT_EXEMPTIONS = tuple(
    {"id": i, "description": d, "legal_basis_rule": r, "legal_basis_source": _UST}
    for i, d, r in (
        (1, "zwolnienie podmiotowe", "art. 113 ust. 1 i 9"),
        (3, "towary wykorzystywane w działalności zwolnionej", "art. 43. ust. 1 pkt 2"),
        (4, "korepetycje udzielane przez nauczycieli", "art. 43 ust. 1 pkt 27"),
        (5, "nauczanie języków obcych", "art. 43. ust. 1 pkt 28"),
        (6, "szkolenia BHP i inne wynikające z przepisów", "art. 43. ust. 1 pkt 29 lit. a"),
        (7, "zakwaterowanie w internacie", "art. 43 ust. 1 pkt 30 lit. a"),
        (8, "zakwaterowanie w domu studenckim", "art. 43. ust. 1 pkt 30 lit. b"),
        (9, "usługi sportowe realizowane przez kluby sportowe i podobne",
         "art. 43. ust. 1 pkt 32"),
        (10, "usługi kulturalne świadczone przez instytucje kultury",
         "art. 43. ust. 1 pkt 33 lit. a"),
        (11, "artyści wynagradzani w formie honorariów", "art. 43. ust. 1 pkt 33 lit. b"),
        (12, "kursy na prawo jazdy za wyjątkiem kursów na kat. A", "art. 43 ust. 1 pkt 29"),
        (13, "szkolenia zawodowe finansowane ze środków publicznych",
         "art. 43. ust. 1 pkt 29 lit. c"),
        (14, "najem nieruchomości wyłącznie na cele mieszkaniowe", "art. 43. ust. 1 pkt 36"),
        (15, "usługi ubezpieczeniowe i pośrednictwo w ubezpieczeniach",
         "art. 43. ust. 1 pkt 37"),
        (16, "udzielanie kredytów, pożyczek oraz pośrednictwo", "art. 43 ust. 1 pkt. 38"),
        (17, "udzielanie poręczeń oraz gwarancji finansowych", "art. 43. ust. 1 pkt 39"),
        (19, "usługi techników dentystycznych", "art. 43. ust. 1 pkt. 14"),
        (20, "przekazanie żywności na rzecz OPP", "art. 43. ust. 1 pkt 16"),
        (21, "usługi kantorowe", "art. 43. ust. 1 pkt 7"),
        (22, "dostawa terenów niezabudowanych (innych niż tereny budowlane)",
         "art. 43 ust. 1 pkt. 9"),
    )
)
# Only 20 of the 112 real entries are recorded, and their ids are sparse: refusing an id the
# simulator does not list would turn away ids that real inFakt accepts. So any positive integer
# (or digit string, which Rails coerces) is accepted as vat_exemption_reason; junk is refused.
VAT_EXEMPTION_MAX_ID = 100000

# GET /gtus.json (PM "Kody GTU": 13 entries, ids 1-13, first page and the "selected" example).
# The GTU codes are fixed by law (GTU_01..GTU_13), so other ids are refused. GTU_13's texts are
# not in any recorded example (PM shows 10 of 13 on its first page plus 11 and 12 elsewhere);
# they are written here from the law.
# GET /gtus.json: PM "Kody GTU" shows ids 1-10 on its first page (total 13) and 11, 12 in its
# "Listuj wybrane" example; the texts are PM's. The GTU codes are fixed by law (GTU_01..GTU_13),
# so other ids are refused. GTU_13's texts are in no recorded example: written here.
GTUS = (
    (1,
     "Dostawa napojów alkoholowych",
     "Dostawa napojów alkoholowych - alkoholu etylowego, piwa, wina, napojów "
     "fermentowanych i wyrobów pośrednich, w rozumieniu przepisów o podatku "
     "akcyzowym."),
    (2,
     "Dostawa paliw silnikowych",
     "Dostawa towarów, o których mowa w art. 103 ust. 5aa ustawy."),
    (3,
     "Dostawa oleju opałowego, olejów smarownych oraz smarów plastycznych itp.",
     "Dostawa oleju opałowego w rozumieniu przepisów o podatku akcyzowym oraz olejów "
     "smarowych, pozostałych olejów o kodach CN od 2710 19 71 do 2710 19 99, z "
     "wyłączeniem wyrobów o kodzie CN 2710 19 85 (oleje białe, parafina ciekła) oraz "
     "smarów plastycznych zaliczanych do kodu CN 2710 19 99, olejów smarowych o "
     "kodzie CN 2710 20 90, preparatów smarowych objętych pozycją CN 3403, z "
     "wyłączeniem smarów plastycznych objętych tą pozycją."),
    (4,
     "Dostawa wyrobów tytoniowych oraz wyborów nowatorskich",
     "Dostawa wyrobów tytoniowych, suszu tytoniowego, płynu do papierosów "
     "elektronicznych i wyrobów nowatorskich, w rozumieniu przepisów o podatku "
     "akcyzowym."),
    (5,
     "Dostawa odpadów",
     "Dostawa odpadów - wyłącznie określonych w poz. 79-91 załącznika nr 15 do "
     "ustawy."),
    (6,
     "Dostawa urządzeń elektronicznych oraz części i materiałów do nich",
     "Dostawa urządzeń elektronicznych oraz części i materiałów do nich, wyłącznie "
     "określonych w poz. 7-9, 59-63, 65, 66, 69 i 94-96 załącznika nr 15 do ustawy."),
    (7,
     "Dostawa pojazdów oraz części samochodowych",
     "Dostawa pojazdów oraz części samochodowych o kodach wyłącznie CN 8701 - 8708 "
     "oraz CN 8708 10."),
    (8,
     "Dostawa metali szlachetnych oraz nieszlachetnych",
     "Dostawa metali szlachetnych oraz nieszlachetnych - wyłącznie określonych w "
     "poz. 1-3 załącznika nr 12 do ustawy oraz w poz. 12-25, 33-40, 45, 46, 56 i 78 "
     "załącznika nr 15 do ustawy."),
    (9,
     "Dostawa leków oraz wyrobów medycznych",
     "Dostawa leków oraz wyrobów medycznych - produktów leczniczych, środków "
     "spożywczych specjalnego przeznaczenia żywieniowego oraz wyrobów medycznych, "
     "objętych obowiązkiem zgłoszenia, o którym mowa w art. 37av ust. 1 ustawy z "
     "dnia 6 września 2001 r. - Prawo farmaceutyczne (Dz. U. z 2019 r. poz. 499, z "
     "późn. zm.)."),
    (10,
     "Dostawa budynków, budowli i gruntów.",
     "Dostawa budynków, budowli i gruntów."),
    (11,
     "Świadczenie usług w zakresie przenoszenia uprawnień do emisji gazów "
     "cieplarnianych",
     "Świadczenie usług w zakresie przenoszenia uprawnień do emisji gazów "
     "cieplarnianych, o których mowa w ustawie z dnia 12 czerwca 2015 r. o systemie "
     "handlu uprawnieniami do emisji gazów cieplarnianych (Dz. U. z 2018 r. poz. "
     "1201 i 2538 oraz z 2019 r. poz. 730, 1501 i 1532)."),
    (12,
     "Świadczenie usług doradczych, księgowych, prawnych, zarządczych, "
     "szkoleniowych, marketingowych, firm centralnych, reklamowych, badania rynku i "
     "opinii publicznej, w zakresie badań naukowych i prac rozwojowych.",
     "Świadczenie usług o charakterze niematerialnym - wyłącznie: doradczych, "
     "księgowych, prawnych, zarządczych, szkoleniowych, marketingowych, firm "
     "centralnych (head offices), reklamowych, badania rynku i opinii publicznej, w "
     "zakresie badań naukowych i prac rozwojowych."),
    (13,
     "Świadczenie usług transportowych i gospodarki magazynowej",
     "Świadczenie usług transportowych i gospodarki magazynowej (tekst symulatora)."),
)
# GET /documents_markings/incomes.json (PM "Oznaczenia dokumentów przychodowych", all 13). The
# related-party marker TP is id 3.
DOCUMENT_MARKINGS = (
    (1, "SW", "Sprzedaż wysyłkowa",
     "Sprzedaż wysyłkowa z terytorium kraju (sprzedawcą jest podatnik VAT, nabywcą jest "
     "kontrahent z kraju UE, który jest podatnikiem nie zarejestrowanym do UE lub inny "
     "nievatowiec); oznaczenie daję informację US w zakresie miejsca opodatkowania transakcji "
     "(limit sprzedaży wysyłkowej)"),
    (2, "EE", "Usługi elektroniczne", "Usługi elektroniczne"),
    (3, "TP", "Transakcja powiązana",
     "Transakcja powiązana (istnieje powiązanie pomiędzy dostawcą a nabywcą)"),
    (4, "TT_WNT", "WNT", "WNT dokonane przez drugiego w kolejności podatnika"),
    (5, "TT_D", "Export towarów",
     "Dostawa towarów poza terytorium kraju dokonana przez drugiego w kolejności podatnika"),
    (6, "MR_T", "Marża-turystyka", "Usługi turystyki MARŻA"),
    (7, "MR_UZ", "Marża",
     "Usługi sprzedaży w procedurze MARŻA (z wyłączeniem usług turystycznych)"),
    (8, "I_42", "Import 42", "WDT następująca po imporcie w procedurze 42"),
    (9, "I_63", "Import 63", "WDT następująca po imporcie w procedurze 63"),
    (10, "B_SPV", "Transfer bonu", "Transfer bonu jednego przeznaczenia"),
    (11, "B_SPV_DOSTAWA", "Dostawy towarów i usług dotyczące bonu",
     "Dostawa towarów oraz świadczenie usług, których dotyczy bon jednego przeznaczenia"),
    (12, "B_MPV_PROWIZJA", "Pośrednictwo transferu bonu",
     "Świadczenie usług pośrednictwa oraz innych usług dotyczących transferu bonu różnego "
     "przeznaczenia"),
    (13, "WSTO_EE", "Wewnątrzwspólnotowa sprzedaż towarów na odległość, usługi elektroniczne",
     "Wewnątrzwspólnotowa sprzedaż towarów na odległość, usługi elektroniczne"),
)
# GET /transaction_kinds.json (PM "Rodzaje transakcji", all 5).
TRANSACTION_KINDS = (
    (1, "Nieodpłatne przekazanie towarów", "free_transfer_of_goods"),
    (2, "Sprzedaż bezrachunkowa", "nonaccounting_sales"),
    (3, "Spis z natury dla celów VAT", "inventory_for_vat"),
    (4, "Zwrot ulgi na kasę fiskalną", "refund_cash_register_tax_relief"),
    (5, "Zakup nowego środka transportu z innego kraju UE", "car_purchase_from_eu"),
)

INVOICE_FIELDS = (
    "number", "kind", "currency", "vat_exchange_date_kind", "invoice_date", "sale_date",
    "payment_date", "paid_date", "invoice_date_kind", "continuous_service_start_on",
    "continuous_service_end_on", "status", "payment_method", "bank_account", "bank_name",
    "swift", "split_payment_type", "notes", "recipient_signature", "seller_signature",
    "receipt_number", "bdo_code", "client_id", "client_company_name", "client_first_name",
    "client_last_name", "client_business_activity_kind", "client_street",
    "client_street_number", "client_flat_number", "client_city", "client_post_code",
    "client_tax_code", "client_country", "sale_type", "vat_exemption_reason",
    "transaction_kind_id", "document_markings_ids", "not_income", "third_party_addresses",
    "local_government_recipient_address", "transaction_terms",
)
ADVANCE_FIELDS = INVOICE_FIELDS + ("advance_date", "advance_price", "previous_advance_id")
FINAL_FIELDS = INVOICE_FIELDS + ("previous_advance_id",)
CORRECTIVE_FIELDS = INVOICE_FIELDS + (
    "corrected_invoice_number", "corrected_invoice_date", "corrected_invoice_uuid",
    "correction_reason", "confirmation", "confirmation_date", "sale_date_before_correction",
    "continuous_service_start_on_before_correction",
    "continuous_service_end_on_before_correction", "check_correction_obligation",
)
SERVICE_FIELDS = (
    "name", "tax_symbol", "unit", "quantity", "unit_net_price", "net_price", "gross_price",
    "tax_price", "pkwiu", "cn", "pkob", "symbol", "gtu_id", "discount",
    "unit_net_price_before_discount", "flat_rate_tax_symbol", "vat_date_value",
    "occasional_sale",
)
CLIENT_FIELDS = (
    "company_name", "first_name", "last_name", "business_activity_kind", "nip", "street",
    "street_number", "flat_number", "city", "postal_code", "country", "email", "phone_number",
    "web_site", "payment_method", "days_to_payment", "invoice_note", "note", "receiver",
    "same_forward_address", "mailing_company_name", "mailing_street", "mailing_city",
    "mailing_postal_code",
)
CLIENT_TO_INVOICE = (
    ("company_name", "client_company_name"),
    ("first_name", "client_first_name"),
    ("last_name", "client_last_name"),
    ("business_activity_kind", "client_business_activity_kind"),
    ("street", "client_street"),
    ("street_number", "client_street_number"),
    ("flat_number", "client_flat_number"),
    ("city", "client_city"),
    ("postal_code", "client_post_code"),
    ("nip", "client_tax_code"),
    ("country", "client_country"),
)
INVOICE_FILTER_FIELDS = frozenset((
    "number", "paid_date", "invoice_date", "sale_date", "payment_date", "status", "kind",
    "client_id", "currency", "uuid", "client_company_name", "client_tax_code", "clean_client_nip",
    "gross_price", "id",
))
CORRECTIVE_FILTER_FIELDS = INVOICE_FILTER_FIELDS | {"corrected_invoice_number"}
FILTER_FIELDS = {
    "invoice": INVOICE_FILTER_FIELDS, "corrective": CORRECTIVE_FILTER_FIELDS,
    "advance": INVOICE_FILTER_FIELDS | {"previous_advance_id"},
    "final": INVOICE_FILTER_FIELDS | {"previous_advance_id"},
}
CLIENT_FILTER_FIELDS = frozenset((
    "id", "uuid", "company_name", "first_name", "last_name", "nip", "clean_nip", "email", "city",
    "country",
))
PREDICATES = ("_lteq", "_gteq", "_null", "_cont", "_eq", "_lt", "_gt")

FAULT_TYPES = (
    "fail_next", "drop_after_create", "drop_before_processing", "latency", "timeout_next",
)
CREATE_ROUTES = frozenset(("async_create_invoice", "async_create_corrective",
                           "async_create_advance", "async_create_final"))

VIEW_FIRST = ("id", "uuid", "number", "kind", "status")
# What a list row leaves out of the document as read on its own (PM's list examples next to
# its show examples: no ksef_data, extensions, transaction_terms; the KSeF number lives in
# ksef_data): the KSeF state of a document is read by its uuid.
LIST_OMITTED = frozenset(("ksef_data", "ksef_number", "extensions", "transaction_terms"))

MAX_LOG = 5000


def _default_config():
    """A fresh default configuration (a new dict every call, nothing shared)."""
    return {
        "api_keys": [{"key": "sim-api-key", "scopes": None, "plan_api": True}],
        "task_delay": 0.5,
        "rate_window": 60.0,
        "rate_limit_get": 300,
        "rate_limit_write": 150,
        "rate_limit_status": 429,
        "retry_after": None,
        "ksef_integration": True,
        "ksef_outcome": "success",
        "ksef_delay": 0.5,
        "ksef_pending_status": "pending",
        "ksef_error_description": ("21416:Wersja dokumentu niezgodna z zadeklarowaną podczas "
                                   "nawiązywania sesji."),
        "seller_nip": "7343521162",
        "bank_accounts": [
            {
                "id": 1,
                "account_number": "61109010140000071219812874",
                "bank_name": "Santander Bank Polska",
                "swift": "WBKPPLPP",
                "currency": "PLN",
                "custom_name": "Konto główne",
                "default": True,
                "verified": True,
            }
        ],
        "seed_clients": [],
        "default_vat_exemption_reason": None,
        "webhook_url": None,
        "webhook_secret": None,
        "webhook_events": list(WEBHOOK_EVENTS),
        "webhook_data": "full",
        "webhook_async_corrective": True,
        "webhook_retry_delay": 1.0,
        "webhook_require_verification": True,
        "webhook_max_failures": 10,
        "webhook_timeout": 5.0,
        "timezone": DEFAULT_TIMEZONE,
        "clock_offset": 0.0,
        "quiet": True,
    }


CONFIG_KEYS = frozenset(_default_config()) | {"webhook_status"}


# --------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------


def compute_signature(secret, body):
    """Hex HMAC-SHA256 of ``body`` (bytes) with ``secret`` — the ``X-Infakt-Signature`` value."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


_ZONES = {}


def _zone(name):
    """The tzinfo of ``name``: ``UTC``, ``local`` (the machine's zone, None) or an IANA name
    such as ``Europe/Warsaw``; ValueError for an unknown zone."""
    name = str(name or DEFAULT_TIMEZONE).strip()
    if name.upper() in ("UTC", "Z", "ETC/UTC"):
        return dt.timezone.utc
    if name.lower() == "local":
        return None
    if name not in _ZONES:
        if ZoneInfo is None:  # pragma: no cover - Python without zoneinfo
            raise ValueError(f"time zone {name!r} needs the zoneinfo module")
        try:
            _ZONES[name] = ZoneInfo(name)
        except Exception as exc:  # noqa: BLE001 - ZoneInfoNotFoundError, bad keys
            raise ValueError(f"unknown time zone {name!r}") from exc
    return _ZONES[name]


def _real_utc_now():
    return dt.datetime.now(dt.timezone.utc)


def _parse_instant(value):
    """An aware datetime from an ISO string (``Z`` allowed; naive means UTC)."""
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment


def _ts_task(moment):
    return moment.strftime("%Y-%m-%d %H:%M:%S %z")


def _ts_iso(moment):
    return moment.isoformat(timespec="milliseconds")


def _parse_date(value):
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _round_half_up(value):
    return int(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _to_decimal(value):
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = Decimal(str(value).strip().replace(",", "."))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _to_grosze(value):
    """Integer grosze or raise ValueError (floats/strings only when integral)."""
    if isinstance(value, bool):
        raise ValueError(value)  # noqa: TRY004 - callers handle ValueError only
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ValueError(value)


def _dec_str(value):
    """Decimal read back as Rails prints it: ``"0.0"``, ``"12.5"``."""
    value = value.normalize()
    if value == value.to_integral_value():
        return f"{int(value)}.0"
    return format(value, "f")


def _truthy(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes", "y", "on")
    return bool(value)


def _text(value):
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))


def _digits(value):
    return re.sub(r"\D", "", value if isinstance(value, str) else str(value or ""))


def _norm_account(value):
    value = re.sub(r"[\s-]", "", str(value or "")).upper()
    if value.startswith("PL") and value[2:].isdigit():
        value = value[2:]
    return value


def _add_error(errors, field, message):
    bucket = errors.setdefault(field, [])
    if message not in bucket:
        bucket.append(message)


def _format_money(grosze):
    sign = "-" if grosze < 0 else ""
    grosze = abs(int(grosze))
    return f"{sign}{grosze // 100},{grosze % 100:02d}"


def _pdf_text(value):
    """Text safe for a WinAnsi Type1 font string literal."""
    out = []
    for char in str(value):
        try:
            char.encode("cp1252")
            out.append(char)
            continue
        except UnicodeEncodeError:
            pass
        char = {"ł": "l", "Ł": "L"}.get(char, char)
        char = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii")
        out.append(char or "?")
    text = "".join(out)
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def build_pdf(lines):
    """A minimal but valid one-page PDF (correct xref offsets) showing ``lines``."""
    ops = ["BT", "/F1 11 Tf", "15 TL", "50 790 Td"]
    for line in lines:
        ops.append(f"({_pdf_text(line)}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("cp1252")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Producer (inFakt simulator) /Title (%s) >>" % _pdf_text(lines[0]).encode("cp1252"),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\n" % (
        len(objects) + 1, len(objects))
    out += b"startxref\n%d\n%%%%EOF" % xref_at
    return bytes(out)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Webhook receivers must answer 200/201 themselves: never follow redirects."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _http_post(url, body, headers, timeout):
    """POST raw bytes; returns (status or None, response bytes, error text or None)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(65536), None
    except urllib.error.HTTPError as exc:
        try:
            data = exc.read(65536)
        except Exception:  # noqa: BLE001
            data = b""
        return exc.code, data, None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        return None, b"", f"{type(exc).__name__}: {exc}"


class _HTTPError(Exception):
    def __init__(self, status, payload=None, headers=None):
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.headers = headers or {}


class _Response:
    __slots__ = ("body", "content_type", "delay_after", "drop", "headers", "reset", "status")

    def __init__(self, status, body=b"", content_type="application/json; charset=utf-8",
                 headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.drop = False
        self.reset = False
        self.delay_after = 0.0


def _json_response(status, payload, headers=None):
    body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return _Response(status, body, headers=headers)


def _error(status, message, headers=None):
    return _HTTPError(status, {"error": message}, headers)


class _Request:
    __slots__ = ("body", "headers", "ip", "method", "path", "query", "query_string", "route")

    def __init__(self, method, raw_path, headers, body, ip):
        parts = urllib.parse.urlsplit(raw_path)
        self.method = method.upper()
        self.path = parts.path or "/"
        self.query_string = parts.query
        self.query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.ip = ip
        self.route = None

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self):
        """The JSON body (a dict); empty body gives {}; malformed gives HTTP 400."""
        if not self.body or not self.body.strip():
            return {}
        try:
            data = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _error(400, MSG_BAD_JSON) from None
        if not isinstance(data, dict):
            raise _error(400, MSG_BAD_JSON)
        return data


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator = None


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "inFaktSimulator/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this

    def setup(self):
        super().setup()
        try:  # headers and body go out in separate writes: avoid Nagle/delayed-ACK stalls
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.simulator._track_connection(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.simulator._track_connection(self.connection, False)

    def log_message(self, format, *args):
        return

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _dispatch(self):
        simulator = self.server.simulator
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._write(_json_response(400, {"error": "Nieprawidłowa treść zapytania."}))
            return
        request = _Request(self.command, self.path, self.headers, body, self.client_address[0])
        response = simulator._handle_http(request)
        if response.drop:
            self.close_connection = True
            if response.reset:
                try:
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            return
        self._write(response)

    def _write(self, response):
        try:
            self.send_response(response.status)
            if response.status not in (204, 304):
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if response.status not in (204, 304) and self.command != "HEAD":
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------


class InfaktSimulator:
    """An in-memory inFakt API v3 served over real HTTP on loopback.

    ``InfaktSimulator(host='127.0.0.1', port=0, api_keys=('sim-api-key',), task_delay=0.5,
    rate_window=60.0, quiet=True, **config)``; see :meth:`configure` for the config keys.
    """

    @staticmethod
    def _build_routes():
        """``(method, pattern, name, handler, scope, fixed kwargs)`` of every API route.

        ``name`` is what the request log shows; ``handler`` the ``_r_<handler>`` method.
        The four kinds of income documents share their handlers (``kind`` argument).
        """
        routes = []
        for kind, (coll, *_rest) in DOC_KINDS.items():
            fixed = {"kind": kind}
            short = "invoice" if kind == "invoice" else kind
            routes += [
                ("POST", rf"/async/{coll}", f"async_create_{short}", "async_create",
                 SCOPE_WRITE, fixed),
                ("GET", rf"/async/{coll}/status/(?P<ref>[^/]+)", f"{short}_task_status",
                 "task_status", SCOPE_READ, fixed),
                ("GET", rf"/{coll}", f"list_{coll}", "list_documents", SCOPE_READ, fixed),
                ("GET", rf"/{coll}/next_number", f"{short}_next_number", "next_number",
                 SCOPE_READ, fixed),
                ("GET", rf"/{coll}/(?P<uuid>[^/]+)", f"get_{short}", "get_document", SCOPE_READ,
                 fixed),
                ("DELETE", rf"/{coll}/(?P<uuid>[^/]+)", f"delete_{short}", "delete_document",
                 SCOPE_WRITE, fixed),
                ("GET", rf"/{coll}/(?P<uuid>[^/]+)/pdf", f"{short}_pdf", "pdf", SCOPE_READ,
                 fixed),
                ("POST", rf"/{coll}/(?P<uuid>[^/]+)/send_to_ksef", f"{short}_send_to_ksef",
                 "send_to_ksef", SCOPE_WRITE, fixed),
                ("POST", rf"/{coll}/(?P<uuid>[^/]+)/deliver_via_email", f"{short}_email",
                 "email", SCOPE_WRITE, fixed),
            ]
            if kind != "invoice":  # invoices are marked paid through the async API
                routes.append(("POST", rf"/{coll}/(?P<uuid>[^/]+)/paid", f"{short}_paid",
                               "sync_paid", SCOPE_WRITE, fixed))
        routes += [
            ("POST", r"/async/invoices/(?P<uuid>[^/]+)/paid", "async_mark_paid",
             "async_mark_paid", SCOPE_WRITE, {}),
            # KSeF 1.0 is switched off: every /ksef/ path answers 410 (MED live probe)
            ("*", r"/ksef/.*", "ksef1_gone", "ksef1_gone", None, {}),
            ("POST", r"/ksef2/documents/send", "ksef2_bulk_send", "ksef_bulk_send", SCOPE_WRITE,
             {}),
            ("POST", r"/ksef2/documents/(?P<uuid>[^/]+)/send", "ksef_document_send",
             "ksef_document_send", SCOPE_WRITE, {}),
            ("GET", r"/ksef2/documents/(?P<uuid>[^/]+)/status", "ksef_document_status",
             "ksef_document_status", SCOPE_READ, {}),
            ("GET", r"/ksef2/integration", "ksef_integration", "ksef_integration", SCOPE_READ,
             {}),
            ("GET", r"/clients", "list_clients", "list_clients", SCOPE_READ, {}),
            ("POST", r"/clients", "create_client", "create_client", SCOPE_WRITE, {}),
            ("GET", r"/clients/(?P<id>[^/]+)", "get_client", "get_client", SCOPE_READ, {}),
            ("GET", r"/bank_accounts", "list_bank_accounts", "list_bank_accounts", SCOPE_READ,
             {}),
            ("GET", r"/vat_rates", "list_vat_rates", "list_vat_rates", SCOPE_READ, {}),
            ("GET", r"/vat_exemptions", "list_vat_exemptions", "list_vat_exemptions",
             SCOPE_READ, {}),
            ("GET", r"/vat_exemptions/(?P<id>\d+)", "get_vat_exemption", "get_vat_exemption",
             SCOPE_READ, {}),
            ("GET", r"/gtus", "list_gtus", "list_gtus", SCOPE_READ, {}),
            ("GET", r"/gtus/(?P<id>\d+)", "get_gtu", "get_gtu", SCOPE_READ, {}),
            ("GET", r"/documents_markings/incomes", "list_document_markings",
             "list_document_markings", SCOPE_READ, {}),
            ("GET", r"/transaction_kinds", "list_transaction_kinds", "list_transaction_kinds",
             SCOPE_READ, {}),
        ]
        return routes

    def __init__(self, host="127.0.0.1", port=0, api_keys=("sim-api-key",), task_delay=0.5,
                 rate_window=60.0, quiet=True, clock=None, **config):
        self.host = host
        # clock: a callable returning the current instant (aware datetime; naive = UTC), for
        # tests that need a given hour; None = the real clock. See also the ``timezone`` and
        # ``clock_offset`` config keys.
        self._clock = clock
        self._requested_port = int(port)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stop_event = threading.Event()
        self._server = None
        self._threads = []
        self._connections = set()
        self._routes = [(m, re.compile(p), name, handler, scope, fixed)
                        for m, p, name, handler, scope, fixed in self._build_routes()]
        self._config = _default_config()
        initial = {"api_keys": api_keys, "task_delay": task_delay, "rate_window": rate_window,
                   "quiet": quiet}
        initial.update(config)
        self._apply_config_locked(initial)
        self._initial_config = copy.deepcopy(self._config)
        self._initial_webhook_status = initial.get("webhook_status")
        self._generation = 0
        self._seq = 0
        self._inflight = False
        self._reset_state_locked()
        self._webhook = {"status": "to_verify", "consecutive_failures": 0, "verified_at": None,
                         "disabled_at": None}
        if self._initial_webhook_status:
            self._webhook["status"] = self._initial_webhook_status

    # ---------------------------------------------------------------- clock

    def _now(self):
        """The simulator's current time, in its ``timezone`` (Polish time by default)."""
        moment = self._clock() if self._clock is not None else _real_utc_now()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        offset = self._config.get("clock_offset") or 0.0
        if offset:
            moment = moment + dt.timedelta(seconds=offset)
        zone = _zone(self._config.get("timezone"))
        return moment.astimezone(zone) if zone is not None else moment.astimezone()

    def _today(self):
        return self._now().date()

    def clock(self):
        """``{"now": ISO time, "today": "YYYY-MM-DD", "timezone": name}`` as the simulator
        sees them (tests compare dates with this rather than the machine's date)."""
        with self._lock:
            now = self._now()
            return {"now": now.isoformat(timespec="milliseconds"),
                    "today": now.date().isoformat(),
                    "timezone": self._config.get("timezone")}

    def today(self):
        """The simulator's date (``datetime.date``)."""
        with self._lock:
            return self._today()

    # ---------------------------------------------------------------- lifecycle / properties

    @property
    def port(self):
        if self._server is not None:
            return self._server.server_address[1]
        return self._requested_port

    @property
    def root_url(self):
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self):
        return self.root_url + "/api/v3"

    def start(self):
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server_class = _Server6 if ":" in self.host else _Server
        server = server_class((self.host, self._requested_port), _Handler)
        server.simulator = self
        self._server = server
        self._stop_event.clear()
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                             name="infakt-sim-http", daemon=True),
            threading.Thread(target=self._task_loop, name="infakt-sim-tasks", daemon=True),
            threading.Thread(target=self._webhook_loop, name="infakt-sim-webhooks", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        server = self._server
        if server is None:
            return
        self._stop_event.set()
        with self._cond:
            self._cond.notify_all()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._threads = []
        self._server = None

    def __enter__(self):
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def _track_connection(self, conn, add):
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # ---------------------------------------------------------------- configuration

    def configure(self, **cfg):
        """Change configuration; returns the public (secret-free) configuration.

        Keys: api_keys, task_delay, rate_window, rate_limit_get, rate_limit_write,
        rate_limit_status, retry_after, ksef_integration, ksef_outcome, ksef_delay,
        ksef_pending_status, ksef_error_description, seller_nip, bank_accounts, seed_clients,
        default_vat_exemption_reason, webhook_url, webhook_secret, webhook_events, webhook_data,
        webhook_async_corrective, webhook_retry_delay, webhook_require_verification,
        webhook_max_failures, webhook_timeout, webhook_status, timezone (IANA name,
        "UTC" or "local"; default Europe/Warsaw), clock_offset (seconds added to the clock),
        quiet.
        """
        with self._cond:
            self._apply_config_locked(cfg)
            self._cond.notify_all()
            return self._public_config_locked()

    def _apply_config_locked(self, cfg):
        unknown = sorted(set(cfg) - CONFIG_KEYS)
        if unknown:
            raise ValueError("unknown config key(s): {}".format(", ".join(unknown)))
        new = copy.deepcopy(self._config)
        for key, value in cfg.items():
            if key == "webhook_status":
                continue
            new[key] = copy.deepcopy(value)
        new["api_keys"] = self._normalise_keys(new["api_keys"])
        new["timezone"] = str(new.get("timezone") or DEFAULT_TIMEZONE).strip()
        _zone(new["timezone"])  # ValueError for an unknown zone
        new["clock_offset"] = float(new.get("clock_offset") or 0.0)
        for key in ("task_delay", "rate_window", "ksef_delay", "webhook_retry_delay",
                    "webhook_timeout"):
            new[key] = float(new[key])
            if new[key] < 0:
                raise ValueError(f"{key} must be >= 0")
        for key in ("rate_limit_get", "rate_limit_write"):
            if new[key] is not None:
                new[key] = int(new[key])
        new["rate_limit_status"] = int(new["rate_limit_status"])
        new["webhook_max_failures"] = max(1, int(new["webhook_max_failures"]))
        if new["ksef_outcome"] not in KSEF_OUTCOMES:
            raise ValueError(f"ksef_outcome must be one of {sorted(KSEF_OUTCOMES)}")
        if new["ksef_pending_status"] not in ("pending", "sent"):
            raise ValueError("ksef_pending_status must be 'pending' or 'sent'")
        if new["webhook_data"] not in ("full", "minimal"):
            raise ValueError("webhook_data must be 'full' or 'minimal'")
        events = new["webhook_events"]
        if events is None:
            events = list(WEBHOOK_EVENTS)
        if isinstance(events, str):
            events = [e.strip() for e in events.split(",") if e.strip()]
        bad = [e for e in events if e not in WEBHOOK_EVENTS]
        if bad:
            raise ValueError("unknown webhook event(s): {}".format(", ".join(bad)))
        new["webhook_events"] = list(events)
        accounts = new["bank_accounts"] or []
        if not isinstance(accounts, list) or not all(isinstance(a, dict) for a in accounts):
            raise ValueError("bank_accounts must be a list of objects")
        for index, account in enumerate(accounts, start=1):
            account.setdefault("id", index)
            account.setdefault("verified", True)
            account.setdefault("currency", "PLN")
            account.setdefault("default", index == 1)
        if not isinstance(new["seed_clients"] or [], list):
            raise TypeError("seed_clients must be a list of objects")
        status = cfg.get("webhook_status")
        if status is not None and status not in WEBHOOK_STATES:
            raise ValueError(f"webhook_status must be one of {sorted(WEBHOOK_STATES)}")
        old_url = self._config.get("webhook_url")
        self._config = new
        webhook = getattr(self, "_webhook", None)
        if webhook is not None:
            if "webhook_url" in cfg and cfg["webhook_url"] != old_url:
                webhook.update(status="to_verify", consecutive_failures=0, verified_at=None)
                self._outbox = []
            if status is not None:
                webhook["status"] = status
                webhook["consecutive_failures"] = 0

    @staticmethod
    def _normalise_keys(keys):
        if isinstance(keys, (str, dict)):
            keys = [keys]
        result = []
        for item in keys or ():
            if isinstance(item, str):
                result.append({"key": item, "scopes": None, "plan_api": True})
            elif isinstance(item, dict) and item.get("key"):
                scopes = item.get("scopes")
                result.append({
                    "key": str(item["key"]),
                    "scopes": None if scopes is None else [str(s) for s in scopes],
                    "plan_api": _truthy(item.get("plan_api", True)),
                })
            else:
                raise ValueError("api_keys entries must be strings or {'key': ...} objects")
        return result

    def _public_config_locked(self):
        cfg = copy.deepcopy(self._config)
        cfg["api_keys"] = [
            {"key": (k["key"][:2] + "***"), "scopes": k["scopes"], "plan_api": k["plan_api"]}
            for k in cfg["api_keys"]
        ]
        cfg["webhook_secret_set"] = bool(cfg.pop("webhook_secret"))
        return cfg

    # ---------------------------------------------------------------- state / reset / faults

    def _reset_state_locked(self):
        self._generation += 1
        self._invoices = {}
        self._correctives = {}
        self._advances = {}
        self._finals = {}
        self._docs = {"invoice": self._invoices, "corrective": self._correctives,
                      "advance": self._advances, "final": self._finals}
        self._tasks = {}
        self._ksef_jobs = []
        self._clients = {}
        self._outbox = []
        self._deliveries = deque(maxlen=MAX_LOG)
        self._verifications = deque(maxlen=MAX_LOG)
        self._requests = deque(maxlen=MAX_LOG)
        self._faults = []
        self._rate = {}
        self._next_id = 1
        self._next_client_id = 1
        self._next_fault_id = 1
        self._next_service_id = 1
        self._counters = {
            "requests_total": 0, "rate_limited": 0, "unauthorized": 0, "forbidden": 0,
            "payment_required": 0, "not_found": 0, "creates": 0, "corrective_creates": 0,
            "advance_creates": 0, "final_creates": 0, "invoices_created": 0,
            "corrective_invoices_created": 0, "advance_invoices_created": 0,
            "final_invoices_created": 0, "clients_created": 0, "tasks_failed": 0,
            "mark_paid": 0, "pdf_downloads": 0, "ksef_sends": 0, "deletes": 0, "emails": 0,
            "faults_triggered": 0, "dropped_connections": 0, "webhook_events": 0,
            "webhook_events_skipped": 0, "webhook_attempts": 0, "webhook_successes": 0,
            "webhook_failures": 0,
        }
        for client in self._config.get("seed_clients") or []:
            self._store_client_locked(client)

    def reset(self, config=False):
        """Clear invoices, tasks, clients, deliveries, faults, logs, counters, rate windows.

        With ``config=True`` the configuration (and webhook status) also goes back to what the
        simulator was started with.
        """
        with self._cond:
            if config:
                self._config = copy.deepcopy(self._initial_config)
                self._webhook = {"status": self._initial_webhook_status or "to_verify",
                                 "consecutive_failures": 0, "verified_at": None,
                                 "disabled_at": None}
            self._reset_state_locked()
            self._cond.notify_all()

    def add_fault(self, **spec):
        """Queue fault(s); returns the list of created fault records (see module docs)."""
        with self._lock:
            return copy.deepcopy(self._add_fault_locked(spec))

    def clear_faults(self):
        with self._lock:
            self._faults = []

    def _add_fault_locked(self, spec):
        kinds = [k for k in FAULT_TYPES if k in spec]
        known = set(FAULT_TYPES) | {"status", "methods", "path_contains", "count", "seconds",
                                    "error", "headers", "reset"}
        unknown = sorted(set(spec) - known)
        if not kinds or unknown:
            raise ValueError("fault spec needs one of {}; unknown keys: {}".format(
                ", ".join(FAULT_TYPES), ", ".join(unknown) or "none"))
        methods = spec.get("methods")
        if isinstance(methods, str):
            methods = [methods]
        methods = [m.upper() for m in methods] if methods else None
        created = []
        for kind in kinds:
            fault = {
                "id": self._next_fault_id, "type": kind, "methods": methods,
                "path_contains": spec.get("path_contains"), "remaining": None, "triggered": 0,
            }
            self._next_fault_id += 1
            value = spec[kind]
            if kind == "latency":
                fault["seconds"] = float(value)
                count = spec.get("count")
                fault["remaining"] = None if count is None else int(count)
            elif kind == "timeout_next":
                fault["remaining"] = int(value)
                fault["seconds"] = float(spec.get("seconds", 30.0))
            else:
                fault["remaining"] = int(value)
            if kind == "fail_next":
                fault["status"] = int(spec.get("status", 503))
                fault["error"] = spec.get("error") or MSG_FAULT
                fault["headers"] = dict(spec.get("headers") or {})
            if kind in ("drop_after_create", "drop_before_processing"):
                fault["reset"] = _truthy(spec.get("reset", False))
            if fault["remaining"] is not None and fault["remaining"] <= 0:
                continue
            self._faults.append(fault)
            created.append(fault)
        return created

    @staticmethod
    def _fault_matches(fault, request):
        if fault["methods"] and request.method not in fault["methods"]:
            return False
        return not (fault["path_contains"] and fault["path_contains"] not in request.path)

    def _take_fault_locked(self, kinds, request, predicate=None):
        for fault in self._faults:
            if fault["type"] not in kinds or not self._fault_matches(fault, request):
                continue
            if predicate is not None and not predicate(fault):
                continue
            fault["triggered"] += 1
            self._counters["faults_triggered"] += 1
            if fault["remaining"] is not None:
                fault["remaining"] -= 1
                if fault["remaining"] <= 0:
                    self._faults.remove(fault)
            return copy.deepcopy(fault)
        return None

    def state(self):
        """Everything the simulator holds, JSON-serialisable (secrets excluded)."""
        with self._lock:
            self._process_due_locked(time.monotonic())
            now = time.monotonic()
            return copy.deepcopy({
                "invoices": [self._invoice_view(i) for i in self._invoices.values()],
                "corrective_invoices": [self._invoice_view(i) for i in self._correctives.values()],
                "advance_invoices": [self._invoice_view(i) for i in self._advances.values()],
                "final_invoices": [self._invoice_view(i) for i in self._finals.values()],
                "tasks": [self._task_record(t, now) for t in self._tasks.values()],
                "ksef_requests": [
                    {k: v for k, v in job.items() if k not in ("due",)}
                    for job in self._ksef_jobs
                ],
                "clients": list(self._clients.values()),
                "webhook": self._webhook_public_locked(),
                "webhook_deliveries": list(self._deliveries),
                "webhook_verifications": list(self._verifications),
                "requests": list(self._requests),
                "counters": dict(self._counters),
                "faults": list(self._faults),
                "config": self._public_config_locked(),
                "clock": {"now": self._now().isoformat(timespec="milliseconds"),
                          "today": self._today().isoformat(),
                          "timezone": self._config["timezone"]},
            })

    def _webhook_public_locked(self):
        cfg = self._config
        return {
            "url": cfg["webhook_url"],
            "events": list(cfg["webhook_events"]),
            "data": cfg["webhook_data"],
            "async_corrective": cfg["webhook_async_corrective"],
            "retry_delay": cfg["webhook_retry_delay"],
            "require_verification": cfg["webhook_require_verification"],
            "max_failures": cfg["webhook_max_failures"],
            "secret_set": bool(cfg["webhook_secret"]),
            "status": self._webhook["status"],
            "consecutive_failures": self._webhook["consecutive_failures"],
            "verified_at": self._webhook["verified_at"],
            "disabled_at": self._webhook["disabled_at"],
            "pending": len(self._outbox) + (1 if self._inflight else 0),
        }

    def flush(self, timeout=5.0):
        """Wait until no task, finite KSeF request or webhook delivery is pending."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._process_due_locked(time.monotonic())
                busy = (any(t["final"] is False for t in self._tasks.values())
                        or any(j.get("due") is not None for j in self._ksef_jobs)
                        or bool(self._outbox) or self._inflight)
            if not busy:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    # ---------------------------------------------------------------- request entry points

    def _log(self, text):
        if not self._config.get("quiet"):
            print(text, file=sys.stderr, flush=True)

    def _handle_http(self, request):
        if request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/"):
            try:
                response = self._handle_control(request)
            except _HTTPError as exc:
                response = _json_response(exc.status, exc.payload, exc.headers)
            except (ValueError, TypeError) as exc:
                response = _json_response(400, {"error": str(exc)})
            except Exception:  # noqa: BLE001
                traceback.print_exc()
                response = _json_response(500, {"error": "Wewnętrzny błąd symulatora."})
            self._log(f"{request.method} {request.path} -> {response.status}")
            return response
        generation = self._generation
        try:
            response = self._handle_api(request)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            response = _json_response(500, {"error": "Wewnętrzny błąd symulatora."})
        status = "dropped" if response.drop else response.status
        with self._lock:
            if generation != self._generation:  # a reset happened meanwhile
                return response
            self._counters["requests_total"] += 1
            self._requests.append({
                "method": request.method, "path": request.path, "query": request.query_string,
                "status": status, "ip": request.ip, "route": request.route,
                "at": _ts_iso(self._now()),
            })
        self._log(f"{request.method} {request.path} -> {status}")
        return response

    def _match_route(self, request):
        """``(name, handler, kwargs, scope)`` of the request's route, Nones when none."""
        path = request.path
        for prefix in API_PREFIXES:
            if path.startswith(prefix + "/"):
                rest = path[len(prefix):]
                break
        else:
            return None, None, None, None
        if not rest.endswith(".json"):
            return None, None, None, None
        rest = rest[: -len(".json")]
        for method, pattern, name, handler, scope, fixed in self._routes:
            match = pattern.fullmatch(rest)
            if match and (method in ("*", request.method)
                          or (method == "GET" and request.method == "HEAD")):
                return name, handler, dict(match.groupdict(), **fixed), scope
        return None, None, None, None

    def _handle_api(self, request):
        name, handler, params, scope = self._match_route(request)
        request.route = name
        with self._lock:
            latency = self._take_fault_locked(("latency",), request)
            timeout = self._take_fault_locked(("timeout_next",), request)
            blocking = self._take_fault_locked(("drop_before_processing", "fail_next"), request)
        if latency:
            self._stop_event.wait(latency["seconds"])
        if blocking and blocking["type"] == "drop_before_processing":
            with self._lock:
                self._counters["dropped_connections"] += 1
            response = _Response(0)
            response.drop = True
            response.reset = blocking.get("reset", False)
            return response
        if blocking:
            return _json_response(blocking["status"], {"error": blocking["error"]},
                                  blocking["headers"])
        with self._lock:
            try:
                self._check_rate_locked(request)
                self._check_auth_locked(request, scope)
                if name is None:
                    raise _error(404, MSG_NOT_FOUND)
                self._process_due_locked(time.monotonic())
                response = getattr(self, "_r_" + handler)(request, **params)
            except _HTTPError as exc:
                response = _json_response(exc.status, exc.payload, exc.headers)
                if exc.status == 404:
                    self._counters["not_found"] += 1
            if 200 <= response.status < 300:
                drop = self._take_fault_locked(
                    ("drop_after_create",), request,
                    predicate=lambda f: bool(f["path_contains"]) or name in CREATE_ROUTES)
                if drop:
                    self._counters["dropped_connections"] += 1
                    response.drop = True
                    response.reset = drop.get("reset", False)
            self._cond.notify_all()
        if timeout and not response.drop:
            self._stop_event.wait(timeout["seconds"])
        return response

    def _check_rate_locked(self, request):
        cfg = self._config
        bucket = "get" if request.method in ("GET", "HEAD") else "write"
        limit = cfg["rate_limit_get"] if bucket == "get" else cfg["rate_limit_write"]
        if limit is None:
            return
        now = time.monotonic()
        window = self._rate.setdefault((request.ip, bucket), deque())
        while window and window[0] <= now - cfg["rate_window"]:
            window.popleft()
        if len(window) >= limit:
            self._counters["rate_limited"] += 1
            headers = {}
            if cfg["retry_after"] is not None:
                headers["Retry-After"] = str(cfg["retry_after"])
            raise _error(cfg["rate_limit_status"], MSG_RATE_LIMITED, headers)
        window.append(now)

    def _check_auth_locked(self, request, scope):
        supplied = request.headers.get(API_KEY_HEADER)
        key = None
        if supplied:
            for candidate in self._config["api_keys"]:
                if hmac.compare_digest(candidate["key"].encode(), supplied.encode()):
                    key = candidate
                    break
        if key is None:
            self._counters["unauthorized"] += 1
            raise _error(401, MSG_UNAUTHORIZED)
        if not key["plan_api"]:
            self._counters["payment_required"] += 1
            raise _error(402, MSG_PLAN)
        if scope and key["scopes"] is not None and scope not in key["scopes"]:
            self._counters["forbidden"] += 1
            raise _error(403, f"Brak uprawnień: klucz API nie ma zakresu {scope}.")

    # ---------------------------------------------------------------- control API

    def _handle_control(self, request):
        action = request.path[len(CONTROL_PREFIX):].strip("/")
        action = action.removesuffix(".json")
        method = request.method
        if action == "health" and method == "GET":
            return _json_response(200, {"status": "ok"})
        if action == "state" and method == "GET":
            return _json_response(200, self.state())
        if action == "clock" and method == "GET":
            return _json_response(200, self.clock())
        if action == "config" and method == "GET":
            with self._lock:
                return _json_response(200, {"config": self._public_config_locked()})
        if action == "config" and method == "POST":
            return _json_response(200, {"config": self.configure(**request.json())})
        if action == "reset" and method == "POST":
            body = request.json()
            self.reset(config=_truthy(body.get("config", False)))
            with self._lock:
                return _json_response(200, {"reset": True, "config": self._public_config_locked()})
        if action == "faults" and method == "GET":
            with self._lock:
                return _json_response(200, {"faults": copy.deepcopy(self._faults)})
        if action == "faults" and method == "POST":
            try:
                data = json.loads(request.body.decode("utf-8") or "{}")
            except ValueError:
                raise _error(400, MSG_BAD_JSON) from None
            specs = data if isinstance(data, list) else [data]
            created = []
            for spec in specs:
                if not isinstance(spec, dict):
                    raise _error(400, "fault spec must be an object")
                created.extend(self.add_fault(**spec))
            return _json_response(201, {"faults": created})
        if action == "faults" and method == "DELETE":
            self.clear_faults()
            return _json_response(200, {"faults": []})
        if action in ("webhooks/verify", "webhook/verify") and method == "POST":
            return _json_response(200, self.verify_webhook())
        raise _error(404, MSG_NOT_FOUND)

    # ---------------------------------------------------------------- background processing

    def _task_loop(self):
        while not self._stop_event.is_set():
            with self._cond:
                now = time.monotonic()
                self._process_due_locked(now)
                dues = [t["due"] for t in self._tasks.values() if not t["final"]]
                dues += [j["due"] for j in self._ksef_jobs if j.get("due") is not None]
                wait = 0.25
                if dues:
                    wait = min(wait, max(0.0, min(dues) - now))
                self._cond.wait(wait if wait > 0 else 0.001)

    def _process_due_locked(self, now):
        for task in list(self._tasks.values()):
            if not task["final"] and task["due"] <= now:
                self._complete_task_locked(task)
        for job in self._ksef_jobs:
            if job.get("due") is not None and job["due"] <= now:
                self._complete_ksef_locked(job)

    def _webhook_loop(self):
        while not self._stop_event.is_set():
            with self._cond:
                now = time.monotonic()
                due = [d for d in self._outbox if d["due"] <= now]
                if not due:
                    wait = 0.25
                    if self._outbox:
                        wait = min(wait, max(0.001, min(d["due"] for d in self._outbox) - now))
                    self._cond.wait(wait)
                    continue
                item = min(due, key=lambda d: (d["due"], d["seq"]))
                self._outbox.remove(item)
                if not self._webhook_deliverable_locked():
                    continue
                cfg = self._config
                url, secret = cfg["webhook_url"], cfg["webhook_secret"] or ""
                timeout = cfg["webhook_timeout"]
                generation = self._generation
                self._inflight = True
            body = json.dumps({"event": item["event"], "resource": item["resource"]},
                              ensure_ascii=False).encode("utf-8")
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Infakt-Webhooks/2",
                "X-Infakt-Signature": compute_signature(secret, body),
            }
            started = time.monotonic()
            status, _data, error = _http_post(url, body, headers, timeout)
            with self._cond:
                self._inflight = False
                if generation != self._generation:
                    continue
                self._record_delivery_locked(item, status, error, time.monotonic() - started)

    def _record_delivery_locked(self, item, status, error, duration):
        event = item["event"]
        success = status in (200, 201)
        self._counters["webhook_attempts"] += 1
        self._deliveries.append({
            "event_uuid": event["uuid"], "event_name": event["name"],
            "retry_counter": event["retry_counter"], "status": status, "error": error,
            "success": success, "at": _ts_iso(self._now()), "duration": round(duration, 4),
        })
        webhook = self._webhook
        if success:
            self._counters["webhook_successes"] += 1
            webhook["consecutive_failures"] = 0
            return
        self._counters["webhook_failures"] += 1
        webhook["consecutive_failures"] += 1
        max_failures = self._config["webhook_max_failures"]
        if webhook["consecutive_failures"] >= max_failures:
            webhook["status"] = "disabled_by_infakt"
            webhook["disabled_at"] = _ts_iso(self._now())
            self._outbox = []
            return
        if event["retry_counter"] + 1 >= max_failures:
            return
        retry = copy.deepcopy(item)
        retry["event"]["retry_counter"] += 1
        retry["due"] = time.monotonic() + self._config["webhook_retry_delay"]
        retry["seq"] = self._next_seq()
        self._outbox.append(retry)
        self._cond.notify_all()

    def _next_seq(self):
        self._seq += 1
        return self._seq

    def _webhook_deliverable_locked(self):
        cfg = self._config
        if not cfg["webhook_url"]:
            return False
        status = self._webhook["status"]
        if status in ("disabled", "disabled_by_infakt"):
            return False
        return status == "active" or not cfg["webhook_require_verification"]

    def _emit_locked(self, name, resource, invoice_resource=False):
        cfg = self._config
        if not cfg["webhook_url"] or name not in cfg["webhook_events"]:
            return
        if not self._webhook_deliverable_locked():
            self._counters["webhook_events_skipped"] += 1
            return
        if invoice_resource and cfg["webhook_data"] == "minimal":
            resource = {"uuid": resource.get("uuid")}
        self._counters["webhook_events"] += 1
        self._outbox.append({
            "event": {"uuid": str(uuid.uuid4()), "name": name, "retry_counter": 0,
                      "created_at": _ts_iso(self._now())},
            "resource": copy.deepcopy(resource),
            "due": time.monotonic(),
            "seq": self._next_seq(),
        })
        self._cond.notify_all()

    def verify_webhook(self):
        """Send inFakt's verification ping; the webhook turns ``active`` on a correct echo."""
        with self._lock:
            url = self._config["webhook_url"]
            timeout = self._config["webhook_timeout"]
            secret = self._config["webhook_secret"]
        if not url:
            return {"verified": False, "status": None, "body": None,
                    "error": "Brak skonfigurowanego adresu webhooka (webhook_url)."}
        code = secrets.token_hex(16)
        body = json.dumps({"verification_code": code}).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "Infakt-Webhooks/2"}
        # Signed like every delivery. No recorded example shows the ping's headers; the live
        # receiver of zanreal-labs/medusa-infakt checks the signature *before* it answers the
        # ping (src/api/hooks/infakt route), which works only if inFakt signs it. Our receiver
        # echoes unsigned pings too, and marks the webhook verified only on a signed one.
        if secret:
            headers["X-Infakt-Signature"] = compute_signature(secret, body)
        status, data, error = _http_post(url, body, headers, timeout)
        try:
            parsed = json.loads(data.decode("utf-8")) if data else None
        except ValueError:
            parsed = data.decode("utf-8", "replace")
        verified = (status == 200 and isinstance(parsed, dict)
                    and parsed.get("verification_code") == code)
        result = {"verified": verified, "status": status, "body": parsed,
                  "verification_code": code, "error": error}
        with self._cond:
            self._verifications.append(dict(result, at=_ts_iso(self._now())))
            if verified:
                self._webhook.update(status="active", consecutive_failures=0,
                                     verified_at=_ts_iso(self._now()), disabled_at=None)
            self._cond.notify_all()
        return result

    # ---------------------------------------------------------------- tasks

    def _new_task_locked(self, doc_kind, action, payload, send_to_ksef=False,
                         invoice_uuid=None):
        created = self._now()
        delay = self._config["task_delay"]
        task = {
            "ref": str(uuid.uuid4()), "kind": DOC_KINDS[doc_kind][2], "doc": doc_kind,
            "action": action, "payload": payload, "send_to_ksef": send_to_ksef,
            "created_at": _ts_task(created), "created_iso": _ts_iso(created),
            "started": time.monotonic(), "delay": delay, "due": time.monotonic() + delay,
            "final": False, "code": 100, "invoice_uuid": invoice_uuid, "errors": None,
            "finished_at": None,
        }
        self._tasks[task["ref"]] = task
        self._cond.notify_all()
        return task

    @staticmethod
    def _task_code(task, now):
        if task["final"]:
            return task["code"]
        elapsed = now - task["started"]
        delay = task["delay"]
        if elapsed < delay / 3.0:
            return 100
        if elapsed < 2 * delay / 3.0:
            return 120
        return 140

    def _task_description(self, task, code):
        if code == 422:
            return DESC_PAID_FAILED if task["action"] == "mark_as_paid" else DESC_CREATE_FAILED
        return DESC[code]

    def _task_view(self, task, now):
        code = self._task_code(task, now)
        view = {
            "timestamps": {"task_created_at": task["created_at"]},
            "invoice_task_reference_number": task["ref"],
            "processing_code": code,
            "processing_description": self._task_description(task, code),
            "invoice_kind": task["kind"],
            "action": task["action"],
        }
        if task["action"] == "mark_as_paid" or code == 201:
            view["invoice_uuid"] = task["invoice_uuid"]
        elif code == 422:
            view["invoice_uuid"] = None
        if code == 422:
            view["invoice_errors"] = copy.deepcopy(task["errors"])
        return view

    def _task_record(self, task, now):
        code = self._task_code(task, now)
        return {
            "ref": task["ref"], "kind": task["kind"], "action": task["action"], "code": code,
            "description": self._task_description(task, code),
            "created_at": task["created_iso"], "finished_at": task["finished_at"],
            "invoice_uuid": task["invoice_uuid"], "errors": task["errors"],
            "send_to_ksef": task["send_to_ksef"],
        }

    def _complete_task_locked(self, task):
        task["final"] = True
        task["finished_at"] = _ts_iso(self._now())
        if task["action"] == "mark_as_paid":
            self._complete_mark_paid_locked(task)
            return
        kind = task["doc"]
        try:
            document, errors = self._build_document_locked(kind, task["payload"])
        except Exception:  # noqa: BLE001 - a simulator bug must not stop the task thread
            traceback.print_exc()
            document, errors = None, {"base": ["Wewnętrzny błąd symulatora."]}
        emit_async = kind != "corrective" or self._config["webhook_async_corrective"]
        if errors:
            task["code"] = 422
            task["errors"] = errors
            self._counters["tasks_failed"] += 1
            if emit_async:
                self._emit_locked("async_invoice_creation_error", self._async_resource(task))
            return
        self._docs[kind][document["uuid"]] = document
        self._counters[DOC_KINDS[kind][0] + "_created"] += 1
        task["code"] = 201
        task["invoice_uuid"] = document["uuid"]
        if emit_async:
            self._emit_locked("async_invoice_creation_success", self._async_resource(task))
        if kind != "corrective" and document["status"] == "draft":
            self._emit_locked("draft_invoice_created", self._draft_resource(document),
                              invoice_resource=True)
        if task["send_to_ksef"] and document["kind"] != "proforma":
            if self._config["ksef_integration"]:
                self._start_ksef_locked(document, kind)
            else:
                self._refuse_ksef_locked(document, kind)

    def _async_resource(self, task):
        resource = {
            "timestamps": {"task_created_at": task["created_at"]},
            "invoice_kind": task["kind"],
            "invoice_uuid": (task["invoice_uuid"]
                             if task["code"] == 201 or task["action"] == "mark_as_paid"
                             else None),
            "processing_code": task["code"],
            "processing_description": self._task_description(task, task["code"]),
            "invoice_task_reference_number": task["ref"],
        }
        if task["action"] == "mark_as_paid":
            resource["action"] = "mark_as_paid"
        if task["code"] == 422:
            resource["invoice_errors"] = copy.deepcopy(task["errors"])
        return resource

    def _draft_resource(self, document):
        """``draft_invoice_created`` resource: the invoice without ``services``, plus the
        keys PM's example shows (check_duplicate_number, vat_date_value, occasional_sale)."""
        view = self._invoice_view(document)
        view.pop("services", None)
        view["check_duplicate_number"] = bool(document.get("_check_duplicate_number"))
        view["vat_date_value"] = document.get("_vat_date_value") or "sale_date"
        view["occasional_sale"] = bool(document.get("_occasional_sale"))
        return view

    def _complete_mark_paid_locked(self, task):
        invoice = self._invoices.get(task["invoice_uuid"])
        errors = {}
        paid_date = task["payload"].get("paid_date")
        if invoice is None:
            _add_error(errors, "base", "Faktura nie istnieje.")
        elif invoice["paid_date"]:
            # PM "Błąd przetwarzania": invoice_errors.status is a plain string here
            errors["status"] = MSG_ALREADY_PAID
        else:
            parsed = self._today() if paid_date in (None, "") else _parse_date(paid_date)
            if parsed is None:
                _add_error(errors, "paid_date", "Nieprawidłowy format daty (RRRR-MM-DD).")
            elif parsed < dt.date.fromisoformat(invoice["invoice_date"]):
                _add_error(errors, "paid_date",
                           "Data zapłaty nie może być wcześniejsza niż data wystawienia faktury.")
            else:
                self._set_paid_locked(invoice, parsed)
        # An async mark-paid fires the form's "…zapłacona przez async API inFakt" events, not
        # invoice_paid: the simulator sends the async event names (OL's guesses, see
        # EVENT_MARK_PAID_ASYNC) with the task as resource. Both name and resource are
        # unconfirmed; receivers must keep polling the task.
        if errors:
            task["code"] = 422
            task["errors"] = errors
            self._counters["tasks_failed"] += 1
            self._emit_locked(EVENT_MARK_PAID_ASYNC_ERROR, self._async_resource(task))
            return
        task["code"] = 200
        self._emit_locked(EVENT_MARK_PAID_ASYNC, self._async_resource(task))

    def _set_paid_locked(self, document, paid_date):
        document["paid_date"] = paid_date.isoformat()
        document["status"] = "paid"
        document["paid_price"] = document["gross_price"]
        document["left_to_pay"] = 0

    # ---------------------------------------------------------------- building documents

    def _store_client_locked(self, data):
        client = {key: None for key in CLIENT_FIELDS}
        client.update({k: copy.deepcopy(v) for k, v in data.items() if k in CLIENT_FIELDS})
        client["id"] = int(data.get("id") or self._next_client_id)
        self._next_client_id = max(self._next_client_id, client["id"]) + 1
        client["uuid"] = data.get("uuid") or str(uuid.uuid4())
        self._clients[client["id"]] = client
        return client

    def _find_client_locked(self, client_id):
        try:
            return self._clients.get(int(client_id))
        except (TypeError, ValueError):
            return None

    def _find_bank_account_locked(self, number):
        wanted = _norm_account(number)
        if not wanted:
            return None
        for account in self._config["bank_accounts"]:
            if _norm_account(account.get("account_number")) == wanted:
                return account
        return None

    def _date_locked(self, data, field, errors, default=None):
        value = data.get(field)
        if value in (None, ""):
            return default
        parsed = _parse_date(value)
        if parsed is None:
            _add_error(errors, field, "Nieprawidłowy format daty (RRRR-MM-DD).")
        return parsed

    def _buyer_locked(self, data, errors, document):
        client_id = data.get("client_id")
        if client_id not in (None, ""):
            client = self._find_client_locked(client_id)
            if client is None:
                _add_error(errors, "client_id", "Wybrany klient nie istnieje.")
                return
            for source, target in CLIENT_TO_INVOICE:
                if document.get(target) in (None, "") and client.get(source) not in (None, ""):
                    document[target] = client[source]
            document["client_id"] = client["id"]
            document["client_uuid"] = client["uuid"]
            document["_client_email"] = client.get("email")
            return
        kind = data.get("client_business_activity_kind")
        company = _text(data.get("client_company_name"))
        first = _text(data.get("client_first_name"))
        last = _text(data.get("client_last_name"))
        if kind not in (None, "") and kind not in ACTIVITY_KINDS:
            _add_error(errors, "client_business_activity_kind",
                       "Nieprawidłowy rodzaj działalności nabywcy.")
            return
        if kind in COMPANY_KINDS or (not kind and not (first and last)):
            if not company:
                _add_error(errors, "client_company_name", "Nazwa firmy nabywcy nie może być pusta.")
        elif kind == "private_person":
            if not first:
                _add_error(errors, "client_first_name", "Imię nabywcy nie może być puste.")
            if not last:
                _add_error(errors, "client_last_name", "Nazwisko nabywcy nie może być puste.")
        if not (company or first or last):
            _add_error(errors, "base", "client_id required")
            return
        # inFakt files an inline buyer as a new client (PM "Podgląd" reads back client_id for
        # an invoice made with client_* data; OL: no de-duplication by NIP). The client is
        # stored when the document is (see _finish_document_locked).
        client = {source: data.get(target) for source, target in CLIENT_TO_INVOICE
                  if data.get(target) not in (None, "")}
        if not client.get("business_activity_kind"):
            client["business_activity_kind"] = (
                "other_business" if company else "private_person")
        client.setdefault("country", "PL")
        document["_inline_client"] = client

    def _id_in_locked(self, value, known, errors, field, message):
        """An integer id from ``value`` (int or digit string) that must be in ``known``."""
        if isinstance(value, bool):
            value = None
        elif isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if not isinstance(value, int) or (known is not None and value not in known):
            _add_error(errors, field, message)
            return None
        return value

    def _price_service(self, raw, errors, corrective=False):
        if not isinstance(raw, dict):
            _add_error(errors, "services", "Nieprawidłowa pozycja faktury.")
            return None
        problems = []  # this row's errors (``errors`` dedupes messages across rows)

        def fail(field, message):
            problems.append(field)
            _add_error(errors, field, message)

        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            fail("services.name", "Nazwa pozycji nie może być pusta.")
        symbol = raw.get("tax_symbol")
        symbol = str(symbol) if isinstance(symbol, (str, int)) and not isinstance(
            symbol, bool) else None
        if symbol not in TAX_RATES:
            fail("services.tax_symbol",
                 "Nieprawidłowa stawka VAT (dozwolone: {}).".format(", ".join(TAX_RATES)))
        quantity = raw.get("quantity")
        quantity = _to_decimal(1 if quantity in (None, "") else quantity)
        if quantity is None:
            fail("services.quantity", "Ilość musi być liczbą.")
        discount = _to_decimal(raw.get("discount") or 0)
        if discount is None or not (0 <= discount <= 100):
            fail("services.discount", "Rabat musi być liczbą od 0 do 100.")
        gtu_id = raw.get("gtu_id")
        if gtu_id not in (None, ""):
            gtu_id = self._id_in_locked(gtu_id, {row[0] for row in GTUS}, errors,
                                        "services.gtu_id", "Nieprawidłowy kod GTU.")
            if gtu_id is None:
                problems.append("services.gtu_id")
        else:
            gtu_id = None
        price_fields = ("unit_net_price", "net_price") if corrective else (
            "unit_net_price", "net_price", "gross_price")
        prices = {"unit_net_price": None, "net_price": None, "gross_price": None}
        for field in price_fields:
            value = raw.get(field)
            if value in (None, ""):
                continue
            try:
                prices[field] = _to_grosze(value)
            except ValueError:
                fail("services." + field, "Kwota musi być liczbą całkowitą (w groszach).")
        if all(v is None for v in prices.values()) and not problems:
            # corrective rows: gross_price is read-only (PM corrective definition), the price
            # comes from unit_net_price only: a row priced by gross_price alone has no price
            fail("services.unit_net_price", "Cena netto nie może być pusta.")
            return None
        if problems:
            return None
        rate = Decimal(TAX_RATES[symbol])
        unit_net = prices["unit_net_price"]
        if prices["gross_price"] is not None and unit_net is None and prices["net_price"] is None:
            gross = prices["gross_price"]
            tax = _round_half_up(Decimal(gross) * rate / (100 + rate))
            net = gross - tax
            unit_net = _round_half_up(Decimal(net) / quantity) if quantity else net
        else:
            if prices["net_price"] is not None:
                net = prices["net_price"]
            else:
                net = _round_half_up(Decimal(unit_net) * quantity * (1 - discount / 100))
            tax = _round_half_up(Decimal(net) * rate / 100)
            gross = net + tax
            if unit_net is None:
                unit_net = _round_half_up(Decimal(net) / quantity) if quantity else net
        before_discount = raw.get("unit_net_price_before_discount")
        pkwiu = raw.get("pkwiu")
        service = {
            "id": self._next_service_id,
            "name": name.strip(),
            "tax_symbol": symbol,
            "unit": raw.get("unit") or "",
            # read back as a JSON number: 1 for whole quantities, 0.5 otherwise (PM)
            "quantity": int(quantity) if quantity == quantity.to_integral_value()
            else float(quantity),
            "unit_net_price": unit_net,
            "net_price": net,
            "gross_price": gross,
            "tax_price": tax,
            "symbol": f"{pkwiu} / - / -" if pkwiu else None,
            "pkwiu": pkwiu,
            "cn": raw.get("cn"),
            "pkob": raw.get("pkob"),
            "discount": _dec_str(discount),
            "unit_net_price_before_discount": (
                before_discount if isinstance(before_discount, int)
                and not isinstance(before_discount, bool) else unit_net),
            "gtu_id": gtu_id,
        }
        for key in ("flat_rate_tax_symbol", "vat_date_value", "occasional_sale"):
            if key in raw:
                service[key] = copy.deepcopy(raw[key])
        self._next_service_id += 1
        return service

    def _common_locked(self, data, fields, errors, defaults, corrective):
        """Validation + normalisation shared by every kind of income document."""
        document = {key: None for key in fields}
        document.update({k: copy.deepcopy(data[k]) for k in fields if k in data})
        payment_method = data.get("payment_method") or defaults.get("payment_method")
        if payment_method in (None, ""):
            _add_error(errors, "payment_method", MSG_PAYMENT_METHOD)
        elif payment_method not in PAYMENT_METHODS:
            _add_error(errors, "payment_method",
                       "Nieznany sposób płatności. " + MSG_PAYMENT_METHOD)
        elif payment_method == "transfer":
            number = data.get("bank_account") or defaults.get("bank_account")
            if number in (None, ""):
                # assumption: without a number inFakt prints the account's default bank
                # account (GH's example sends transfer without one); a number it does not
                # know (or not verified) is refused with 422 (PM)
                number = next((a.get("account_number") for a in self._config["bank_accounts"]
                               if a.get("default")), None)
            account = self._find_bank_account_locked(number)
            if account is None or not account.get("verified", True):
                _add_error(errors, "bank_account",
                           "Płatność przelewem wymaga istniejącego i zweryfikowanego konta "
                           "bankowego.")
            else:
                document["bank_account"] = account["account_number"]
                document["bank_name"] = document.get("bank_name") or account.get("bank_name")
                document["swift"] = document.get("swift") or account.get("swift")
        document["payment_method"] = payment_method
        currency = str(data.get("currency") or defaults.get("currency") or "PLN").upper()
        if currency not in CURRENCIES:
            _add_error(errors, "currency", "Nieobsługiwana waluta.")
        exchange = data.get("vat_exchange_date_kind") or defaults.get("vat_exchange_date_kind")
        if exchange not in (None, "") and exchange not in ("vat", "pit"):
            _add_error(errors, "vat_exchange_date_kind",
                       "Nieprawidłowy rodzaj daty kursu (vat lub pit).")
        elif currency != "PLN" and exchange in (None, ""):
            exchange = "vat"  # inFakt fills it in itself (OL live, EUR invoice, 2026-08-14)
        document["currency"] = currency
        document["vat_exchange_date_kind"] = exchange or None
        today = self._today()
        invoice_date = self._date_locked(data, "invoice_date", errors, today)
        sale_date = self._date_locked(data, "sale_date", errors, invoice_date)
        payment_date = self._date_locked(data, "payment_date", errors, invoice_date)
        paid_date = self._date_locked(data, "paid_date", errors)
        for field in ("continuous_service_start_on", "continuous_service_end_on"):
            self._date_locked(data, field, errors)
        status = data.get("status") or "draft"
        if status not in INVOICE_STATUSES:
            _add_error(errors, "status", "Nieprawidłowy status faktury.")
        split = data.get("split_payment_type")
        if split not in (None, "") and split not in ("required", "optional"):
            _add_error(errors, "split_payment_type", "Nieprawidłowy rodzaj podzielonej płatności.")
        sale_type = data.get("sale_type")
        if sale_type not in (None, "") and sale_type not in ("service", "merchandise"):
            _add_error(errors, "sale_type", "Nieprawidłowy rodzaj sprzedaży.")
        document["sale_type"] = sale_type or ""
        markings = data.get("document_markings_ids")
        if markings in (None, ""):
            markings = []
        if not isinstance(markings, list):
            _add_error(errors, "document_markings_ids",
                       "Oznaczenia dokumentu muszą być tablicą identyfikatorów.")
            markings = []
        known_markings = {row[0] for row in DOCUMENT_MARKINGS}
        document["document_markings_ids"] = [
            value for value in (
                self._id_in_locked(m, known_markings, errors, "document_markings_ids",
                                   "Nieprawidłowe oznaczenie dokumentu.") for m in markings)
            if value is not None]
        kind_id = data.get("transaction_kind_id")
        document["transaction_kind_id"] = None if kind_id in (None, "") else self._id_in_locked(
            kind_id, {row[0] for row in TRANSACTION_KINDS}, errors, "transaction_kind_id",
            "Nieprawidłowy rodzaj transakcji.")
        if paid_date and invoice_date and paid_date < invoice_date:
            _add_error(errors, "paid_date",
                       "Data zapłaty nie może być wcześniejsza niż data wystawienia faktury.")
        self._buyer_locked(data, errors, document)
        document.setdefault("client_uuid", None)
        document["_check_duplicate_number"] = _truthy(data.get("check_duplicate_number", False))
        document["_vat_date_value"] = data.get("vat_date_value")
        document["_occasional_sale"] = data.get("occasional_sale")
        return document, {
            "invoice_date": invoice_date, "sale_date": sale_date, "payment_date": payment_date,
            "paid_date": paid_date, "status": status,
        }

    def _check_exemption_locked(self, data, services, errors, defaults):
        """``vat_exemption_reason`` as an integer id (see VAT_EXEMPTION_MAX_ID for why any
        positive integer is accepted); required when a line is ``zw`` and no default."""
        reason = data.get("vat_exemption_reason")
        if reason in (None, ""):
            reason = defaults.get("vat_exemption_reason")
        if reason in (None, "") and any(s and s["tax_symbol"] == "zw" for s in services):
            reason = self._config["default_vat_exemption_reason"]
            if reason in (None, ""):
                _add_error(errors, "vat_exemption_reason",
                           "Podstawa zwolnienia z VAT jest wymagana dla stawki zw.")
                return None
        if reason in (None, ""):
            return None
        value = reason
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not (
                0 < value <= VAT_EXEMPTION_MAX_ID):
            _add_error(errors, "vat_exemption_reason", "Nieznana podstawa zwolnienia z VAT.")
            return None
        return value

    def _number_locked(self, data, errors, collection, kind, invoice_date):
        number = data.get("number")
        if number in (None, ""):
            return None
        number = str(number).strip()
        if _truthy(data.get("check_duplicate_number", False)):
            for other in collection.values():
                if other["number"] == number and other["kind"] == kind:
                    _add_error(errors, "number", MSG_DUPLICATE_NUMBER)
                    break
        return number

    def _next_number_locked(self, collection, kind, date):
        middle = {"proforma": "/PROF", "correction": "/KOR", "advance": "/ZAL",
                  "final": "/RZL"}.get(kind, "")
        suffix = f"{middle}/{date.month:02d}/{date.year}"
        pattern = re.compile(r"(\d+)" + re.escape(suffix))
        highest = 0
        for document in collection.values():
            match = pattern.fullmatch(document.get("number") or "")
            if match:
                highest = max(highest, int(match.group(1)))
        return f"{highest + 1}{suffix}"

    def _finish_document_locked(self, document, dates, kind, number, collection):
        now = _ts_iso(self._now())
        inline_client = document.pop("_inline_client", None)
        if inline_client is not None:
            client = self._store_client_locked(inline_client)
            self._counters["clients_created"] += 1
            document["client_id"] = client["id"]
            document["client_uuid"] = client["uuid"]
        document.update({
            "id": self._next_id,
            "uuid": str(uuid.uuid4()),
            "kind": kind,
            "number": number or self._next_number_locked(collection, kind, dates["invoice_date"]),
            "invoice_date": dates["invoice_date"].isoformat(),
            "sale_date": dates["sale_date"].isoformat(),
            "payment_date": dates["payment_date"].isoformat(),
            "paid_date": None,
            "status": dates["status"],
            "split_payment": bool(document.get("split_payment_type")),
            "paid_price": 0,
            "left_to_pay": document["gross_price"],
            "invoice_date_kind": document.get("invoice_date_kind") or "sale_date",
            "not_income": bool(document.get("not_income")),
            "ksef_data": None,
            "ksef_number": None,
            "created_at": now,
            "extensions": {
                "payments": {"link": None, "available": False},
                "shares": {"link": None, "available": False, "valid_until": None},
            },
        })
        self._next_id += 1
        if dates["status"] == "paid" or dates["paid_date"] is not None:
            self._set_paid_locked(document, dates["paid_date"] or dates["invoice_date"])
            if dates["status"] != "paid":
                document["status"] = dates["status"]

    def _services_locked(self, data, errors, message):
        raw_services = data.get("services")
        if not isinstance(raw_services, list) or not raw_services:
            _add_error(errors, "services", message)
            return []
        return [self._price_service(raw, errors) for raw in raw_services]

    def _sum_services(self, document, services):
        document["services"] = services
        for field in ("net_price", "tax_price", "gross_price"):
            document[field] = sum(s[field] for s in services)

    def _build_document_locked(self, kind, data):
        return {
            "invoice": self._build_invoice_locked, "corrective": self._build_corrective_locked,
            "advance": self._build_advance_locked, "final": self._build_final_locked,
        }[kind](data)

    def _build_invoice_locked(self, data):
        errors = {}
        kind = data.get("kind") or "vat"
        if kind not in INVOICE_KINDS:
            _add_error(errors, "kind", "Nieprawidłowy rodzaj faktury (vat lub proforma).")
        document, dates = self._common_locked(data, INVOICE_FIELDS, errors, {}, False)
        services = self._services_locked(
            data, errors, "Faktura musi zawierać co najmniej jedną pozycję.")
        reason = self._check_exemption_locked(data, services, errors, {})
        number = self._number_locked(data, errors, self._invoices, kind, dates["invoice_date"])
        if errors:
            return None, errors
        self._sum_services(document, services)
        document["vat_exemption_reason"] = reason
        self._finish_document_locked(document, dates, kind, number, self._invoices)
        return document, None

    def _advance_chain_locked(self, advance):
        """The advances linked through previous_advance_id, oldest first, ending with
        ``advance``, as ``previous_advances`` entries (PM read-back)."""
        chain = []
        seen = set()
        while advance is not None and advance["id"] not in seen:
            seen.add(advance["id"])
            chain.append({key: advance[key] for key in (
                "id", "uuid", "number", "invoice_date", "advance_price")})
            advance = self._find_by_id_locked(self._advances, advance.get("previous_advance_id"))
        return list(reversed(chain))

    @staticmethod
    def _find_by_id_locked(collection, value):
        if isinstance(value, bool) or value in (None, ""):
            return None
        try:
            wanted = int(value)
        except (TypeError, ValueError):
            return None
        for document in collection.values():
            if document["id"] == wanted:
                return document
        return None

    def _copy_services_locked(self, document):
        services = []
        for row in document["services"]:
            copied = copy.deepcopy(row)
            copied["id"] = self._next_service_id
            self._next_service_id += 1
            services.append(copied)
        return services

    def _build_advance_locked(self, data):
        """An advance invoice (PM "Faktury zaliczkowe"): the services are the whole order,
        ``advance_price`` the down payment (grosze). A later advance links the previous one
        with ``previous_advance_id`` (its numeric id) and may omit ``services`` to repeat its
        items. Read back with kind ``advance``, number ``N/ZAL/MM/YYYY``, net/tax/gross of the
        services, ``previous_advances`` and ``left_to_pay`` = gross − all advances (PM)."""
        errors = {}
        previous = None
        previous_id = data.get("previous_advance_id")
        if previous_id not in (None, ""):
            previous = self._find_by_id_locked(self._advances, previous_id)
            if previous is None:
                _add_error(errors, "previous_advance_id",
                           "Nie znaleziono poprzedniej faktury zaliczkowej.")
        defaults = {}
        if previous is not None:
            defaults = {key: previous.get(key) for key in (
                "payment_method", "bank_account", "currency", "vat_exchange_date_kind",
                "vat_exemption_reason")}
        document, dates = self._common_locked(data, ADVANCE_FIELDS, errors, defaults, False)
        if data.get("services") in (None, []) and previous is not None:
            services = self._copy_services_locked(previous)
        else:
            services = self._services_locked(
                data, errors, "Faktura zaliczkowa musi zawierać pozycje zamówienia.")
        try:
            advance_price = _to_grosze(data.get("advance_price"))
        except ValueError:
            advance_price = None
        if advance_price is None or advance_price <= 0:
            _add_error(errors, "advance_price", "Kwota zaliczki musi być większa od zera.")
        advance_date = self._date_locked(data, "advance_date", errors, dates["invoice_date"])
        reason = self._check_exemption_locked(data, services, errors, defaults)
        number = self._number_locked(data, errors, self._advances, "advance",
                                     dates["invoice_date"])
        if errors:
            return None, errors
        self._sum_services(document, services)
        document["vat_exemption_reason"] = reason
        document["advance_price"] = advance_price
        document["advance_date"] = advance_date.isoformat()
        document["previous_advance_id"] = previous["id"] if previous else None
        document["previous_advances"] = self._advance_chain_locked(previous) if previous else []
        if data.get("not_income") in (None, ""):
            document["not_income"] = True  # PM example: not sent, read back true
        self._finish_document_locked(document, dates, "advance", number, self._advances)
        paid = sum(a["advance_price"] for a in document["previous_advances"]) + advance_price
        if not document["paid_date"]:
            document["left_to_pay"] = document["gross_price"] - paid
        return document, None

    def _build_final_invoice_checks(self, data, errors):
        previous_id = data.get("previous_advance_id")
        if previous_id in (None, ""):
            _add_error(errors, "previous_advance_id",
                       "Podaj ID ostatniej faktury zaliczkowej (previous_advance_id).")
            return None
        last = self._find_by_id_locked(self._advances, previous_id)
        if last is None:
            _add_error(errors, "previous_advance_id",
                       "Nie znaleziono faktury zaliczkowej o podanym ID.")
        return last

    def _build_final_locked(self, data):
        """A final invoice (PM "Faktury końcowe"): ``previous_advance_id`` (required) is the
        numeric id of the last advance; the chain of advances is read back in
        ``previous_advances``. No PM example shows a final invoice read back: kind ``final``,
        number ``N/RZL/MM/YYYY`` (next_number example) and ``left_to_pay`` = gross − advances
        are the simulator's assumptions."""
        errors = {}
        last = self._build_final_invoice_checks(data, errors)
        defaults = {}
        if last is not None:
            defaults = {key: last.get(key) for key in (
                "payment_method", "bank_account", "currency", "vat_exchange_date_kind",
                "vat_exemption_reason")}
        document, dates = self._common_locked(data, FINAL_FIELDS, errors, defaults, False)
        if data.get("services") in (None, []) and last is not None:
            # PM's example "Tworzenie faktury końcowej" sends no services: the simulator
            # takes the order's lines from the last advance, as for a later advance
            services = self._copy_services_locked(last)
        else:
            services = self._services_locked(
                data, errors, "Faktura końcowa musi zawierać co najmniej jedną pozycję.")
        reason = self._check_exemption_locked(data, services, errors, defaults)
        number = self._number_locked(data, errors, self._finals, "final", dates["invoice_date"])
        if errors:
            return None, errors
        self._sum_services(document, services)
        document["vat_exemption_reason"] = reason
        document["previous_advance_id"] = last["id"]
        document["previous_advances"] = self._advance_chain_locked(last)
        self._finish_document_locked(document, dates, "final", number, self._finals)
        if not document["paid_date"]:
            document["left_to_pay"] = document["gross_price"] - sum(
                a["advance_price"] for a in document["previous_advances"])
        return document, None

    def _find_corrected_locked(self, data, errors):
        ref_uuid = data.get("corrected_invoice_uuid")
        ref_number = data.get("corrected_invoice_number")
        if ref_uuid not in (None, ""):
            original = self._invoices.get(str(ref_uuid))
            if original is None:
                _add_error(errors, "corrected_invoice_uuid", "Nie znaleziono faktury korygowanej.")
            return original
        if ref_number in (None, ""):
            _add_error(errors, "corrected_invoice_number",
                       "Numer faktury korygowanej nie może być pusty.")
            return None
        matches = [i for i in self._invoices.values() if i["number"] == str(ref_number).strip()]
        if not matches:
            _add_error(errors, "corrected_invoice_number", "Nie znaleziono faktury korygowanej.")
            return None
        return matches[-1]

    def _build_corrective_locked(self, data):
        errors = {}
        original = self._find_corrected_locked(data, errors)
        defaults = {}
        if original is not None:
            # Assumption (no source settles it): a correction inherits the original's
            # vat_exemption_reason unless it sends its own.
            defaults = {key: original.get(key) for key in (
                "payment_method", "bank_account", "currency", "vat_exchange_date_kind",
                "vat_exemption_reason")}
        reason = data.get("correction_reason")
        if reason not in CORRECTION_REASONS:
            _add_error(errors, "correction_reason",
                       "Przyczyna korekty musi mieć wartość mistake lub other.")
        document, dates = self._common_locked(data, CORRECTIVE_FIELDS, errors, defaults, True)
        raw_services = data.get("services")
        rows = []
        if not isinstance(raw_services, list) or not raw_services:
            _add_error(errors, "services", "Korekta musi zawierać pozycje przed i po korekcie.")
        else:
            groups = {}
            for raw in raw_services:
                # gross_price is read-only on corrective rows: priced from unit_net_price
                service = self._price_service(raw, errors, corrective=True)
                if not isinstance(raw, dict):
                    continue
                group = raw.get("group")
                correction = raw.get("correction")
                if isinstance(correction, str):
                    correction = correction.strip().lower() in ("true", "1", "t")
                if group in (None, "") or not isinstance(correction, bool):
                    _add_error(errors, "services.group",
                               "Każda pozycja korekty wymaga pól group i correction.")
                    continue
                groups.setdefault(str(group), []).append(correction)
                if service is not None:
                    service["_group"] = str(group)
                    service["_correction"] = correction
                    rows.append(service)
            for flags in groups.values():
                if sorted(flags) != [False, True]:
                    _add_error(errors, "services.group",
                               "Każda grupa musi mieć jedną pozycję przed (correction: false) i "
                               "jedną po korekcie (correction: true).")
        exemption = self._check_exemption_locked(data, rows, errors, defaults)
        number = self._number_locked(data, errors, self._correctives, "correction",
                                     dates["invoice_date"])
        if errors:
            return None, errors
        numeric = {}
        for row in rows:
            label = row.pop("_group")
            if label not in numeric:
                numeric[label] = int(label) if label.isdigit() else len(numeric) + 1
            row["group"] = numeric[label]
            row["correction"] = row.pop("_correction")
        document["services"] = rows
        document["vat_exemption_reason"] = exemption
        for field in ("net_price", "tax_price", "gross_price"):
            after = sum(r[field] for r in rows if r["correction"])
            before = sum(r[field] for r in rows if not r["correction"])
            document[field] = after - before
        document["corrected_invoice_uuid"] = original["uuid"]
        document["corrected_invoice_number"] = original["number"]
        document["corrected_invoice_date"] = (data.get("corrected_invoice_date")
                                              or original["invoice_date"])
        document["correction_reason"] = CORRECTION_REASONS[reason]
        document["correction_reason_symbol"] = reason
        document["confirmation"] = bool(document.get("confirmation"))
        document["confirmation_date"] = document.get("confirmation_date") or ""
        self._finish_document_locked(document, dates, "correction", number, self._correctives)
        return document, None

    @staticmethod
    def _invoice_view(document):
        """The document as the API shows it (leading ids, no internal ``_`` keys)."""
        view = {key: None for key in VIEW_FIRST}
        for key, value in document.items():
            if key.startswith("_"):
                continue
            if key == "services":
                value = [
                    dict({"id": row["id"]}, **{k: v for k, v in row.items() if k != "id"})
                    for row in value
                ]
            view[key] = copy.deepcopy(value)
        return view


    # ---------------------------------------------------------------- KSeF

    @staticmethod
    def _ksef_kind(kind):
        return DOC_KINDS[kind][3]

    def _find_document_locked(self, uuid):
        """``(kind, document)`` of any income document by uuid; ``(None, None)`` if none."""
        for kind, collection in self._docs.items():
            if uuid in collection:
                return kind, collection[uuid]
        return None, None

    def _start_ksef_locked(self, document, kind):
        created = _ts_task(self._now())
        data = {
            "request_uuid": str(uuid.uuid4()), "invoice_uuid": document["uuid"],
            "invoice_kind": self._ksef_kind(kind), "ksef_number": None,
            "status": self._config["ksef_pending_status"],
            "status_description": KSEF_DESC_SENT,
            "timestamps": {"request_created_at": created, "request_finished_at": None},
        }
        document["ksef_data"] = data
        outcome = self._config["ksef_outcome"]
        finite = outcome in ("success", "error")
        self._ksef_jobs.append({
            "request_uuid": data["request_uuid"], "invoice_uuid": document["uuid"],
            "kind": kind, "corrective": kind == "corrective", "outcome": outcome,
            "status": data["status"], "created_at": created, "finished_at": None,
            "ksef_number": None,
            "due": time.monotonic() + self._config["ksef_delay"] if finite else None,
        })
        self._counters["ksef_sends"] += 1
        self._cond.notify_all()
        return data

    def _refuse_ksef_locked(self, document, kind):
        now = _ts_task(self._now())
        data = {
            "request_uuid": None, "invoice_uuid": document["uuid"],
            "invoice_kind": self._ksef_kind(kind), "ksef_number": None,
            "status": "rejected", "status_description": MSG_NO_KSEF,
            "timestamps": {"request_created_at": now, "request_finished_at": now},
        }
        document["ksef_data"] = data
        self._emit_locked("send_to_ksef_error", copy.deepcopy(data))

    def _complete_ksef_locked(self, job):
        job["due"] = None
        document = self._docs[job["kind"]].get(job["invoice_uuid"])
        finished = _ts_task(self._now())
        job["finished_at"] = finished
        if document is None or (document.get("ksef_data") or {}).get(
                "request_uuid") != job["request_uuid"]:
            job["status"] = "abandoned"
            return
        data = document["ksef_data"]
        data["timestamps"]["request_finished_at"] = finished
        if job["outcome"] == "success":
            number = "{}-{}-{}-{}".format(
                _digits(self._config["seller_nip"]) or "0000000000",
                self._today().strftime("%Y%m%d"), secrets.token_hex(6).upper(),
                secrets.token_hex(1).upper())
            data.update(status="success", ksef_number=number,
                        status_description=KSEF_DESC_SUCCESS)
            document["ksef_number"] = number
            # after KSeF success the invoice reads back status "sent" (OL live); the
            # status is last-write-wins, so a paid invoice flips too (MED saw that)
            document["status"] = "sent"
            job.update(status="success", ksef_number=number)
            event = "send_to_ksef_success"
        else:
            data.update(status="error", status_description=self._config["ksef_error_description"])
            job["status"] = "error"
            event = "send_to_ksef_error"
        self._emit_locked(event, copy.deepcopy(data))

    def _ksef_send_locked(self, document, kind):
        if document is None:
            raise _error(404, MSG_NOT_FOUND)
        if not self._config["ksef_integration"]:
            raise _error(422, MSG_NO_KSEF)
        if document.get("kind") == "proforma":
            raise _error(422, "Faktura proforma nie może zostać wysłana do KSeF.")
        current = document.get("ksef_data") or {}
        if current.get("status") in ("pending", "sent", "success"):
            raise _error(422, "Dokument został już wysłany do KSeF.")
        return copy.deepcopy(self._start_ksef_locked(document, kind))

    # ---------------------------------------------------------------- listing helpers

    def _list_envelope(self, request, rows, resource):
        try:
            offset = int(request.arg("offset", 0) or 0)
            limit = int(request.arg("limit", DEFAULT_PAGE_SIZE) or DEFAULT_PAGE_SIZE)
        except ValueError:
            raise _error(400, "Parametry offset i limit muszą być liczbami.") from None
        offset = max(0, offset)
        limit = min(100, max(1, limit))
        page = rows[offset:offset + limit]
        host = request.headers.get("Host") or f"127.0.0.1:{self.port}"
        prefix = next((p for p in API_PREFIXES if request.path.startswith(p + "/")), "/api/v3")
        extra = [(k, v) for k, values in request.query.items() if k not in ("offset", "limit")
                 for v in values]

        def link(new_offset):
            query = urllib.parse.urlencode(extra + [("offset", new_offset), ("limit", limit)])
            return f"http://{host}{prefix}/{resource}.json?{query}"

        return {
            "metainfo": {
                # As inFakt reports it: the rows left from offset, capped at the *default*
                # page size whatever the limit (OL live: limit=2 gave count 10; PM: count 1
                # on a last page of one row). Clients must page with total_count and the
                # rows actually returned.
                "count": min(DEFAULT_PAGE_SIZE, max(0, len(rows) - offset)),
                "total_count": len(rows),
                "next": link(offset + limit),
                "previous": link(max(0, offset - limit)),
            },
            "entities": copy.deepcopy(page),
        }

    @staticmethod
    def _filter(request, rows, allowed, computed):
        for key, values in request.query.items():
            match = re.fullmatch(r"q\[(\w+)\]", key)
            if not match or not values:
                continue
            wanted = values[-1]
            name = match.group(1)
            for predicate in PREDICATES:
                if name.endswith(predicate) and name[: -len(predicate)] in allowed:
                    field = name[: -len(predicate)]
                    break
            else:
                continue  # unknown filters are silently ignored, like inFakt

            def value_of(row, field=field):
                return computed[field](row) if field in computed else row.get(field)

            if predicate == "_null":
                want_null = _truthy(wanted)
                rows = [r for r in rows if (value_of(r) in (None, "")) == want_null]
            elif predicate == "_eq":
                rows = [r for r in rows if value_of(r) is not None
                        and str(value_of(r)) == wanted]
            elif predicate == "_cont":
                needle = wanted.lower()
                rows = [r for r in rows if needle in str(value_of(r) or "").lower()]
            else:
                compare = {
                    "_lt": lambda a, b: a < b, "_gt": lambda a, b: a > b,
                    "_lteq": lambda a, b: a <= b, "_gteq": lambda a, b: a >= b,
                }[predicate]

                def ok(row, compare=compare, value_of=value_of, wanted=wanted):
                    value = value_of(row)
                    if value is None:
                        return False
                    if isinstance(value, int):
                        try:
                            return compare(value, int(wanted))
                        except ValueError:
                            return False
                    return compare(str(value), wanted)

                rows = [r for r in rows if ok(r)]
        return rows

    @staticmethod
    def _order(request, rows, default_field, default_desc):
        order = (request.arg("order") or "").split()
        field = default_field
        descending = default_desc
        if order and re.fullmatch(r"\w+", order[0]):
            field = order[0]
            descending = len(order) > 1 and order[1].lower() == "desc"
        return sorted(rows, key=lambda r: (str(r.get(field) or ""), r.get("id") or 0),
                      reverse=descending)

    # ---------------------------------------------------------------- route handlers

    def _wrapped(self, request, key):
        body = request.json()
        payload = body.get(key)
        if not isinstance(payload, dict) or not payload:
            raise _error(400, f"Brak wymaganego parametru lub jest pusty: {key}")
        return body, payload

    def _r_async_create(self, request, kind):
        body, payload = self._wrapped(request, DOC_KINDS[kind][1])
        task = self._new_task_locked(kind, "create_invoice", copy.deepcopy(payload),
                                     send_to_ksef=_truthy(body.get("send_to_ksef", False)))
        self._counters["creates" if kind == "invoice" else f"{kind}_creates"] += 1
        return _json_response(201, self._creation_envelope(task))

    @staticmethod
    def _creation_envelope(task):
        envelope = {
            "timestamps": {"task_created_at": task["created_at"]},
            "invoice_task_reference_number": task["ref"],
            "processing_code": 100,
            "processing_description": DESC[100],
            "invoice_kind": task["kind"],
        }
        if task["action"] == "mark_as_paid":
            envelope["action"] = "mark_as_paid"
            envelope["invoice_uuid"] = task["invoice_uuid"]
        return envelope

    def _r_task_status(self, request, ref, kind):
        task = self._tasks.get(ref)
        if task is None or task["doc"] != kind:
            raise _error(404, MSG_NOT_FOUND)
        return _json_response(200, self._task_view(task, time.monotonic()))

    @staticmethod
    def _paid_date_from(request, wrapper):
        body = request.json()
        paid_date = request.arg("paid_date")
        if paid_date in (None, ""):
            paid_date = body.get("paid_date")
        nested = body.get(wrapper)
        if paid_date in (None, "") and isinstance(nested, dict):
            paid_date = nested.get("paid_date")
        return paid_date

    def _r_async_mark_paid(self, request, uuid):
        if uuid not in self._invoices:
            raise _error(404, MSG_NOT_FOUND)
        paid_date = self._paid_date_from(request, "invoice")
        task = self._new_task_locked("invoice", "mark_as_paid", {"paid_date": paid_date},
                                     invoice_uuid=uuid)
        self._counters["mark_paid"] += 1
        return _json_response(201, self._creation_envelope(task))

    def _r_list_documents(self, request, kind):
        computed = {"clean_client_nip": lambda r: _digits(r.get("client_tax_code")) or None}
        collection = self._docs[kind]
        rows = self._filter(request, list(collection.values()), FILTER_FIELDS[kind], computed)
        rows = self._order(request, rows, "invoice_date", True)
        rows = [{key: value for key, value in self._invoice_view(row).items()
                 if key not in LIST_OMITTED} for row in rows]
        return _json_response(200, self._list_envelope(request, rows, DOC_KINDS[kind][0]))

    def _r_next_number(self, request, kind):
        default = DOC_KINDS[kind][4]
        number_kind = request.arg("kind") or default
        date = _parse_date(request.arg("date") or self._today().isoformat())
        if date is None:
            raise _error(400, "Nieprawidłowa data (RRRR-MM-DD).")
        # PM: {"invoice_kind": "vat"} for invoices, "corrective_invoice", "final_invoice"
        shown = {"correction": "corrective_invoice", "advance": "advance_invoice",
                 "final": "final_invoice"}.get(number_kind, number_kind)
        return _json_response(200, {
            "next_number": self._next_number_locked(self._docs[kind], number_kind, date),
            "invoice_date": date.isoformat(),
            "invoice_kind": shown,
        })

    def _document(self, collection, uuid):
        document = collection.get(uuid)
        if document is None:
            raise _error(404, MSG_NOT_FOUND)
        return document

    def _r_get_document(self, request, uuid, kind):
        return _json_response(200, self._invoice_view(self._document(self._docs[kind], uuid)))

    def _r_delete_document(self, request, uuid, kind):
        collection = self._docs[kind]
        document = self._document(collection, uuid)
        if (document.get("ksef_data") or {}).get("status") in ("pending", "sent", "success"):
            raise _error(422, "Nie można usunąć dokumentu wysłanego do KSeF.")
        del collection[uuid]
        self._counters["deletes"] += 1
        self._emit_locked("invoice_deleted", self._invoice_view(document), invoice_resource=True)
        return _Response(204)

    def _r_pdf(self, request, uuid, kind):
        document = self._document(self._docs[kind], uuid)
        document_type = request.arg("document_type")
        if document_type not in DOCUMENT_TYPES:
            raise _error(400, "Parametr document_type jest wymagany (np. original).")
        locale = request.arg("locale") or "pl"
        if locale not in LOCALES:
            raise _error(400, "Nieobsługiwany parametr locale (pl, en, pe).")
        corrective = kind == "corrective"
        title = {"corrective": "Faktura korygujaca", "advance": "Faktura zaliczkowa",
                 "final": "Faktura koncowa"}.get(kind) or (
            "Faktura proforma" if document["kind"] == "proforma" else "Faktura VAT")
        buyer = document.get("client_company_name") or " ".join(
            p for p in (document.get("client_first_name"), document.get("client_last_name")) if p)
        currency = document["currency"]
        lines = [
            "{} nr {}".format(title, document["number"]),
            f"Dokument: {document_type}, jezyk: {locale}",
            "Data wystawienia: {}   Data sprzedazy: {}   Termin platnosci: {}".format(
                document["invoice_date"], document["sale_date"], document["payment_date"]),
            "Nabywca: {}{}".format(buyer, (" NIP " + document["client_tax_code"])
                               if document.get("client_tax_code") else ""),
        ]
        if corrective:
            lines.append("Korekta faktury nr {} z dnia {} ({})".format(
                document["corrected_invoice_number"], document["corrected_invoice_date"],
                document["correction_reason"]))
        lines.append("Pozycje:")
        for index, service in enumerate(document["services"], start=1):
            prefix = ""
            if corrective:
                stage = "po" if service["correction"] else "przed"
                prefix = f"[grupa {service['group']} {stage}] "
            lines.append(
                f"{index}. {prefix}{service['name']}  ilosc {service['quantity']}  "
                f"netto {_format_money(service['net_price'])}  VAT {service['tax_symbol']}  "
                f"brutto {_format_money(service['gross_price'])}")
        lines += [
            "Razem netto: {} {}".format(_format_money(document["net_price"]), currency),
            "Razem VAT: {} {}".format(_format_money(document["tax_price"]), currency),
            "Razem brutto: {} {}".format(_format_money(document["gross_price"]), currency),
            "Sposob platnosci: {}".format(document["payment_method"]),
        ]
        if kind == "advance":
            lines.append("Zaliczka: {} {}".format(_format_money(document["advance_price"]),
                                                  currency))
        for previous in document.get("previous_advances") or ():
            lines.append("Poprzednia zaliczka nr {}: {} {}".format(
                previous["number"], _format_money(previous["advance_price"]), currency))
        if document.get("bank_account"):
            lines.append("Konto: {}".format(document["bank_account"]))
        if document.get("ksef_number"):
            lines.append("Numer KSeF: {}".format(document["ksef_number"]))
        lines.append("Dokument wygenerowany przez symulator inFakt (nie jest faktura).")
        pdf = build_pdf(lines)
        document["status"] = "printed"
        self._counters["pdf_downloads"] += 1
        filename = re.sub(r"[^A-Za-z0-9_.-]", "_", document["number"]) + ".pdf"
        return _Response(200, pdf, content_type="application/pdf",
                         headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    def _r_sync_paid(self, request, uuid, kind):
        """``POST /{corrective,advance,final}_invoices/{uuid}/paid.json``: synchronous,
        204 (PM; ``paid_date`` as a query parameter, today by default)."""
        document = self._document(self._docs[kind], uuid)
        paid_date = self._paid_date_from(request, DOC_KINDS[kind][1])
        if document["paid_date"]:
            raise _error(422, MSG_ALREADY_PAID)
        parsed = self._today() if paid_date in (None, "") else _parse_date(paid_date)
        if parsed is None:
            raise _error(422, "Nieprawidłowy format daty (RRRR-MM-DD).")
        if parsed < dt.date.fromisoformat(document["invoice_date"]):
            raise _error(422, "Data zapłaty nie może być wcześniejsza niż data wystawienia.")
        self._set_paid_locked(document, parsed)
        self._counters["mark_paid"] += 1
        self._emit_locked("invoice_paid", self._invoice_view(document), invoice_resource=True)
        return _Response(204)

    def _r_send_to_ksef(self, request, uuid, kind):
        request.json()
        return _json_response(200, self._ksef_send_locked(self._docs[kind].get(uuid), kind))

    def _r_ksef1_gone(self, request, **_params):
        raise _error(410, MSG_KSEF1_GONE)

    def _r_ksef_document_send(self, request, uuid):
        request.json()
        kind, document = self._find_document_locked(uuid)
        return _json_response(200, self._ksef_send_locked(document, kind or "invoice"))

    def _r_ksef_bulk_send(self, request):
        """``POST /ksef2/documents/send.json {"uuids": [...]}`` → ``{"entities": [...]}``;
        a document that cannot be sent gets ``status: rejected`` (PM "Wyślij wiele")."""
        body = request.json()
        uuids = body.get("uuids")
        if not isinstance(uuids, list) or not uuids:
            raise _error(400, "Brak wymaganego parametru lub jest pusty: uuids")
        if not self._config["ksef_integration"]:
            raise _error(422, MSG_NO_KSEF)
        entities = []
        for value in uuids:
            kind, document = self._find_document_locked(str(value))
            if document is None:
                continue  # unknown uuids are left out of "entities"
            try:
                entities.append(self._ksef_send_locked(document, kind))
            except _HTTPError:
                now = _ts_task(self._now())
                entities.append({
                    "request_uuid": None, "invoice_uuid": document["uuid"],
                    "invoice_kind": self._ksef_kind(kind), "ksef_number": None,
                    "status": "rejected", "status_description": KSEF_DESC_REJECTED,
                    "timestamps": {"request_created_at": now, "request_finished_at": None},
                })
        return _json_response(200, {"entities": entities})

    def _r_ksef_document_status(self, request, uuid):
        _kind, document = self._find_document_locked(uuid)
        if document is None:
            raise _error(404, MSG_NOT_FOUND)
        if not self._config["ksef_integration"]:
            raise _error(422, MSG_NO_KSEF)
        if not document.get("ksef_data"):
            raise _error(404, MSG_NOT_FOUND)
        return _json_response(200, copy.deepcopy(document["ksef_data"]))

    def _r_ksef_integration(self, request):
        return _json_response(200, {"active": bool(self._config["ksef_integration"]),
                                    "incomes_last_fetched_at": None,
                                    "costs_last_fetched_at": None})

    def _r_email(self, request, uuid, kind):
        document = self._document(self._docs[kind], uuid)
        body = request.json()
        recipient = body.get("recipient") or document.get("_client_email")
        if not recipient:
            raise _error(422, "adres e-mail Klienta jest nieznany")
        document["status"] = "sent"
        self._counters["emails"] += 1
        return _Response(202, b"")

    def _r_list_clients(self, request):
        computed = {"clean_nip": lambda r: _digits(r.get("nip")) or None}
        rows = self._filter(request, list(self._clients.values()), CLIENT_FILTER_FIELDS,
                            computed)
        rows = self._order(request, rows, "id", False)
        return _json_response(200, self._list_envelope(request, rows, "clients"))

    def _r_create_client(self, request):
        _body, payload = self._wrapped(request, "client")
        errors = {}
        company = _text(payload.get("company_name"))
        if not company and not (_text(payload.get("first_name"))
                                and _text(payload.get("last_name"))):
            _add_error(errors, "company_name", "Nazwa firmy lub imię i nazwisko są wymagane.")
        if not _text(payload.get("country")):
            _add_error(errors, "country", "Kraj nie może być pusty.")
        postal = payload.get("postal_code")
        if postal and (payload.get("country") in (None, "PL")) and not re.fullmatch(
                r"\d{2}-\d{3}", str(postal)):
            _add_error(errors, "postal_code", "Kod pocztowy musi mieć format NN-NNN.")
        if errors:
            raise _HTTPError(422, {"errors": errors})
        payload = {k: v for k, v in payload.items() if k not in ("id", "uuid")}
        return _json_response(201, copy.deepcopy(self._store_client_locked(payload)))

    def _r_get_client(self, request, id):
        client = self._find_client_locked(id)
        if client is None:
            raise _error(404, MSG_NOT_FOUND)
        return _json_response(200, copy.deepcopy(client))

    def _r_list_bank_accounts(self, request):
        rows = [{k: v for k, v in a.items() if k != "verified"}
                for a in self._config["bank_accounts"]]
        return _json_response(200, self._list_envelope(request, rows, "bank_accounts"))

    def _r_list_vat_rates(self, request):
        rows = [{"id": i, "rate": rate, "name": name, "symbol": symbol,
                 "valid_from": valid_from, "valid_until": valid_until}
                for i, symbol, rate, name, valid_from, valid_until in VAT_RATES]
        return _json_response(200, self._list_envelope(request, rows, "vat_rates"))

    def _r_list_vat_exemptions(self, request):
        return _json_response(200, self._list_envelope(request, list(VAT_EXEMPTIONS),
                                                       "vat_exemptions"))

    def _r_get_vat_exemption(self, request, id):
        for row in VAT_EXEMPTIONS:
            if row["id"] == int(id):
                return _json_response(200, copy.deepcopy(row))
        raise _error(404, MSG_NOT_FOUND)

    @staticmethod
    def _gtu_row(row):
        return {"id": row[0], "name": f"GTU_{row[0]:02d}", "short_description": row[1],
                "description": row[2]}

    def _r_list_gtus(self, request):
        rows = [self._gtu_row(row) for row in GTUS]
        return _json_response(200, self._list_envelope(request, rows, "gtus"))

    def _r_get_gtu(self, request, id):
        for row in GTUS:
            if row[0] == int(id):
                return _json_response(200, self._gtu_row(row))
        raise _error(404, MSG_NOT_FOUND)

    def _r_list_document_markings(self, request):
        rows = [{"id": i, "code": code, "short_description": short, "description": long}
                for i, code, short, long in DOCUMENT_MARKINGS]
        return _json_response(200, self._list_envelope(request, rows,
                                                       "documents_markings/incomes"))

    def _r_list_transaction_kinds(self, request):
        rows = [{"id": i, "name": name, "symbol": symbol} for i, name, symbol in TRANSACTION_KINDS]
        return _json_response(200, self._list_envelope(request, rows, "transaction_kinds"))

# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="Local inFakt API v3 simulator (loopback).")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0 = any free port)")
    parser.add_argument("--api-key", action="append", dest="api_keys", metavar="KEY",
                        help="accepted API key, repeatable (default: sim-api-key)")
    parser.add_argument("--task-delay", type=float, default=0.5, metavar="SECONDS")
    parser.add_argument("--rate-window", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--rate-limit-get", type=int, default=300)
    parser.add_argument("--rate-limit-write", type=int, default=150)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-secret", default=None,
                        help="HMAC secret (or env INFAKT_SIMULATOR_WEBHOOK_SECRET)")
    parser.add_argument("--webhook-active", action="store_true",
                        help="start with the webhook already verified (active)")
    parser.add_argument("--ksef-delay", type=float, default=0.5, metavar="SECONDS")
    parser.add_argument("--ksef-outcome", default="success", choices=sorted(KSEF_OUTCOMES))
    parser.add_argument("--no-ksef-integration", action="store_true",
                        help="behave like an account without KSeF integration")
    parser.add_argument("--timezone", default=DEFAULT_TIMEZONE, metavar="ZONE",
                        help="zone of the simulator's dates: an IANA name, UTC or local "
                             "(default Europe/Warsaw, as inFakt)")
    parser.add_argument("--now", default=None, metavar="ISO-TIME",
                        help="start the clock at this instant (e.g. 2026-11-24T23:30:00Z); "
                             "it runs on from there")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse_args(argv)
    config = {
        "rate_limit_get": args.rate_limit_get,
        "rate_limit_write": args.rate_limit_write,
        "webhook_url": args.webhook_url,
        "webhook_secret": args.webhook_secret
        or os.environ.get("INFAKT_SIMULATOR_WEBHOOK_SECRET"),
        "ksef_delay": args.ksef_delay,
        "ksef_outcome": args.ksef_outcome,
        "ksef_integration": not args.no_ksef_integration,
        "timezone": args.timezone,
    }
    if args.now:
        try:
            start = _parse_instant(args.now)
        except ValueError:
            print(f"inFakt simulator: --now {args.now!r} is not an ISO time "
                  "(e.g. 2026-11-24T23:30:00Z)", file=sys.stderr, flush=True)
            return 2
        config["clock_offset"] = (start - _real_utc_now()).total_seconds()
    if args.webhook_active:
        config["webhook_status"] = "active"
    api_keys = tuple(args.api_keys or ("sim-api-key",))
    try:
        simulator = InfaktSimulator(
            host=args.host, port=args.port, api_keys=api_keys, task_delay=args.task_delay,
            rate_window=args.rate_window, quiet=args.quiet, **config)
    except ValueError as exc:
        print(f"inFakt simulator: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()

    def _on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        simulator.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            reason = "the port is already in use (another simulator? try --port 0 or another)"
        print(f"inFakt simulator: cannot listen on {args.host}:{args.port}: {reason}",
              file=sys.stderr, flush=True)
        return 1
    print(f"inFakt simulator listening on {simulator.base_url}", flush=True)
    print("Accepted API key{}: {}  (header X-inFakt-ApiKey)".format(
        "s" if len(api_keys) > 1 else "", ", ".join(api_keys)), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
