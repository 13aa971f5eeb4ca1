"""inFakt API v3 HTTP client (plain Python on ``requests``, nothing from Odoo).

One :class:`InfaktClient` holds one ``requests.Session`` (connection reuse), sends the API
key in the ``X-inFakt-ApiKey`` header only, puts a timeout on every call, never follows
redirects (a redirect could carry the key header to another host) and turns every failure
into a typed :mod:`.errors` exception. Writes whose answer was lost raise
:class:`InfaktInDoubt`; they are never retried here.
"""

import datetime
import json as _json
import logging
import re
import socket
import time
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import quote

import requests
from requests import exceptions as rex

from .errors import (
    SAFE_METHODS,
    InfaktError,
    InfaktInDoubt,
    InfaktTimeout,
    InfaktUnexpectedResponse,
    InfaktUnreachable,
    classify_http_error,
    normalize_errors,
    task_error,
)

try:  # urllib3 is a dependency of requests
    from urllib3 import exceptions as u3ex
except ImportError:  # pragma: no cover
    u3ex = None

_logger = logging.getLogger(__name__)

PRODUCTION_URL = "https://api.infakt.pl/api/v3"
SANDBOX_URL = "https://api.sandbox-infakt.pl/api/v3"
ENVIRONMENTS = ("production", "sandbox", "custom")
API_KEY_HEADER = "X-inFakt-ApiKey"

PDF_DOCUMENT_TYPES = (
    "original_copy", "original", "copy", "original_duplicate", "copy_duplicate",
    "duplicate", "regular", "double_regular",
)
PDF_LOCALES = ("pl", "en", "pe")
LIST_LIMIT = 100

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
PERIOD_MAX_PAGES = 50

TASK_PENDING_CODES = (100, 120, 140)
TASK_DONE_CODES = (200, 201)
TASK_FAILED_CODE = 422


def base_url_for(environment, custom_url=None):
    """Base URL (ending in ``/api/v3``, no trailing slash) of an environment.

    ``production`` and ``sandbox`` ignore ``custom_url``; ``custom`` requires it: an
    ``http(s)`` URL whose path ends in ``/api/v3`` (a trailing slash is stripped).
    """
    if environment == "production":
        return PRODUCTION_URL
    if environment == "sandbox":
        return SANDBOX_URL
    if environment != "custom":
        raise ValueError(f"unknown inFakt environment {environment!r} "
                         f"(expected one of {', '.join(ENVIRONMENTS)})")
    url = (custom_url or "").strip().rstrip("/")
    if not url:
        raise ValueError("a custom inFakt environment needs an API URL")
    if not re.match(r"^https?://[^/\s?#]+", url, re.IGNORECASE):
        raise ValueError("the inFakt API URL must start with http:// or https://")
    if "?" in url or "#" in url or not url.endswith("/api/v3"):
        raise ValueError("the inFakt API URL must end with /api/v3")
    return url


class RequestTimeout(tuple):
    """A ``(connect, read)`` timeout pair that ``requests`` accepts as a plain tuple.

    ``requests`` unpacks any tuple into its connect and read timeouts. Odoo's test harness
    (``BaseCase._request_handler``) does ``if timeout and timeout < 10`` on the timeout it is
    given, which raises ``TypeError`` for a plain tuple: this subclass compares with a plain
    number by its *read* part, so the harness sees the read timeout (and may replace the whole
    pair by a number, which ``requests`` also accepts). Equality and hashing stay those of the
    tuple: ``RequestTimeout(5, 30) == (5, 30)``.
    """

    __slots__ = ()

    def __new__(cls, connect=DEFAULT_CONNECT_TIMEOUT, read=DEFAULT_READ_TIMEOUT):
        values = []
        for name, value in (("connect", connect), ("read", read)):
            if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
                raise ValueError(f"the {name} timeout must be a number of seconds, "
                                 f"not {value!r}")
            value = float(value)
            if not value > 0 or value == float("inf"):
                raise ValueError(f"the {name} timeout must be a positive number of seconds")
            values.append(value)
        return super().__new__(cls, values)

    @classmethod
    def coerce(cls, value):
        """A :class:`RequestTimeout` from ``None`` (the default pair), one number (used for
        both parts, as ``requests`` does) or a ``(connect, read)`` pair."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise ValueError("a timeout pair must be (connect, read)")
            return cls(value[0], value[1])
        return cls(value, value)

    @property
    def connect_seconds(self):
        return self[0]

    @property
    def read_seconds(self):
        return self[1]

    @property
    def total(self):
        """``connect + read``: the longest one request can block before its first byte."""
        return self[0] + self[1]

    @staticmethod
    def _number(other):
        return isinstance(other, (int, float, Decimal)) and not isinstance(other, bool)

    def __lt__(self, other):
        return self[1] < other if self._number(other) else tuple.__lt__(self, other)

    def __le__(self, other):
        return self[1] <= other if self._number(other) else tuple.__le__(self, other)

    def __gt__(self, other):
        return self[1] > other if self._number(other) else tuple.__gt__(self, other)

    def __ge__(self, other):
        return self[1] >= other if self._number(other) else tuple.__ge__(self, other)

    def __float__(self):
        return float(self[1])

    def __repr__(self):
        return f"RequestTimeout(connect={self[0]:g}, read={self[1]:g})"


@dataclass(frozen=True)
class DocumentKind:
    """How inFakt names one kind of income document in its paths and bodies."""

    name: str              # our name: invoice, corrective, advance, final
    collection: str        # /{collection}.json, /{collection}/{uuid}.json, .../pdf.json
    wrapper: str           # the body key of a create: {"invoice": {...}}
    task_kind: str         # invoice_kind in task envelopes: invoice, corrective_invoice, ...
    ksef_kind: str         # invoice_kind in ksef_data: vat, corrective_invoice, advance, final
    paid_async: bool       # mark paid through /async/{collection}/{uuid}/paid.json

    @property
    def create_path(self):
        return f"/async/{self.collection}.json"

    def status_path(self, reference):
        return f"/async/{self.collection}/status/{_segment(reference, 'task reference')}.json"

    def document_path(self, uuid, suffix=""):
        return f"/{self.collection}/{_segment(uuid, 'invoice uuid')}{suffix}.json"


# Sources: PM "Faktury VAT", "Faktury korygujące VAT", "Faktury zaliczkowe" (advance: wrapper
# advance_invoice, task invoice_kind "advance_invoice", ksef_data invoice_kind "advance") and
# "Faktury końcowe" (final: wrapper final_invoice, /async/final_invoices/status/{ref}.json).
# The final task's invoice_kind ("final_invoice") follows the advance one; PM shows none.
DOCUMENT_KINDS = {
    "invoice": DocumentKind("invoice", "invoices", "invoice", "invoice", "vat", True),
    "corrective": DocumentKind("corrective", "corrective_invoices", "corrective_invoice",
                               "corrective_invoice", "corrective_invoice", False),
    "advance": DocumentKind("advance", "advance_invoices", "advance_invoice",
                            "advance_invoice", "advance", False),
    "final": DocumentKind("final", "final_invoices", "final_invoice", "final_invoice",
                          "final", False),
}
_KIND_ALIASES = {
    "vat": "invoice", "invoices": "invoice", "proforma": "invoice",
    "correction": "corrective", "corrective_invoice": "corrective",
    "corrective_invoices": "corrective",
    "advance_invoice": "advance", "advance_invoices": "advance",
    "final_invoice": "final", "final_invoices": "final",
}


def document_kind(kind=None, corrective=False):
    """The :class:`DocumentKind` of ``kind`` (``invoice``, ``corrective``, ``advance``,
    ``final``; inFakt's own spellings such as ``corrective_invoice`` or ``vat`` are accepted).

    ``kind=None`` falls back to the legacy ``corrective`` flag.
    """
    if isinstance(kind, DocumentKind):
        return kind
    if kind in (None, "", False):
        return DOCUMENT_KINDS["corrective" if corrective else "invoice"]
    name = str(kind).strip().lower()
    name = _KIND_ALIASES.get(name, name)
    if name not in DOCUMENT_KINDS:
        raise ValueError(f"unknown inFakt document kind {kind!r} "
                         f"(expected one of {', '.join(DOCUMENT_KINDS)})")
    if corrective and name != "corrective":
        raise ValueError(f"corrective=True contradicts kind={kind!r}")
    return DOCUMENT_KINDS[name]


def kind_of_task(envelope_or_kind):
    """Our document kind name from a task envelope (or its ``invoice_kind``); None if unknown."""
    value = envelope_or_kind
    if isinstance(envelope_or_kind, dict):
        value = envelope_or_kind.get("invoice_kind")
    if not value:
        return None
    try:
        return document_kind(value).name
    except ValueError:
        return None


@dataclass
class PeriodListing:
    """Documents of an invoice-date range, as :meth:`InfaktClient.list_period_documents`
    read them: ``documents[kind]`` lists of entities, ``complete`` False when ``max_pages``
    stopped the reading early (then "missing in inFakt" cannot be concluded)."""

    date_from: str
    date_to: str
    documents: dict = field(default_factory=dict)
    complete: bool = True
    pages: int = 0
    ignored: int = 0  # rows inFakt returned outside the range (filter ignored), dropped


@dataclass
class TaskStatus:
    """The state of an async inFakt task (invoice creation, mark as paid, …)."""

    reference: str | None
    code: int
    description: str = ""
    done: bool = False
    failed: bool = False
    pending: bool = False
    invoice_uuid: str | None = None
    invoice_kind: str | None = None
    action: str | None = None
    errors: dict = field(default_factory=dict)
    envelope: dict = field(default_factory=dict, repr=False, compare=False)

    def as_error(self):
        """The :class:`InfaktValidationError` describing a failed task (None otherwise)."""
        return task_error(self.envelope) if self.failed else None


def parse_task(envelope):
    """A :class:`TaskStatus` from an async task envelope.

    ``done``: code 200/201; ``failed``: 422 (and any other code ≥ 300); ``pending``:
    100/120/140 or any other code below 300.
    """
    if not isinstance(envelope, dict):
        raise InfaktUnexpectedResponse("inFakt task envelope is not a JSON object",
                                       payload=envelope)
    raw_code = envelope.get("processing_code")
    code = None
    if not isinstance(raw_code, bool):
        try:
            code = int(raw_code)
        except (TypeError, ValueError):
            code = None
    if code is None:
        raise InfaktUnexpectedResponse("inFakt task envelope has no processing_code",
                                       payload=envelope)
    done = code in TASK_DONE_CODES
    failed = code >= 300
    pending = not done and not failed

    def _str(key):
        value = envelope.get(key)
        return str(value) if value not in (None, "") else None

    return TaskStatus(
        reference=_str("invoice_task_reference_number") or _str("reference_number"),
        code=code,
        description=str(envelope.get("processing_description") or ""),
        done=done,
        failed=failed,
        pending=pending,
        invoice_uuid=_str("invoice_uuid"),
        invoice_kind=_str("invoice_kind"),
        action=_str("action"),
        errors=normalize_errors(envelope) if failed else {},
        envelope=envelope,
    )


def _segment(value, what="identifier"):
    text = str(value or "").strip()
    if not text:
        raise ValueError(f"an inFakt {what} is required")
    return quote(text, safe="")


def _date_param(value):
    if isinstance(value, datetime.datetime):
        return value.date().isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str) and value.strip():
        try:
            return datetime.date.fromisoformat(value.strip()[:10]).isoformat()
        except ValueError as error:
            raise ValueError(f"not a date (YYYY-MM-DD): {value!r}") from error
    raise ValueError(f"not a date (YYYY-MM-DD): {value!r}")


def _digits(value):
    return re.sub(r"\D", "", str(value or ""))


def _iter_causes(exc):
    """``exc`` and everything it wraps (args, ``reason``, cause and context chains)."""
    seen = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen or not isinstance(current, BaseException):
            continue
        seen.add(id(current))
        yield current
        stack.append(getattr(current, "reason", None))
        stack.append(current.__cause__)
        stack.append(current.__context__)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))


def _never_sent(exc):
    """True when a connection error provably happened before the request was sent."""
    if isinstance(exc, rex.ConnectTimeout):
        return True
    never = [ConnectionRefusedError, socket.gaierror]
    if u3ex is not None:
        never += [u3ex.NewConnectionError, u3ex.ConnectTimeoutError]
        name_error = getattr(u3ex, "NameResolutionError", None)
        if name_error is not None:
            never.append(name_error)
    after = [ConnectionResetError, BrokenPipeError]
    if u3ex is not None:
        after += [u3ex.ProtocolError, u3ex.ReadTimeoutError]
    causes = list(_iter_causes(exc))
    if any(isinstance(cause, tuple(after)) for cause in causes):
        return False
    if any(isinstance(cause, tuple(never)) for cause in causes):
        return True
    # certificate problems are found in the TLS handshake, before any byte of the request
    return isinstance(exc, rex.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _json_default(value):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(str(value))
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(body):
    """UTF-8 JSON of a request body (``Decimal`` and dates tolerated, NaN refused)."""
    return _json.dumps(body, ensure_ascii=False, allow_nan=False,
                       default=_json_default).encode("utf-8")


def _truncated(response):
    """True when the body is shorter than its ``Content-Length`` (connection cut early)."""
    if response.status_code in (204, 304) or response.request.method == "HEAD":
        return False
    if response.headers.get("Content-Encoding") not in (None, "", "identity"):
        return False
    try:
        expected = int(response.headers.get("Content-Length"))
    except (TypeError, ValueError):
        return False
    return len(response.content) < expected


class InfaktClient:
    """Client of one inFakt account (one API key)."""

    def __init__(self, api_key, environment="production", base_url=None, timeout=None,
                 session=None, user_agent="Odoo l10n_pl_infakt", on_request=None):
        key = (api_key or "").strip() if isinstance(api_key, str) else ""
        if not key:
            raise ValueError("an inFakt API key is required")
        if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
            raise ValueError("the inFakt API key contains invalid characters")
        self._api_key = key
        self.environment = environment
        self.base_url = base_url_for(environment, base_url)
        # (connect, read) = (5 s, 30 s) unless given; one number means both, as in requests
        self.timeout = RequestTimeout.coerce(timeout)
        self.user_agent = user_agent
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        # Called as on_request(method, path) before each request: a caller's rate pacing.
        self.on_request = on_request

    def __repr__(self):
        return f"<InfaktClient {self.environment} {self.base_url}>"

    @property
    def worst_case_seconds(self):
        """Connect + read timeout: how long one request may block before it fails (a
        budget for callers that must finish within a deadline, e.g. a cron's time limit)."""
        return self.timeout.total

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Close the HTTP session (only when the client created it)."""
        if self._own_session and self.session is not None:
            self.session.close()

    # -- transport ----------------------------------------------------------------------

    def _headers(self, has_body):
        headers = {
            API_KEY_HEADER: self._api_key,
            "Accept": "application/json",
            "User-Agent": self.user_agent,
        }
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _network_error(self, exc, method, path):
        where = f"{method} {path}"
        safe = method in SAFE_METHODS
        if isinstance(exc, rex.ConnectTimeout):
            return InfaktUnreachable(f"Connecting to inFakt timed out ({where})")
        if isinstance(exc, rex.ReadTimeout):
            if safe:
                return InfaktTimeout(f"inFakt did not answer in time ({where})")
            return InfaktInDoubt(f"inFakt did not answer in time ({where}); "
                                 "the request may have been processed")
        if isinstance(exc, rex.ConnectionError) and _never_sent(exc):
            return InfaktUnreachable(f"Could not connect to inFakt ({where}): "
                                     f"{type(exc).__name__}")
        if isinstance(exc, (rex.InvalidURL, rex.MissingSchema, rex.InvalidSchema,
                            rex.InvalidHeader, rex.URLRequired)):
            return InfaktError(f"Invalid inFakt request ({where}): {type(exc).__name__}")
        if safe:
            return InfaktUnreachable(f"Connection to inFakt failed ({where}): "
                                     f"{type(exc).__name__}")
        return InfaktInDoubt(f"Connection to inFakt was lost ({where}): "
                             f"{type(exc).__name__}; the request may have been processed")

    def _request(self, method, path, *, params=None, json=None):
        """Send one request; return the response of a 2xx answer or raise a typed error."""
        method = method.upper()
        url = self.base_url + path
        data = None if json is None else encode_json(json)
        if self.on_request is not None:
            self.on_request(method, path)
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=data,
                headers=self._headers(data is not None),
                timeout=self.timeout,
                allow_redirects=False,
                stream=False,
            )
        except rex.RequestException as exc:
            error = self._network_error(exc, method, path)
            _logger.info("inFakt %s %s failed after %.2fs: %s", method, path,
                         time.monotonic() - started, type(error).__name__)
            raise error from exc
        _logger.debug("inFakt %s %s -> %s in %.2fs", method, path, response.status_code,
                      time.monotonic() - started)
        status = response.status_code
        if 200 <= status < 300 and _truncated(response):
            error = self._network_error(rex.ChunkedEncodingError("body shorter than announced"),
                                        method, path)
            _logger.info("inFakt %s %s: %s", method, path, type(error).__name__)
            raise error
        if 200 <= status < 300:
            return response
        if 300 <= status < 400:
            message = f"inFakt answered {method} {path} with a redirect; check the API URL"
            if method in SAFE_METHODS:
                raise InfaktUnexpectedResponse(message, status=status)
            raise InfaktInDoubt(message, status=status)
        raise classify_http_error(status, response.content, response.headers, method)

    def _json(self, method, path, *, params=None, json=None, allow_empty=False):
        response = self._request(method, path, params=params, json=json)
        if not response.content.strip():
            if allow_empty:
                return None
            return self._bad_body(method, path, response, "an empty body")
        try:
            return response.json()
        except ValueError:
            return self._bad_body(method, path, response, "a body that is not JSON")

    def _bad_body(self, method, path, response, what):
        message = f"inFakt answered {method} {path} with {what}"
        if method in SAFE_METHODS:
            raise InfaktUnexpectedResponse(message, status=response.status_code)
        raise InfaktInDoubt(message + "; the request may have been processed",
                            status=response.status_code)

    def _get(self, path, params=None):
        return self._json("GET", path, params=params)

    def _post(self, path, body=None, params=None, allow_empty=False):
        return self._json("POST", path, params=params, json=body, allow_empty=allow_empty)

    def _dict(self, data, method, path):
        if not isinstance(data, dict):
            raise InfaktUnexpectedResponse(
                f"inFakt answered {method} {path} with a {type(data).__name__}, "
                "not a JSON object")
        return data

    def _entities(self, data, path):
        entities = data.get("entities") if isinstance(data, dict) else data
        if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
            raise InfaktUnexpectedResponse(f"inFakt answered GET {path} without a list")
        return entities

    @staticmethod
    def _last_page(data, entities, offset):
        """True when a list page is the last one: paging follows ``metainfo.total_count``
        and the rows actually returned, never ``metainfo.count`` (which inFakt may report
        as its default page size whatever the limit). Without a usable ``total_count`` a
        short page ends the list."""
        if not entities:
            return True
        total = None
        if isinstance(data, dict) and isinstance(data.get("metainfo"), dict):
            total = data["metainfo"].get("total_count")
        if isinstance(total, bool) or not isinstance(total, int):
            return len(entities) < LIST_LIMIT
        return offset >= total

    def _list_all(self, path, params, max_pages):
        """``(rows, complete)``: up to ``max_pages`` pages of 100; ``complete`` when the
        last page was reached."""
        results = []
        offset = 0
        for _page in range(max(1, max_pages)):
            page_params = dict(params, limit=LIST_LIMIT, offset=offset)
            data = self._get(path, page_params)
            entities = self._entities(data, path)
            results.extend(entities)
            offset += len(entities)
            if self._last_page(data, entities, offset):
                return results, True
        return results, False

    def _task_envelope(self, data, method, path):
        data = self._dict(data, method, path) if data is not None else None
        if not data or not data.get("invoice_task_reference_number"):
            raise InfaktInDoubt(
                f"inFakt accepted {method} {path} but gave no task reference; "
                "the request may have been processed", payload=data)
        return data

    # -- API ----------------------------------------------------------------------------

    def test_connection(self):
        """Cheap authenticated call (``GET /invoices.json?limit=1``)."""
        path = "/invoices.json"
        return self._dict(self._get(path, {"limit": 1}), "GET", path)

    def create_document(self, kind, document, send_to_ksef=False):
        """Queue a document of ``kind`` (``POST /async/{kind}s.json``); returns the task
        envelope. The body is ``{<wrapper>: document, "send_to_ksef": bool}``."""
        spec = document_kind(kind)
        path = spec.create_path
        body = {spec.wrapper: document, "send_to_ksef": bool(send_to_ksef)}
        return self._task_envelope(self._post(path, body, allow_empty=True), "POST", path)

    def create_invoice(self, invoice, send_to_ksef=False):
        """Queue an invoice (``POST /async/invoices.json``); returns the task envelope."""
        return self.create_document("invoice", invoice, send_to_ksef)

    def create_corrective_invoice(self, corrective, send_to_ksef=False):
        """Queue a corrective invoice (``POST /async/corrective_invoices.json``)."""
        return self.create_document("corrective", corrective, send_to_ksef)

    def create_advance_invoice(self, advance_invoice, send_to_ksef=False):
        """Queue an advance invoice, *faktura zaliczkowa*
        (``POST /async/advance_invoices.json``, body ``{"advance_invoice": …}``)."""
        return self.create_document("advance", advance_invoice, send_to_ksef)

    def create_final_invoice(self, final_invoice, send_to_ksef=False):
        """Queue a final invoice, *faktura końcowa* settling advances
        (``POST /async/final_invoices.json``, body ``{"final_invoice": …}``)."""
        return self.create_document("final", final_invoice, send_to_ksef)

    def get_task_status(self, reference, corrective=False, kind=None):
        """The envelope of an async task (``GET /async/{kind}s/status/{ref}.json``).

        ``kind``: ``invoice`` (default), ``corrective``, ``advance`` or ``final``; the old
        ``corrective=True`` still means ``kind="corrective"``. Mark-paid tasks of invoices
        are read through the invoice path.
        """
        path = document_kind(kind, corrective).status_path(reference)
        return self._dict(self._get(path), "GET", path)

    def task_status(self, reference, corrective=False, kind=None):
        """:class:`TaskStatus` of an async task (see :meth:`get_task_status`)."""
        return parse_task(self.get_task_status(reference, corrective=corrective, kind=kind))

    def get_document(self, uuid, kind="invoice"):
        """One document read back by uuid (``GET /{kind}s/{uuid}.json``).

        Every kind has its own path: a corrective uuid gives 404 on ``/invoices/``.
        """
        path = document_kind(kind).document_path(uuid)
        return self._dict(self._get(path), "GET", path)

    def get_invoice(self, uuid):
        return self.get_document(uuid, "invoice")

    def get_corrective_invoice(self, uuid):
        return self.get_document(uuid, "corrective")

    def get_advance_invoice(self, uuid):
        return self.get_document(uuid, "advance")

    def get_final_invoice(self, uuid):
        return self.get_document(uuid, "final")

    def _find_by_number(self, path, number, max_pages):
        number = str(number or "").strip()
        if not number:
            raise ValueError("an invoice number is required")
        entities, complete = self._list_all(path, {"q[number_eq]": number}, max_pages)
        # inFakt silently ignores unknown filters: check every row ourselves
        found = [e for e in entities if e.get("number") == number]
        if not found and not complete:
            # the filter was ignored and not every page was read: "not found" would be a guess
            raise InfaktUnexpectedResponse(
                f"inFakt ignored the number filter on GET {path}; the search is incomplete")
        return found

    def find_documents_by_number(self, number, kind="invoice", max_pages=5):
        """Documents of ``kind`` whose number is exactly ``number`` (see
        :meth:`find_invoices_by_number`)."""
        return self._find_by_number(f"/{document_kind(kind).collection}.json", number,
                                    max_pages)

    def find_invoices_by_number(self, number, max_pages=5):
        """Invoices whose number is exactly ``number`` (``[]`` only when inFakt's whole
        answer was read; :class:`InfaktUnexpectedResponse` if the filter was ignored and
        more than ``max_pages`` pages came back without a match)."""
        return self.find_documents_by_number(number, "invoice", max_pages)

    def find_corrective_invoices_by_number(self, number, max_pages=5):
        """Corrective invoices whose number is exactly ``number``."""
        return self.find_documents_by_number(number, "corrective", max_pages)

    # -- period listing (month reconciliation) -------------------------------------------

    def iter_period_documents(self, date_from, date_to, kinds=("invoice", "corrective"),
                              max_pages=PERIOD_MAX_PAGES):
        """Yield ``(kind, document)`` for every document whose ``invoice_date`` lies in
        ``[date_from, date_to]`` (both included), one kind after the other.

        Pages of 100 through ``GET /{kind}s.json?q[invoice_date_gteq]=…&q[invoice_date_lteq]=…``
        and ``offset``. Paging follows ``metainfo.total_count`` and the number of rows
        actually returned — never ``metainfo.count``, which inFakt may report as the default
        page size (10) whatever the limit. inFakt silently ignores filters it does not know,
        so every row's ``invoice_date`` is checked again here and rows outside the range are
        dropped; a uuid seen twice (rows shifting between pages) is yielded once.

        Raises :class:`InfaktUnexpectedResponse` when ``max_pages`` pages of one kind were
        read without reaching the end (the listing would be incomplete).
        """
        listing = PeriodListing(_date_param(date_from), _date_param(date_to))
        yield from self._period_rows(listing, kinds, max_pages, strict=True)

    def list_period_documents(self, date_from, date_to, kinds=("invoice", "corrective"),
                              max_pages=PERIOD_MAX_PAGES):
        """:class:`PeriodListing` of the documents of an invoice-date range (see
        :meth:`iter_period_documents`); instead of raising at ``max_pages`` it returns what
        was read with ``complete=False``."""
        listing = PeriodListing(_date_param(date_from), _date_param(date_to))
        for spec_name in kinds:
            listing.documents.setdefault(document_kind(spec_name).name, [])
        for kind, document in self._period_rows(listing, kinds, max_pages, strict=False):
            listing.documents[kind].append(document)
        return listing

    def read_period_page(self, kind, date_from, date_to, offset=0, limit=LIST_LIMIT):
        """One page of :meth:`iter_period_documents`, for a reader that resumes where it
        stopped (a background job reading a large month over several runs).

        Returns ``(rows, next_offset, last, total)``: the rows of the page whose
        ``invoice_date`` lies in the range (inFakt ignores filters it does not know), the
        offset of the next page, whether this page was the last one, and inFakt's
        ``metainfo.total_count`` (None when absent)."""
        spec = document_kind(kind)
        date_from, date_to = _date_param(date_from), _date_param(date_to)
        path = f"/{spec.collection}.json"
        limit = max(1, min(LIST_LIMIT, int(limit)))
        data = self._get(path, {"q[invoice_date_gteq]": date_from,
                                "q[invoice_date_lteq]": date_to,
                                "limit": limit, "offset": int(offset)})
        entities = self._entities(data, path)
        rows = [entity for entity in entities
                if date_from <= str(entity.get("invoice_date") or "")[:10] <= date_to]
        next_offset = int(offset) + len(entities)
        meta = data.get("metainfo") if isinstance(data, dict) else None
        total = meta.get("total_count") if isinstance(meta, dict) else None
        if isinstance(total, bool) or not isinstance(total, int):
            total = None
            last = len(entities) < limit
        else:
            last = not entities or next_offset >= total
        return rows, next_offset, last, total

    def _period_rows(self, listing, kinds, max_pages, strict):
        if listing.date_from > listing.date_to:
            raise ValueError(f"the period starts after it ends "
                             f"({listing.date_from} > {listing.date_to})")
        for kind in kinds:
            spec = document_kind(kind)
            path = f"/{spec.collection}.json"
            params = {"q[invoice_date_gteq]": listing.date_from,
                      "q[invoice_date_lteq]": listing.date_to}
            seen = set()
            offset = 0
            finished = False
            for _page in range(max(1, int(max_pages))):
                data = self._get(path, dict(params, limit=LIST_LIMIT, offset=offset))
                entities = self._entities(data, path)
                listing.pages += 1
                for entity in entities:
                    day = str(entity.get("invoice_date") or "")[:10]
                    if not listing.date_from <= day <= listing.date_to:
                        listing.ignored += 1
                        continue
                    key = entity.get("uuid") or entity.get("id")
                    if key is not None:
                        if key in seen:
                            continue
                        seen.add(key)
                    yield spec.name, entity
                offset += len(entities)
                if self._last_page(data, entities, offset):
                    finished = True
                    break
            if not finished:
                listing.complete = False
                if strict:
                    raise InfaktUnexpectedResponse(
                        f"GET {path} for {listing.date_from}..{listing.date_to} did not end "
                        f"within {max_pages} pages; the listing is incomplete")

    # -- PDF, payments, KSeF ---------------------------------------------------------------

    def download_pdf(self, uuid, corrective=False, document_type="original", locale="pl",
                     kind=None):
        """The PDF of a document (raw bytes). inFakt flips the status to ``printed``.

        ``kind`` as in :meth:`get_document`; ``corrective=True`` still works.
        """
        if document_type not in PDF_DOCUMENT_TYPES:
            raise ValueError(f"unknown PDF document_type {document_type!r}")
        if locale not in PDF_LOCALES:
            raise ValueError(f"unknown PDF locale {locale!r}")
        path = document_kind(kind, corrective).document_path(uuid, "/pdf")
        response = self._request(
            "GET", path, params={"document_type": document_type, "locale": locale})
        content = response.content
        if not content.startswith(b"%PDF"):
            raise InfaktUnexpectedResponse(
                f"inFakt answered GET {path} with something that is not a PDF",
                status=response.status_code)
        return content

    def mark_paid(self, uuid, paid_date):
        """Mark an invoice paid (async); returns the task envelope.

        ``paid_date`` is sent both as a query parameter and in the JSON body, as inFakt's
        sources disagree on where it goes.
        """
        date = _date_param(paid_date)
        path = f"/async/invoices/{_segment(uuid, 'invoice uuid')}/paid.json"
        data = self._post(path, {"paid_date": date}, params={"paid_date": date},
                          allow_empty=True)
        return self._task_envelope(data, "POST", path)

    def mark_document_paid(self, uuid, paid_date, kind="invoice"):
        """Mark a document paid: invoices through the async task (returns its envelope),
        the other kinds synchronously (``POST /{kind}s/{uuid}/paid.json?paid_date=…``,
        inFakt answers 204; returns None)."""
        spec = document_kind(kind)
        if spec.paid_async:
            return self.mark_paid(uuid, paid_date)
        date = _date_param(paid_date)
        path = spec.document_path(uuid, "/paid")
        self._request("POST", path, params={"paid_date": date}, json={"paid_date": date})
        return None

    def mark_corrective_paid(self, uuid, paid_date):
        """Mark a corrective invoice paid (synchronous; inFakt answers 204)."""
        self.mark_document_paid(uuid, paid_date, "corrective")

    def send_to_ksef(self, uuid, corrective=False, kind=None):
        """Send an existing document to KSeF (``POST /{kind}s/{uuid}/send_to_ksef.json``);
        returns inFakt's answer (``{}`` if empty). Used live in the KSeF 2.0 era (OL)."""
        path = document_kind(kind, corrective).document_path(uuid, "/send_to_ksef")
        data = self._post(path, {}, allow_empty=True)
        return {} if data is None else self._dict(data, "POST", path)

    def send_to_ksef2(self, uuid):
        """Send any income document to KSeF 2.0 (``POST /ksef2/documents/{uuid}/send.json``);
        returns the KSeF request (``status`` ``sent``/``pending``, or ``rejected`` with
        ``request_uuid: null``)."""
        path = f"/ksef2/documents/{_segment(uuid, 'invoice uuid')}/send.json"
        data = self._post(path, {}, allow_empty=True)
        return {} if data is None else self._dict(data, "POST", path)

    def get_ksef_status(self, uuid):
        """KSeF state of a document (``GET /ksef2/documents/{uuid}/status.json``):
        ``{request_uuid, invoice_uuid, invoice_kind, ksef_number, status,
        status_description, timestamps{request_created_at, request_finished_at}}``.

        The KSeF 1.0 path (``/ksef/...``) is retired: inFakt answers 410 there, which this
        client raises as :class:`InfaktGone`.
        """
        path = f"/ksef2/documents/{_segment(uuid, 'invoice uuid')}/status.json"
        return self._dict(self._get(path), "GET", path)

    def get_ksef_integration(self):
        """``{active, incomes_last_fetched_at, costs_last_fetched_at}`` of the KSeF 2.0
        integration (``GET /ksef2/integration.json``, scope ``api:invoices:read``)."""
        path = "/ksef2/integration.json"
        return self._dict(self._get(path), "GET", path)

    # -- reference lists ---------------------------------------------------------------------

    def _reference_list(self, path, max_pages):
        return self._list_all(path, {}, max_pages)[0]

    def list_bank_accounts(self):
        """The account's bank accounts (list of dicts)."""
        return self._reference_list("/bank_accounts.json", max_pages=5)

    def list_vat_exemptions(self, max_pages=5):
        """Every VAT exemption basis (``/vat_exemptions.json``, all pages; 112 entries with
        sparse integer ids): ``{id, description, legal_basis_rule, legal_basis_source}``.
        The ``id`` is what ``vat_exemption_reason`` takes."""
        return self._reference_list("/vat_exemptions.json", max_pages)

    def list_gtus(self, max_pages=2):
        """The GTU codes (``/gtus.json``): ``{id, name ("GTU_01"…), short_description,
        description}``. The ``id`` is what a service's ``gtu_id`` takes."""
        return self._reference_list("/gtus.json", max_pages)

    def list_document_markings(self, max_pages=2):
        """Markings of income documents (``/documents_markings/incomes.json``):
        ``{id, code, short_description, description}``; ``code`` ``TP`` is the related-party
        marker (*transakcja powiązana*). Ids go into ``document_markings_ids``."""
        return self._reference_list("/documents_markings/incomes.json", max_pages)

    def find_document_marking_id(self, code):
        """The id of the income-document marking with ``code`` (e.g. ``"TP"``), or None."""
        wanted = str(code or "").strip().upper()
        for entity in self.list_document_markings():
            if str(entity.get("code") or "").strip().upper() == wanted:
                return entity.get("id")
        return None

    def list_transaction_kinds(self, max_pages=1):
        """``/transaction_kinds.json``: ``{id, name, symbol}`` (``transaction_kind_id``)."""
        return self._reference_list("/transaction_kinds.json", max_pages)

    def find_clients_by_nip(self, nip, max_pages=5):
        """inFakt clients whose NIP (digits only) equals ``nip``'s digits."""
        digits = _digits(nip)
        if not digits:
            return []
        entities, _complete = self._list_all("/clients.json", {"q[clean_nip_eq]": digits},
                                             max_pages)
        return [e for e in entities
                if digits in (_digits(e.get("nip")), _digits(e.get("clean_nip")))]
