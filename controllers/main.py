"""inFakt's webhook: ``POST /infakt/webhook/<token>``.

What may reach this endpoint is anything at all, from anyone who knows or guesses the URL,
so the request is checked in two steps:

1. :func:`precheck_webhook_request`, called by ``ir.http._pre_dispatch``
   (``models/ir_http.py``), i.e. *before* Odoo's dispatcher parses the body
   (``get_http_params()`` reads form-encoded and multipart bodies, up to Odoo's own 128 MiB
   limit, before any controller runs). It refuses other methods (405), tokens that are not
   shaped like ours (404, before the token reaches a query), bodies over
   :data:`MAX_BODY_BYTES` (413, by ``Content-Length`` without reading, or by reading at most
   ``MAX_BODY_BYTES + 1`` bytes of a chunked body) and form content types (415). It keeps the
   raw body on the request for the controller.
2. The controller: the account, the JSON, the signature, then the event.

Nothing is created or changed without a valid ``X-Infakt-Signature``.
"""

import json
import logging
import re
from dataclasses import dataclass

import psycopg2
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, abort

from odoo import http
from odoo.http import request
from odoo.tools import SQL

from ..infakt_api import webhook as infakt_webhook

_logger = logging.getLogger(__name__)

WEBHOOK_ROUTE = "/infakt/webhook/<string:token>"
WEBHOOK_PATH_PREFIX = "/infakt/webhook/"

# inFakt's deliveries are small JSON documents; anything bigger is refused unread.
MAX_BODY_BYTES = 256 * 1024
_READ_CHUNK = 64 * 1024

# Our tokens are ``secrets.token_urlsafe(32)`` (43 characters of the URL-safe base64
# alphabet); anything else cannot be one and is answered 404 without a database query (a
# NUL character in a query parameter is a server error in psycopg2).
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")

# Content types that werkzeug parses into ``request.form``/``files`` (Odoo does it for every
# ``type="http"`` route): inFakt sends JSON, these are refused before anything parses them.
_FORM_MIMETYPES = frozenset({
    "application/x-www-form-urlencoded",
    "application/x-url-encoded",
    "multipart/form-data",
})

# Name of the request attribute holding the raw body read by the pre-dispatch check.
_BODY_ATTRIBUTE = "infakt_webhook_raw_body"


class WebhookRefused(Exception):
    """The request is refused before the controller: :attr:`response` is the answer."""

    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


def _json_response(payload, status=200, headers=None):
    # ``json.dumps`` escapes to ASCII: an echoed verification code with a lone surrogate or
    # a NUL cannot break the encoding of the answer.
    return request.make_response(
        json.dumps(payload),
        headers=[
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            *(headers or []),
        ],
        status=status,
    )


def _refused(status, message, headers=None):
    return WebhookRefused(_json_response({"error": message}, status=status, headers=headers))


def is_webhook_token_shaped(token):
    """Whether ``token`` can be one of our webhook tokens (checked before any query)."""
    return isinstance(token, str) and _TOKEN_RE.fullmatch(token) is not None


def _raw_stream(httprequest):
    # Odoo's ``HTTPRequest`` wraps werkzeug's request and exposes ``get_data()`` but not
    # ``stream``; ``get_data()`` reads a body without ``Content-Length`` (chunked) to its end
    # with werkzeug < 3, so the bounded read below needs the stream itself.
    wrapped = getattr(httprequest, "_HTTPRequest__wrapped", httprequest)
    return wrapped.stream


def _read_capped_body(httprequest):
    """The raw body, at most :data:`MAX_BODY_BYTES`; :class:`WebhookRefused` (413) beyond.

    A declared ``Content-Length`` over the cap is refused without reading anything. A body
    without one (``Transfer-Encoding: chunked``) is read ``MAX_BODY_BYTES + 1`` bytes at
    most: an endless stream is cut there.
    """
    length = httprequest.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise _refused(413, "Payload too large.")
    chunks = []
    size = 0
    try:
        stream = _raw_stream(httprequest)
        while size <= MAX_BODY_BYTES:
            chunk = stream.read(min(_READ_CHUNK, MAX_BODY_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except RequestEntityTooLarge:  # werkzeug >= 3 applies max_content_length to the stream
        raise _refused(413, "Payload too large.") from None
    except (HTTPException, OSError, ValueError):
        # Client gone before the end of its Content-Length, malformed chunk framing...
        raise _refused(400, "The request body could not be read.") from None
    if size > MAX_BODY_BYTES:
        raise _refused(413, "Payload too large.")
    return b"".join(chunks)


def precheck_webhook_request(token):
    """Check what can be checked without the database or a parser; return the raw body.

    Called first by ``ir.http._pre_dispatch`` for this route (before Odoo parses the body),
    and again by the controller, which then finds the body already read. Raises
    :class:`WebhookRefused`.
    """
    body = getattr(request, _BODY_ATTRIBUTE, None)
    if body is not None:  # already read (the controller, or a retried transaction)
        return body
    httprequest = request.httprequest
    if httprequest.method != "POST":
        # werkzeug answers 405 to the other methods itself; Odoo adds OPTIONS to every
        # route, so that one reaches this point.
        raise _refused(405, "Method not allowed.", headers=[("Allow", "POST")])
    if not is_webhook_token_shaped(token):
        raise _refused(404, "Unknown webhook.")
    body = _read_capped_body(httprequest)
    mimetype = (httprequest.mimetype or "").lower()
    if mimetype in _FORM_MIMETYPES or mimetype.startswith("multipart/"):
        # The body was read raw above, so nothing parsed it; inFakt sends JSON. Other types
        # (none, text/plain...) are let through: the body must be a JSON object anyway, and
        # refusing inFakt's deliveries by a header it does not document would disable the
        # webhook after 10 failures.
        raise _refused(415, "Send the webhook as application/json.")
    setattr(request, _BODY_ATTRIBUTE, body)
    return body


def webhook_pre_dispatch(args):
    """``ir.http._pre_dispatch`` hook for :data:`WEBHOOK_ROUTE`: refuse early, unparsed."""
    request.session.can_save = False  # as save_session=False, also on the refusals below
    try:
        precheck_webhook_request(args.get("token"))
    except WebhookRefused as refusal:
        # A response raised this way is sent as is, with the transaction rolled back.
        abort(refusal.response)


def webhook_fallback_response():
    """404 for the paths under the webhook prefix that match no route (``/infakt/webhook/a/b``):
    Odoo's fallback would look the path up as an attachment URL, and a NUL in it is a server
    error in that query."""
    return _json_response({"error": "Unknown webhook."}, status=404)


@dataclass(frozen=True)
class _WebhookAccount:
    """What the endpoint needs of an account, read in one query (no ORM read of the record
    and of its secret field apart: a delivery is answered with a handful of queries)."""

    record: object
    secret: str | None
    active: bool
    verified: bool
    company_id: int | None


def _account_for_token(token):
    """The account (sudo, archived included) of a well-shaped token, or None."""
    request.env.cr.execute(SQL(
        """SELECT id, webhook_secret, active, webhook_verified_at IS NOT NULL, company_id
             FROM infakt_account WHERE webhook_token = %s ORDER BY id LIMIT 1""",
        token,
    ))
    row = request.env.cr.fetchone()
    if not row:
        return None
    return _WebhookAccount(request.env["infakt.account"].sudo().browse(row[0]), row[1],
                           bool(row[2]), row[3], row[4])


class InfaktWebhookController(http.Controller):
    @http.route(
        WEBHOOK_ROUTE,
        type="http",
        auth="public",
        methods=["POST"],
        csrf=False,
        save_session=False,
        # Odoo's own per-route limit (werkzeug's form parser and, with werkzeug >= 3, the
        # stream): a second line behind the pre-dispatch check.
        max_content_length=MAX_BODY_BYTES,
    )
    def infakt_webhook(self, token, **kwargs):
        """Receive an inFakt webhook: authenticate, record once, nudge the processor.

        404 unknown token, 405 other methods, 413 body over 256 KiB, 415 form bodies, 400
        malformed body, 401 bad signature. Every authentic event (also the ones we ignore,
        and all of them while the account is archived) is answered 200, so that inFakt does
        not disable the webhook.
        """
        try:
            raw_body = precheck_webhook_request(token)
        except WebhookRefused as refusal:
            return refusal.response
        found = _account_for_token(token)
        if not found:
            return _json_response({"error": "Unknown webhook."}, status=404)
        account = found.record

        try:
            data = infakt_webhook.parse_json_body(raw_body)
        except infakt_webhook.WebhookPayloadError as error:
            return _json_response({"error": str(error)}, status=400)

        secret = found.secret
        signature = request.httprequest.headers.get(infakt_webhook.SIGNATURE_HEADER)
        authentic = bool(secret) and infakt_webhook.verify_signature(secret, raw_body, signature)

        if infakt_webhook.is_verification_request(data):
            # inFakt's "Verify" ping must be echoed (200 + the same code as JSON) or the
            # webhook stays unverified in inFakt. Whether inFakt signs it is not documented
            # (and the user usually copies the HMAC secret into Odoo only after creating the
            # webhook), so it is echoed signed or not. But an echo proves nothing and anyone
            # with the URL can send one: only a correctly signed ping marks the webhook
            # verified here; otherwise the first authentic event does (below). Nothing is
            # changed on an archived account.
            if authentic and found.active:
                account._webhook_mark_verified()
            return _json_response(infakt_webhook.verification_response(data))

        if not authentic:
            _logger.warning(
                "inFakt webhook for account %s refused: %s", account.id,
                "no secret configured" if not secret else "bad signature",
            )
            return _json_response({"error": "Invalid signature."}, status=401)

        if not found.active:
            # Archived "for a while" must not kill the webhook (inFakt disables it after 10
            # failed deliveries): authentic deliveries are acknowledged and dropped.
            _logger.info("inFakt webhook for archived account %s: delivery ignored", account.id)
            return _json_response({"status": "ignored"})

        try:
            event = infakt_webhook.parse_event(data)
        except (infakt_webhook.WebhookPayloadError, OverflowError) as error:
            # OverflowError: int() of a JSON number such as 1e999 (a float infinity).
            return _json_response({"error": str(error)}, status=400)

        if not found.verified:
            # A delivery signed with the webhook's secret proves the webhook works as well
            # as a signed verification ping would.
            account._webhook_mark_verified()

        try:
            stored = request.env["infakt.webhook.event"].sudo()._store(
                account, event, company_id=found.company_id)
        except (psycopg2.DataError, psycopg2.IntegrityError, ValueError, TypeError,
                UnicodeError, OverflowError, RecursionError):
            # Authentic but unstorable (odd values, a resource nested too deeply...):
            # answer 2xx anyway, or inFakt would retry it and finally disable the webhook.
            request.env.cr.rollback()
            _logger.warning(
                "inFakt webhook for account %s: event %r could not be stored, ignored",
                account.id, event.name[:64],
            )
            return _json_response({"status": "ignored"})
        if stored:
            request.env["infakt.document"]._trigger_processor()
        return _json_response({"status": "accepted" if stored else "duplicate"})
