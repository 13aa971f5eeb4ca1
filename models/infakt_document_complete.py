import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api import errors as infakt_errors
from ..infakt_api.money import to_grosze
from ..infakt_api.webhook import event_category

_logger = logging.getLogger(__name__)


def _now():
    return fields.Datetime.now()


class InfaktDocument(models.Model):
    """Step 3: complete. A created document becomes ``done`` with its inFakt number, read from
    inFakt: after its task finished (polled, or nudged by a webhook that named the invoice),
    or, for a document in doubt, after it was found by its number *and* its identity (buyer,
    date, total, currency) matched what was sent."""

    _inherit = "infakt.document"

    # ------------------------------------------------------------------------------------
    # Orphans: senders that died while sending
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_detect_orphans(self, run):
        """A document left in ``sending`` whose sender is gone (its session lock is free) or
        whose lease ran out is in doubt: looked up, never resent blindly."""
        lease_end = _now() - timedelta(seconds=const.SENDING_LEASE_SECONDS)
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT id, sending_started_at < %s FROM infakt_document
                WHERE state = 'sending' FOR UPDATE SKIP LOCKED""",
            lease_end,
        ))
        for document_id, lease_over in self.env.cr.fetchall():
            document = self.sudo().browse(document_id)
            document = document.with_context(lang=document._infakt_reader_lang())
            if not lease_over:
                if not document._infakt_advisory_lock():
                    continue  # its sender is alive and holds it
                document._infakt_advisory_unlock()
            document._infakt_to_in_doubt(
                self.env._("The sender stopped while sending; the document is looked up in "
                           "inFakt."),
                log=self.env._("The sender stopped while sending this document: it is in doubt "
                               "and is looked up in inFakt by its number."),
                delay=0,
            )
        run.commit()

    # ------------------------------------------------------------------------------------
    # Polls of the task of a create
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_pick_poll(self, run):
        return self._infakt_pick(
            SQL("d.state = 'processing' AND d.next_poll_at <= %s", _now()),
            SQL("d.next_poll_at, d.id"))

    def _infakt_poll_one(self, run):
        self.ensure_one()
        client = run.client_for(self.account_id)
        if self.infakt_uuid and self._infakt_complete_from_uuid(client, run):
            return
        try:
            task = client.task_status(self.task_reference, kind=self._infakt_remote_kind())
        except infakt_errors.InfaktError as error:
            self._infakt_stop_for(error, "read", run)
            if isinstance(error, infakt_errors.InfaktNotFound):
                self._infakt_to_in_doubt(self.env._(
                    "inFakt does not know the task any more; the document is looked up by its "
                    "number."), delay=0)
            else:
                self._infakt_poll_later(self._infakt_describe(error))
            return
        if task.done and task.invoice_uuid:
            self.write({"infakt_uuid": task.invoice_uuid})
            self._infakt_complete_from_uuid(client, run)
        elif task.failed:
            self._infakt_refused(task.as_error())
        else:
            self._infakt_poll_later()

    def _infakt_poll_later(self, message=None):
        """Read the task again later; a task pending for days is left to a person."""
        self.ensure_one()
        started = self.sent_at or self.write_date
        if started and _now() - started > timedelta(hours=const.POLL_MAX_HOURS):
            self.write({
                "check_manually": True, "next_poll_at": False,
                "error_message": self.env._(
                    "inFakt has not finished the document after %s hours: check it in inFakt, "
                    "then click Check in inFakt.", const.POLL_MAX_HOURS),
            })
            self._infakt_notify_change()
            return
        values = {
            "poll_count": self.poll_count + 1,
            "next_poll_at": _now() + timedelta(seconds=self._infakt_schedule_delay(
                const.POLL_SCHEDULE, self.poll_count)),
        }
        if message:
            values["error_message"] = message
        self.write(values)

    def _infakt_poll_crashed(self, run, error):
        self._infakt_poll_later(self.env._("Reading the task failed (%s): tried again later.",
                                           type(error).__name__))

    def _infakt_complete_from_uuid(self, client, run):
        """Read the created document (the proof and the read-back in one request); True when
        the document is done. A uuid that reads back with another number is not ours."""
        try:
            remote = self._infakt_fetch(client, self.infakt_uuid)
        except infakt_errors.InfaktError as error:
            self._infakt_stop_for(error, "read", run)
            if isinstance(error, infakt_errors.InfaktNotFound):
                self.write({"infakt_uuid": False})
                return False
            self._infakt_poll_later(self.env._(
                "Created in inFakt, but reading it back failed (%s): tried again later.",
                self._infakt_describe(error)))
            return True
        if (remote.get("number") or "") != (self.number or ""):
            _logger.warning("inFakt: document %s named by uuid has another number", self.id)
            self.write({"infakt_uuid": False})
            return False
        self._infakt_to_done(self.infakt_uuid, self._infakt_values_from_remote(remote))
        return True

    # ------------------------------------------------------------------------------------
    # Look-ups of documents in doubt
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_pick_lookup(self, run):
        return self._infakt_pick(
            SQL("d.state = 'in_doubt' AND NOT COALESCE(d.check_manually, false) "
                "AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %s)", _now()),
            SQL("d.next_attempt_at NULLS FIRST, d.id"))

    def _infakt_lookup_one(self, run):
        """Look the document up by its number. Linked only when its identity matches; a number
        used by another document is an error (ours cannot be there under it); not found after
        the task window: safe to send again."""
        self.ensure_one()
        client = run.client_for(self.account_id)
        if self.task_reference and not self.infakt_uuid:
            # The task is known (its answer came late): its status is the surest proof.
            try:
                task = client.task_status(self.task_reference, kind=self._infakt_remote_kind())
            except infakt_errors.InfaktError as error:
                self._infakt_stop_for(error, "read", run)
                task = None
            if task is not None and task.done and task.invoice_uuid:
                self.write({"infakt_uuid": task.invoice_uuid})
            elif task is not None and task.failed:
                self._infakt_refused(task.as_error())
                return
        if self.infakt_uuid:
            try:
                remote = self._infakt_fetch(client, self.infakt_uuid)
            except infakt_errors.InfaktError as error:
                self._infakt_stop_for(error, "read", run)
                remote = None
            if remote and self._infakt_identity_matches(remote):
                self._infakt_to_done(self.infakt_uuid, self._infakt_values_from_remote(remote),
                                     how=self.env._("Found in inFakt (not sent again) as"))
                return
            self.write({"infakt_uuid": False})
        number = self.number or self.move_id.name
        try:
            found = self._infakt_find_by_number(client, number)
        except infakt_errors.InfaktError as error:
            self._infakt_stop_for(error, "read", run)
            self._infakt_lookup_later(self._infakt_describe(error))
            return
        matching = [entity for entity in found if self._infakt_identity_matches(entity)]
        if len(matching) == 1:
            entity = matching[0]
            self._infakt_to_done(entity.get("uuid"), self._infakt_values_from_remote(entity),
                                 how=self.env._("Found in inFakt by its number (not sent "
                                                "again) as"))
        elif len(matching) > 1:
            self.write({"check_manually": True, "error_message": self.env._(
                "inFakt holds %(count)s documents numbered %(number)s that look like this one: "
                "check them in inFakt (one is a duplicate), then click Check in inFakt.",
                count=len(matching), number=number)})
            self._infakt_notify_change()
        elif found:
            self._infakt_to_error(self.env._(
                "The number %(number)s is already used in inFakt by another document (its "
                "buyer, date, total or currency differ from this invoice). Check that document "
                "in inFakt; this invoice was not created there.", number=number))
        else:
            self._infakt_not_found(number)

    def _infakt_not_found(self, number):
        started = self.sending_started_at or self.write_date
        if started and _now() - started >= timedelta(seconds=const.TASK_WINDOW_SECONDS):
            self._infakt_transition(
                "to_send",
                {"next_attempt_at": False, "error_message": False, "lookup_count": 0,
                 "task_reference": False},
                log=self.env._("Not found in inFakt after the task window: it is safe to send it "
                               "again."),
            )
            self._trigger_sender()
        else:
            self._infakt_lookup_later(self.env._(
                "%s is not in inFakt (yet): looked up again in a moment.", number))

    def _infakt_lookup_later(self, message):
        self.write({
            "lookup_count": self.lookup_count + 1,
            "next_attempt_at": _now() + timedelta(seconds=self._infakt_schedule_delay(
                const.LOOKUP_SCHEDULE, self.lookup_count + 1)),
            "error_message": message,
        })

    def _infakt_lookup_crashed(self, run, error):
        self._infakt_lookup_later(self.env._("Looking the document up failed (%s): tried again "
                                             "later.", type(error).__name__))

    # ------------------------------------------------------------------------------------
    # Webhook nudges (no HTTP here: the steps read the truth from inFakt)
    # ------------------------------------------------------------------------------------
    def _infakt_on_event(self, event):
        """Make this document due for what the event says; False when the event is ignored."""
        self.ensure_one()
        category = event_category(event.name)
        now = _now()
        if category == "creation":
            uuid = event.invoice_uuid if event.name == "async_invoice_creation_success" else None
            if self.state == "processing":
                self.write({"next_poll_at": now, **({"infakt_uuid": uuid} if uuid else {})})
                return True
            if self.state == "in_doubt":
                self.write({"next_attempt_at": now, **({"infakt_uuid": uuid} if uuid else {})})
                return True
            return False
        if self.state != "done":
            return False
        if category == "ksef":
            values = {"ksef_next_check_at": now, "ksef_check_count": 0}
            if self.ksef_state in ("none", "manual"):
                values["ksef_state"] = "pending"
            self.write(values)
            return True
        if category in ("paid", "mark_paid_async", "deleted"):
            self.write({"refresh_pending": True})
            return True
        return False

    # ------------------------------------------------------------------------------------
    # Identity and read-back values
    # ------------------------------------------------------------------------------------
    def _infakt_identity_matches(self, remote):
        """True when the inFakt document ``remote`` is the one this document sent."""
        self.ensure_one()
        expected = self.sent_identity or self.move_id._infakt_identity_of_move(self)
        actual = self.move_id._infakt_identity_of_remote(remote)
        return all(actual.get(key) == value for key, value in expected.items())

    def _infakt_values_from_remote(self, remote):
        self.ensure_one()
        values = {"infakt_number": remote.get("number") or self.number or False}
        if remote.get("id"):
            values["infakt_id"] = remote["id"]
        gross = remote.get("gross_price")
        if gross is not None:
            move = self.move_id
            sign = -1 if self.document_type == "correction" else 1
            expected = {
                "net_price": sign * to_grosze(move.amount_untaxed),
                "tax_price": sign * to_grosze(move.amount_tax),
                "gross_price": sign * to_grosze(move.amount_total),
            }
            mismatch = {}
            for key, value in expected.items():
                actual = self._infakt_int(remote.get(key))
                if actual is not None and actual != value:
                    mismatch[key] = (value, actual)
            actual_gross = self._infakt_int(gross)
            if actual_gross is not None:
                values["infakt_amount_total"] = sign * actual_gross / 100
            values["amount_mismatch"] = bool(mismatch)
            values["amount_mismatch_message"] = self.env._(
                "Totals differ from Odoo: %s",
                ", ".join(f"{key} {exp / 100:.2f} / {act / 100:.2f}"
                          for key, (exp, act) in mismatch.items()),
            ) if mismatch else False
        ksef_number = remote.get("ksef_number") or (remote.get("ksef_data") or {}).get(
            "ksef_number")
        if ksef_number:
            values.update({"ksef_number": ksef_number, "ksef_state": "success"})
        if remote.get("paid_date"):
            values["infakt_paid_date"] = remote["paid_date"]
        return values

    # ------------------------------------------------------------------------------------
    # Shared by the steps of the processor
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_pick(self, where, order):
        """Lock the first document matching ``where`` in ``order`` (SQL on alias ``d``) of an
        active account that is not stopped; ``SKIP LOCKED``: two processes never take the same
        one."""
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT d.id FROM infakt_document d
                 JOIN infakt_account a ON a.id = d.account_id
                WHERE a.active AND a.connection_state != 'failed' AND %s
                ORDER BY %s
                LIMIT 1 FOR UPDATE OF d SKIP LOCKED""",
            where, order,
        ))
        row = self.env.cr.fetchone()
        if not row:
            return self.browse()
        document = self.sudo().browse(row[0])
        document.invalidate_recordset()
        return document

    @staticmethod
    def _infakt_int(value):
        """An integer amount from inFakt's answer, None when it is not one."""
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    def _infakt_corrective(self):
        return self.document_type == "correction"

    def _infakt_fetch(self, client, uuid):
        """The inFakt document ``uuid`` of this document's kind (one read)."""
        return client.get_document(uuid, kind=self._infakt_remote_kind())

    def _infakt_find_by_number(self, client, number):
        """inFakt's documents of this document's kind numbered exactly ``number``."""
        return client.find_documents_by_number(number, kind=self._infakt_remote_kind())

    def _infakt_remote_kind(self):
        return "corrective" if self.document_type == "correction" else "invoice"
