from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL, Query

from .. import const
from .infakt_run import CONCURRENCY_ERRORS


class AccountMove(models.Model):
    """The invoice side: its link to its current inFakt document, what it shows, and the lock
    that keeps an invoice that exists (or may exist) in inFakt from being reset or cancelled.

    The invoice stores nothing of inFakt: its current document is computed from the documents
    (the active one, else the newest), so neither queueing nor the document's transitions
    write the invoice (no cost on posting, no lock conflict with a user working on it while
    the document moves). The Odoo -> inFakt mapping is the ``infakt.payload`` service."""

    _inherit = "account.move"

    infakt_document_ids = fields.One2many(
        "infakt.document", "move_id", string="inFakt Documents", copy=False, readonly=True
    )
    infakt_document_id = fields.Many2one(
        "infakt.document", string="inFakt Document", readonly=True,
        compute="_compute_infakt_document_id", search="_search_infakt_document_id",
        compute_sudo=True,
        help="The current exchange of this document with inFakt (the active one, else the "
        "last one).",
    )
    infakt_state = fields.Selection(related="infakt_document_id.state", string="inFakt State")
    infakt_number = fields.Char(related="infakt_document_id.infakt_number",
                                string="inFakt Number")
    infakt_ksef_state = fields.Selection(related="infakt_document_id.ksef_state",
                                         string="KSeF State (inFakt)")
    infakt_ksef_number = fields.Char(related="infakt_document_id.ksef_number",
                                     string="KSeF Number")
    infakt_error_message = fields.Text(related="infakt_document_id.error_message")
    infakt_check_manually = fields.Boolean(related="infakt_document_id.check_manually")
    infakt_error_fix = fields.Selection(related="infakt_document_id.error_fix")
    infakt_show_ksef = fields.Boolean(related="infakt_document_id.show_ksef")
    infakt_account_state = fields.Selection(
        related="infakt_document_id.account_id.connection_state", string="inFakt Connection")
    infakt_account_message = fields.Char(
        related="infakt_document_id.account_id.connection_message", string="inFakt Connection "
        "Message")
    infakt_pdf_attachment_id = fields.Many2one(
        related="infakt_document_id.pdf_attachment_id", string="inFakt PDF"
    )
    infakt_pdf = fields.Binary(
        string="inFakt PDF File", related="infakt_document_id.pdf_attachment_id.datas"
    )
    infakt_pdf_name = fields.Char(related="infakt_document_id.pdf_attachment_id.name")
    infakt_amount_mismatch = fields.Boolean(related="infakt_document_id.amount_mismatch")
    infakt_paid_date = fields.Date(related="infakt_document_id.infakt_paid_date")
    infakt_can_send = fields.Boolean(
        string="Can Be Sent to inFakt", compute="_compute_infakt_can_send"
    )
    infakt_split_payment = fields.Selection(
        [("required", "Required (MPP)"), ("optional", "Voluntary")],
        string="Split Payment",
        help="How inFakt marks the invoice for split payment (mechanizm podzielonej płatności). "
        "Left empty, it is Required where the law requires it: a total above 15 000 PLN, a "
        "product marked Split Payment (Annex 15) and a Polish business as the customer. "
        "Voluntary prints the words without the MPP mark of JPK_V7.",
    )

    @api.depends("infakt_document_ids.state")
    def _compute_infakt_document_id(self):
        for move in self:
            documents = move.infakt_document_ids.sorted("id", reverse=True)
            move.infakt_document_id = (
                documents.filtered(lambda d: d.state != "cancelled")[:1] or documents[:1])

    def _search_infakt_document_id(self, operator, value):
        """Invoices whose current document (see the compute) is in ``value``: one SQL
        subquery, the current document being the one no other document of its invoice
        outranks (active before cancelled, then newer)."""
        if operator in ("=", "!=") and not isinstance(value, (list, tuple, SQL, Query)):
            if not value:
                return [("infakt_document_ids", operator, False)]
            operator, value = ("in" if operator == "=" else "not in"), [value]
        if operator not in ("in", "not in"):
            raise NotImplementedError(operator)
        if isinstance(value, Query):
            value = value.subselect()
        elif not isinstance(value, SQL):
            ids = [v for v in value if v]
            if len(ids) < len(value):
                # False in the list: the invoices without any document, too.
                domain = [("infakt_document_ids", "=", False)]
                rest = self._search_infakt_document_id("in", ids) if ids else [(0, "=", 1)]
                result = ["|", *domain, *rest]
                return result if operator == "in" else ["!", *result]
            value = SQL("%s", tuple(ids) or (None,))
        current = SQL(
            """(SELECT d.move_id FROM infakt_document d
                 WHERE d.id IN %s
                   AND NOT EXISTS (
                       SELECT 1 FROM infakt_document o
                        WHERE o.move_id = d.move_id AND o.id <> d.id
                          AND ((o.state <> 'cancelled') > (d.state <> 'cancelled')
                               OR ((o.state <> 'cancelled') = (d.state <> 'cancelled')
                                   AND o.id > d.id))))""",
            value,
        )
        return [("id", operator, current)]

    @api.depends("state", "move_type", "journal_id", "infakt_document_id.state")
    def _compute_infakt_can_send(self):
        for move in self:
            move.infakt_can_send = bool(
                move.state == "posted"
                and move.is_sale_document(include_receipts=False)
                and (not move.infakt_document_id or move.infakt_document_id.state == "cancelled")
                and move._infakt_find_series()
            )

    @api.depends("infakt_document_id.state")
    def _compute_show_reset_to_draft_button(self):
        # EXTENDS 'account': an invoice that exists in inFakt is corrected by a credit note.
        result = super()._compute_show_reset_to_draft_button()
        for move in self.filtered(lambda m: m.infakt_state in const.LOCKING_STATES):
            move.show_reset_to_draft_button = False
        return result

    # ------------------------------------------------------------------------------------
    # Links
    # ------------------------------------------------------------------------------------
    def _infakt_document_type(self):
        self.ensure_one()
        return {"out_invoice": "invoice", "out_refund": "correction"}.get(self.move_type)

    def _infakt_find_series(self):
        self.ensure_one()
        document_type = self._infakt_document_type()
        if not document_type or not self.journal_id:
            return self.env["infakt.series"]
        series_by_key = self.env["infakt.series"].sudo()._series_by_journal_and_type(
            self.journal_id
        )
        return series_by_key.get((self.journal_id.id, document_type), self.env["infakt.series"])

    def _infakt_files_ksef(self):
        """True when this document goes (or went) to KSeF through inFakt."""
        self.ensure_one()
        document = self.sudo().infakt_document_id
        if document and document.state != "cancelled":
            return document.ksef_state != "none" or document.account_id.send_to_ksef
        series = self._infakt_find_series()
        return bool(series and series.account_id.send_to_ksef)

    def _infakt_sale_orders(self):
        return self.sudo().line_ids.sale_line_ids.order_id

    # ------------------------------------------------------------------------------------
    # Posting, reset, cancel, delete
    # ------------------------------------------------------------------------------------
    def _post(self, soft=True):
        posted = super()._post(soft=soft)
        to_queue = posted.filtered(lambda m: m.is_sale_document(include_receipts=False))
        if to_queue:
            self.env["infakt.document.queue"]._queue_moves(to_queue)
        return posted

    def _infakt_check_unlocked(self):
        """Refuse to change an invoice that exists, or may exist, in inFakt; cancel the
        documents that certainly do not (waiting, or refused)."""
        documents = self.sudo().infakt_document_ids.filtered(lambda d: d.state != "cancelled")
        if not documents:
            return
        try:
            # Lock them, so that a sender cannot take them meanwhile (and wait for none).
            self.env.cr.execute(SQL(
                "SELECT id FROM infakt_document WHERE id IN %s FOR UPDATE NOWAIT",
                tuple(documents.ids),
            ))
        except CONCURRENCY_ERRORS as error:
            raise UserError(self.env._(
                "The invoice is being sent to inFakt right now. Try again in a moment.")) from error
        documents.invalidate_recordset(["state"])
        for move in self:
            locked = move.sudo().infakt_document_ids.filtered(
                lambda d: d.state in const.LOCKING_STATES)
            if locked:
                raise UserError(self.env._(
                    "The invoice %(name)s exists in inFakt (%(number)s), or may exist there "
                    "(its answer is being checked), so it cannot be reset to draft or cancelled. "
                    "Issue a credit note to correct it.",
                    name=move.name,
                    number=locked[0].infakt_number or locked[0].number or move.name,
                ))
        waiting = documents.filtered(lambda d: d.state in ("to_send", "error"))
        for document in waiting:
            document.with_context(lang=document._infakt_reader_lang())._infakt_to_cancelled(
                self.env._("Not sent to inFakt: the invoice was reset to draft or cancelled."))

    def button_draft(self):
        self._infakt_check_unlocked()
        return super().button_draft()

    def button_cancel(self):
        self._infakt_check_unlocked()
        return super().button_cancel()

    @api.ondelete(at_uninstall=False)
    def _unlink_except_in_infakt(self):
        # Cancelled documents and documents in error (certainly not in inFakt) go with their
        # invoice (``move_id`` is ``ondelete='cascade'``).
        active = self.sudo().infakt_document_ids.filtered(
            lambda d: d.state not in ("cancelled", "error"))
        if active:
            raise UserError(self.env._(
                "The invoice %s has a document on its way to inFakt, or in inFakt: it cannot be "
                "deleted.", active[0].move_id.name))

    def _infakt_sync_payment_state(self):
        """Invoices that became paid in Odoo are marked paid in inFakt (once)."""
        for move in self.filtered(
            lambda m: m.move_type == "out_invoice" and m.payment_state in ("paid", "in_payment")
        ):
            document = move.sudo().infakt_document_id
            if not document or document.state != "done":
                continue
            partials = move.line_ids.matched_credit_ids
            paid_date = max(partials.mapped("max_date"), default=False) or \
                fields.Date.context_today(move.with_context(tz=move.company_id.partner_id.tz))
            paid_date = max(paid_date, move.invoice_date or paid_date)
            self.env["infakt.document.payment"]._queue(document, paid_date)

    # ------------------------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------------------------
    def action_infakt_send(self):
        self.env["infakt.document"]._infakt_check_user()
        moves = self.filtered(lambda m: m.state == "posted")
        if not moves:
            raise UserError(self.env._("Only posted invoices can be sent to inFakt."))
        without_series = moves.filtered(lambda m: not m._infakt_find_series())
        if without_series:
            raise UserError(self.env._(
                "No active inFakt account has a document series for the journal of %s.",
                ", ".join(without_series.mapped("name"))))
        documents = self.env["infakt.document.queue"]._queue_moves(moves, force=True)
        if not documents:
            raise UserError(self.env._("These invoices are already sent or waiting."))
        return True

    def action_infakt_send_again(self):
        documents = self.sudo().infakt_document_id.filtered(
            lambda d: d.state in ("error", "cancelled"))
        if not documents:
            raise UserError(self.env._("Nothing to send again to inFakt."))
        documents.with_user(self.env.user).action_send_again()
        return True

    def action_infakt_check(self):
        self.sudo().infakt_document_id.with_user(self.env.user).action_check_in_infakt()
        return True

    def action_infakt_open_fix(self):
        """Open what fixes the inFakt error of this invoice (account, tax, customer...)."""
        self.ensure_one()
        return self.sudo().infakt_document_id.with_user(self.env.user).action_open_fix()

    def action_infakt_open_account(self):
        self.ensure_one()
        return self.sudo().infakt_document_id.account_id.with_user(
            self.env.user)._get_records_action()

    def action_infakt_view_documents(self):
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "l10n_pl_infakt.infakt_document_action"
        )
        action["domain"] = [("move_id", "in", self.ids)]
        return action
