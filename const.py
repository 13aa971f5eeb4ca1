"""Constants of l10n_pl_infakt: document states, schedules, and what each answer of inFakt does
to a document in each step of the engine (one table, read by ``models/infakt_document_*.py``).

A newcomer's map of the engine (a file per step, in the order a document goes through them;
each step is a service model ``infakt.document.<step>`` with ``_pick``, ``_process`` and
``_crashed``):

- ``models/infakt_document.py``: the record, its states and the only methods that change them.
- ``models/infakt_document_runner.py``: the batch runner every step runs in (time budget,
  one transaction per document, any failure is that document's alone).
- ``models/infakt_document_queue.py``: 1. queued when an invoice is posted.
- ``models/infakt_document_send.py``: 2. sent (intent committed, POST, result recorded).
- ``models/infakt_document_complete.py``: 3. completed — shared: read-back, identity, senders
  that died, webhook nudges; ``..._poll.py``: 3a. the task of a create;
  ``..._lookup.py``: 3b. a document in doubt looked up by its number.
- ``models/infakt_document_attach.py``: 4. the PDF attached to the invoice and its orders.
- ``models/infakt_document_ksef.py``, ``..._payment.py``, ``..._refresh.py``: 5. follow-ups
  (KSeF, mark paid, read again after a webhook).
- ``models/infakt_document_cron.py``: the two scheduled actions that run the steps above.
- ``models/infakt_payload.py``: the Odoo -> inFakt mapping of an invoice or credit note.
"""

from odoo.tools.translate import LazyTranslate

from .infakt_api import errors as infakt_errors
from .infakt_api.payload import PAYMENT_METHODS as INFAKT_PAYMENT_METHOD_CODES

_lt = LazyTranslate(__name__)

# ---------------------------------------------------------------------------------------------
# States
# ---------------------------------------------------------------------------------------------
STATES = [
    ("to_send", "To send"),
    ("sending", "Sending"),
    ("processing", "Processing in inFakt"),
    ("done", "Done"),
    ("error", "Error"),
    ("in_doubt", "In doubt"),
    ("cancelled", "Cancelled"),
]
# ``error`` means: inFakt certainly does not hold the document (it was refused before or by
# validation), so the invoice may be reset to draft. Everything uncertain is ``in_doubt``.
# Documents in these states exist, or may exist, in inFakt: their invoice is frozen.
LOCKING_STATES = ("sending", "processing", "done", "in_doubt")
# Documents on their way to inFakt (a correction waits for its invoice while it is one of these).
ON_ITS_WAY = ("to_send", "sending", "processing", "in_doubt")

KSEF_STATES = [
    ("none", "Not sent"),
    ("pending", "Pending"),
    ("success", "Accepted"),
    ("error", "Error"),
    ("manual", "Check in inFakt"),
]
DOCUMENT_TYPES = [("invoice", "FV - Invoice"), ("correction", "KOR - Correction")]
# What one exchange sends: the series' types, plus the advance invoice (a down payment invoice of
# a sale order, *faktura zaliczkowa*) and the final invoice that deducts the down payments
# (*faktura końcowa*), both of the invoice series of their journal (art. 106b ust. 1 pkt 4 and
# art. 106f of the VAT act: they are not plain invoices).
EXCHANGE_DOCUMENT_TYPES = DOCUMENT_TYPES + [
    ("advance", "ZAL - Advance invoice"),
    ("final", "RZL - Final invoice"),
]
# The inFakt payment methods with their labels (the codes come from the pure package).
PAYMENT_METHOD_LABELS = {
    "transfer": "Transfer",
    "cash": "Cash",
    "card": "Card",
    "barter": "Barter",
    "check": "Cheque",
    "bill_of_sale": "Bill of exchange",
    "delivery": "Cash on delivery",
    "compensation": "Compensation",
    "accredited": "Letter of credit",
    "paypal": "PayPal",
    "instalment_sale": "Instalment sale",
    "payu": "PayU",
    "tpay": "Tpay",
    "przelewy24": "Przelewy24",
    "dotpay": "Dotpay",
    "other": "Other",
}
INFAKT_PAYMENT_METHODS = [(code, PAYMENT_METHOD_LABELS[code]) for code in
                          INFAKT_PAYMENT_METHOD_CODES]

# ---------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------
# A run of a scheduled action stops starting new work this many seconds before Odoo's real-time
# limit of cron jobs would kill it: the limit, less the idle wait of a prefork cron worker
# (counted by the same watchdog), less one full HTTP exchange, less a margin.
CRON_IDLE_SECONDS = 70  # odoo.service.server.SLEEP_INTERVAL + pid % 10
RUN_MARGIN_SECONDS = 5
RUN_MIN_SECONDS = 5
RUN_MAX_SECONDS = 30
# Seconds to wait for inFakt: to connect, and for each read of the answer.
HTTP_CONNECT_TIMEOUT = 5.0
HTTP_READ_TIMEOUT = 30.0
# While a run has time left, it waits for work due this soon instead of ending.
RUN_WAIT_SLICE = 0.25

# Retries of a create that certainly did not reach inFakt (connection refused, 408, 423...).
BACKOFF_BASE = 10.0
BACKOFF_CAP = 3600.0
# Task status polls after a create: a little after sending, then spaced out.
POLL_SCHEDULE = (1, 1, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)
# A task still pending after this many hours is left to a person ("check in inFakt").
POLL_MAX_HOURS = 72
# Look-ups by number of documents in doubt: spaced out, never given up.
LOOKUP_SCHEDULE = (2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# A document in doubt not found in inFakt this long after it was sent is safe to send again.
TASK_WINDOW_SECONDS = 600
# A document left in ``sending`` this long is in doubt even if its sender looks alive (a lease
# that covers connection poolers and network partitions, where session locks cannot tell).
SENDING_LEASE_SECONDS = 300
# A credit note waits for its invoice to be in inFakt, checking again this often.
CORRECTION_WAIT_SECONDS = 30
# PDF downloads that fail are tried again on this schedule, then given up (said in the chatter).
PDF_SCHEDULE = (5, 30, 120, 600, 1800, 3600)
PDF_MAX_ATTEMPTS = 8
# Mark-paid requests that failed for a while, and their tasks, are read on this schedule.
PAID_SCHEDULE = (1, 2, 5, 10, 30, 60, 300, 900, 3600)
# KSeF can stay pending for hours: waiting, not failure. After this many days: check manually.
KSEF_SCHEDULE = (3, 10, 30, 60, 300, 900, 1800, 3600)
KSEF_MAX_DAYS = 7
# Webhook events that match no document yet (the task reference is committed a moment after the
# create) are kept this long before they are ignored.
EVENT_GRACE_SECONDS = 600
# Records taken per step in one pass of the processor, so that every step gets its share of the
# reads in every pass (PDFs are never starved by completions, nor the other way round).
PROCESS_BATCH = 5

# Namespace of the PostgreSQL session advisory lock a sender holds while a create is under way.
ADVISORY_LOCK_NAMESPACE = 740_502_318

# ---------------------------------------------------------------------------------------------
# What an inFakt answer does, per step
# ---------------------------------------------------------------------------------------------
# Outcomes (implemented in models/infakt_document_runner.py and the step files):
#   block_account  the account stops (key, plan or permission): one message on the account,
#                  the documents keep their place
#   pause          inFakt asks to slow down: the step stops, the pacer waits
#   retry          temporary: this record is tried again later (backoff)
#   in_doubt       a create may have reached inFakt: look it up by number, never resend blindly
#   refused        inFakt refused the data: the record needs a person (the message says what)
#   not_found      the resource is not (or no longer) in inFakt
#   gone           inFakt retired the endpoint: stop and say so
SEND_OUTCOMES = (
    (infakt_errors.InfaktAuthError, "block_account"),
    (infakt_errors.InfaktPlanError, "block_account"),
    (infakt_errors.InfaktPermissionError, "block_account"),
    (infakt_errors.InfaktRateLimited, "pause"),
    (infakt_errors.InfaktInDoubt, "in_doubt"),
    (infakt_errors.InfaktTransientError, "retry"),
    (infakt_errors.InfaktLocked, "retry"),
    # A 2xx whose body cannot be read: the create may have been accepted.
    (infakt_errors.InfaktUnexpectedResponse, "in_doubt"),
    (infakt_errors.InfaktValidationError, "refused"),
    (infakt_errors.InfaktError, "refused"),
)
READ_OUTCOMES = (
    (infakt_errors.InfaktAuthError, "block_account"),
    (infakt_errors.InfaktPlanError, "block_account"),
    (infakt_errors.InfaktPermissionError, "block_account"),
    (infakt_errors.InfaktRateLimited, "pause"),
    (infakt_errors.InfaktNotFound, "not_found"),
    (infakt_errors.InfaktGone, "gone"),
    (infakt_errors.InfaktError, "retry"),
)


def outcome_of(error, table):
    """The outcome of ``error`` in ``table`` (the first class it is an instance of)."""
    for error_class, outcome in table:
        if isinstance(error, error_class):
            return outcome
    return "retry"


# Words for the errors of inFakt, by class (the first that matches): each says what happened
# (unreachable, no answer, inFakt's own failure, key rejected, plan without API, permission,
# refused data) and what to do. ``%(message)s`` is the technical detail (or inFakt's own
# message, in Polish), ``%(status)s`` the HTTP status.
ERROR_MESSAGES = (
    (infakt_errors.InfaktAuthError, _lt(
        "inFakt rejected the API key (HTTP 401): the key is wrong, was deleted or expired. "
        "Create a new key in inFakt (Settings > Other options > API), paste it in New API Key "
        "on the inFakt account and click Test connection.")),
    (infakt_errors.InfaktPlanError, _lt(
        "The inFakt plan of this account does not include the API, or one of its limits was "
        "reached (HTTP 402). Change the plan in inFakt, then click Test connection.")),
    (infakt_errors.InfaktPermissionError, _lt(
        "inFakt refused the request (HTTP 403): the API key lacks a permission, or inFakt "
        "blocks this server's address. Create a key with the invoice read and write "
        "permissions (and KSeF if you file with KSeF through inFakt).")),
    (infakt_errors.InfaktRateLimited, _lt(
        "inFakt asks to slow down (rate limit): it is tried again in a moment.")),
    (infakt_errors.InfaktInDoubt, _lt(
        "The answer of inFakt was lost: whether the document was created is being checked.")),
    (infakt_errors.InfaktUnreachable, _lt(
        "inFakt could not be reached: no connection (%(message)s). The API key was not "
        "checked. Check the server's internet connection and the environment (API URL) of the "
        "inFakt account; waiting documents are sent when inFakt answers again.")),
    (infakt_errors.InfaktTimeout, _lt(
        "inFakt did not answer in time (%(message)s): it is tried again later.")),
    (infakt_errors.InfaktServerError, _lt(
        "inFakt had an internal error (HTTP %(status)s). Nothing to fix in Odoo: it is tried "
        "again later.")),
    (infakt_errors.InfaktTransientError, _lt(
        "inFakt could not be reached (%(message)s).")),
    (infakt_errors.InfaktLocked, _lt("The document is locked in inFakt for a moment.")),
    (infakt_errors.InfaktGone, _lt(
        "inFakt no longer offers this function of its API (%(message)s). Update the module.")),
    (infakt_errors.InfaktNotFound, _lt("inFakt does not know this document (HTTP 404).")),
    (infakt_errors.InfaktUnexpectedResponse, _lt(
        "inFakt answered something unexpected (%(message)s).")),
    (infakt_errors.InfaktValidationError, _lt("inFakt refused the data: %(message)s")),
    (infakt_errors.InfaktError, _lt("inFakt refused the request: %(message)s")),
)

# inFakt field names (validation errors) -> what to fix in Odoo.
FIELD_HINTS = {
    "payment_method": _lt(
        "the payment method mapping of the inFakt account (or the payment terms of the invoice)"),
    "bank_account": _lt(
        "the bank account for transfers on the inFakt account: open the account, click Refresh "
        "bank accounts and choose the account inFakt knows"),
    "tax_symbol": _lt("the taxes of the invoice lines (inFakt Tax Symbol on the tax)"),
    "services": _lt("the invoice lines"),
    "name": _lt("the labels of the invoice lines"),
    "gross": _lt("the prices and taxes of the invoice lines"),
    "tax_values": _lt("the taxes of the invoice lines"),
    "vat_exemption_reason": _lt(
        "the VAT exemption basis (on the tax, or the default on the inFakt account)"),
    "client_company_name": _lt("the name of the customer"),
    "client_first_name": _lt("the name of the customer"),
    "client_last_name": _lt("the name of the customer"),
    "client_tax_code": _lt("the Tax ID (NIP) of the customer"),
    "client_street": _lt("the address (street) of the customer"),
    "client_city": _lt("the address (city) of the customer"),
    "client_post_code": _lt("the address (ZIP) of the customer"),
    "client_country": _lt("the country of the customer"),
    "client_id": _lt("the customer"),
    "currency": _lt("the currency of the invoice"),
    "vat_exchange_date_kind": _lt("the currency of the invoice"),
    "number": _lt("the invoice number (it is already used in inFakt)"),
    "invoice_date": _lt("the invoice date"),
    "sale_date": _lt("the invoice date"),
    "payment_date": _lt("the due date of the invoice"),
    "corrected_invoice_number": _lt("the invoice this credit note reverses"),
    "corrected_invoice_uuid": _lt("the invoice this credit note reverses"),
    "correction_reason": _lt("the reason of the credit note"),
    "status": _lt("the payment status in inFakt"),
}

# inFakt field names (validation errors) -> the record a person opens to fix them (the first
# field of an error that has one wins; see ``infakt.document._infakt_fix_action``):
#   bank      the inFakt account, on its bank accounts (Refresh bank accounts)
#   payment   the payment method mapping of the inFakt account
#   tax       the taxes of the invoice lines
#   customer  the customer of the invoice
FIX_TARGETS = [
    ("account", "inFakt account"),
    ("bank", "Bank accounts"),
    ("payment", "Payment methods"),
    ("tax", "Taxes"),
    ("customer", "Customer"),
]
FIELD_FIX_TARGETS = {
    "bank_account": "bank",
    "payment_method": "payment",
    "tax_symbol": "tax",
    "tax_values": "tax",
    "gross": "tax",
    "vat_exemption_reason": "tax",
    "client_company_name": "customer",
    "client_first_name": "customer",
    "client_last_name": "customer",
    "client_tax_code": "customer",
    "client_street": "customer",
    "client_city": "customer",
    "client_post_code": "customer",
    "client_country": "customer",
    "client_id": "customer",
}


def fix_target_of(field_errors):
    """The record to open to fix inFakt's ``field_errors`` (a FIX_TARGETS key), or False."""
    for field in field_errors or {}:
        key = str(field).split("[")[0]
        target = FIELD_FIX_TARGETS.get(key) or FIELD_FIX_TARGETS.get(key.split(".")[-1])
        if target:
            return target
    return False


# ---------------------------------------------------------------------------------------------
# Legal content (JPK_V7 and KSeF are filed by inFakt from what is sent)
# ---------------------------------------------------------------------------------------------
# Percentage taxes mapped by their rate when nothing else says what they are. 0 % is not among
# them: a 0 % tax may be a 0 % rate, an exemption (zw) or a supply outside Poland (np), which
# the law tells apart on the invoice and in JPK_V7 (K_10 / K_11 / K_13 / K_21 / K_22).
AUTOMATIC_RATES = {23.0: "23", 8.0: "8", 5.0: "5"}

# The sale taxes of Odoo's Polish chart (l10n_pl, data/template/account.tax-pl.csv), by template
# id: a company's tax made from the template has the xmlid ``account.<company id>_<template
# id>``. ``symbol``: inFakt's tax_symbol; ``markings``: codes of inFakt's income-document
# markings (/documents_markings/incomes.json) the document gets; ``note``: words the law
# requires on the invoice. An explicit inFakt Tax Symbol on the tax always wins. Articles are
# those of the VAT act (ustawa z dnia 11 marca 2004 r. o podatku od towarów i usług); JPK_V7
# fields as the chart tags the taxes.
L10N_PL_TAXES = {
    # Domestic rates 23, 8 and 5 % (art. 41; K_19, K_17, K_15).
    "vs_kraj_23": {"symbol": "23"},
    "vs_kraj_usl_23": {"symbol": "23"},
    "vs_kraj_8": {"symbol": "8"},
    "vs_kraj_5": {"symbol": "5"},
    # Domestic 0 % (art. 83, art. 41 ust. 3 etc., K_13) and 0 % to travellers (art. 129, K_14).
    "vs_kraj_0": {"symbol": "0"},
    "vs_zwrot_podróżnych_0": {"symbol": "0"},
    # Exempt supplies (art. 43, 113, 82 ...; K_10) and exempt investment gold (art. 122): "zw",
    # and the invoice states the legal basis of the exemption (art. 106e ust. 1 pkt 19a).
    "vs_kraj_zw": {"symbol": "zw"},
    "vs_kraj_zw_gold": {"symbol": "zw"},
    # Intra-Community supply of goods, WDT (art. 13 and art. 42; K_21): 0 %.
    "vs_unia": {"symbol": "0"},
    # WDT after an import in customs procedure 42 / 63 (K_21; JPK_V7 markings I_42 / I_63).
    "vs_unia_i42": {"symbol": "0", "markings": ("I_42",)},
    "vs_unia_i63": {"symbol": "0", "markings": ("I_63",)},
    # Triangular supply by the second taxpayer in the simplified procedure (art. 135-138):
    # supplied in the buyer's country, so outside Poland (K_11), marked TT_D, and the invoice
    # carries the words of art. 136 ust. 1 pkt 1.
    "vs_unia_triangular": {
        "symbol": "np", "markings": ("TT_D",),
        "note": "VAT: Faktura WE uproszczona na mocy art. 135-138 ustawy o ptu",
    },
    # Services to a taxable person of another Member State: supplied where the buyer is
    # (art. 28b; K_11 and K_12), so "np"; the buyer accounts for the VAT (reverse charge) and
    # the invoice says "odwrotne obciążenie" (art. 106e ust. 1 pkt 18). inFakt's own reverse
    # charge symbol "oo" was the domestic reverse charge of art. 17 ust. 1 pkt 7 and 8, repealed
    # on 1 November 2019 (Dz.U. 2019 poz. 1751); inFakt expresses this reverse charge as "np".
    "vs_dostu": {"symbol": "np", "note": "odwrotne obciążenie"},
    # Export of goods (art. 2 pkt 8 and art. 41 ust. 4; K_22): 0 %.
    "vs_eksp_tow": {"symbol": "0"},
    # Services to buyers outside the EU, supplied outside Poland (art. 28b; K_11): "np".
    "vs_ekspu": {"symbol": "np"},
    # "0% Steel" (vs_stal, K_31) is the domestic reverse charge of Annex 11 goods (art. 17
    # ust. 1 pkt 7), repealed on 1 November 2019: no automatic symbol (a configuration problem
    # if used); a correction of an earlier supply sets "oo" on the tax explicitly.
}
# Markings of Odoo's Polish invoice fields (l10n_pl, account.move) -> inFakt marking codes.
L10N_PL_MOVE_MARKINGS = {
    "l10n_pl_vat_b_spv": "B_SPV",
    "l10n_pl_vat_b_spv_dostawa": "B_SPV_DOSTAWA",
    "l10n_pl_vat_b_mpv_prowizja": "B_MPV_PROWIZJA",
}
# Related parties (JPK_V7 "TP"): the customer's "Links With Company" (l10n_pl, res.partner).
TP_MARKING_CODE = "TP"
# Split payment (MPP): art. 108a ust. 1a and art. 106e ust. 1 pkt 18a: an invoice whose total
# ("kwota należności ogółem") exceeds 15 000 PLN (or its equivalent in a foreign currency) for
# goods or services of Annex 15, between taxable persons, carries "mechanizm podzielonej
# płatności" (inFakt: split_payment_type "required", which also marks MPP in JPK_V7).
SPLIT_PAYMENT_THRESHOLD_PLN = 15000

# When the account's webhooks are alive (an authentic delivery within WEBHOOK_ALIVE_SECONDS),
# the first task poll of a create waits this long, so that the webhook usually completes the
# document first (no read spent on a pending task); polling stays the fallback.
WEBHOOK_FIRST_POLL_SECONDS = 5
WEBHOOK_ALIVE_SECONDS = 900
# A sender run wakes the processor at most this often (and once more when it ends).
PROCESSOR_NUDGE_SECONDS = 2.0

def fixable(error, target, record=None):
    """``error`` (raised before sending) tagged with what to open to fix it (FIX_TARGETS)."""
    error.infakt_fix = target
    error.infakt_fix_res_id = record.id if record else False
    return error
