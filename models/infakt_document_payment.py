from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api import client as infakt_client
from ..infakt_api import errors as infakt_errors


class InfaktDocument(models.Model):
    """Step 5b: payments. A payment registered in Odoo marks the inFakt invoice paid, once
    (inFakt refuses a second time with "already paid", which counts as done). When inFakt says
    something changed (paid, deleted), the document is read again: the webhook only nudges."""

    _inherit = "infakt.document"

    # ------------------------------------------------------------------------------------
    # Odoo -> inFakt: mark paid
    # ------------------------------------------------------------------------------------
    def _queue_mark_paid(self, paid_date):
        """Odoo says the invoice is paid: tell inFakt once."""
        for document in self.filtered(lambda d: d.paid_sync_state in ("none", "error")):
            if document.infakt_paid_date:
                continue
            document.write({"paid_sync_state": "to_send", "paid_date_sent": paid_date,
                            "paid_next_at": False})
        if self:
            self._trigger_processor()

    @api.model
    def _infakt_pick_mark_paid(self, run):
        return self._infakt_pick(
            SQL("d.state = 'done' AND d.paid_sync_state IN ('to_send', 'processing') "
                "AND (d.paid_next_at IS NULL OR d.paid_next_at <= %s)", fields.Datetime.now()),
            SQL("d.paid_next_at NULLS FIRST, d.id"))

    def _infakt_mark_paid_one(self, run):
        self.ensure_one()
        client = run.client_for(self.account_id)
        if self.paid_sync_state == "to_send":
            self._infakt_send_mark_paid(client, run)
        else:
            self._infakt_poll_mark_paid(client, run)

    def _infakt_send_mark_paid(self, client, run):
        try:
            envelope = client.mark_document_paid(self.infakt_uuid, self.paid_date_sent,
                                                 kind=self._infakt_remote_kind())
            if envelope is None:  # marked paid at once (corrections)
                self._infakt_paid_done()
                return
        except infakt_errors.InfaktError as error:
            self._infakt_stop_for(error, "write", run)
            if error.retryable or isinstance(error, infakt_errors.InfaktInDoubt):
                # Marking paid twice is refused by inFakt ("already paid"): safe to retry.
                self._infakt_paid_later()
            else:
                self._infakt_paid_failed(error.field_errors, self._infakt_describe(error))
            return
        task = infakt_client.parse_task(envelope)
        self.write({"paid_sync_state": "processing", "paid_task_reference": task.reference,
                    "paid_poll_count": 0,
                    "paid_next_at": fields.Datetime.now() + timedelta(
                        seconds=const.PAID_SCHEDULE[0])})

    def _infakt_poll_mark_paid(self, client, run):
        try:
            task = client.task_status(self.paid_task_reference)
        except infakt_errors.InfaktError as error:
            self._infakt_stop_for(error, "read", run)
            if isinstance(error, infakt_errors.InfaktNotFound):
                self.write({"paid_sync_state": "to_send", "paid_next_at": False})
            else:
                self._infakt_paid_later()
            return
        already_paid = "status" in (task.errors or {})
        if task.done or already_paid:
            self._infakt_paid_done()
        elif task.failed:
            self._infakt_paid_failed(task.errors, task.description)
        else:
            self._infakt_paid_later()

    def _infakt_paid_done(self):
        self.write({"paid_sync_state": "done", "infakt_paid_date": self.paid_date_sent,
                    "paid_next_at": False})
        self._infakt_log(self.env._("Marked paid in inFakt on %s.", self.paid_date_sent))
        self._infakt_notify_change()

    def _infakt_paid_later(self):
        self.write({
            "paid_poll_count": self.paid_poll_count + 1,
            "paid_next_at": fields.Datetime.now() + timedelta(
                seconds=self._infakt_schedule_delay(const.PAID_SCHEDULE, self.paid_poll_count)),
        })

    def _infakt_paid_failed(self, field_errors, message):
        self.write({"paid_sync_state": "error", "paid_next_at": False})
        details = "; ".join(
            f"{field}: {', '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
            for field, msgs in (field_errors or {}).items()) or message or ""
        self._infakt_log(self.env._("inFakt refused to mark the invoice paid: %s", details))
        self._infakt_notify_change()

    def _infakt_mark_paid_crashed(self, run, error):
        self._infakt_paid_later()

    # ------------------------------------------------------------------------------------
    # inFakt -> Odoo: read the document again (paid, deleted)
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_pick_refresh(self, run):
        return self._infakt_pick(SQL("d.state = 'done' AND d.refresh_pending"), SQL("d.id"))

    def _infakt_refresh_one(self, run):
        self.ensure_one()
        client = run.client_for(self.account_id)
        try:
            remote = self._infakt_fetch(client, self.infakt_uuid)
        except infakt_errors.InfaktError as error:
            self._infakt_stop_for(error, "read", run)
            if isinstance(error, infakt_errors.InfaktNotFound):
                self.write({"refresh_pending": False})
                self._infakt_to_cancelled(self.env._("The document was deleted in inFakt."))
            elif not error.retryable:
                self.write({"refresh_pending": False})
            return
        values = {"refresh_pending": False}
        if remote.get("paid_date") and remote["paid_date"] != str(self.infakt_paid_date or ""):
            values["infakt_paid_date"] = remote["paid_date"]
            self._infakt_log(self.env._("inFakt recorded the payment on %s.", remote["paid_date"]))
        ksef_number = remote.get("ksef_number") or (remote.get("ksef_data") or {}).get(
            "ksef_number")
        if ksef_number and not self.ksef_number:
            values.update({"ksef_number": ksef_number, "ksef_state": "success",
                           "ksef_next_check_at": False})
        self.write(values)
        self._infakt_notify_change()

    def _infakt_refresh_crashed(self, run, error):
        self.write({"refresh_pending": False})
