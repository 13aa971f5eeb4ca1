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
    """A create whose intent is committed: what the POST needs, and nothing from the ORM (the
    POST happens outside any transaction)."""

    document_id: int
    kind: str
    payload: dict
    send_to_ksef: bool
    client: object


class InfaktDocumentSend(models.AbstractModel):
    """Step 2: send. One due document at a time: its payload is built and checked, ``sending``
    is committed (with what identifies the document) while a session lock shows the sender
    alive, the POST goes out with no transaction open, and its result is recorded in a fresh
    transaction, tried again on conflicts. A result that cannot be written leaves ``sending``,
    which the processor turns into ``in_doubt``: looked up, never resent blindly."""

    _name = "infakt.document.send"
    _description = "inFakt: step 2, send"

    # ------------------------------------------------------------------------------------
    # Pick: accounts in turn, only posted invoices
    # ------------------------------------------------------------------------------------
    @api.model
    def _due_accounts(self):
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
    def _pick(self, run):
        """The next due document, the accounts served in turn (round robin)."""
        if run.send_accounts is None:
            run.send_accounts = self._due_accounts()
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
                accounts.append(account_id)  # back to the end of the line
                document = self.env["infakt.document"].sudo().browse(row[0])
                document.invalidate_recordset()
                return document
        return self.env["infakt.document"]

    # ------------------------------------------------------------------------------------
    # Process one: intent committed, then the POST
    # ------------------------------------------------------------------------------------
    @api.model
    def _process(self, document, run):
        """Prepare and record the intent; returns the POST to run after the commit."""
        if document.document_type == "correction" and self._correction_waits(document):
            return None
        if self._advances_wait(document):
            return None
        try:
            payload = self._prepare_payload(document)
        except (UserError, ValueError) as error:
            # Refused before anything left Odoo: certainly not in inFakt.
            document._infakt_to_error(str(error.args[0] if error.args else error),
                                      fix=getattr(error, "infakt_fix", False),
                                      fix_res_id=getattr(error, "infakt_fix_res_id", False))
            return None
        client = run.client_for(document.account_id)
        if not self._advisory_lock(document):
            # A sender of another process holds this document: it is not ours to send.
            document.write({"next_attempt_at": fields.Datetime.now() + timedelta(seconds=5)})
            return None
        document._infakt_transition("sending", {
            "number": payload.get("number"),
            "sent_identity": self.env["infakt.payload"]._identity_of_payload(
                document.move_id, payload, document.document_type),
            "sending_started_at": fields.Datetime.now(),
            "attempt_count": document.attempt_count + 1,
            "error_message": False,
            # Nothing of an earlier attempt may speak for this one.
            "task_reference": False,
            "infakt_uuid": False,
            "poll_count": 0,
            "lookup_count": 0,
        })
        create = InfaktCreate(
            document_id=document.id, kind=document._infakt_remote_kind(), payload=payload,
            send_to_ksef=document.account_id.send_to_ksef, client=client,
        )
        return lambda run: self._record_result(run, create, self._post(create))

    @api.model
    def _post(self, create):
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
    def _record_result(self, run, create, outcome):
        """Write what inFakt answered, in a fresh transaction, tried again on conflicts (a user
        touching the invoice, another process). If it cannot be written, the document stays
        ``sending`` and its lock is released: the processor puts it in doubt."""
        task, error = outcome
        stop = None
        Document = self.env["infakt.document"].sudo()
        try:
            for attempt in range(RESULT_WRITE_TRIES):
                try:
                    with self.env.cr.savepoint():
                        document = self._lock_for_result(create.document_id)
                        if document:
                            document = document.with_context(
                                lang=document._infakt_reader_lang())
                            stop = self._apply_result(document, task, error, run)
                    run.commit()
                    break
                except CONCURRENCY_ERRORS:
                    run.rollback()
                    time.sleep(0.1 * (2 ** attempt))
            else:
                _logger.warning("inFakt: the result of the create of document %s could not be "
                                "written; it will be looked up in inFakt", create.document_id)
        finally:
            self._advisory_unlock(Document.browse(create.document_id))
        self._nudge_processor(run)
        if stop is not None:
            raise stop

    @api.model
    def _nudge_processor(self, run, final=False):
        """Wake the processor for the tasks just created: at most once per
        ``PROCESSOR_NUDGE_SECONDS`` of a run (a running processor finds them by itself), and
        once more when the run ends (``final``), so that none waits for the interval."""
        now = time.monotonic()
        last = run.processor_nudged_at
        if final and not run.processor_unnudged:
            return
        if not final and last is not None and now - last < const.PROCESSOR_NUDGE_SECONDS:
            run.processor_unnudged = True
            return
        run.processor_nudged_at = now
        run.processor_unnudged = False
        self.env["infakt.document"]._trigger_processor()
        run.commit()

    @api.model
    def _lock_for_result(self, document_id):
        self.env.cr.execute(SQL(
            "SELECT id FROM infakt_document WHERE id = %s AND state IN ('sending', 'in_doubt') "
            "FOR UPDATE",
            document_id,
        ))
        row = self.env.cr.fetchone()
        document = self.env["infakt.document"].sudo().browse(row[0] if row else [])
        document.invalidate_recordset()
        return document

    @api.model
    def _apply_result(self, document, task, error, run):
        """The transition of a create's answer (see ``const.SEND_OUTCOMES``); returns an
        :class:`InfaktStop` when the step must stop."""
        if error is None:
            if task.failed:
                document._infakt_refused(task.as_error())
            else:
                document._infakt_to_processing(task.reference, invoice_uuid=task.invoice_uuid)
            return None
        Runner = self.env["infakt.document.runner"]
        outcome = const.outcome_of(error, const.SEND_OUTCOMES)
        describe = Runner._describe(error)
        if outcome in ("block_account", "pause"):
            # Nothing was created: the document keeps its place in the queue.
            retry_after = getattr(error, "retry_after", None) or 1.0
            document._infakt_transition("to_send", {
                "attempt_count": max(0, document.attempt_count - 1),
                "next_attempt_at": False if outcome == "block_account" else
                fields.Datetime.now() + timedelta(seconds=retry_after),
                "error_message": describe,
            })
            try:
                Runner._stop_for(document, error, "write", run)
            except InfaktStop as stop:
                return stop
        elif outcome == "in_doubt":
            document._infakt_to_in_doubt(
                describe,
                log=self.env._("The answer of inFakt was lost: the document is in doubt and is "
                               "looked up in inFakt by its number before anything is sent "
                               "again."),
            )
        elif outcome == "retry":
            document._infakt_retry_later(describe)
        else:
            document._infakt_refused(error)
        return None

    @api.model
    def _crashed(self, document, run, error):
        """An unexpected failure before the POST: the document is certainly not in inFakt."""
        # Computed outside the call: Odoo's term extractor cannot read f-strings in _() calls.
        what = f"{type(error).__name__}: {error}"[:300]
        document._infakt_to_error(self.env._(
            "The document could not be prepared for inFakt (%(error)s). Check the invoice; if "
            "it looks right, tell your administrator (details in the server log).",
            error=what))

    # ------------------------------------------------------------------------------------
    # Before the POST
    # ------------------------------------------------------------------------------------
    @api.model
    def _correction_waits(self, document):
        """A credit note waits (stays queued) while its invoice is on its way to inFakt or
        waits for a fix there; it fails only when its invoice will never be in inFakt."""
        origin = document.move_id.reversed_entry_id
        origin_document = origin.sudo().infakt_document_id if origin else origin
        if not origin_document or origin_document.state == "done":
            return False
        if origin_document.state not in const.ON_ITS_WAY + ("error",):
            return False  # the payload explains why it cannot be sent
        states = dict(document._fields["state"]._description_selection(self.env))
        document.write({
            "next_attempt_at": fields.Datetime.now() + timedelta(
                seconds=const.CORRECTION_WAIT_SECONDS),
            "error_message": self.env._(
                "Waiting for the invoice %(invoice)s to be in inFakt (%(state)s).",
                invoice=origin.name, state=states[origin_document.state]),
        })
        document._infakt_notify_change()
        return True

    @api.model
    def _advances_wait(self, document):
        """An advance waits for the earlier advances of its order, a final invoice for the
        advances it deducts, while they are on their way to inFakt or wait for a fix there."""
        Payload = self.env["infakt.payload"]
        document_type = Payload._document_type(document.move_id, document.document_type)
        for advance in Payload._advances_needed(document.move_id, document_type):
            advance_document = advance.sudo().infakt_document_id
            if advance_document and advance_document.state in const.ON_ITS_WAY + ("error",):
                states = dict(document._fields["state"]._description_selection(self.env))
                document.write({
                    "next_attempt_at": fields.Datetime.now() + timedelta(
                        seconds=const.CORRECTION_WAIT_SECONDS),
                    "error_message": self.env._(
                        "Waiting for the down payment invoice %(invoice)s to be in inFakt "
                        "(%(state)s).", invoice=advance.name,
                        state=states[advance_document.state]),
                })
                document._infakt_notify_change()
                return True
        return False

    @api.model
    def _prepare_payload(self, document):
        """The payload of the document, checked: totals as inFakt will compute them equal the
        invoice's (a difference stops the document before anything legal exists)."""
        Payload = self.env["infakt.payload"]
        move = document.move_id
        document_type = Payload._document_type(move, document.document_type)
        if document_type != document.document_type:
            # Queued before down payments were told apart: sent as what it is.
            document.write({"document_type": document_type})
        if document_type == "correction":
            payload = Payload._corrective_invoice(move, document)
        elif document_type == "advance":
            payload = Payload._advance_invoice(move, document)
        elif document_type == "final":
            payload = Payload._final_invoice(move, document)
        else:
            payload = Payload._invoice(move, document.account_id)
        Payload._check_totals(move, document_type, payload)
        return payload

    # ------------------------------------------------------------------------------------
    # The sender's session lock (a live sender holds it while its create is under way)
    # ------------------------------------------------------------------------------------
    @api.model
    def _advisory_lock(self, document):
        self.env.cr.execute(SQL("SELECT pg_try_advisory_lock(%s, %s)",
                                const.ADVISORY_LOCK_NAMESPACE, document.id))
        return self.env.cr.fetchone()[0]

    @api.model
    def _advisory_unlock(self, document):
        """Release the session lock (it belongs to the connection, not the transaction). No
        savepoint: the unlock cannot fail but in an aborted transaction, then rolled back
        (the session lock survives the rollback) and released again."""
        query = SQL("SELECT pg_advisory_unlock(%s, %s)", const.ADVISORY_LOCK_NAMESPACE,
                    document.id)
        try:
            self.env.cr.execute(query)
        except psycopg2.Error:
            self.env.cr.rollback()
            try:
                self.env.cr.execute(query)
            except psycopg2.Error:
                _logger.exception("inFakt: could not release the sender lock of document %s",
                                  document.id)
