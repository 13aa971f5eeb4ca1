from odoo import api, fields, models


class SaleOrder(models.Model):
    _inherit = "sale.order"

    infakt_state = fields.Selection(
        [("ok", "Sent to inFakt"), ("error", "inFakt error")],
        string="inFakt State",
        readonly=True,
        copy=False,
        index=True,
        help="Error: one of the invoices of this order could not be sent to inFakt.",
    )
    infakt_document_count = fields.Integer(
        string="inFakt Documents", compute="_compute_infakt_document_count"
    )
    infakt_invoice_attachment_ids = fields.Many2many(
        "ir.attachment",
        "sale_order_infakt_invoice_pdf_rel",
        "order_id",
        "attachment_id",
        string="inFakt Invoices",
        copy=False,
        readonly=True,
    )
    infakt_correction_attachment_ids = fields.Many2many(
        "ir.attachment",
        "sale_order_infakt_correction_pdf_rel",
        "order_id",
        "attachment_id",
        string="inFakt Corrections",
        copy=False,
        readonly=True,
    )

    def _infakt_documents(self):
        return self.sudo().order_line.invoice_lines.move_id.infakt_document_ids

    @api.depends("order_line.invoice_lines")
    def _compute_infakt_document_count(self):
        for order in self:
            order.infakt_document_count = len(order._infakt_documents())

    def _infakt_update_state(self):
        """Error status and tag of the order follow the current documents of its invoices."""
        for order in self:
            moves = order.order_line.invoice_lines.move_id
            current = self.env["infakt.document"].sudo()
            for move in moves:
                current |= move._infakt_current_document()
            errors = current.filtered(lambda d: d.state == "error")
            if errors:
                state = "error"
            elif current.filtered(lambda d: d.state == "done"):
                state = "ok"
            else:
                state = False
            error_tags = errors.account_id.error_tag_id
            all_tags = current.account_id.error_tag_id
            commands = [fields.Command.link(tag.id) for tag in error_tags]
            commands += [fields.Command.unlink(tag.id) for tag in all_tags - error_tags]
            values = {}
            if order.infakt_state != state:
                values["infakt_state"] = state
            if commands:
                values["tag_ids"] = commands
            if values:
                order.write(values)

    def action_view_infakt_documents(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "l10n_pl_infakt.infakt_document_action"
        )
        action["domain"] = [("id", "in", self._infakt_documents().ids)]
        action["context"] = {"create": False}
        return action
