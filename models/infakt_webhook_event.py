import json
import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api.webhook import clean_text

_logger = logging.getLogger(__name__)

# An event that matches no document yet is looked at again this often (within the grace).
EVENT_RETRY_SECONDS = 2

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
    # An event that matches no document yet is looked at again from this moment.
    retry_at = fields.Datetime(readonly=True)

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
    def _store(self, account, event, company_id=None):
        """Record an authentic delivery once: one ``INSERT ... ON CONFLICT DO NOTHING`` (no
        ORM create, no look-up first; a redelivery or a concurrent twin is a no-op), with an
        asynchronous commit (inFakt delivers again what is not acknowledged). True when the
        event is new. ``company_id``: the account's, when the caller has it already."""
        values = self._values_from_event(account, event)
        now = fields.Datetime.now()
        if company_id is None:
            company_id = account.company_id.id
        self.env.cr.execute(SQL(
            """SET LOCAL synchronous_commit TO OFF;
               INSERT INTO infakt_webhook_event
                   (account_id, company_id, event_uuid, name, retry_counter, created_at,
                    received_at, state, invoice_uuid, task_reference, resource,
                    create_uid, write_uid, create_date, write_date)
               VALUES (%(account)s, %(company)s, %(event_uuid)s, %(name)s, %(retry)s,
                       %(created_at)s, %(now)s, 'new', %(invoice_uuid)s, %(task)s,
                       %(resource)s::jsonb, %(uid)s, %(uid)s, %(now)s, %(now)s)
               ON CONFLICT (account_id, event_uuid) DO NOTHING
               RETURNING id""",
            account=account.id, company=company_id or None,
            event_uuid=values["event_uuid"], name=values["name"],
            retry=values["retry_counter"] or 0, created_at=values["created_at"] or None,
            now=now, invoice_uuid=values["invoice_uuid"] or None,
            task=values["task_reference"] or None,
            resource=json.dumps(values["resource"]), uid=self.env.uid,
        ))
        return bool(self.env.cr.fetchone())

    @api.model
    def _has_pending(self):
        """True when an event waits to be applied (a cheap check while the processor waits)."""
        self.env.cr.execute(SQL(
            """SELECT 1 FROM infakt_webhook_event
                WHERE state = 'new' AND (retry_at IS NULL OR retry_at <= %s) LIMIT 1""",
            fields.Datetime.now(),
        ))
        return bool(self.env.cr.fetchone())

    @api.model
    def _process_pending(self, run, limit=200):
        """Apply the new events to their documents: nudges, no HTTP (the truth is read from the
        API by the steps). An event that matches no document yet is kept for a while: its
        create's task reference is committed a moment after inFakt accepted the create, and a
        webhook can be faster than that."""
        now = fields.Datetime.now()
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT id FROM infakt_webhook_event
                WHERE state = 'new' AND (retry_at IS NULL OR retry_at <= %s)
                ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
            now, limit,
        ))
        events = self.sudo().browse([row[0] for row in self.env.cr.fetchall()])
        for event in events:
            try:
                with self.env.cr.savepoint():
                    event._apply()
            except Exception:  # noqa: BLE001 - one event never stops the others
                _logger.exception("inFakt: webhook event %s could not be applied", event.id)
                with self.env.cr.savepoint():
                    event.write({"state": "ignored", "note": "Could not be applied."})
        run.commit()
        return len(events)

    def _apply(self):
        self.ensure_one()
        document = self._matching_document()
        if not document:
            if fields.Datetime.now() - self.received_at > timedelta(
                    seconds=const.EVENT_GRACE_SECONDS):
                self.write({"state": "ignored", "note": "No document matches this event."})
            else:
                self.write({"retry_at": fields.Datetime.now() + timedelta(
                    seconds=EVENT_RETRY_SECONDS)})
            return
        document = document.with_context(lang=document._infakt_reader_lang())
        handled = self.env["infakt.document.complete"]._on_event(document, self)
        self.write({"document_id": document.id, "state": "done" if handled else "ignored",
                    "retry_at": False})

    def _matching_document(self):
        self.ensure_one()
        Document = self.env["infakt.document"].sudo()
        domain = [("account_id", "=", self.account_id.id), ("state", "!=", "cancelled")]
        if self.task_reference:
            document = Document.search(domain + [("task_reference", "=", self.task_reference)],
                                       limit=1)
            if document:
                return document
        if self.invoice_uuid:
            return Document.search(domain + [("infakt_uuid", "=", self.invoice_uuid)], limit=1)
        return Document

    @api.model
    def _cron_cleanup(self, days=90):
        """Processed events older than ``days`` are only history: remove them."""
        limit = fields.Datetime.subtract(fields.Datetime.now(), days=days)
        self.sudo().search(
            [("received_at", "<", limit), ("state", "!=", "new")], limit=10000
        ).unlink()
