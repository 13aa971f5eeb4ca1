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


# Words for the errors of inFakt, by class (the first that matches). ``%(message)s`` is inFakt's
# own message (in Polish).
ERROR_MESSAGES = (
    (infakt_errors.InfaktAuthError, _lt(
        "inFakt rejected the API key (401). Create a new key in inFakt (Settings > API) and paste "
        "it on the inFakt account.")),
    (infakt_errors.InfaktPlanError, _lt(
        "The inFakt plan of this account does not include the API, or a plan limit was reached "
        "(402). Change the plan in inFakt.")),
    (infakt_errors.InfaktPermissionError, _lt(
        "inFakt refused the request (403): the API key lacks a permission (create a key with the "
        "invoices read and write scopes) or inFakt blocked this server's address.")),
    (infakt_errors.InfaktRateLimited, _lt(
        "inFakt asks to slow down (rate limit): it is tried again in a moment.")),
    (infakt_errors.InfaktInDoubt, _lt(
        "The answer of inFakt was lost: whether the document was created is being checked.")),
    (infakt_errors.InfaktTransientError, _lt(
        "inFakt could not be reached (%(message)s).")),
    (infakt_errors.InfaktLocked, _lt("The document is locked in inFakt for a moment.")),
    (infakt_errors.InfaktGone, _lt(
        "inFakt no longer offers this function of its API (%(message)s). Update the module.")),
    (infakt_errors.InfaktNotFound, _lt("inFakt does not know this document (404).")),
    (infakt_errors.InfaktUnexpectedResponse, _lt(
        "inFakt answered something unexpected (%(message)s).")),
    (infakt_errors.InfaktError, _lt("inFakt refused the request: %(message)s")),
)

# inFakt field names (validation errors) -> what to fix in Odoo.
FIELD_HINTS = {
    "payment_method": _lt(
        "the payment method mapping of the inFakt account (or the payment terms of the invoice)"),
    "bank_account": _lt(
        "the bank account for transfers on the inFakt account (open the account, click Refresh "
        "bank accounts, and verify the account in inFakt)"),
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
