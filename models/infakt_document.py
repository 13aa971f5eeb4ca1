import logging
import random
from datetime import timedelta

from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import SQL
from odoo.tools.sql import create_index, index_exists

from .. import const
from . import infakt_cron_wake

_logger = logging.getLogger(__name__)


def _now():
    return fields.Datetime.now()


class InfaktDocument(models.Model):
    """One exchange of one invoice or credit note with inFakt.

    This file holds the record and its transitions: every change of ``state`` goes through
    :meth:`_infakt_transition`, which keeps the invoice's chatter, the error activity, the
    sale orders' error tag and the open screens in step. The steps that decide the transitions
    are services, one per ``infakt_document_<step>.py`` file (see ``const.py`` for the map).
    """

    _name = "infakt.document"
    _description = "inFakt Document Exchange"
    _order = "id desc"
    _rec_name = "name"
    _check_company_auto = True

    name = fields.Char(related="move_id.name")
    move_id = fields.Many2one(
        "account.move", required=True, ondelete="cascade", index=True, string="Invoice",
        check_company=True, readonly=True,
    )
    account_id = fields.Many2one(
        "infakt.account", required=True, ondelete="restrict", index=True,
        string="inFakt Account", check_company=True, readonly=True,
    )
    # Set when queued (the invoice's company never changes once posted): no trigger on the
    # invoices, nothing computed after the insert.
    company_id = fields.Many2one(
        "res.company", compute="_compute_company_id", store=True, precompute=True,
        readonly=True, index=True,
    )
    partner_id = fields.Many2one(related="move_id.partner_id", string="Customer",
                                 related_sudo=False)
    sale_order_ids = fields.Many2many(
        "sale.order", compute="_compute_sale_order_ids", string="Sale Orders"
    )
    document_type = fields.Selection(const.EXCHANGE_DOCUMENT_TYPES, required=True,
                                     default="invoice", readonly=True)
    state = fields.Selection(
        const.STATES, required=True, default="to_send", index=True, copy=False,
        readonly=True,
    )
    number = fields.Char(
        string="Number Sent", readonly=True, copy=False,
        help="The number this document was sent to inFakt with (the Odoo number).",
    )
    # What identifies the document in inFakt, as sent: a document found there by its number is
    # linked only when these match (buyer tax id, issue date, gross total, currency).
    sent_identity = fields.Json(readonly=True, copy=False)
    task_reference = fields.Char(readonly=True, copy=False, index=True)
    infakt_uuid = fields.Char(string="inFakt UUID", readonly=True, copy=False, index=True)
    infakt_id = fields.Integer(string="inFakt ID", readonly=True, copy=False)
    infakt_number = fields.Char(string="inFakt Number", readonly=True, copy=False)
    error_message = fields.Text(readonly=True, copy=False)
    # What a person opens to fix the error (see const.FIX_TARGETS), and which record of it.
    error_fix = fields.Selection(const.FIX_TARGETS, string="Fix In", readonly=True, copy=False)
    error_fix_res_id = fields.Integer(readonly=True, copy=False)
    attempt_count = fields.Integer(readonly=True, copy=False)
    next_attempt_at = fields.Datetime(readonly=True, copy=False)
    sending_started_at = fields.Datetime(readonly=True, copy=False, index="btree_not_null")
    sent_at = fields.Datetime(readonly=True, copy=False)
    done_at = fields.Datetime(readonly=True, copy=False)
    poll_count = fields.Integer(readonly=True, copy=False)
    next_poll_at = fields.Datetime(readonly=True, copy=False)
    lookup_count = fields.Integer(readonly=True, copy=False)
    check_manually = fields.Boolean(
        readonly=True, copy=False,
        help="inFakt gave no final answer within the time the module waits: check the document "
        "in inFakt, then click Check in inFakt.",
    )
    amount_mismatch = fields.Boolean(readonly=True, copy=False)
    amount_mismatch_message = fields.Char(readonly=True, copy=False)
    infakt_amount_total = fields.Monetary(
        readonly=True, copy=False, currency_field="currency_id", string="inFakt Total"
    )
    currency_id = fields.Many2one(related="move_id.currency_id")
    pdf_pending = fields.Boolean(string="PDF to Download", readonly=True, copy=False)
    pdf_next_at = fields.Datetime(readonly=True, copy=False)
    pdf_attempt_count = fields.Integer(readonly=True, copy=False)
    pdf_attachment_id = fields.Many2one("ir.attachment", readonly=True, copy=False,
                                        string="PDF")
    ksef_state = fields.Selection(
        const.KSEF_STATES, default="none", required=True, readonly=True, copy=False,
        string="KSeF State",
    )
    ksef_number = fields.Char(string="KSeF Number", readonly=True, copy=False)
    show_ksef = fields.Boolean(
        string="KSeF through inFakt", compute="_compute_show_ksef",
        help="The KSeF state is shown (and logged) only where KSeF through inFakt is on.")
    ksef_next_check_at = fields.Datetime(string="Next KSeF Check", readonly=True, copy=False)
    ksef_check_count = fields.Integer(string="KSeF Checks", readonly=True, copy=False)
    infakt_paid_date = fields.Date(string="Paid in inFakt", readonly=True, copy=False)
    # inFakt says something changed (paid, deleted): read the document again.
    refresh_pending = fields.Boolean(readonly=True, copy=False)
    paid_sync_state = fields.Selection(
        [("none", "Not paid"), ("to_send", "To send"), ("processing", "Processing"),
         ("done", "Marked paid"), ("error", "Error")],
        string="Payment in inFakt", default="none", required=True, readonly=True, copy=False,
    )
    paid_date_sent = fields.Date(readonly=True, copy=False)
    paid_task_reference = fields.Char(readonly=True, copy=False)
    paid_next_at = fields.Datetime(readonly=True, copy=False)
    paid_poll_count = fields.Integer(readonly=True, copy=False)

    def init(self):
        # At most one active (not cancelled) document per invoice, whatever the path.
        if not index_exists(self.env.cr, "infakt_document_one_active_per_move"):
            self.env.cr.execute(SQL(
                "CREATE UNIQUE INDEX infakt_document_one_active_per_move ON infakt_document "
                "(move_id) WHERE state <> 'cancelled'"
            ))
        # The steps' picks must not grow with the documents already done.
        partial_indexes = {
            "infakt_document_to_send_idx": (["next_attempt_at", "id"], "state = 'to_send'"),
            "infakt_document_in_doubt_idx": (["next_attempt_at"], "state = 'in_doubt'"),
            "infakt_document_processing_idx": (["next_poll_at"], "state = 'processing'"),
            "infakt_document_pdf_idx": (["pdf_next_at"], "pdf_pending"),
            "infakt_document_ksef_idx": (["ksef_next_check_at"], "ksef_state = 'pending'"),
            "infakt_document_paid_idx": (
                ["paid_next_at"], "paid_sync_state IN ('to_send', 'processing')"),
            "infakt_document_refresh_idx": (["id"], "refresh_pending"),
        }
        for name, (columns, where) in partial_indexes.items():
            create_index(self.env.cr, name, self._table, columns, where=where)

    # ------------------------------------------------------------------------------------
    # ORM: documents change only through the engine's own methods
    # ------------------------------------------------------------------------------------
    # The access rights give read only; the engine works in sudo, after its actions checked
    # the caller's group in code (``_infakt_check_user``). ``readonly=True`` only binds the
    # form: these overrides bind RPC as well (a forged state would unlock reset to draft).
    def _infakt_check_engine(self):
        if not self.env.su:
            raise AccessError(self.env._(
                "inFakt documents are changed by the inFakt engine only (use the buttons of the "
                "document or of its invoice)."))

    @api.model_create_multi
    def create(self, vals_list):
        self._infakt_check_engine()
        return super().create(vals_list)

    def write(self, vals):
        self._infakt_check_engine()
        return super().write(vals)

    def unlink(self):
        self._infakt_check_engine()
        return super().unlink()

    @api.ondelete(at_uninstall=False)
    def _unlink_except_on_its_way(self):
        """A document that is (or may be) in inFakt, or on its way there, is its only trace in
        Odoo: only cancelled documents and documents in error are deleted."""
        kept = self.filtered(lambda d: d.state not in ("cancelled", "error"))
        if kept:
            raise UserError(self.env._(
                "The inFakt document %(name)s is %(state)s: only cancelled documents and "
                "documents in error can be deleted.",
                name=kept[0].name,
                state=dict(kept[0]._fields["state"]._description_selection(self.env))[
                    kept[0].state]))

    def action_delete(self):
        """Delete cancelled documents and documents in error (inFakt administrators)."""
        if not self.env.su and not self.env.user.has_group(
                "l10n_pl_infakt.group_infakt_manager"):
            raise AccessError(self.env._("Only inFakt administrators can delete documents."))
        self.check_access("read")
        self.sudo().unlink()
        return self.env["ir.actions.act_window"]._for_xml_id(
            "l10n_pl_infakt.infakt_document_action")

    # ------------------------------------------------------------------------------------
    # Computes
    # ------------------------------------------------------------------------------------
    @api.depends("move_id")
    def _compute_company_id(self):
        for document in self:
            document.company_id = document.move_id.company_id

    @api.depends("ksef_state", "account_id.send_to_ksef")
    def _compute_show_ksef(self):
        for document in self:
            document.show_ksef = document.ksef_state != "none" or document.account_id.send_to_ksef

    def _compute_sale_order_ids(self):
        for document in self:
            document.sale_order_ids = document.move_id._infakt_sale_orders()

    # ------------------------------------------------------------------------------------
    # Who reads what the engine writes
    # ------------------------------------------------------------------------------------
    def _infakt_reader_lang(self):
        """The language of the person who reads this document's messages: the invoice's
        salesperson, else the company (scheduled actions have no language of their own)."""
        self.ensure_one()
        move = self.sudo().move_id
        return (move.invoice_user_id.lang or move.company_id.partner_id.lang
                or self.env.lang or "en_US")

    def _infakt_log(self, body):
        """A line in the history of the invoice, written by OdooBot."""
        author = self.env.ref("base.partner_root", raise_if_not_found=False)
        for document in self:
            # no_new_invoice: nothing posted here is read back as an invoice to import.
            document.move_id.sudo().with_context(no_new_invoice=True).message_post(
                body=body, author_id=author.id if author else None,
                message_type="notification", subtype_xmlid="mail.mt_note",
            )

    @staticmethod
    def _infakt_lines_html(message):
        return Markup("<br/>").join((message or "").splitlines())

    # ------------------------------------------------------------------------------------
    # Transitions: the only place where ``state`` changes
    # ------------------------------------------------------------------------------------
    def _infakt_transition(self, state, values=None, log=None):
        """Move to ``state`` with ``values``; ``log`` goes to the invoice's history."""
        for document in self:
            old = document.state
            vals = dict(values or {})
            vals["state"] = state
            # The document has no chatter of its own (its cost per document): done, error,
            # in doubt and cancelled are told in words on the invoice.
            document.write(vals)
            if log:
                document._infakt_log(log)
            if state == "error" and old != "error":
                document._infakt_schedule_error_activity()
            elif old == "error" and state != "error":
                document._infakt_clear_error_activity()
            if "error" in (old, state) or state == "cancelled":
                document.move_id._infakt_sale_orders()._infakt_sync_error_tag()
            document._infakt_notify_change()

    def _infakt_to_error(self, message, fix=False, fix_res_id=False):
        """inFakt certainly does not hold the document: a person must fix something
        (``fix``: what to open to fix it, see const.FIX_TARGETS)."""
        self._infakt_transition(
            "error",
            {"error_message": message, "next_attempt_at": False, "next_poll_at": False,
             "check_manually": False, "error_fix": fix, "error_fix_res_id": fix_res_id},
            log=Markup("%s<br/>%s") % (self.env._("Sending to inFakt failed:"),
                                       self._infakt_lines_html(message)),
        )

    def _infakt_to_in_doubt(self, message, log=None, delay=None, values=None):
        """A create may have reached inFakt: look the document up by number, with backoff."""
        for document in self:
            wait = const.LOOKUP_SCHEDULE[0] if delay is None else delay
            document._infakt_transition(
                "in_doubt",
                {"error_message": message, "next_attempt_at": _now() + timedelta(seconds=wait),
                 "next_poll_at": False, **(values or {})},
                log=log,
            )

    def _infakt_to_processing(self, task_reference, invoice_uuid=None):
        self.ensure_one()
        values = {
            "task_reference": task_reference,
            "sent_at": _now(),
            "poll_count": 0,
            # The first status read a little later: a task is rarely done at once (later
            # still when a webhook will most likely tell first).
            "next_poll_at": _now() + timedelta(seconds=self._infakt_first_poll_delay()),
            "next_attempt_at": False,
            "error_message": False,
        }
        if invoice_uuid:
            values.update({"infakt_uuid": invoice_uuid, "next_poll_at": _now()})
        if self.account_id.send_to_ksef and self.ksef_state == "none":
            values["ksef_state"] = "pending"
        self._infakt_transition("processing", values)

    def _infakt_first_poll_delay(self):
        """Seconds to the first task poll: longer when the account's webhooks are alive."""
        self.ensure_one()
        self.env.cr.execute(SQL(
            """SELECT received_at FROM infakt_webhook_event WHERE account_id = %s
                ORDER BY id DESC LIMIT 1""",
            self.account_id.id,
        ))
        row = self.env.cr.fetchone()
        if row and row[0] and _now() - row[0] <= timedelta(seconds=const.WEBHOOK_ALIVE_SECONDS):
            return const.WEBHOOK_FIRST_POLL_SECONDS
        return const.POLL_SCHEDULE[0]

    def _infakt_completes_from_task(self):
        """True when the task of our own create is enough to complete this document: the
        totals were checked before the POST and the number is ours, so no read-back (advances
        and final invoices need inFakt's id of the document, read back)."""
        self.ensure_one()
        return self.document_type in ("invoice", "correction") and bool(self.number)

    def _infakt_to_done_from_task(self, invoice_uuid):
        """Our create's task (polled, or told by a signed webhook naming its reference) says
        created: done with the number sent and the uuid of the task."""
        self.ensure_one()
        self._infakt_to_done(invoice_uuid, {"infakt_number": self.number,
                                            "amount_mismatch": False})

    def _infakt_to_done(self, invoice_uuid, remote_values, how=None):
        """The document exists in inFakt, with ``remote_values`` read from inFakt."""
        self.ensure_one()
        values = {
            "infakt_uuid": invoice_uuid,
            "done_at": _now(),
            "error_message": False,
            "next_poll_at": False,
            "next_attempt_at": False,
            "check_manually": False,
            "pdf_pending": self.account_id.download_pdf,
            "pdf_next_at": False,
            "pdf_attempt_count": 0,
            **remote_values,
        }
        if self.ksef_state == "pending" and not remote_values.get("ksef_number"):
            values["ksef_next_check_at"] = _now() + timedelta(seconds=const.KSEF_SCHEDULE[0])
            values["ksef_check_count"] = 0
        number = remote_values.get("infakt_number") or self.number or ""
        log = Markup("%s <b>%s</b>") % (how or self.env._("Created in inFakt as"), number)
        if remote_values.get("amount_mismatch"):
            log += Markup("<br/>") + remote_values.get("amount_mismatch_message", "")
        self._infakt_transition("done", values, log=log)
        # Paid in Odoo before inFakt had it: tell inFakt now.
        self.move_id._infakt_sync_payment_state()

    def _infakt_to_cancelled(self, message):
        self._infakt_transition(
            "cancelled",
            {"error_message": message, "next_attempt_at": False, "next_poll_at": False,
             "pdf_pending": False, "check_manually": False},
            log=message,
        )

    def _infakt_retry_later(self, message, attempt=None):
        """A create that certainly did not reach inFakt is tried again later; after the
        account's number of attempts it needs a person."""
        self.ensure_one()
        attempt = self.attempt_count if attempt is None else attempt
        if attempt >= self.account_id.max_attempts:
            self._infakt_to_error(self.env._(
                "inFakt could not be reached after %(count)s attempts: %(error)s",
                count=attempt, error=message))
            return
        delay = self._infakt_backoff_seconds(attempt)
        self._infakt_transition("to_send", {
            "next_attempt_at": _now() + timedelta(seconds=delay),
            "error_message": self.env._(
                "Attempt %(count)s failed: %(error)s; next attempt in %(delay)s s.",
                count=attempt, error=message.rstrip("."), delay=int(delay)),
        })

    def _infakt_refused(self, error):
        """inFakt refused the create (validation): a person must fix something. A refused
        number means inFakt holds a document with it, maybe this one from an earlier attempt:
        look it up instead."""
        self.ensure_one()
        if "number" in (error.field_errors or {}):
            self._infakt_to_in_doubt(
                self.env._("inFakt says the number %s is already used: looking it up.",
                           self.number),
                delay=0, values={"task_reference": False, "infakt_uuid": False},
            )
            return
        self._infakt_to_error(self._infakt_validation_message(error),
                              fix=const.fix_target_of(error.field_errors))

    def _infakt_validation_message(self, error):
        """inFakt's field errors, each with the Odoo thing to fix."""
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
            lines.append(f"- {self.env['infakt.document.runner']._describe(error)}")
        return self.env._("inFakt refused the document:") + "\n" + "\n".join(lines)

    def _infakt_remote_kind(self):
        """The kind of this document in inFakt's API (see ``infakt_api.client``)."""
        self.ensure_one()
        return {"correction": "corrective", "advance": "advance", "final": "final"}.get(
            self.document_type, "invoice")

    @staticmethod
    def _infakt_backoff_seconds(attempt):
        delay = min(const.BACKOFF_CAP, const.BACKOFF_BASE * (2 ** max(0, attempt - 1)))
        return delay * random.uniform(0.75, 1.25)  # jitter, not security

    @staticmethod
    def _infakt_schedule_delay(schedule, count):
        return schedule[min(max(count, 0), len(schedule) - 1)]

    # ------------------------------------------------------------------------------------
    # Side effects of transitions
    # ------------------------------------------------------------------------------------
    def _infakt_schedule_error_activity(self):
        self.ensure_one()
        move = self.move_id.sudo()
        activity_type = self.env.ref("l10n_pl_infakt.mail_activity_infakt_error",
                                     raise_if_not_found=False)
        if not activity_type or move.activity_ids.filtered(
                lambda a: a.activity_type_id == activity_type):
            return
        user = move.invoice_user_id or move.create_uid
        move.with_context(lang=self._infakt_reader_lang()).activity_schedule(
            "l10n_pl_infakt.mail_activity_infakt_error",
            summary=self.env._("inFakt: fix and send again"),
            note=Markup("<p>%s</p>") % self._infakt_lines_html(self.error_message),
            user_id=user.id,
        )

    def _infakt_clear_error_activity(self):
        activity_type = self.env.ref("l10n_pl_infakt.mail_activity_infakt_error",
                                     raise_if_not_found=False)
        if activity_type:
            self.move_id.sudo().activity_ids.filtered(
                lambda a: a.activity_type_id == activity_type).unlink()

    def _infakt_notify_change(self):
        """Tell the open screens (invoice, order, documents) that these documents moved: one
        bus message per company when the transaction commits (see infakt_document_live.py)."""
        self.env["infakt.document.live"]._queue(self)

    # ------------------------------------------------------------------------------------
    # Triggers
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_trigger(self, xmlid, at=None):
        """Run the scheduled action ``xmlid`` now (or at ``at``): see ``infakt_cron_wake.py``."""
        infakt_cron_wake.trigger(self.env, xmlid, at)

    @api.model
    def _trigger_sender(self, at=None):
        """Run the sender now (or at ``at``). Never de-duplicated: a trigger row is one cheap
        INSERT, and one left out while a run is ending would leave a document waiting for the
        interval. The cron workers are woken once per transaction, after the commit."""
        self._infakt_trigger("l10n_pl_infakt.ir_cron_infakt_send", at)

    @api.model
    def _trigger_processor(self, at=None):
        self._infakt_trigger("l10n_pl_infakt.ir_cron_infakt_process", at)

    # ------------------------------------------------------------------------------------
    # Actions (each checks the caller's group itself, not only the button)
    # ------------------------------------------------------------------------------------
    def _infakt_check_user(self):
        if not self.env.su and not self.env.user.has_group("l10n_pl_infakt.group_infakt_user"):
            raise AccessError(self.env._("Only inFakt users can do this."))

    def action_send_again(self):
        """After a fix: send the documents in error again (the data is read from Odoo anew)."""
        self._infakt_check_user()
        self.check_access("read")
        documents = self.sudo()
        refused = documents.filtered(lambda d: not d._infakt_can_send_again())
        if refused:
            raise UserError(refused[0]._infakt_send_again_refusal())
        for document in documents:
            document._infakt_transition(
                "to_send",
                {"attempt_count": 0, "next_attempt_at": False, "error_message": False,
                 "lookup_count": 0, "check_manually": False, "error_fix": False,
                 "error_fix_res_id": False},
                log=self.env._("Sent again to inFakt by %s.", self.env.user.name),
            )
        self._trigger_sender()
        return True

    def _infakt_can_send_again(self):
        self.ensure_one()
        if self.state == "error":
            return self.move_id.state == "posted"
        if self.state == "cancelled":
            return (self.move_id.state == "posted" and not self.move_id.infakt_document_ids
                    .filtered(lambda d: d.state != "cancelled"))
        return False

    def _infakt_send_again_refusal(self):
        self.ensure_one()
        if self.state not in ("error", "cancelled"):
            return self.env._("Only documents in error can be sent again (%s is not).", self.name)
        if self.move_id.state != "posted":
            return self.env._("The invoice %s is not posted: post it to send it to inFakt.",
                              self.move_id.name)
        return self.env._("The invoice %s already has a document on its way to inFakt.",
                          self.move_id.name)

    def action_check_in_infakt(self):
        """Look the document up in inFakt now (in doubt, or left to a person)."""
        self._infakt_check_user()
        self.check_access("read")
        for document in self.sudo():
            values = {"check_manually": False}
            if document.state == "in_doubt":
                values["next_attempt_at"] = _now()
            elif document.state == "processing":
                values["next_poll_at"] = _now()
            if document.ksef_state == "manual":
                values.update({"ksef_state": "pending", "ksef_next_check_at": _now(),
                               "ksef_check_count": 0})
            if document.state == "done":
                values["refresh_pending"] = True
            document.write(values)
            document._infakt_notify_change()
        self._trigger_processor()
        return True

    def action_open_fix(self):
        """Open the record that fixes this document's error (the account, its bank accounts
        or payment methods, the tax, the customer)."""
        self.ensure_one()
        document = self.sudo()
        fix, res_id = document.error_fix, document.error_fix_res_id
        if fix in ("account", "bank", "payment"):
            action = document.account_id._get_records_action(
                name=self.env._("inFakt Account"))
            action["context"] = {"infakt_fix": fix}
            return action
        if fix == "tax":
            taxes = self.env["account.tax"].browse(res_id).exists() if res_id else \
                document.move_id.invoice_line_ids.tax_ids
            return taxes._get_records_action(name=self.env._("Taxes"))
        if fix == "customer":
            partner = self.env["res.partner"].browse(res_id).exists() or \
                document.move_id.partner_id.commercial_partner_id
            return partner._get_records_action(name=self.env._("Customer"))
        return document.move_id._get_records_action()

    def action_open_move(self):
        self.ensure_one()
        return self.move_id._get_records_action()
