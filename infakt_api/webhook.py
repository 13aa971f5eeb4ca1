"""inFakt webhook helpers: signature check, verification ping, event parsing.

inFakt signs every delivery with ``X-Infakt-Signature`` = hex HMAC-SHA256 of the raw
request body, keyed with the per-webhook secret shown in inFakt's web panel. The
activation ping is ``{"verification_code": "<random>"}`` and must be echoed back.
"""

import hashlib
import hmac
import json
from dataclasses import dataclass, field

from .errors import normalize_errors

SIGNATURE_HEADER = "X-Infakt-Signature"
MAX_NAME_LENGTH = 255

# The seven event names of inFakt's documentation (PM "Webhooki", table of events).
DOCUMENTED_EVENTS = frozenset({
    "draft_invoice_created",
    "invoice_paid",
    "invoice_deleted",
    "send_to_ksef_success",
    "send_to_ksef_error",
    "async_invoice_creation_success",
    "async_invoice_creation_error",
})

# inFakt's "Nowy webhook" form has nine events (OL screenshot if4); the two undocumented ones
# are "Faktura oznaczona jako zapłacona przez async API inFakt" and "Błąd oznaczenia faktury
# jako zapłaconej przez async API inFakt". Their names are OL's guesses, not confirmed live.
MARK_PAID_ASYNC_EVENT = "invoice_marked_as_paid_via_async_api"
MARK_PAID_ASYNC_ERROR_EVENT = "invoice_marking_as_paid_error_via_async_api"
ASYNC_MARK_PAID_EVENTS = frozenset({MARK_PAID_ASYNC_EVENT, MARK_PAID_ASYNC_ERROR_EVENT})

# Event name -> what it is about, so receivers route without lists of strings:
# ``creation`` (async create finished: success or error), ``ksef`` (KSeF success/error),
# ``paid`` (the invoice was marked paid), ``deleted``, ``draft`` (a draft was created), and
# ``mark_paid_async`` (an async mark-paid task finished: success or error).
EVENT_CATEGORIES = {
    "async_invoice_creation_success": "creation",
    "async_invoice_creation_error": "creation",
    "send_to_ksef_success": "ksef",
    "send_to_ksef_error": "ksef",
    "invoice_paid": "paid",
    "invoice_deleted": "deleted",
    "draft_invoice_created": "draft",
    MARK_PAID_ASYNC_EVENT: "mark_paid_async",
    MARK_PAID_ASYNC_ERROR_EVENT: "mark_paid_async",
    # names OL uses in place of the documented ones (tolerated, never sent by PM's list)
    "invoice_marked_as_paid": "paid",
    "invoice_created_via_async_api": "creation",
}
EVENT_CATEGORY_NAMES = ("creation", "ksef", "paid", "deleted", "draft", "mark_paid_async")

# Every name acted on; any other name is still answered 2xx and ignored.
KNOWN_EVENTS = frozenset(EVENT_CATEGORIES)
ERROR_EVENTS = frozenset({
    "async_invoice_creation_error", "send_to_ksef_error", MARK_PAID_ASYNC_ERROR_EVENT,
})


def event_category(name):
    """The category (see :data:`EVENT_CATEGORIES`) of an event name; None when unknown."""
    if not isinstance(name, str):
        return None
    return EVENT_CATEGORIES.get(name.strip())


class WebhookPayloadError(ValueError):
    """The webhook body is not a valid inFakt payload."""


def _as_bytes(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError("expected bytes")


def compute_signature(secret, raw_body):
    """Lower-case hex HMAC-SHA256 of ``raw_body`` keyed with ``secret``."""
    return hmac.new(_as_bytes(secret), _as_bytes(raw_body), hashlib.sha256).hexdigest()


def verify_signature(secret, raw_body, signature_header_value):
    """True when the header is the HMAC-SHA256 of the raw body (constant-time check).

    Hex case and surrounding whitespace are ignored (a ``sha256=`` prefix too). An empty
    secret or header, or any junk, gives False; this never raises.
    """
    try:
        if not secret or not signature_header_value or raw_body is None:
            return False
        candidate = signature_header_value
        if isinstance(candidate, (bytes, bytearray, memoryview)):
            candidate = bytes(candidate).decode("ascii")
        if not isinstance(candidate, str):
            return False
        candidate = candidate.strip().lower()
        if candidate.startswith("sha256="):
            candidate = candidate[len("sha256="):].strip()
        if not candidate or not candidate.isascii():
            return False
        expected = compute_signature(secret, raw_body)
        return hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii"))
    except (TypeError, ValueError, UnicodeError):
        return False


def _reject_constant(name):
    raise ValueError(f"invalid JSON constant {name}")


def parse_json_body(raw_body):
    """The JSON object of a webhook body; :class:`WebhookPayloadError` otherwise."""
    if isinstance(raw_body, str):
        text = raw_body
    else:
        try:
            data = _as_bytes(raw_body)
        except TypeError:
            raise WebhookPayloadError("webhook body must be bytes") from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise WebhookPayloadError("webhook body is not valid UTF-8") from None
    if not text.strip():
        raise WebhookPayloadError("webhook body is empty")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise WebhookPayloadError("webhook body is nested too deeply") from None
    except ValueError as exc:
        raise WebhookPayloadError(f"webhook body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WebhookPayloadError(
            f"webhook body must be a JSON object, not {type(data).__name__}"
        )
    return data


def is_verification_request(data):
    """True for inFakt's activation ping ``{"verification_code": "..."}``."""
    if not isinstance(data, dict) or "event" in data:
        return False
    code = data.get("verification_code")
    return isinstance(code, str) and bool(code.strip())


def verification_response(data):
    """The answer to the activation ping: the same ``verification_code``."""
    if not is_verification_request(data):
        raise WebhookPayloadError("not an inFakt verification request")
    return {"verification_code": data["verification_code"]}


def _int_or_none(value):
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass
class WebhookEvent:
    """One inFakt webhook delivery."""

    uuid: str
    name: str
    retry_counter: int = 0
    created_at: str = ""
    resource: dict = field(default_factory=dict)

    @property
    def known(self):
        return self.name in KNOWN_EVENTS

    @property
    def category(self):
        """``creation``, ``ksef``, ``paid``, ``deleted``, ``draft``, ``mark_paid_async`` or
        None for a name this module does not know (acknowledge and ignore those)."""
        return event_category(self.name)

    @property
    def is_error(self):
        """True for the error events (creation, KSeF, async mark-paid) and for resources
        carrying processing code 422."""
        return self.name in ERROR_EVENTS or self.processing_code == 422

    @property
    def invoice_uuid(self):
        value = self.resource.get("invoice_uuid") or self.resource.get("uuid")
        return str(value) if value else None

    @property
    def task_reference(self):
        value = self.resource.get("invoice_task_reference_number")
        return str(value) if value else None

    @property
    def processing_code(self):
        return _int_or_none(self.resource.get("processing_code"))

    @property
    def invoice_kind(self):
        value = self.resource.get("invoice_kind") or self.resource.get("kind")
        return str(value) if value else None

    @property
    def _ksef_data(self):
        data = self.resource.get("ksef_data")
        return data if isinstance(data, dict) else {}

    @property
    def ksef_number(self):
        value = self.resource.get("ksef_number") or self._ksef_data.get("ksef_number")
        return str(value) if value else None

    @property
    def ksef_status(self):
        if self.name.startswith("send_to_ksef"):
            value = self.resource.get("status")
        else:
            value = self._ksef_data.get("status")
        return str(value) if value else None

    @property
    def errors(self):
        return normalize_errors(self.resource)


# Largest value a PostgreSQL integer column holds.
MAX_RETRY_COUNTER = 2**31 - 1


def clean_text(value):
    """``value`` without NUL characters and lone surrogates (which no database or UTF-8
    encoder accepts); other values unchanged."""
    if not isinstance(value, str):
        return value
    value = value.replace("\x00", "")
    return value.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(value) else value


def _has_surrogates(value):
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _required_str(data, key, where):
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise WebhookPayloadError(f"webhook {where}.{key} must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise WebhookPayloadError(
            f"webhook {where}.{key} is longer than {MAX_NAME_LENGTH} characters"
        )
    if "\x00" in value or _has_surrogates(value):
        raise WebhookPayloadError(f"webhook {where}.{key} holds characters that are not text")
    return value.strip()


def parse_event(data):
    """A :class:`WebhookEvent` from a parsed body; :class:`WebhookPayloadError` if malformed."""
    if not isinstance(data, dict):
        raise WebhookPayloadError("webhook body must be a JSON object")
    event = data.get("event")
    if not isinstance(event, dict):
        raise WebhookPayloadError("webhook body has no 'event' object")
    uuid = _required_str(event, "uuid", "event")
    name = _required_str(event, "name", "event")
    retry_counter = event.get("retry_counter", 0)
    if retry_counter is None:
        retry_counter = 0
    if isinstance(retry_counter, bool):
        raise WebhookPayloadError("webhook event.retry_counter must be an integer")
    try:
        retry_counter = int(retry_counter)
    except (TypeError, ValueError):
        raise WebhookPayloadError("webhook event.retry_counter must be an integer") from None
    created_at = event.get("created_at")
    created_at = "" if created_at is None else clean_text(str(created_at))[:MAX_NAME_LENGTH]
    resource = data.get("resource", {})
    if not isinstance(resource, dict):
        raise WebhookPayloadError("webhook 'resource' must be a JSON object")
    return WebhookEvent(
        uuid=uuid,
        name=name,
        retry_counter=min(MAX_RETRY_COUNTER, max(0, retry_counter)),
        created_at=created_at,
        resource=resource,
    )
