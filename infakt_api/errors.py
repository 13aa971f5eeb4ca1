"""Typed errors of the inFakt API client.

The classes tell apart what a caller must do next:

* ``retryable = True`` (:class:`InfaktRateLimited`, :class:`InfaktLocked`,
  :class:`InfaktTransientError`): nothing happened on inFakt's side, try again later;
* :class:`InfaktInDoubt`: a write may or may not have been processed; it must be
  reconciled (e.g. by searching the invoice number) and never resent blindly;
  among them :class:`InfaktUnreachable` (no connection), :class:`InfaktTimeout` (no answer
  in time) and :class:`InfaktServerError` (inFakt's own 5xx), which a person reads apart:
  none of them says anything about the API key or the data;
* everything else needs a person: :class:`InfaktAuthError` (key rejected),
  :class:`InfaktPlanError` (plan without API), :class:`InfaktPermissionError` (scope or IP),
  :class:`InfaktValidationError` (inFakt refused a field; ``field_errors`` names it).

No message produced here ever contains the API key: the key only travels in a request
header and is never part of a URL, a body or an exception.
"""

import email.utils
import json
import math
import time

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_MAX_MESSAGE = 1000


class InfaktError(Exception):
    """Base class of every error raised by the inFakt client."""

    retryable = False
    default_message = "inFakt request failed"

    def __init__(self, message=None, *, status=None, field_errors=None, payload=None):
        self.status = status
        self.field_errors = dict(field_errors or {})
        self.payload = payload
        if not message:
            message = _message_from_field_errors(self.field_errors) or self.default_message
        self.message = _truncate(str(message))
        super().__init__(self.message)

    def __str__(self):
        if self.status:
            return f"{self.message} (HTTP {self.status})"
        return self.message

    def __repr__(self):
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class InfaktAuthError(InfaktError):
    """401: missing or invalid API key."""

    default_message = "inFakt rejected the API key"


class InfaktPlanError(InfaktError):
    """402: the inFakt plan does not include the API, or a plan limit was reached."""

    default_message = "The inFakt plan does not allow this (no API access or plan limit reached)"


class InfaktPermissionError(InfaktError):
    """403: the API key lacks a scope, or the source IP is blocked."""

    default_message = "inFakt refused the request (missing API key scope or blocked IP)"


class InfaktValidationError(InfaktError):
    """400, 406, 422 and failed async tasks; ``field_errors`` lists messages per field."""

    default_message = "inFakt rejected the data"


class InfaktNotFound(InfaktError):
    """404: the resource does not exist (or is of another kind, e.g. a corrective invoice)."""

    default_message = "The inFakt resource was not found"


class InfaktLocked(InfaktError):
    """423: the resource is locked; try again later."""

    retryable = True
    default_message = "The inFakt resource is locked"


class InfaktRateLimited(InfaktError):
    """429 or 503: inFakt refused the request before processing it; retry later."""

    retryable = True
    default_message = "inFakt rate limit reached, retry later"

    def __init__(self, message=None, *, retry_after=None, **kwargs):
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class InfaktTransientError(InfaktError):
    """A temporary failure after which nothing was changed in inFakt; retry later.

    Server errors and network failures on reads, and failures on writes where the request
    provably never left (connection refused, DNS failure, connect timeout).
    """

    retryable = True
    default_message = "Temporary failure talking to inFakt"


class InfaktUnreachable(InfaktTransientError):
    """inFakt could not be reached at all (connection refused, DNS failure, connect timeout,
    connection dropped on a read): says nothing about the API key or the data."""

    default_message = "Could not connect to inFakt"


class InfaktTimeout(InfaktTransientError):
    """inFakt accepted the connection but did not answer a read in time."""

    default_message = "inFakt did not answer in time"


class InfaktServerError(InfaktTransientError):
    """inFakt answered a read with a server error (5xx other than 503): its own failure."""

    default_message = "inFakt had an internal error"


class InfaktInDoubt(InfaktError):
    """A write whose answer was lost: it may or may not have been processed.

    Never retry blindly: reconcile first (search the document in inFakt).
    """

    retryable = False
    default_message = "The answer of inFakt was lost; the request may have been processed"


class InfaktGone(InfaktError):
    """410: inFakt retired this API endpoint (e.g. the KSeF 1.0 namespace ``/ksef/...``).

    Not retryable: the same request will never work again; the caller must move to the
    endpoint that replaced it. ``infakt_message`` keeps inFakt's own text (for the KSeF 1.0
    namespace: "API KSeF 1.0 zostalo wylaczone. Prosze przejsc na KSeF 2.0.").
    """

    retryable = False
    default_message = "inFakt retired this API endpoint"

    def __init__(self, message=None, *, infakt_message=None, **kwargs):
        self.infakt_message = infakt_message
        super().__init__(message, **kwargs)


class InfaktUnexpectedResponse(InfaktError):
    """inFakt answered something the client cannot understand (e.g. 2xx with a bad body)."""

    default_message = "Unexpected answer from inFakt"


# ---------------------------------------------------------------------------------------
# error bodies


def _truncate(text, limit=_MAX_MESSAGE):
    text = text.strip()
    if len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def _flatten(value, key, out):
    """Collect messages of ``value`` under ``key`` ("" = base) into ``out``."""
    if value is None:
        return
    if isinstance(value, dict):
        for sub_key, sub_value in value.items():
            sub_key = str(sub_key)
            if not key:
                name = sub_key
            elif sub_key == "base":
                name = key
            else:
                name = f"{key}.{sub_key}"
            _flatten(sub_value, name, out)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if isinstance(item, dict) and key:
                _flatten(item, f"{key}[{index}]", out)
            else:
                _flatten(item, key, out)
        return
    text = str(value).strip()
    if text:
        messages = out.setdefault(key or "base", [])
        if text not in messages:
            messages.append(text)


def normalize_errors(body):
    """Normalise any inFakt error shape into ``{field: [message, ...]}``.

    Understands ``{"errors": {...}}``, the async ``{"invoice_errors": {...}}`` (values
    lists or plain strings, possibly a ``base`` list), a top-level ``base`` list and
    ``{"error": "message"}`` (which becomes ``{"base": ["message"]}``). A plain string or
    list becomes ``base`` messages. Anything else gives ``{}``.
    """
    out = {}
    if body is None:
        return out
    if isinstance(body, (str, list, tuple)):
        _flatten(body, "", out)
        return out
    if not isinstance(body, dict):
        return out
    for key in ("invoice_errors", "errors"):
        if key in body:
            _flatten(body[key], "", out)
    if "base" in body:
        _flatten(body["base"], "", out)
    error = body.get("error")
    if isinstance(error, (str, list)):
        _flatten(error, "", out)
    return out


def _message_from_field_errors(field_errors):
    parts = []
    for field, messages in (field_errors or {}).items():
        joined = ", ".join(messages)
        parts.append(joined if field == "base" else f"{field}: {joined}")
    return "; ".join(parts)


def parse_error_body(body):
    """Return ``body`` parsed as JSON when it is bytes/str holding JSON, else as given."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(body, str):
        stripped = body.strip()
        if not stripped:
            return None
        if stripped[:1] in "{[":
            try:
                return json.loads(stripped)
            except (ValueError, RecursionError):
                return stripped
        return stripped
    return body


def _header(headers, name):
    if not headers:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        value = None
    if value is not None:
        return value
    lowered = name.lower()
    try:
        for key, val in headers.items():
            if str(key).lower() == lowered:
                return val
    except AttributeError:
        return None  # not a mapping of headers
    return None


def parse_retry_after(value, now=None):
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date), or None."""
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _body_message(body):
    if isinstance(body, dict):
        for key in ("error", "message", "error_description", "description"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value
    elif isinstance(body, str) and body and not body.lstrip().startswith("<"):
        return body
    return None


def classify_http_error(status, body, headers=None, method="GET"):
    """Build the typed exception for a non-2xx inFakt answer.

    ``body`` may be the parsed JSON, raw bytes or text; ``headers`` any mapping;
    ``method`` the HTTP method of the request (5xx on a write is "in doubt").
    """
    method = (method or "GET").upper()
    safe = method in SAFE_METHODS
    payload = parse_error_body(body)
    field_errors = normalize_errors(payload) if isinstance(payload, dict) else {}
    message = _body_message(payload)
    details = _message_from_field_errors(
        {field: messages for field, messages in field_errors.items() if field != "base"})
    if message and details:
        message = f"{message}: {details}"
    elif not message:
        message = _message_from_field_errors(field_errors) or None
    kwargs = {"status": status, "field_errors": field_errors, "payload": payload}

    if status == 401:
        return InfaktAuthError(message, **kwargs)
    if status == 402:
        return InfaktPlanError(message, **kwargs)
    if status == 403:
        return InfaktPermissionError(message, **kwargs)
    if status == 404:
        return InfaktNotFound(message, **kwargs)
    if status in (400, 406, 422):
        return InfaktValidationError(message, **kwargs)
    if status == 410:
        gone = InfaktGone.default_message
        return InfaktGone(f"{gone}: {message}" if message else gone,
                          infakt_message=message, **kwargs)
    if status == 423:
        return InfaktLocked(message, **kwargs)
    if status in (429, 503):
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        return InfaktRateLimited(message, retry_after=retry_after, **kwargs)
    if status == 408:
        # the server gave up waiting for the request: nothing was processed
        return InfaktTimeout(message or "inFakt timed out waiting for the request", **kwargs)
    if isinstance(status, int) and 500 <= status <= 599:
        if safe:
            return InfaktServerError(message, **kwargs)
        return InfaktInDoubt(
            message or f"inFakt failed with a server error on {method}; "
            "the request may have been processed",
            **kwargs,
        )
    if isinstance(status, int) and 400 <= status <= 499:
        return InfaktError(message, **kwargs)
    return InfaktUnexpectedResponse(message or f"Unexpected HTTP status {status} from inFakt",
                                    **kwargs)


def task_error(envelope):
    """:class:`InfaktValidationError` for a failed async task envelope (code 422)."""
    envelope = envelope if isinstance(envelope, dict) else {}
    field_errors = normalize_errors(envelope)
    description = envelope.get("processing_description")
    details = _message_from_field_errors(field_errors)
    if description and details:
        message = f"{description}: {details}"
    else:
        message = details or description or None
    code = envelope.get("processing_code")
    try:
        status = int(code)
    except (TypeError, ValueError):
        status = 422
    return InfaktValidationError(
        message, status=status, field_errors=field_errors, payload=envelope
    )
