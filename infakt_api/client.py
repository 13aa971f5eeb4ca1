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
    InfaktTransientError,
    InfaktUnexpectedResponse,
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

    def __init__(self, api_key, environment="production", base_url=None, timeout=(5.0, 30.0),
                 session=None, user_agent="Odoo l10n_pl_infakt", on_request=None):
        key = (api_key or "").strip() if isinstance(api_key, str) else ""
        if not key:
            raise ValueError("an inFakt API key is required")
        if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
            raise ValueError("the inFakt API key contains invalid characters")
        self._api_key = key
        self.environment = environment
        self.base_url = base_url_for(environment, base_url)
        self.timeout = timeout
        self.user_agent = user_agent
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        # Called as on_request(method, path) before each request: a caller's rate pacing.
        self.on_request = on_request

    def __repr__(self):
        return f"<InfaktClient {self.environment} {self.base_url}>"

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
            return InfaktTransientError(f"Connecting to inFakt timed out ({where})")
        if isinstance(exc, rex.ReadTimeout):
            if safe:
                return InfaktTransientError(f"inFakt did not answer in time ({where})")
            return InfaktInDoubt(f"inFakt did not answer in time ({where}); "
                                 "the request may have been processed")
        if isinstance(exc, rex.ConnectionError) and _never_sent(exc):
            return InfaktTransientError(f"Could not connect to inFakt ({where}): "
                                        f"{type(exc).__name__}")
        if isinstance(exc, (rex.InvalidURL, rex.MissingSchema, rex.InvalidSchema,
                            rex.InvalidHeader, rex.URLRequired)):
            return InfaktError(f"Invalid inFakt request ({where}): {type(exc).__name__}")
        if safe:
            return InfaktTransientError(f"Connection to inFakt failed ({where}): "
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
            total = None
            if isinstance(data, dict) and isinstance(data.get("metainfo"), dict):
                total = data["metainfo"].get("total_count")
            offset += len(entities)
            if len(entities) < LIST_LIMIT or not isinstance(total, int) or offset >= total:
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

    def create_invoice(self, invoice, send_to_ksef=False):
        """Queue an invoice (``POST /async/invoices.json``); returns the task envelope."""
        path = "/async/invoices.json"
        body = {"invoice": invoice, "send_to_ksef": bool(send_to_ksef)}
        return self._task_envelope(self._post(path, body, allow_empty=True), "POST", path)

    def create_corrective_invoice(self, corrective, send_to_ksef=False):
        """Queue a corrective invoice (``POST /async/corrective_invoices.json``)."""
        path = "/async/corrective_invoices.json"
        body = {"corrective_invoice": corrective, "send_to_ksef": bool(send_to_ksef)}
        return self._task_envelope(self._post(path, body, allow_empty=True), "POST", path)

    def get_task_status(self, reference, corrective=False):
        """The envelope of an async task."""
        kind = "corrective_invoices" if corrective else "invoices"
        path = f"/async/{kind}/status/{_segment(reference, 'task reference')}.json"
        return self._dict(self._get(path), "GET", path)

    def task_status(self, reference, corrective=False):
        """:class:`TaskStatus` of an async task."""
        return parse_task(self.get_task_status(reference, corrective=corrective))

    def get_invoice(self, uuid):
        path = f"/invoices/{_segment(uuid, 'invoice uuid')}.json"
        return self._dict(self._get(path), "GET", path)

    def get_corrective_invoice(self, uuid):
        path = f"/corrective_invoices/{_segment(uuid, 'invoice uuid')}.json"
        return self._dict(self._get(path), "GET", path)

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

    def find_invoices_by_number(self, number, max_pages=5):
        """Invoices whose number is exactly ``number`` (``[]`` only when inFakt's whole
        answer was read; :class:`InfaktUnexpectedResponse` if the filter was ignored and
        more than ``max_pages`` pages came back without a match)."""
        return self._find_by_number("/invoices.json", number, max_pages)

    def find_corrective_invoices_by_number(self, number, max_pages=5):
        """Corrective invoices whose number is exactly ``number``."""
        return self._find_by_number("/corrective_invoices.json", number, max_pages)

    def download_pdf(self, uuid, corrective=False, document_type="original", locale="pl"):
        """The PDF of an invoice (raw bytes). inFakt flips the status to ``printed``."""
        if document_type not in PDF_DOCUMENT_TYPES:
            raise ValueError(f"unknown PDF document_type {document_type!r}")
        if locale not in PDF_LOCALES:
            raise ValueError(f"unknown PDF locale {locale!r}")
        kind = "corrective_invoices" if corrective else "invoices"
        path = f"/{kind}/{_segment(uuid, 'invoice uuid')}/pdf.json"
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

    def mark_corrective_paid(self, uuid, paid_date):
        """Mark a corrective invoice paid (synchronous; inFakt answers 204)."""
        date = _date_param(paid_date)
        path = f"/corrective_invoices/{_segment(uuid, 'invoice uuid')}/paid.json"
        self._request("POST", path, params={"paid_date": date}, json={"paid_date": date})

    def send_to_ksef(self, uuid, corrective=False):
        """Send an existing invoice to KSeF; returns inFakt's answer (``{}`` if empty)."""
        kind = "corrective_invoices" if corrective else "invoices"
        path = f"/{kind}/{_segment(uuid, 'invoice uuid')}/send_to_ksef.json"
        data = self._post(path, {}, allow_empty=True)
        return {} if data is None else self._dict(data, "POST", path)

    def get_ksef_status(self, uuid):
        """KSeF state of a document (``GET /ksef/documents/{uuid}/status.json``)."""
        path = f"/ksef/documents/{_segment(uuid, 'invoice uuid')}/status.json"
        return self._dict(self._get(path), "GET", path)

    def get_ksef_integration(self):
        """``{active, incomes_last_fetched_at, costs_last_fetched_at}``."""
        path = "/ksef/integration.json"
        return self._dict(self._get(path), "GET", path)

    def list_bank_accounts(self):
        """The account's bank accounts (list of dicts)."""
        return self._list_all("/bank_accounts.json", {}, max_pages=5)[0]

    def find_clients_by_nip(self, nip, max_pages=5):
        """inFakt clients whose NIP (digits only) equals ``nip``'s digits."""
        digits = _digits(nip)
        if not digits:
            return []
        entities, _complete = self._list_all("/clients.json", {"q[clean_nip_eq]": digits},
                                             max_pages)
        return [e for e in entities
                if digits in (_digits(e.get("nip")), _digits(e.get("clean_nip")))]

