import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import psycopg2

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from .. import const
from ..infakt_api import client as infakt_client
from ..infakt_api import errors as infakt_errors
from .infakt_run import CONCURRENCY_ERRORS, InfaktStop

_logger = logging.getLogger(__name__)

# The result of a create is written in a fresh transaction, tried this many times.
RESULT_WRITE_TRIES = 4


@dataclass
class InfaktCreate:
    """A create request whose intent is committed: what the POST needs, and nothing from the
    ORM (the POST happens outside any transaction)."""

    document_id: int
    account_id: int
    kind: str
    payload: dict
    send_to_ksef: bool
    client: object


class InfaktDocument(models.Model):
    """Step 2: send. One due document at a time: its payload is built and checked, ``sending``
    is committed (with what identifies it) while a session lock shows the sender alive, the
    POST goes out with no transaction open, and its result is recorded in a fresh transaction
    (tried again on conflicts; a result that cannot be written leaves ``sending``, which the
    processor turns into ``in_doubt``: looked up, never resent blindly)."""

    _inherit = "infakt.document"

    # ------------------------------------------------------------------------------------
    # Pick
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_due_send_accounts(self):
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT DISTINCT d.account_id FROM infakt_document d
                 JOIN infakt_account a ON a.id = d.account_id
                WHERE d.state = 'to_send' AND a.active AND a.connection_state != 'failed'
                  AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %s)
                ORDER BY d.account_id""",
            fields.Datetime.now(),
        ))
        return [row[0] for row in self.env.cr.fetchall()]

    @api.model
    def _infakt_pick_send(self, run):
        """The next due document, accounts served in turn: only posted invoices, only accounts
        that are active and not stopped."""
        if run.send_accounts is None:
            run.send_accounts = self._infakt_due_send_accounts()
        accounts = run.send_accounts
        while accounts:
            account_id = accounts.pop(0)
            if account_id in run.blocked_accounts:
                continue
            self.env.cr.execute(SQL(
                """SELECT d.id FROM infakt_document d
                     JOIN account_move m ON m.id = d.move_id
                     JOIN infakt_account a ON a.id = d.account_id
                    WHERE d.account_id = %s AND d.state = 'to_send' AND m.state = 'posted'
                      AND a.active AND a.connection_state != 'failed'
                      AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %s)
                    ORDER BY d.next_attempt_at NULLS FIRST, d.id
                    LIMIT 1 FOR UPDATE OF d SKIP LOCKED""",
                account_id, fields.Datetime.now(),
            ))
            row = self.env.cr.fetchone()
            if row:
                accounts.append(account_id)  # round robin: back to the end of the line
                document = self.sudo().browse(row[0])
                document.invalidate_recordset()
                return document
        return self.browse()

    # ------------------------------------------------------------------------------------
    # Send one
    # ------------------------------------------------------------------------------------
    def _infakt_send_one(self, run):
        """Prepare and commit the intent; returns the POST to run after the commit."""
        self.ensure_one()
        if self.document_type == "correction" and self._infakt_correction_waits():
            return None
        try:
            payload = self._infakt_prepare_payload()
        except (UserError, ValueError) as error:
            # Refused before anything left Odoo: certainly not in inFakt.
            self._infakt_to_error(str(error.args[0] if error.args else error))
            return None
        client = run.client_for(self.account_id)
        if not self._infakt_advisory_lock():
            # A sender of another process holds this document: it is not ours to send.
            self.write({"next_attempt_at": fields.Datetime.now() + timedelta(seconds=5)})
            return None
        self._infakt_transition("sending", {
            "number": payload.get("number"),
            "sent_identity": self._infakt_identity_of(payload),
            "sending_started_at": fields.Datetime.now(),
            "attempt_count": self.attempt_count + 1,
            "error_message": False,
            # Nothing of an earlier attempt may speak for this one.
            "task_reference": False,
            "infakt_uuid": False,
            "poll_count": 0,
            "lookup_count": 0,
        })
        return self._infakt_post_follow_up(InfaktCreate(
            document_id=self.id, account_id=self.account_id.id,
            kind=self._infakt_remote_kind(), payload=payload,
            send_to_ksef=self.account_id.send_to_ksef, client=client,
        ))

    def _infakt_post_follow_up(self, create):
        """The part of the send that runs after the intent is committed."""
        Document = self.browse()

        def post(run):
            outcome = Document._infakt_post(create)
            Document._infakt_record_result(run, create, outcome)
        return post

    @api.model
    def _infakt_post(self, create):
        """The POST itself; returns ``(task, error)``, never raises."""
        try:
            envelope = create.client.create_document(create.kind, create.payload,
                                                     send_to_ksef=create.send_to_ksef)
            return infakt_client.parse_task(envelope), None
        except infakt_errors.InfaktError as error:
            return None, error
        except Exception as error:  # noqa: BLE001 - whatever happened, the create may exist
            _logger.exception("inFakt: unexpected failure of the create of document %s",
                              create.document_id)
            return None, infakt_errors.InfaktInDoubt(
                f"unexpected failure while sending: {type(error).__name__}")

    @api.model
    def _infakt_record_result(self, run, create, outcome):
        """Write what inFakt answered, in a fresh transaction, tried again on conflicts (a user
        touching the invoice, another process). If it cannot be written, the document stays
        ``sending`` and its lock is released: the processor puts it in doubt."""
        task, error = outcome
        stop = None
        try:
            for attempt in range(RESULT_WRITE_TRIES):
                try:
                    with self.env.cr.savepoint():
                        document = self._infakt_lock_for_result(create.document_id)
                        if document:
                            document = document.with_context(
                                lang=document._infakt_reader_lang())
                            stop = document._infakt_apply_result(task, error, run)
                    run.commit()
                    break
                except CONCURRENCY_ERRORS:
                    run.rollback()
                    time.sleep(0.1 * (2 ** attempt))
            else:
                _logger.warning("inFakt: the result of the create of document %s could not be "
                                "written; it will be looked up in inFakt", create.document_id)
        finally:
            self.browse(create.document_id)._infakt_advisory_unlock()
        self._trigger_processor()
        if stop is not None:
            raise stop

    @api.model
    def _infakt_lock_for_result(self, document_id):
        self.env.cr.execute(SQL(
            "SELECT id FROM infakt_document WHERE id = %s AND state IN ('sending', 'in_doubt') "
            "FOR UPDATE",
            document_id,
        ))
        row = self.env.cr.fetchone()
        document = self.sudo().browse(row[0]) if row else self.browse()
        document.invalidate_recordset()
        return document

    def _infakt_apply_result(self, task, error, run):
        """The transition of a create's answer (see ``const.SEND_OUTCOMES``); returns an
        :class:`InfaktStop` when the step must stop."""
        self.ensure_one()
        if error is None:
            if task.failed:
                return self._infakt_refused(task.as_error())
            self._infakt_to_processing(task.reference, invoice_uuid=task.invoice_uuid)
            return None
        outcome = const.outcome_of(error, const.SEND_OUTCOMES)
        describe = self._infakt_describe(error)
        if outcome in ("block_account", "pause"):
            # Nothing was created: the document keeps its place in the queue.
            self._infakt_transition("to_send", {
                "attempt_count": max(0, self.attempt_count - 1),
                "next_attempt_at": False if outcome == "block_account" else
                fields.Datetime.now() + timedelta(seconds=error_retry_after(error)),
                "error_message": describe,
            })
            try:
                self._infakt_stop_for(error, "write", run)
            except InfaktStop as stop:
                return stop
            return None
        if outcome == "in_doubt":
            self._infakt_to_in_doubt(
                describe,
                log=self.env._("The answer of inFakt was lost: the document is in doubt and is "
                               "looked up in inFakt by its number before anything is sent "
                               "again."),
            )
            return None
        if outcome == "retry":
            self._infakt_retry_later(describe)
            return None
        return self._infakt_refused(error)

    def _infakt_refused(self, error):
        """inFakt refused the create (validation). A refused number means inFakt holds a
        document with it, maybe this one from an earlier attempt: look it up."""
        self.ensure_one()
        if "number" in (error.field_errors or {}):
            self._infakt_to_in_doubt(
                self.env._("inFakt says the number %s is already used: looking it up.",
                           self.number),
                delay=0, values={"task_reference": False, "infakt_uuid": False},
            )
            return None
        self._infakt_to_error(self._infakt_validation_message(error))
        return None

    def _infakt_validation_message(self, error):
        lines = []
        for field, messages in (error.field_errors or {}).items():
            text = "; ".join(str(m) for m in messages) if isinstance(messages, list) else str(
                messages)
            key = field.split("[")[0]
            hint = const.FIELD_HINTS.get(key) or const.FIELD_HINTS.get(key.split(".")[-1])
            if field == "base":
                lines.append(f"- {text}")
            elif hint:
                lines.append("- " + self.env._("Check %(what)s: %(message)s",
                                               what=self.env._(hint), message=text))
            else:
                lines.append(f"- {field}: {text}")
        if not lines:
            lines.append(f"- {self._infakt_describe(error)}")
        return self.env._("inFakt refused the document:") + "\n" + "\n".join(lines)

    def _infakt_send_crashed(self, run, error):
        """An unexpected failure before the POST: the document is certainly not in inFakt."""
        self._infakt_to_error(self.env._(
            "The document could not be prepared for inFakt (%(error)s). Check the invoice; if "
            "it looks right, tell your administrator (details in the server log).",
            error=f"{type(error).__name__}: {error}"[:300]))

    # ------------------------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------------------------
    def _infakt_correction_waits(self):
        """A credit note waits (stays queued) while its invoice is on its way to inFakt or
        waits for a fix there; it fails only when its invoice will never be in inFakt."""
        self.ensure_one()
        origin = self.move_id.reversed_entry_id
        origin_document = origin.sudo().infakt_document_id if origin else origin
        if origin_document and origin_document.state == "done":
            return False
        if origin_document and origin_document.state in const.ON_ITS_WAY + ("error",):
            self.write({
                "next_attempt_at": fields.Datetime.now() + timedelta(
                    seconds=const.CORRECTION_WAIT_SECONDS),
                "error_message": self.env._(
                    "Waiting for the invoice %(invoice)s to be in inFakt (%(state)s).",
                    invoice=origin.name,
                    state=dict(self._fields["state"]._description_selection(self.env))[
                        origin_document.state]),
            })
            self._infakt_notify_change()
            return True
        return False  # the payload explains why it cannot be sent

    def _infakt_prepare_payload(self):
        self.ensure_one()
        if self.document_type == "correction":
            return self.move_id._infakt_prepare_corrective_payload(self)
        return self.move_id._infakt_prepare_invoice_payload(self.account_id)

    @api.model
    def _infakt_identity_of(self, payload):
        """What identifies the sent document in inFakt: number, buyer tax id (digits), issue
        date, gross total (grosze, as inFakt computes it) and currency."""
        return self.move_id._infakt_identity_of_payload(payload, self.document_type)

    def _infakt_advisory_lock(self):
        self.env.cr.execute(SQL("SELECT pg_try_advisory_lock(%s, %s)",
                                const.ADVISORY_LOCK_NAMESPACE, self.id))
        return self.env.cr.fetchone()[0]

    def _infakt_advisory_unlock(self):
        """Release the session lock (it belongs to the connection, not the transaction)."""
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(SQL("SELECT pg_advisory_unlock(%s, %s)",
                                        const.ADVISORY_LOCK_NAMESPACE, self.id))
        except psycopg2.Error:
            _logger.exception("inFakt: could not release the sender lock of document %s",
                              self.id)


def error_retry_after(error):
    return getattr(error, "retry_after", None) or 1.0
