from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api import client as infakt_client
from ..infakt_api import errors as infakt_errors


class InfaktDocumentPayment(models.AbstractModel):
    """Step 5b: payments, Odoo -> inFakt. A payment registered in Odoo marks the inFakt
    invoice paid, once (inFakt refuses a second time with "already paid", which counts as
    done). Mark-paid requests are writes: they go through the same pacer as the creates."""

    _name = "infakt.document.payment"
    _description = "inFakt: step 5b, payments"

    @api.model
    def _queue(self, documents, paid_date):
        """Odoo says the invoices are paid: tell inFakt once."""
        for document in documents.filtered(lambda d: d.paid_sync_state in ("none", "error")):
            if document.infakt_paid_date:
                continue
            document.write({"paid_sync_state": "to_send", "paid_date_sent": paid_date,
                            "paid_next_at": False, "paid_poll_count": 0})
        if documents:
            documents._trigger_processor()

    @api.model
    def _pick(self, run):
        return self.env["infakt.document.complete"]._pick(
            SQL("d.state = 'done' AND d.paid_sync_state IN ('to_send', 'processing') "
                "AND (d.paid_next_at IS NULL OR d.paid_next_at <= %s)", fields.Datetime.now()),
            SQL("d.paid_next_at NULLS FIRST, d.id"))

    @api.model
    def _process(self, document, run):
        client = run.client_for(document.account_id)
        if document.paid_sync_state == "to_send":
            self._send(document, client, run)
        else:
            self._poll(document, client, run)

    @api.model
    def _send(self, document, client, run):
        Runner = self.env["infakt.document.runner"]
        try:
            envelope = client.mark_document_paid(document.infakt_uuid, document.paid_date_sent,
                                                 kind=document._infakt_remote_kind())
        except infakt_errors.InfaktError as error:
            Runner._stop_for(document, error, "write", run)
            if error.retryable or isinstance(error, infakt_errors.InfaktInDoubt):
                # Marking paid twice is refused by inFakt ("already paid"): safe to retry.
                self._later(document)
            else:
                self._failed(document, error.field_errors, Runner._describe(error))
            return
        if envelope is None:  # marked paid at once (corrections)
            self._done(document)
            return
        task = infakt_client.parse_task(envelope)
        document.write({"paid_sync_state": "processing", "paid_task_reference": task.reference,
                        "paid_poll_count": 0,
                        "paid_next_at": fields.Datetime.now() + timedelta(
                            seconds=const.PAID_SCHEDULE[0])})

    @api.model
    def _poll(self, document, client, run):
        Runner = self.env["infakt.document.runner"]
        try:
            task = client.task_status(document.paid_task_reference)
        except infakt_errors.InfaktError as error:
            Runner._stop_for(document, error, "read", run)
            if isinstance(error, infakt_errors.InfaktNotFound):
                document.write({"paid_sync_state": "to_send", "paid_next_at": False})
            else:
                self._later(document)
            return
        already_paid = "status" in (task.errors or {})
        if task.done or already_paid:
            self._done(document)
        elif task.failed:
            self._failed(document, task.errors, task.description)
        else:
            self._later(document)

    @api.model
    def _crashed(self, document, run, error):
        self._later(document)

    @api.model
    def _done(self, document):
        document.write({"paid_sync_state": "done", "infakt_paid_date": document.paid_date_sent,
                        "paid_next_at": False})
        document._infakt_log(self.env._("Marked paid in inFakt on %s.",
                                        document.paid_date_sent))
        document._infakt_notify_change()

    @api.model
    def _later(self, document):
        document.write({
            "paid_poll_count": document.paid_poll_count + 1,
            "paid_next_at": fields.Datetime.now() + timedelta(
                seconds=document._infakt_schedule_delay(const.PAID_SCHEDULE,
                                                        document.paid_poll_count)),
        })

    @api.model
    def _failed(self, document, field_errors, message):
        document.write({"paid_sync_state": "error", "paid_next_at": False})
        details = "; ".join(
            f"{field}: {', '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
            for field, msgs in (field_errors or {}).items()) or message or ""
        document._infakt_log(self.env._("inFakt refused to mark the invoice paid: %s", details))
        document._infakt_notify_change()
