import json
import logging

import psycopg2
from werkzeug.exceptions import RequestEntityTooLarge

from odoo import http
from odoo.exceptions import ValidationError
from odoo.http import request

from ..infakt_api import webhook as infakt_webhook

_logger = logging.getLogger(__name__)

# inFakt's deliveries are small JSON documents; anything bigger is refused unread.
MAX_BODY_BYTES = 256 * 1024


def _json_response(payload, status=200):
    return request.make_response(
        json.dumps(payload),
        headers=[("Content-Type", "application/json"), ("Cache-Control", "no-store")],
        status=status,
    )


class InfaktWebhookController(http.Controller):
    @http.route(
        "/infakt/webhook/<string:token>",
        type="http",
        auth="public",
        methods=["POST"],
        csrf=False,
        save_session=False,
    )
    def infakt_webhook(self, token, **kwargs):
        """Receive an inFakt webhook: authenticate, record once, nudge the processor.

        404 unknown token, 413 oversized body, 400 malformed body, 401 bad signature; every
        authentic event (also the ones we ignore) is answered 200 so that inFakt does not
        disable the webhook.
        """
        if request.httprequest.method != "POST":
            # Odoo adds OPTIONS to every route; this endpoint takes POST only.
            response = _json_response({"error": "Method not allowed."}, status=405)
            response.headers["Allow"] = "POST"
            return response
        account = request.env["infakt.account"]._find_by_webhook_token(token)
        if not account or not account.active:
            return _json_response({"error": "Unknown webhook."}, status=404)

        httprequest = request.httprequest
        length = httprequest.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return _json_response({"error": "Payload too large."}, status=413)
        # Also bounds bodies sent without a Content-Length (chunked).
        httprequest.max_content_length = MAX_BODY_BYTES
        try:
            raw_body = httprequest.get_data(cache=True)
        except RequestEntityTooLarge:
            return _json_response({"error": "Payload too large."}, status=413)
        if len(raw_body) > MAX_BODY_BYTES:
            return _json_response({"error": "Payload too large."}, status=413)

        try:
            data = infakt_webhook.parse_json_body(raw_body)
        except infakt_webhook.WebhookPayloadError as error:
            return _json_response({"error": str(error)}, status=400)

        if infakt_webhook.is_verification_request(data):
            account._webhook_mark_verified()
            return _json_response(infakt_webhook.verification_response(data))

        secret = account.sudo().webhook_secret
        signature = httprequest.headers.get(infakt_webhook.SIGNATURE_HEADER)
        if not secret or not infakt_webhook.verify_signature(secret, raw_body, signature):
            _logger.warning(
                "inFakt webhook for account %s refused: %s", account.id,
                "no secret configured" if not secret else "bad signature",
            )
            return _json_response({"error": "Invalid signature."}, status=401)

        try:
            event = infakt_webhook.parse_event(data)
        except infakt_webhook.WebhookPayloadError as error:
            return _json_response({"error": str(error)}, status=400)

        Event = request.env["infakt.webhook.event"].sudo()
        duplicate = Event.search_count(
            [("account_id", "=", account.id), ("event_uuid", "=", event.uuid)], limit=1
        )
        if not duplicate:
            try:
                with request.env.cr.savepoint():
                    Event.create(Event._values_from_event(account, event))
            except (psycopg2.IntegrityError, ValidationError):
                duplicate = True  # the same event delivered twice at the same time
            except (psycopg2.DataError, ValueError, UnicodeError):
                # Authentic but unstorable: answer 2xx anyway, or inFakt would retry it and
                # finally disable the webhook.
                _logger.warning(
                    "inFakt webhook for account %s: event %r could not be stored, ignored",
                    account.id, event.name[:64],
                )
                return _json_response({"status": "ignored"})
            else:
                request.env["infakt.document"]._trigger_processor()
        return _json_response({"status": "duplicate" if duplicate else "accepted"})
