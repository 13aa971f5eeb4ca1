import logging
import random
import time
from datetime import timedelta

import psycopg2
from markupsafe import Markup

from odoo import api, fields, models, modules
from odoo.exceptions import UserError
from odoo.tools import SQL
from odoo.tools.sql import create_index
from odoo.tools.translate import LazyTranslate

from ..infakt_api import client as infakt_client
from ..infakt_api import errors as infakt_errors
from ..infakt_api.money import to_grosze

_logger = logging.getLogger(__name__)
_lt = LazyTranslate(__name__)

STATES = [
    ("to_send", "To send"),
    ("sending", "Sending"),
    ("processing", "Processing in inFakt"),
    ("done", "Done"),
    ("error", "Error"),
    ("in_doubt", "In doubt"),
    ("cancelled", "Cancelled"),
]
KSEF_STATES = [
    ("none", "Not sent"),
    ("pending", "Pending"),
    ("success", "Accepted"),
    ("error", "Error"),
]
# Namespace of the PostgreSQL advisory locks held while a create request is under way.
ADVISORY_LOCK_NAMESPACE = 740_502_318
# How long one run of a scheduled action works before it hands over to the next run. The
# sender's run outlasts inFakt's 60 s window, so that it waits for the next window itself
# (a trigger in the future is only picked up by the cron thread once a minute).
SEND_TIME_BUDGET = 100.0
CRON_TIME_BUDGET = 55.0
# While waiting inside a run, webhook events are looked at this often (seconds).
WAIT_SLICE = 0.25
# Transient failures: exponential backoff (seconds) with jitter, capped.
BACKOFF_BASE = 10.0
BACKOFF_CAP = 3600.0
# Task status polls: a little after sending, then backing off (seconds).
POLL_SCHEDULE = (1, 1, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600, 900)
# While tasks sent this recently are pending, the poller waits for them within its run.
POLL_FOLLOW_SECONDS = 20
# An in-doubt document not found in inFakt after this long is safe to send again.
TASK_WINDOW_SECONDS = 600
RECONCILE_INTERVAL_SECONDS = 30
# Archived accounts are left alone: nothing more is sent, polled or downloaded for them.
ACTIVE_ACCOUNT = ("account_id.active", "=", True)

# inFakt field names (validation errors) -> what to fix in Odoo.
FIELD_HINTS = {
    "payment_method": _lt(
        "the payment method mapping of the inFakt account (or the payment terms "
        "of the invoice)"
    ),
    "bank_account": _lt(
        "the bank account for transfers on the inFakt account (Refresh bank "
        "accounts, and verify the account in inFakt)"
    ),
    "tax_symbol": _lt("the taxes of the invoice lines (inFakt Tax Symbol on the tax)"),
    "services.tax_symbol": _lt("the taxes of the invoice lines (inFakt Tax Symbol on the tax)"),
    "services": _lt("the invoice lines"),
    "services.name": _lt("the labels of the invoice lines"),
    "services.gross": _lt("the prices and taxes of the invoice lines"),
    "value.tax_values": _lt("the taxes of the invoice lines"),
    "vat_exemption_reason": _lt(
        "the VAT exemption reason (inFakt VAT Exemption Reason on the tax, or "
        "the default on the inFakt account)"
    ),
    "client_company_name": _lt("the name of the customer"),
    "client_first_name": _lt("the name of the customer"),
    "client_last_name": _lt("the name of the customer"),
    "client_tax_code": _lt("the Tax ID (NIP) of the customer"),
    "client_street": _lt("the address (street) of the customer"),
    "client_city": _lt("the address (city) of the customer"),
    "client_post_code": _lt("the address (ZIP) of the customer"),
    "client_country": _lt("the country of the customer"),
    "client_id": _lt("the customer"),
    "currency": _lt("the currency of the invoice"),
    "vat_exchange_date_kind": _lt("the currency of the invoice"),
    "number": _lt("the invoice number (it is already used in inFakt)"),
    "invoice_date": _lt("the invoice date"),
    "sale_date": _lt("the invoice date"),
    "payment_date": _lt("the due date of the invoice"),
    "corrected_invoice_number": _lt("the invoice this credit note reverses"),
    "corrected_invoice_uuid": _lt("the invoice this credit note reverses"),
    "correction_reason": _lt("the reason of the credit note"),
    "status": _lt("the payment status in inFakt"),
}


def _now():
    return fields.Datetime.now()


class InfaktDocument(models.Model):
    _name = "infakt.document"
    _description = "inFakt Document Exchange"
    _inherit = ["mail.thread"]
    _order = "id desc"
    _rec_name = "name"
    _check_company_auto = True

    name = fields.Char(compute="_compute_name", store=True)
    move_id = fields.Many2one(
        "account.move", required=True, ondelete="restrict", index=True, string="Invoice",
        check_company=True,
    )
    account_id = fields.Many2one(
        "infakt.account", required=True, ondelete="restrict", index=True,
        string="inFakt Account", check_company=True,
    )
    company_id = fields.Many2one(
        "res.company", related="move_id.company_id", store=True, index=True
    )
    partner_id = fields.Many2one(related="move_id.partner_id", string="Customer")
    sale_order_ids = fields.Many2many(
        "sale.order", compute="_compute_sale_order_ids", string="Sale Orders"
    )
    document_type = fields.Selection(
        [("invoice", "FV - Invoice"), ("correction", "KOR - Correction")],
        required=True, default="invoice",
    )
    state = fields.Selection(
        STATES, required=True, default="to_send", index=True, tracking=True, copy=False
    )
    number = fields.Char(
        string="Number Sent", readonly=True, copy=False,
        help="The number this document was sent to inFakt with (the Odoo number).",
    )
    task_reference = fields.Char(readonly=True, copy=False, index=True)
    infakt_uuid = fields.Char(string="inFakt UUID", readonly=True, copy=False, index=True)
    infakt_id = fields.Integer(string="inFakt ID", readonly=True, copy=False)
    infakt_number = fields.Char(string="inFakt Number", readonly=True, copy=False, tracking=True)
    error_message = fields.Text(readonly=True, copy=False)
    attempt_count = fields.Integer(readonly=True, copy=False)
    next_attempt_at = fields.Datetime(readonly=True, copy=False, index=True)
    sending_started_at = fields.Datetime(readonly=True, copy=False, index="btree_not_null")
    sent_at = fields.Datetime(readonly=True, copy=False)
    done_at = fields.Datetime(readonly=True, copy=False)
    poll_count = fields.Integer(readonly=True, copy=False)
    next_poll_at = fields.Datetime(readonly=True, copy=False, index=True)
    amount_mismatch = fields.Boolean(readonly=True, copy=False, tracking=True)
    amount_mismatch_message = fields.Char(readonly=True, copy=False)
    infakt_amount_total = fields.Monetary(
        readonly=True, copy=False, currency_field="currency_id", string="inFakt Total"
    )
    currency_id = fields.Many2one(related="move_id.currency_id")
    pdf_pending = fields.Boolean(string="PDF to Download", readonly=True, copy=False)
    pdf_attachment_id = fields.Many2one("ir.attachment", readonly=True, copy=False,
                                        string="PDF")
    ksef_state = fields.Selection(
        KSEF_STATES, default="none", required=True, readonly=True, copy=False, tracking=True,
        string="KSeF State",
    )
    ksef_number = fields.Char(string="KSeF Number", readonly=True, copy=False, tracking=True)
    ksef_next_check_at = fields.Datetime(
        string="Next KSeF Check", readonly=True, copy=False, index=True
    )
    ksef_check_count = fields.Integer(string="KSeF Checks", readonly=True, copy=False)
    infakt_paid_date = fields.Date(string="Paid in inFakt", readonly=True, copy=False)
    paid_check_pending = fields.Boolean(
        string="Payment to Read from inFakt", readonly=True, copy=False
    )
    paid_sync_state = fields.Selection(
        [("none", "Not paid"), ("to_send", "To send"), ("processing", "Processing"),
         ("done", "Marked paid"), ("error", "Error")],
        string="Payment in inFakt", default="none", required=True, readonly=True, copy=False,
    )
    paid_date_sent = fields.Date(readonly=True, copy=False)
    paid_task_reference = fields.Char(readonly=True, copy=False)

    def init(self):
        # The sender's pick (_lock_next_due) must not grow with the documents already done.
        create_index(
            self.env.cr,
            "infakt_document_to_send_idx",
            self._table,
            ["account_id", "next_attempt_at", "id"],
            where="state = 'to_send'",
        )

    # ------------------------------------------------------------------------------------
    # Computes
    # ------------------------------------------------------------------------------------
    @api.depends("move_id.name", "document_type")
    def _compute_name(self):
        for document in self:
            prefix = "KOR" if document.document_type == "correction" else "FV"
            document.name = f"{prefix} {document.move_id.name or ''}".strip()

    def _compute_sale_order_ids(self):
        for document in self:
            document.sale_order_ids = document.move_id._infakt_sale_orders()

    # ------------------------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------------------------
    @api.model
    def _can_commit(self):
        """Commits split the sender's work into safe steps; never inside a test."""
        if modules.module.current_test or self.env.context.get("infakt_no_commit"):
            return False
        import threading

        return not getattr(threading.current_thread(), "testing", False)

    def _commit(self):
        if self._can_commit():
            # The sender's protocol: intent committed before the request, result after it.
            self.env.cr.commit()  # pylint: disable=invalid-commit

    @api.model
    def _trigger_sender(self, at=None):
        cron = self.env.ref("l10n_pl_infakt.ir_cron_infakt_send", raise_if_not_found=False)
        if not cron:
            return
        if at is None and self.env["ir.cron.trigger"].sudo().search_count(
            [("cron_id", "=", cron.id), ("call_at", "<=", _now())], limit=1
        ):
            return  # a run is already due: it will take these documents too
        cron.sudo()._trigger(at)

    @api.model
    def _trigger_processor(self, at=None):
        cron = self.env.ref("l10n_pl_infakt.ir_cron_infakt_process", raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger(at)

    @staticmethod
    def _backoff_seconds(attempt):
        delay = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** max(0, attempt - 1)))
        return delay * random.uniform(0.75, 1.25)  # jitter, not security

    def _log(self, body):
        """A line in the history of the document (and of its invoice)."""
        for document in self:
            document.message_post(body=body)
            document.move_id.message_post(body=body)

    def _humanize_field_errors(self, field_errors):
        lines = []
        for field, messages in (field_errors or {}).items():
            text = "; ".join(str(m) for m in messages) if isinstance(messages, list) else str(
                messages
            )
            hint = FIELD_HINTS.get(field) or FIELD_HINTS.get(field.split(".")[-1])
            if field == "base" or not hint:
                lines.append(f"- {text}" if field == "base" else f"- {field}: {text}")
            else:
                lines.append(
                    "- " + self.env._("Check %(what)s: %(message)s", what=self.env._(hint),
                                      message=text)
                )
        return "\n".join(lines)

    def _validation_message(self, error):
        details = self._humanize_field_errors(error.field_errors)
        if not details and error.message:
            details = f"- {error.message}"
        return self.env._("inFakt refused the document:") + "\n" + details

    # ------------------------------------------------------------------------------------
    # Queueing
    # ------------------------------------------------------------------------------------
    @api.model
    def _queue_moves(self, moves, force=False):
        """Create one ``to_send`` document per move that belongs to a series of an active
        account (only accounts with automatic sending unless ``force``). No HTTP here."""
        documents = self.browse()
        vals_list = []
        series_by_key = self.env["infakt.series"].sudo()._series_by_journal_and_type(
            moves.journal_id
        )
        for move in moves:
            series = series_by_key.get((move.journal_id.id, move._infakt_document_type()))
            if not series:
                continue
            if not force and not series.account_id.auto_send:
                continue
            active = move.infakt_document_ids.filtered(lambda d: d.state != "cancelled")
            if active:
                continue
            vals_list.append(
                {
                    "move_id": move.id,
                    "account_id": series.account_id.id,
                    "document_type": series.document_type,
                    "state": "to_send",
                    "pdf_pending": False,
                }
            )
        if vals_list:
            documents = self.sudo().with_context(
                mail_create_nolog=True, tracking_disable=True
            ).create(vals_list)
            self._trigger_sender()
        return documents

    # ------------------------------------------------------------------------------------
    # Sender
    # ------------------------------------------------------------------------------------
    @api.model
    def _cron_send(self, time_budget=SEND_TIME_BUDGET):
        """Send due documents, one at a time, each committed before and after its POST."""
        deadline = time.monotonic() + time_budget
        retrigger_at = None
        for account in self._due_send_accounts():
            client = None
            try:
                while True:
                    wait = account._rate_wait_time()
                    if wait > 0:
                        if time.monotonic() + wait >= deadline:
                            retrigger_at = _now() + timedelta(seconds=wait)
                            break
                        time.sleep(wait)
                    if time.monotonic() >= deadline:
                        retrigger_at = _now()
                        break
                    document = self._lock_next_due(account)
                    if not document:
                        break
                    if client is None:
                        try:
                            client = account._get_client()
                        except UserError as error:
                            document._set_error(str(error))
                            self._commit()
                            continue
                    document._send(client)
            finally:
                if client is not None:
                    client.close()
        next_due = self._next_due_send()
        if next_due and (retrigger_at is None or next_due < retrigger_at):
            retrigger_at = max(next_due, _now())
        if retrigger_at:
            self._trigger_sender(retrigger_at)
        self._trigger_processor()

    @api.model
    def _due_send_accounts(self):
        self.env.flush_all()  # raw SQL below reads what the ORM wrote
        self.env.cr.execute(
            SQL(
                """SELECT DISTINCT d.account_id FROM infakt_document d
                   JOIN infakt_account a ON a.id = d.account_id
                   WHERE d.state = 'to_send' AND a.active
                     AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %s)""",
                _now(),
            )
        )
        return self.env["infakt.account"].sudo().browse([r[0] for r in self.env.cr.fetchall()])

    @api.model
    def _next_due_send(self):
        self.env.flush_all()  # raw SQL below reads what the ORM wrote
        self.env.cr.execute(
            SQL(
                """SELECT MIN(COALESCE(d.next_attempt_at, %s)) FROM infakt_document d
                   JOIN infakt_account a ON a.id = d.account_id
                   WHERE d.state = 'to_send' AND a.active""",
                _now(),
            )
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _lock_next_due(self, account):
        """Lock the next due document of the account; rows locked by another sender are
        skipped, so two senders never take the same document."""
        self.env.flush_all()  # raw SQL below reads what the ORM wrote
        self.env.cr.execute(
            SQL(
                """SELECT id FROM infakt_document
                   WHERE account_id = %s AND state = 'to_send'
                     AND (next_attempt_at IS NULL OR next_attempt_at <= %s)
                   ORDER BY next_attempt_at NULLS FIRST, id
                   LIMIT 1 FOR UPDATE SKIP LOCKED""",
                account.id,
                _now(),
            )
        )
        row = self.env.cr.fetchone()
        if not row:
            return self.browse()
        document = self.sudo().browse(row[0])
        document.invalidate_recordset()
        return document

    def _advisory_lock(self):
        self.env.cr.execute(
            SQL("SELECT pg_try_advisory_lock(%s, %s)", ADVISORY_LOCK_NAMESPACE, self.id)
        )
        return self.env.cr.fetchone()[0]

    def _advisory_unlock(self):
        query = SQL("SELECT pg_advisory_unlock(%s, %s)", ADVISORY_LOCK_NAMESPACE, self.id)
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(query)
        except psycopg2.Error:
            # The transaction failed meanwhile: the lock belongs to the connection, which
            # goes back to the pool; roll back and release it so no orphan stays hidden.
            self.env.cr.rollback()
            self.env.cr.execute(query)

    def _send(self, client):
        """Send one locked ``to_send`` document."""
        self.ensure_one()
        account = self.account_id
        try:
            payload = self._prepare_payload()
        except UserError as error:
            self._set_error(str(error))
            self._commit()
            return
        number = payload.get("number")
        # Intent first: while this session holds the advisory lock, the document is being
        # sent; a crashed sender releases it, which marks the document as in doubt.
        if not self._advisory_lock():
            return
        try:
            # Intermediate states are not tracked in the chatter (cost per document); done,
            # error and in doubt are written there in words.
            self.with_context(tracking_disable=True).write(
                {
                    "state": "sending",
                    "number": number,
                    "sending_started_at": _now(),
                    "attempt_count": self.attempt_count + 1,
                    "error_message": False,
                }
            )
            self._commit()
            corrective = self.document_type == "correction"
            try:
                if corrective:
                    envelope = client.create_corrective_invoice(
                        payload, send_to_ksef=account.send_to_ksef
                    )
                else:
                    envelope = client.create_invoice(payload, send_to_ksef=account.send_to_ksef)
            except infakt_errors.InfaktError as error:
                self._handle_send_error(error)
            else:
                task = infakt_client.parse_task(envelope)
                self._accept_task(task, client)
            self._commit()
        finally:
            self._advisory_unlock()

    def _accept_task(self, task, client=None):
        self.ensure_one()
        values = {
            "state": "processing",
            "task_reference": task.reference,
            "sent_at": _now(),
            "poll_count": 0,
            # The first status read a little later: a task is rarely done at once.
            "next_poll_at": _now() + timedelta(seconds=POLL_SCHEDULE[0]),
            "next_attempt_at": False,
        }
        if self.account_id.send_to_ksef:
            values["ksef_state"] = "pending"
        self.with_context(tracking_disable=True).write(values)
        if task.done and task.invoice_uuid:
            self._complete(task.invoice_uuid, client=client)
        elif task.failed:
            self._task_failed(task)

    def _handle_send_error(self, error):
        self.ensure_one()
        account = self.account_id
        description = account._describe_error(error)
        if isinstance(error, infakt_errors.InfaktInDoubt):
            self.write(
                {
                    "state": "in_doubt",
                    "error_message": description,
                    "next_attempt_at": _now() + timedelta(seconds=RECONCILE_INTERVAL_SECONDS),
                }
            )
            self._log(self.env._("The answer of inFakt was lost: the document is in doubt "
                                 "and will be looked up in inFakt by its number."))
            self._trigger_processor(self.next_attempt_at)
        elif isinstance(error, infakt_errors.InfaktRateLimited):
            wait = error.retry_after or min(30.0, max(1.0, account.rate_limit_window / 4))
            account._rate_pause(wait)
            self.write(
                {
                    "state": "to_send",
                    "attempt_count": max(0, self.attempt_count - 1),
                    "next_attempt_at": _now() + timedelta(seconds=wait),
                    "error_message": description,
                }
            )
        elif error.retryable:
            self._retry_later(description)
        elif isinstance(error, infakt_errors.InfaktValidationError):
            if "number" in (error.field_errors or {}) and self._reconcile_by_number():
                return
            self._set_error(self._validation_message(error))
        else:
            self._set_error(description)

    def _retry_later(self, description):
        self.ensure_one()
        if self.attempt_count >= self.account_id.max_attempts:
            self._set_error(
                self.env._("inFakt could not be reached after %(count)s attempts: %(error)s",
                           count=self.attempt_count, error=description)
            )
            return
        delay = self._backoff_seconds(self.attempt_count)
        self.write(
            {
                "state": "to_send",
                "next_attempt_at": _now() + timedelta(seconds=delay),
                "error_message": self.env._("Attempt %(count)s failed (%(error)s); next attempt "
                                            "in %(delay)s s.", count=self.attempt_count,
                                            error=description, delay=int(delay)),
            }
        )

    # ------------------------------------------------------------------------------------
    # Payload
    # ------------------------------------------------------------------------------------
    def _prepare_payload(self):
        self.ensure_one()
        if self.document_type == "correction":
            return self.move_id._infakt_prepare_corrective_payload(self)
        return self.move_id._infakt_prepare_invoice_payload(self.account_id)

    # ------------------------------------------------------------------------------------
    # Completion
    # ------------------------------------------------------------------------------------
    def _complete(self, invoice_uuid, client=None, remote=None):
        """The document exists in inFakt: read it back (number, totals), then ``done``.

        When the read-back fails, the uuid is kept and the document stays where it is: the next
        poll (or reconciliation) completes it, so ``done`` always carries the inFakt number.
        """
        self.ensure_one()
        if remote is None:
            own_client = client is None
            try:
                client = client or self.account_id._get_client()
                remote = (
                    client.get_corrective_invoice(invoice_uuid)
                    if self.document_type == "correction"
                    else client.get_invoice(invoice_uuid)
                )
            except (infakt_errors.InfaktError, UserError) as error:
                description = (
                    self.account_id._describe_error(error)
                    if isinstance(error, infakt_errors.InfaktError)
                    else str(error)
                )
                message = self.env._(
                    "Created in inFakt, but reading it back failed (%s): retrying later.",
                    description,
                )
                self.write({"infakt_uuid": invoice_uuid})
                if self.state == "processing" and isinstance(
                    error, infakt_errors.InfaktRateLimited
                ):
                    self._rate_limited_read(error)
                    return None
                if self.state == "processing":
                    self._schedule_next_poll(message)
                else:
                    self.write(
                        {
                            "error_message": message,
                            "next_attempt_at": _now()
                            + timedelta(seconds=RECONCILE_INTERVAL_SECONDS),
                        }
                    )
                return False
            finally:
                if own_client and client is not None:
                    client.close()
        values = {
            "state": "done",
            "infakt_uuid": invoice_uuid,
            "done_at": _now(),
            "error_message": False,
            "next_poll_at": False,
            "next_attempt_at": False,
            "pdf_pending": self.account_id.download_pdf,
        }
        if self.ksef_state == "pending":
            values["ksef_next_check_at"] = _now() + timedelta(seconds=3)
        values.update(self._values_from_remote(remote))
        self.write(values)
        self._after_done()
        return True

    def _values_from_remote(self, remote):
        self.ensure_one()
        values = {"infakt_number": remote.get("number") or False}
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
            actual = {key: remote.get(key) for key in expected}
            values["infakt_amount_total"] = sign * gross / 100
            mismatch = {
                key: (expected[key], actual[key])
                for key in expected
                if actual[key] is not None and int(actual[key]) != expected[key]
            }
            values["amount_mismatch"] = bool(mismatch)
            values["amount_mismatch_message"] = (
                self.env._(
                    "Totals differ from Odoo: %s",
                    ", ".join(
                        f"{key} {exp / 100:.2f} / {act / 100:.2f}"
                        for key, (exp, act) in mismatch.items()
                    ),
                )
                if mismatch
                else False
            )
        ksef_number = remote.get("ksef_number") or (remote.get("ksef_data") or {}).get(
            "ksef_number"
        )
        if ksef_number:
            values.update({"ksef_number": ksef_number, "ksef_state": "success"})
        if remote.get("paid_date"):
            values["infakt_paid_date"] = remote["paid_date"]
        return values

    def _after_done(self):
        for document in self:
            document.move_id.activity_unlink(["mail.mail_activity_data_warning"])
            document._log(
                Markup("%s <b>%s</b>")
                % (self.env._("Created in inFakt as"), document.infakt_number or
                   document.number or "")
            )
            if document.amount_mismatch:
                document._log(document.amount_mismatch_message)
        self._update_sale_orders()
        # Paid in Odoo before inFakt had it: tell inFakt now.
        self.move_id._infakt_sync_payment_state()

    def _task_failed(self, task):
        self.ensure_one()
        error = infakt_errors.InfaktValidationError(
            status=422, message=task.description or "", field_errors=task.errors
        )
        if "number" in (task.errors or {}) and self._reconcile_by_number():
            return
        self._set_error(self._validation_message(error))

    def _set_error(self, message):
        for document in self:
            document.write(
                {
                    "state": "error",
                    "error_message": message,
                    "next_attempt_at": False,
                    "next_poll_at": False,
                }
            )
            document._log(
                Markup("%s<br/>%s")
                % (self.env._("Sending to inFakt failed:"), Markup("<br/>").join(
                    message.splitlines()))
            )
            document._schedule_error_activity()
        self._update_sale_orders()

    def _schedule_error_activity(self):
        self.ensure_one()
        move = self.move_id
        activity_type = self.env.ref("mail.mail_activity_data_warning", raise_if_not_found=False)
        if not activity_type:
            return
        existing = move.activity_ids.filtered(lambda a: a.activity_type_id == activity_type)
        if existing:
            return
        user = move.invoice_user_id or move.create_uid
        move.sudo().activity_schedule(
            "mail.mail_activity_data_warning",
            summary=self.env._("inFakt: fix and send again"),
            note=self.error_message,
            user_id=user.id,
        )

    def _update_sale_orders(self):
        orders = self.move_id._infakt_sale_orders()
        if orders:
            orders.sudo()._infakt_update_state()

    # ------------------------------------------------------------------------------------
    # Processor: events, polls, reconciliation, PDFs
    # ------------------------------------------------------------------------------------
    @api.model
    def _cron_process(self, time_budget=CRON_TIME_BUDGET):
        deadline = time.monotonic() + time_budget
        self.env["infakt.webhook.event"]._process_pending()
        self._commit()
        self._detect_orphans()
        self._commit()
        clients = {}
        try:
            self._reconcile_due(clients, deadline)
            self._poll_due(clients, deadline)
            self._download_pdfs(clients, deadline)
            self._check_ksef_due(clients, deadline)
            self._check_paid_due(clients, deadline)
            self._send_paid_due(clients, deadline)
        finally:
            for client in clients.values():
                client.close()
        next_at = self._next_processing_time()
        if next_at:
            self._trigger_processor(max(next_at, _now()))

    def _client_for(self, clients, account):
        if account.id not in clients:
            clients[account.id] = account._get_client()
        return clients[account.id]

    @api.model
    def _next_processing_time(self):
        self.env.flush_all()  # raw SQL below reads what the ORM wrote
        self.env.cr.execute(
            """SELECT MIN(CASE d.state WHEN 'processing' THEN d.next_poll_at
                                       WHEN 'in_doubt' THEN d.next_attempt_at
                                       ELSE d.ksef_next_check_at END)
                 FROM infakt_document d JOIN infakt_account a ON a.id = d.account_id
                WHERE a.active AND d.state IN ('processing', 'in_doubt', 'done')"""
        )
        return self.env.cr.fetchone()[0]

    @api.model
    def _detect_orphans(self):
        """A document left in ``sending`` by a sender that died is in doubt."""
        documents = self.sudo().search([("state", "=", "sending"), ACTIVE_ACCOUNT])
        for document in documents:
            if not document._advisory_lock():
                continue  # a live sender holds it
            try:
                document.write(
                    {
                        "state": "in_doubt",
                        "error_message": self.env._(
                            "The sender stopped while sending; the document is being looked "
                            "up in inFakt."
                        ),
                        "next_attempt_at": _now(),
                    }
                )
                document._log(self.env._("The sender stopped while sending this document: it "
                                         "is in doubt and will be looked up in inFakt."))
            finally:
                document._advisory_unlock()

    @api.model
    def _reconcile_due(self, clients, deadline):
        documents = self.sudo().search(
            [("state", "=", "in_doubt"), ("next_attempt_at", "<=", _now()), ACTIVE_ACCOUNT],
            limit=200,
        )
        for document in documents:
            if time.monotonic() >= deadline:
                break
            try:
                document._reconcile_by_number(self._client_for(clients, document.account_id),
                                              resend_when_missing=True)
            except UserError as error:
                document._set_error(str(error))
            self._commit()

    def _reconcile_by_number(self, client=None, resend_when_missing=False):
        """Look the document up in inFakt by its number. Found: link it, done. Not found
        after the task window: safe to send again. Returns True when found."""
        self.ensure_one()
        number = self.number or self.move_id.name
        own_client = client is None
        try:
            client = client or self.account_id._get_client()
            if self.document_type == "correction":
                found = client.find_corrective_invoices_by_number(number)
            else:
                found = client.find_invoices_by_number(number)
        except infakt_errors.InfaktError as error:
            if resend_when_missing:
                self.write(
                    {"next_attempt_at": _now() + timedelta(seconds=RECONCILE_INTERVAL_SECONDS),
                     "error_message": self.account_id._describe_error(error)}
                )
            return False
        finally:
            if own_client and client is not None:
                client.close()
        if found:
            entity = found[0]
            self._log(self.env._("Found in inFakt by its number %s: linked, not sent again.",
                                 number))
            self._complete(entity.get("uuid"), remote=entity)
            return True
        if not resend_when_missing:
            return False
        started = self.sending_started_at or self.write_date
        if started and _now() - started >= timedelta(seconds=TASK_WINDOW_SECONDS):
            self.write({"state": "to_send", "next_attempt_at": False, "error_message": False})
            self._log(self.env._("Not found in inFakt after the task window: it is safe to send "
                                 "it again."))
            self._trigger_sender()
        else:
            self.write(
                {"next_attempt_at": _now() + timedelta(seconds=RECONCILE_INTERVAL_SECONDS)}
            )
        return False

    @api.model
    def _poll_due(self, clients, deadline):
        """Read the task status of documents being processed by inFakt. While tasks sent in
        the last seconds are pending, keep following them within this run, looking at new
        webhook events while waiting (an event makes its document due at once)."""
        while time.monotonic() < deadline:
            documents = self.sudo().search(
                [("state", "=", "processing"), ("next_poll_at", "<=", _now()), ACTIVE_ACCOUNT],
                order="next_poll_at, id",
                limit=100,
            )
            for document in documents:
                if time.monotonic() >= deadline:
                    break
                polled = document._poll(self._client_for(clients, document.account_id))
                self._commit()
                if not polled:
                    break  # rate limited: the others wait for the next round
            follow_from = _now() - timedelta(seconds=POLL_FOLLOW_SECONDS)
            upcoming = self.sudo().search(
                [
                    ("state", "=", "processing"),
                    ("sent_at", ">=", follow_from),
                    ("next_poll_at", "<=", _now() + timedelta(seconds=5)),
                    ACTIVE_ACCOUNT,
                ],
                order="next_poll_at",
                limit=1,
            )
            if not upcoming:
                break
            self._wait_until(upcoming.next_poll_at, deadline)

    @api.model
    def _wait_until(self, moment, deadline):
        """Sleep until ``moment`` (or the deadline) in short slices, applying the webhook
        events that arrive meanwhile."""
        Event = self.env["infakt.webhook.event"]
        while _now() < moment and time.monotonic() < deadline:
            time.sleep(min(WAIT_SLICE, max(0.0, deadline - time.monotonic())))
            # A new transaction sees the events the webhook endpoint committed meanwhile.
            self._commit()
            if Event._process_pending():
                self._commit()
                return

    def _poll(self, client):
        """Read the task status; returns False when inFakt asked to slow down."""
        self.ensure_one()
        corrective = self.document_type == "correction"
        if self.infakt_uuid:
            # A signed webhook named the created invoice: reading it is both the proof and
            # the read-back, one request instead of two.
            completed = self._complete_from_hint(client)
            if completed is not None:
                return completed
        try:
            task = client.task_status(self.task_reference, corrective=corrective)
        except infakt_errors.InfaktNotFound:
            self.write({"state": "in_doubt", "next_attempt_at": _now(),
                        "error_message": self.env._("inFakt does not know the task any more; "
                                                    "looking the document up by number.")})
            return True
        except infakt_errors.InfaktRateLimited as error:
            self._rate_limited_read(error)
            return False
        except infakt_errors.InfaktError as error:
            self._schedule_next_poll(self.account_id._describe_error(error))
            return True
        if task.done and task.invoice_uuid:
            return self._complete(task.invoice_uuid, client=client) is not None
        if task.failed:
            self._task_failed(task)
        else:
            self._schedule_next_poll()
        return True

    def _complete_from_hint(self, client):
        """Complete from the uuid a webhook gave; None when the status must be read."""
        self.ensure_one()
        try:
            remote = (
                client.get_corrective_invoice(self.infakt_uuid)
                if self.document_type == "correction"
                else client.get_invoice(self.infakt_uuid)
            )
        except infakt_errors.InfaktRateLimited as error:
            self._rate_limited_read(error)
            return False
        except infakt_errors.InfaktError:
            self.write({"infakt_uuid": False})
            return None
        if (remote.get("number") or "") != (self.number or ""):
            self.write({"infakt_uuid": False})
            return None
        return self._complete(self.infakt_uuid, remote=remote) is not None

    def _rate_limited_read(self, error):
        """inFakt's read limit was hit: pause the reads, try this one again after the pause
        (not counted as a poll: the backoff does not grow)."""
        self.ensure_one()
        account = self.account_id
        wait = error.retry_after or min(30.0, max(1.0, account.rate_limit_window / 4))
        account._rate_pause(wait, "read")
        self.write({"next_poll_at": _now() + timedelta(seconds=wait)})

    def _schedule_next_poll(self, message=None):
        self.ensure_one()
        index = min(self.poll_count, len(POLL_SCHEDULE) - 1)
        values = {
            "poll_count": self.poll_count + 1,
            "next_poll_at": _now() + timedelta(seconds=POLL_SCHEDULE[index]),
        }
        if message:
            values["error_message"] = message
        self.write(values)

    @api.model
    def _download_pdfs(self, clients, deadline):
        """PDFs come after completing documents: none is downloaded while a document waits
        for its task status (inFakt's read limit is shared)."""
        if self.sudo().search_count(
            [("state", "=", "processing"), ("next_poll_at", "<=", _now()), ACTIVE_ACCOUNT],
            limit=1,
        ):
            return
        if self.sudo().search_count(
            [("state", "in", ("to_send", "processing")), ACTIVE_ACCOUNT], limit=1
        ):
            return  # documents on their way get inFakt's reads first; PDFs come after
        documents = self.sudo().search(
            [("state", "=", "done"), ("pdf_pending", "=", True), ACTIVE_ACCOUNT], limit=100
        )
        for document in documents:
            if time.monotonic() >= deadline:
                break
            downloaded = document._download_pdf(self._client_for(clients, document.account_id))
            self._commit()
            if not downloaded:
                break

    def _download_pdf(self, client):
        """Download and store the PDF; returns False when inFakt asked to slow down."""
        self.ensure_one()
        corrective = self.document_type == "correction"
        try:
            content = client.download_pdf(self.infakt_uuid, corrective=corrective)
        except infakt_errors.InfaktRateLimited as error:
            account = self.account_id
            account._rate_pause(
                error.retry_after or min(30.0, max(1.0, account.rate_limit_window / 4)), "read"
            )
            return False
        except infakt_errors.InfaktError as error:
            if not error.retryable:
                self.write({"pdf_pending": False})
                self._log(self.env._("The PDF could not be downloaded from inFakt: %s",
                                     self.account_id._describe_error(error)))
            return True
        self.move_id._infakt_store_pdf(self, content)
        self.write({"pdf_pending": False})
        return True

    def _check_ksef_due(self, clients, deadline):
        documents = self.sudo().search(
            [("state", "=", "done"), ("ksef_next_check_at", "<=", _now()), ACTIVE_ACCOUNT],
            limit=100,
        )
        for document in documents:
            if time.monotonic() >= deadline:
                break
            document._check_ksef(self._client_for(clients, document.account_id))
            self._commit()

    def _check_ksef(self, client):
        """Read the KSeF status; pending for hours is waiting, not failure."""
        self.ensure_one()
        try:
            status = client.get_ksef_status(self.infakt_uuid)
        except infakt_errors.InfaktNotFound:
            status = {}
        except infakt_errors.InfaktError:
            status = None
        values = {"ksef_check_count": self.ksef_check_count + 1}
        state = (status or {}).get("status")
        if status is not None and state == "success":
            values.update(
                {"ksef_state": "success", "ksef_number": status.get("ksef_number") or False,
                 "ksef_next_check_at": False}
            )
        elif status is not None and state in ("error", "rejected"):
            values.update({"ksef_state": "error", "ksef_next_check_at": False})
            self._log(self.env._("KSeF refused the document: %s",
                                 status.get("status_description") or state))
        else:
            index = min(self.ksef_check_count + 4, len(POLL_SCHEDULE) - 1)
            values["ksef_next_check_at"] = _now() + timedelta(seconds=POLL_SCHEDULE[index])
        self.write(values)
        if values.get("ksef_state") == "success":
            self._log(self.env._("Accepted by KSeF with number %s.", values["ksef_number"]))

    def _check_paid_due(self, clients, deadline):
        documents = self.sudo().search(
            [("state", "=", "done"), ("paid_check_pending", "=", True), ACTIVE_ACCOUNT], limit=100
        )
        for document in documents:
            if time.monotonic() >= deadline:
                break
            client = self._client_for(clients, document.account_id)
            try:
                remote = (
                    client.get_corrective_invoice(document.infakt_uuid)
                    if document.document_type == "correction"
                    else client.get_invoice(document.infakt_uuid)
                )
            except infakt_errors.InfaktError as error:
                if not error.retryable:
                    document.write({"paid_check_pending": False})
                continue
            values = {"paid_check_pending": False}
            if remote.get("paid_date"):
                values["infakt_paid_date"] = remote["paid_date"]
            document.write(values)
            if remote.get("paid_date"):
                document._log(self.env._("inFakt recorded the payment on %s.",
                                         remote["paid_date"]))
            self._commit()

    def _queue_mark_paid(self, paid_date):
        """Odoo says the invoice is paid: tell inFakt once (async mark-paid)."""
        for document in self.filtered(lambda d: d.paid_sync_state in ("none", "error")):
            if document.document_type != "invoice" or document.infakt_paid_date:
                continue
            document.write({"paid_sync_state": "to_send", "paid_date_sent": paid_date})
        self._trigger_processor()

    def _send_paid_due(self, clients, deadline):
        documents = self.sudo().search(
            [("state", "=", "done"), ("paid_sync_state", "in", ("to_send", "processing")),
             ACTIVE_ACCOUNT],
            limit=100,
        )
        for document in documents:
            if time.monotonic() >= deadline:
                break
            client = self._client_for(clients, document.account_id)
            if document.paid_sync_state == "to_send":
                document._send_mark_paid(client)
            if document.paid_sync_state == "processing":
                document._poll_mark_paid(client)
            self._commit()

    def _send_mark_paid(self, client):
        self.ensure_one()
        try:
            envelope = client.mark_paid(self.infakt_uuid, self.paid_date_sent)
        except infakt_errors.InfaktError as error:
            if error.retryable or isinstance(error, infakt_errors.InfaktInDoubt):
                # Marking paid twice is refused by inFakt ("already paid"): safe to retry.
                return
            self._mark_paid_failed(error.field_errors, error.message)
            return
        task = infakt_client.parse_task(envelope)
        self.write({"paid_sync_state": "processing", "paid_task_reference": task.reference})

    def _poll_mark_paid(self, client):
        self.ensure_one()
        try:
            task = client.task_status(self.paid_task_reference)
        except infakt_errors.InfaktNotFound:
            self.write({"paid_sync_state": "to_send"})
            return
        except infakt_errors.InfaktError:
            return
        already_paid = "status" in (task.errors or {})
        if task.done or already_paid:
            self.write({"paid_sync_state": "done", "infakt_paid_date": self.paid_date_sent})
            self._log(self.env._("Marked paid in inFakt on %s.", self.paid_date_sent))
        elif task.failed:
            self._mark_paid_failed(task.errors, task.description)

    def _mark_paid_failed(self, field_errors, message):
        self.write({"paid_sync_state": "error"})
        details = self._humanize_field_errors(field_errors) or message or ""
        self._log(self.env._("inFakt refused to mark the invoice paid: %s", details))

    def _is_deleted_in_infakt(self):
        """The webhook only nudges: ask inFakt whether the document is really gone."""
        self.ensure_one()
        client = self.account_id._get_client()
        try:
            if self.document_type == "correction":
                client.get_corrective_invoice(self.infakt_uuid)
            else:
                client.get_invoice(self.infakt_uuid)
        except infakt_errors.InfaktNotFound:
            return True
        except infakt_errors.InfaktError:
            return False
        finally:
            client.close()
        return False

    def _on_webhook_event(self, event):
        """Nudge this document for a webhook event. Returns False for ignored events."""
        self.ensure_one()
        name = event.name
        if name in ("async_invoice_creation_success", "async_invoice_creation_error"):
            if self.state == "processing":
                values = {"next_poll_at": _now()}
                if name == "async_invoice_creation_success" and event.invoice_uuid:
                    values["infakt_uuid"] = event.invoice_uuid
                self.write(values)
                return True
            return False
        if name in ("send_to_ksef_success", "send_to_ksef_error"):
            if self.state == "done":
                self.write({"ksef_next_check_at": _now()})
                return True
            return False
        if name == "invoice_paid":
            if self.state == "done":
                self.write({"paid_check_pending": True})
                return True
            return False
        if name == "invoice_deleted":
            if self.state == "done" and self._is_deleted_in_infakt():
                self.write({"state": "cancelled", "error_message": self.env._(
                    "The document was deleted in inFakt.")})
                self._log(self.env._("The document was deleted in inFakt."))
                self._update_sale_orders()
                return True
            return False
        return False

    # ------------------------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------------------------
    def action_send_again(self):
        """After a fix: send the documents in error again (payload rebuilt from Odoo)."""
        documents = self.filtered(lambda d: d.state in ("error", "cancelled"))
        if not documents:
            raise UserError(self.env._("Only documents in error can be sent again."))
        documents.write(
            {
                "state": "to_send",
                "attempt_count": 0,
                "next_attempt_at": False,
                "error_message": False,
            }
        )
        documents._log(self.env._("Sent again by %s.", self.env.user.name))
        documents._update_sale_orders()
        for document in documents:
            document.move_id.activity_unlink(["mail.mail_activity_data_warning"])
        self._trigger_sender()
        return True

    def action_check_in_infakt(self):
        """Look an in-doubt document up in inFakt now."""
        for document in self.filtered(lambda d: d.state == "in_doubt"):
            if not document._reconcile_by_number():
                document.write({"next_attempt_at": _now()})
        self._trigger_processor()
        return True

    def action_open_move(self):
        self.ensure_one()
        return self.move_id._get_records_action()
