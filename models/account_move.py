import base64
from decimal import Decimal

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL, html2plaintext

from ..infakt_api import payload as infakt_payload
from .infakt_document import STATES

# Documents in these states exist (or may exist) in inFakt: the invoice is frozen.
LOCKING_STATES = ("sending", "processing", "done", "in_doubt")


def _decimal(value):
    return Decimal(str(value))


class AccountMove(models.Model):
    _inherit = "account.move"

    infakt_document_ids = fields.One2many(
        "infakt.document", "move_id", string="inFakt Documents", copy=False, readonly=True
    )
    infakt_document_id = fields.Many2one(
        "infakt.document", compute="_compute_infakt_document", string="inFakt Document",
        store=True, copy=False, index="btree_not_null",
    )
    infakt_state = fields.Selection(
        STATES, string="inFakt State", compute="_compute_infakt_fields", store=True,
        copy=False, index=True,
    )
    infakt_number = fields.Char(
        string="inFakt Number", compute="_compute_infakt_fields", store=True, copy=False
    )
    infakt_ksef_state = fields.Selection(
        related="infakt_document_id.ksef_state", string="KSeF State (inFakt)"
    )
    infakt_ksef_number = fields.Char(
        string="KSeF Number", compute="_compute_infakt_fields", store=True, copy=False
    )
    infakt_error_message = fields.Text(related="infakt_document_id.error_message")
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

    @api.depends("infakt_document_ids.state")
    def _compute_infakt_document(self):
        for move in self:
            move.infakt_document_id = move._infakt_current_document()

    def _infakt_current_document(self):
        self.ensure_one()
        documents = self.infakt_document_ids.sorted("id", reverse=True)
        return documents.filtered(lambda d: d.state != "cancelled")[:1] or documents[:1]

    @api.depends(
        "infakt_document_ids.state",
        "infakt_document_ids.infakt_number",
        "infakt_document_ids.ksef_number",
    )
    def _compute_infakt_fields(self):
        for move in self:
            document = move._infakt_current_document()
            move.infakt_state = document.state or False
            move.infakt_number = document.infakt_number or False
            move.infakt_ksef_number = document.ksef_number or False

    @api.depends("state", "move_type", "journal_id", "infakt_document_ids.state")
    def _compute_infakt_can_send(self):
        for move in self:
            move.infakt_can_send = bool(
                move.state == "posted"
                and move.is_sale_document(include_receipts=False)
                and not move.infakt_document_ids.filtered(lambda d: d.state != "cancelled")
                and move._infakt_find_series()
            )

    @api.depends("infakt_state")
    def _compute_show_reset_to_draft_button(self):
        # EXTENDS 'account': an invoice that exists in inFakt is corrected by a credit note.
        result = super()._compute_show_reset_to_draft_button()
        for move in self.filtered(lambda m: m.infakt_state in LOCKING_STATES):
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
        document = self.sudo()._infakt_current_document()
        if document and document.state != "cancelled":
            return document.ksef_state != "none" or document.account_id.send_to_ksef
        series = self._infakt_find_series()
        return bool(series and series.account_id.send_to_ksef)

    def _infakt_sale_orders(self):
        return self.sudo().line_ids.sale_line_ids.order_id

    # ------------------------------------------------------------------------------------
    # Posting, reset, cancel
    # ------------------------------------------------------------------------------------
    def _post(self, soft=True):
        posted = super()._post(soft=soft)
        to_queue = posted.filtered(lambda m: m.is_sale_document(include_receipts=False))
        if to_queue:
            self.env["infakt.document"]._queue_moves(to_queue)
        return posted

    def _infakt_check_unlocked(self):
        """Refuse to change an invoice that exists in inFakt; cancel waiting documents."""
        documents = self.sudo().infakt_document_ids
        if not documents:
            return
        if documents.filtered(lambda d: d.state in ("to_send", "error")):
            # Lock waiting documents so that a sender cannot take them meanwhile.
            try:
                self.env.cr.execute(
                    SQL(
                        "SELECT id FROM infakt_document WHERE id IN %s FOR UPDATE NOWAIT",
                        tuple(documents.ids),
                    )
                )
            except Exception as error:  # psycopg2 LockNotAvailable
                raise UserError(
                    self.env._("The invoice is being sent to inFakt right now. Try again in a "
                               "moment.")
                ) from error
            documents.invalidate_recordset(["state"])
        for move in self:
            locked = move.sudo().infakt_document_ids.filtered(
                lambda d: d.state in LOCKING_STATES
            )
            if locked:
                raise UserError(
                    self.env._(
                        "The invoice %(name)s already exists in inFakt (%(number)s) and cannot "
                        "be reset to draft or cancelled. Issue a credit note to correct it.",
                        name=move.name,
                        number=locked[0].infakt_number or locked[0].number or move.name,
                    )
                )
        waiting = documents.filtered(lambda d: d.state in ("to_send", "error"))
        if waiting:
            waiting.write({"state": "cancelled", "error_message": False,
                           "next_attempt_at": False})
            waiting._log(self.env._("Not sent to inFakt: the invoice was reset or cancelled."))
            waiting._update_sale_orders()

    def button_draft(self):
        self._infakt_check_unlocked()
        return super().button_draft()

    def button_cancel(self):
        self._infakt_check_unlocked()
        return super().button_cancel()

    def _infakt_sync_payment_state(self):
        """Invoices that became paid in Odoo are marked paid in inFakt (once)."""
        for move in self.filtered(
            lambda m: m.move_type == "out_invoice" and m.payment_state in ("paid", "in_payment")
        ):
            documents = move.sudo().infakt_document_ids.filtered(
                lambda d: d.document_type == "invoice" and d.state != "cancelled"
            )
            if not documents:
                continue
            partials = move.line_ids.matched_credit_ids
            paid_date = max(partials.mapped("max_date"), default=False) or \
                fields.Date.context_today(move)
            paid_date = max(paid_date, move.invoice_date or paid_date)
            documents._queue_mark_paid(paid_date)

    # ------------------------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------------------------
    def action_infakt_send(self):
        moves = self.filtered(lambda m: m.state == "posted")
        if not moves:
            raise UserError(self.env._("Only posted invoices can be sent to inFakt."))
        without_series = moves.filtered(lambda m: not m._infakt_find_series())
        if without_series:
            raise UserError(
                self.env._(
                    "No active inFakt account has a document series for the journal of %s.",
                    ", ".join(without_series.mapped("name")),
                )
            )
        documents = self.env["infakt.document"]._queue_moves(moves, force=True)
        if not documents:
            raise UserError(self.env._("These invoices are already sent or waiting."))
        return True

    def action_infakt_send_again(self):
        self.sudo().infakt_document_ids.filtered(lambda d: d.state == "error").action_send_again()
        return True

    def action_infakt_view_documents(self):
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "l10n_pl_infakt.infakt_document_action"
        )
        action["domain"] = [("move_id", "in", self.ids)]
        return action

    # ------------------------------------------------------------------------------------
    # Payload
    # ------------------------------------------------------------------------------------
    def _infakt_payment_method(self, account):
        """The inFakt payment method: from the provider / method of the payment
        transactions, else the payment terms, else the account default."""
        self.ensure_one()
        transactions = self.sudo().transaction_ids | self._infakt_sale_orders().transaction_ids
        transactions = transactions.filtered(lambda t: t.state in ("authorized", "done")) or \
            transactions
        providers = transactions.provider_id
        methods = transactions.payment_method_id
        best = None
        for mapping in account.payment_mapping_ids:
            score = mapping._match_score(providers, methods, self.invoice_payment_term_id)
            if score is not None and (best is None or score > best[0]):
                best = (score, mapping)
        if best is None:
            raise UserError(
                self.env._(
                    "No payment method mapping of the inFakt account %(account)s fits the "
                    "invoice %(invoice)s: add a default line (no provider, method or payment "
                    "term) to the Payment Method Mapping.",
                    account=account.name,
                    invoice=self.name,
                )
            )
        return best[1].infakt_payment_method

    def _infakt_buyer_values(self):
        self.ensure_one()
        partner = self.partner_id
        commercial = partner.commercial_partner_id
        street = " ".join(filter(None, [partner.street, partner.street2]))
        is_company = bool(commercial.is_company or commercial.vat)
        name = commercial.name or partner.name or ""
        values = {
            "is_company": is_company,
            "company_name": name if is_company else None,
            "name": name,
            "nip": commercial.vat or None,
            "street": street or None,
            "city": partner.city or None,
            "post_code": partner.zip or None,
            "country": (partner.country_id or commercial.country_id).code or "PL",
            "email": partner.email or None,
        }
        if not name.strip():
            raise UserError(self.env._("The customer of %s has no name.", self.name))
        return values

    def _infakt_line_values(self, line, exemption_reasons):
        taxes = line.tax_ids.filtered(lambda t: t.amount_type != "group") | line.tax_ids.filtered(
            lambda t: t.amount_type == "group"
        ).children_tax_ids
        if len(taxes) != 1:
            raise UserError(
                self.env._(
                    "The line \"%(line)s\" of %(invoice)s must have exactly one tax: inFakt "
                    "takes one tax rate per line.",
                    line=line.name or line.product_id.display_name,
                    invoice=self.name,
                )
            )
        symbol = taxes._get_infakt_tax_symbol()
        if not symbol:
            raise UserError(
                self.env._(
                    "The tax %(tax)s cannot be sent to inFakt: set its inFakt Tax Symbol "
                    "(Invoicing > Configuration > Taxes).",
                    tax=taxes.display_name,
                )
            )
        if symbol == "zw" and taxes.infakt_vat_exemption_reason:
            exemption_reasons.add(taxes.infakt_vat_exemption_reason)
        elif symbol == "zw":
            exemption_reasons.add(None)
        quantity = _decimal(line.quantity)
        values = {
            "name": (line.name or line.product_id.display_name or "").strip() or "-",
            "quantity": quantity,
            "unit": line.product_uom_id.name or "szt.",
            "tax_symbol": symbol,
        }
        if taxes.price_include:
            values.update({"price_mode": "gross", "gross_price": _decimal(line.price_total)})
        else:
            subtotal = _decimal(line.price_subtotal)
            unit = (subtotal / quantity) if quantity else _decimal(line.price_unit)
            values.update(
                {"price_mode": "net", "unit_net_price": unit, "net_price": subtotal}
            )
            if line.discount:
                values.update(
                    {
                        "discount": _decimal(line.discount),
                        "unit_net_price_before_discount": _decimal(line.price_unit),
                    }
                )
        return values

    def _infakt_common_values(self, account):
        self.ensure_one()
        payment_method = self._infakt_payment_method(account)
        values = {
            "buyer": infakt_payload.build_buyer(self._infakt_buyer_values()),
            "invoice_date": self.invoice_date,
            "sale_date": getattr(self, "delivery_date", False) or self.invoice_date,
            "payment_date": self.invoice_date_due or self.invoice_date,
            "number": self.name,
            "check_duplicate_number": True,
            "currency": self.currency_id.name,
            "payment_method": payment_method,
            "notes": (html2plaintext(self.narration or "") or "")[:3500] or None,
        }
        if self.currency_id.name != "PLN":
            values["vat_exchange_date_kind"] = "vat"
        if payment_method == "transfer":
            bank = account.bank_account_id
            if not bank:
                raise UserError(
                    self.env._(
                        "The invoice is paid by transfer but the inFakt account %s has no Bank "
                        "Account for Transfers: click Refresh bank accounts and choose one.",
                        account.name,
                    )
                )
            values["bank_account"] = bank.account_number
        return values

    def _infakt_lines(self):
        return self.invoice_line_ids.filtered(lambda line: line.display_type == "product")

    def _infakt_exemption_reason(self, account, exemption_reasons):
        if not exemption_reasons:
            return None
        reasons = {r for r in exemption_reasons if r}
        if len(reasons) > 1:
            raise UserError(
                self.env._("The lines of %s use different VAT exemption reasons; inFakt takes "
                           "one per invoice.", self.name)
            )
        reason = next(iter(reasons), None) or account.vat_exemption_reason
        if not reason:
            raise UserError(
                self.env._(
                    "Lines taxed 'zw' need a VAT exemption reason: set the inFakt VAT "
                    "Exemption Reason on the tax or the default on the inFakt account %s.",
                    account.name,
                )
            )
        return reason

    def _infakt_prepare_invoice_payload(self, account):
        self.ensure_one()
        exemption_reasons = set()
        services = [
            self._infakt_line_values(line, exemption_reasons) for line in self._infakt_lines()
        ]
        if not services:
            raise UserError(self.env._("The invoice %s has no lines to send.", self.name))
        values = self._infakt_common_values(account)
        buyer = values.pop("buyer")
        reason = self._infakt_exemption_reason(account, exemption_reasons)
        invoice = infakt_payload.build_invoice(
            lines=services, buyer=buyer, vat_exemption_reason=reason, **values
        )
        return invoice

    def _infakt_prepare_corrective_payload(self, document):
        """Credit note -> inFakt corrective invoice: before/after pairs per line."""
        self.ensure_one()
        account = document.account_id
        origin = self.reversed_entry_id
        origin_document = origin and origin.sudo().infakt_document_ids.filtered(
            lambda d: d.state == "done"
        )[:1]
        if not origin_document:
            raise UserError(
                self.env._(
                    "The credit note %(name)s corrects %(origin)s, which is not in inFakt: "
                    "send the original invoice to inFakt first.",
                    name=self.name,
                    origin=origin.name or self.env._("an invoice unknown to Odoo"),
                )
            )
        exemption_reasons = set()
        pairs = origin._infakt_correction_pairs(self, exemption_reasons)
        values = self._infakt_common_values(account)
        buyer = values.pop("buyer")
        values.pop("sale_date", None)
        reason = self._infakt_exemption_reason(account, exemption_reasons)
        del reason  # the corrective endpoint takes the reason from the original invoice
        return infakt_payload.build_corrective_invoice(
            pairs=pairs,
            buyer=buyer,
            corrected_invoice_number=origin_document.infakt_number or origin_document.number,
            corrected_invoice_uuid=origin_document.infakt_uuid,
            corrected_invoice_date=origin.invoice_date,
            correction_reason="other",
            **values,
        )

    def _infakt_correction_pairs(self, credit_note, exemption_reasons):
        """Before/after line pairs: the original lines, each reduced by what the credit note
        (and earlier posted credit notes of this invoice) takes back."""
        self.ensure_one()
        refunds = self.reversal_move_ids.filtered(
            lambda m: m.state == "posted" and m.id < credit_note.id
        )
        before_lines = [self._infakt_line_values(line, exemption_reasons)
                        for line in self._infakt_lines()]
        before = self._infakt_apply_refunds(before_lines, refunds, exemption_reasons)
        after = self._infakt_apply_refunds(
            [dict(line) for line in before], credit_note, exemption_reasons
        )
        pairs = []
        for old, new in zip(before, after, strict=True):
            if old == new:
                continue
            pairs.append((old, new))
        if not pairs:
            raise UserError(
                self.env._("The credit note %s changes nothing on the invoice.", credit_note.name)
            )
        return pairs

    def _infakt_apply_refunds(self, lines, refunds, exemption_reasons):
        """Subtract the lines of ``refunds`` from ``lines`` (matched by product and tax)."""
        result = [dict(line) for line in lines]
        for refund in refunds:
            for refund_line in refund._infakt_lines():
                values = refund._infakt_line_values(refund_line, exemption_reasons)
                target = next(
                    (
                        line for line in result
                        if line["name"] == values["name"]
                        and line["tax_symbol"] == values["tax_symbol"]
                        and line["price_mode"] == values["price_mode"]
                    ),
                    None,
                )
                if target is None:
                    raise UserError(
                        self.env._(
                            "The line \"%(line)s\" of the credit note %(name)s does not match "
                            "a line of the invoice; inFakt corrections change existing lines.",
                            line=values["name"],
                            name=refund.name,
                        )
                    )
                self._infakt_subtract(target, values)
        return result

    @staticmethod
    def _infakt_subtract(target, values):
        if target["price_mode"] == "gross":
            target["gross_price"] = target["gross_price"] - values["gross_price"]
            same_unit = False
        else:
            target["net_price"] = target["net_price"] - values["net_price"]
            same_unit = values["unit_net_price"] == target["unit_net_price"]
        if same_unit:
            target["quantity"] = target["quantity"] - values["quantity"]
        elif target["price_mode"] == "net" and target["quantity"]:
            target["unit_net_price"] = target["net_price"] / target["quantity"]

    # ------------------------------------------------------------------------------------
    # PDFs
    # ------------------------------------------------------------------------------------
    def _infakt_store_pdf(self, document, content):
        """Store the inFakt PDF on the invoice and (when enabled) on its sale orders, invoice
        PDFs and correction PDFs apart."""
        self.ensure_one()
        number = (document.infakt_number or document.number or self.name or "").replace("/", "-")
        prefix = "inFakt KOR" if document.document_type == "correction" else "inFakt FV"
        filename = f"{prefix} {number}.pdf"
        Attachment = self.env["ir.attachment"].sudo()
        datas = base64.b64encode(content)
        attachment = Attachment.create(
            {
                "name": filename,
                "datas": datas,
                "res_model": "account.move",
                "res_id": self.id,
                "mimetype": "application/pdf",
                "description": "l10n_pl_infakt",
            }
        )
        document.pdf_attachment_id = attachment
        # no_new_invoice: the PDF must not be read back as an invoice to import.
        self.with_context(no_new_invoice=True).message_post(
            body=self.env._("PDF downloaded from inFakt."), attachment_ids=attachment.ids
        )
        if document.account_id.attach_pdf_to_order:
            field = (
                "infakt_correction_attachment_ids"
                if document.document_type == "correction"
                else "infakt_invoice_attachment_ids"
            )
            for order in self._infakt_sale_orders():
                order_attachment = Attachment.create(
                    {
                        "name": filename,
                        "datas": datas,
                        "res_model": "sale.order",
                        "res_id": order.id,
                        "mimetype": "application/pdf",
                        "description": "l10n_pl_infakt",
                    }
                )
                order.write({field: [fields.Command.link(order_attachment.id)]})
                order.message_post(
                    body=self.env._("inFakt PDF of %s.", self.name),
                    attachment_ids=order_attachment.ids,
                )
        return attachment
