import logging

from odoo import api, fields, models

from ..infakt_api.webhook import clean_text

_logger = logging.getLogger(__name__)

# Only these parts of a delivery are kept: no buyer data is stored.
KEPT_RESOURCE_KEYS = (
    "invoice_uuid",
    "uuid",
    "invoice_task_reference_number",
    "processing_code",
    "processing_description",
    "invoice_kind",
    "kind",
    "number",
    "ksef_number",
    "status",
    "status_description",
    "paid_date",
    "request_uuid",
)


def _clean(value):
    """JSON values PostgreSQL stores: no NUL characters, no lone surrogates."""
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return clean_text(value)


class InfaktWebhookEvent(models.Model):
    _name = "infakt.webhook.event"
    _description = "inFakt Webhook Event"
    _order = "id desc"
    _rec_name = "name"

    account_id = fields.Many2one(
        "infakt.account", required=True, ondelete="cascade", index=True, string="inFakt Account"
    )
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    event_uuid = fields.Char(string="Event UUID", required=True, readonly=True)
    name = fields.Char(string="Event", required=True, readonly=True)
    retry_counter = fields.Integer(readonly=True)
    created_at = fields.Char(string="Created in inFakt", readonly=True)
    received_at = fields.Datetime(default=fields.Datetime.now, readonly=True, index=True)
    state = fields.Selection(
        [("new", "New"), ("done", "Processed"), ("ignored", "Ignored")],
        default="new",
        required=True,
        readonly=True,
        index=True,
    )
    invoice_uuid = fields.Char(string="inFakt UUID", readonly=True, index=True)
    task_reference = fields.Char(readonly=True, index=True)
    resource = fields.Json(readonly=True)
    document_id = fields.Many2one("infakt.document", readonly=True, ondelete="set null")
    note = fields.Char(readonly=True)

    _sql_constraints = [
        (
            "event_uuid_uniq",
            "unique(account_id, event_uuid)",
            "This webhook event was already received.",
        ),
    ]

    @api.model
    def _values_from_event(self, account, event):
        resource = event.resource or {}
        kept = {key: resource[key] for key in KEPT_RESOURCE_KEYS if key in resource}
        errors = resource.get("invoice_errors")
        if errors:
            kept["invoice_errors"] = errors
        kept = _clean(kept)
        return {
            "account_id": account.id,
            "event_uuid": event.uuid,
            "name": event.name,
            "retry_counter": event.retry_counter,
            "created_at": (event.created_at or "")[:64] or False,
            "invoice_uuid": clean_text(event.invoice_uuid or "")[:255] or False,
            "task_reference": clean_text(event.task_reference or "")[:255] or False,
            "resource": kept,
        }

    @api.model
    def _process_pending(self, limit=500):
        """Nudge the documents the new events are about; the truth is read from the API."""
        events = self.sudo().search([("state", "=", "new")], order="id", limit=limit)
        if not events:
            return 0
        Document = self.env["infakt.document"].sudo()
        for event in events:
            document = Document.browse()
            if event.task_reference:
                document = Document.search(
                    [
                        ("account_id", "=", event.account_id.id),
                        ("task_reference", "=", event.task_reference),
                    ],
                    limit=1,
                )
            if not document and event.invoice_uuid:
                document = Document.search(
                    [
                        ("account_id", "=", event.account_id.id),
                        ("infakt_uuid", "=", event.invoice_uuid),
                    ],
                    limit=1,
                )
            if not document:
                event.write({"state": "ignored", "note": "No document matches this event."})
                continue
            handled = document._on_webhook_event(event)
            event.write(
                {
                    "document_id": document.id,
                    "state": "done" if handled else "ignored",
                }
            )
        return len(events)

    @api.model
    def _cron_cleanup(self, days=90):
        """Processed events older than ``days`` are only history: remove them."""
        limit = fields.Datetime.subtract(fields.Datetime.now(), days=days)
        self.sudo().search(
            [("received_at", "<", limit), ("state", "!=", "new")], limit=10000
        ).unlink()
