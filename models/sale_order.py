from markupsafe import Markup

from odoo import api, fields, models


class SaleOrder(models.Model):
    """The order side: its inFakt status follows the current documents of its invoices
    (computed, never kept by hand), the account's error tag marks orders with a document in
    error, and the inFakt PDFs of its invoices and corrections are attached apart."""

    _inherit = "sale.order"

    infakt_state = fields.Selection(
        [("ok", "Sent to inFakt"), ("error", "inFakt error")],
        string="inFakt State",
        compute="_compute_infakt_state",
        search="_search_infakt_state",
        help="Error: one of the invoices of this order could not be sent to inFakt.",
    )
    infakt_document_count = fields.Integer(
        string="inFakt Documents", compute="_compute_infakt_document_count"
    )
    infakt_error_move_ids = fields.Many2many(
        "account.move", compute="_compute_infakt_state", string="Invoices in inFakt Error",
    )
    infakt_error_html = fields.Html(
        string="inFakt Errors", compute="_compute_infakt_state", sanitize=False,
        help="The invoices of this order that inFakt refused, each linked, with the first "
        "line of what to fix.",
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

    def _infakt_current_documents(self):
        self.ensure_one()
        return self.sudo().order_line.invoice_lines.move_id.infakt_document_id

    def _infakt_documents(self):
        return self.sudo().order_line.invoice_lines.move_id.infakt_document_ids

    @api.depends("order_line.invoice_lines.move_id.infakt_document_id.state")
    def _compute_infakt_state(self):
        for order in self:
            current = order._infakt_current_documents()
            errors = current.filtered(lambda d: d.state == "error")
            order.infakt_error_move_ids = errors.move_id
            order.infakt_error_html = order._infakt_error_html(errors)
            if errors:
                order.infakt_state = "error"
            elif current.filtered(lambda d: d.state == "done"):
                order.infakt_state = "ok"
            else:
                order.infakt_state = False

    def _infakt_error_html(self, documents):
        """One line per failed invoice: its number linked to it, and what to fix (escaped)."""
        if not documents:
            return False
        items = Markup("").join(
            Markup('<li><a href="/odoo/account.move/%(id)s">%(name)s</a>: %(error)s</li>') % {
                "id": document.move_id.id,
                "name": document.move_id.name,
                "error": self._infakt_error_summary(document.error_message),
            }
            for document in documents
        )
        return Markup('<ul class="mb-0">%s</ul>') % items

    @staticmethod
    def _infakt_error_summary(message):
        """The first line that says what to fix (inFakt's heading line left out)."""
        lines = [line.strip(" -") for line in (message or "").splitlines() if line.strip(" -")]
        if len(lines) > 1 and lines[0].endswith(":"):
            lines = lines[1:]
        return lines[0] if lines else ""

    def action_infakt_open_error_invoice(self):
        """Open the invoice in inFakt error (the list when there are several)."""
        self.ensure_one()
        return self.infakt_error_move_ids._get_records_action(
            name=self.env._("Invoices in inFakt Error"))

    def _search_infakt_state(self, operator, value):
        if operator in ("in", "not in"):
            domains = [self._search_infakt_state("=", v) for v in value]
            domain = ["|"] * (len(domains) - 1) + [leaf for d in domains for leaf in d]
            return domain if operator == "in" else ["!"] + domain
        if operator not in ("=", "!="):
            raise NotImplementedError(operator)
        path = "order_line.invoice_lines.move_id.infakt_document_id.state"
        has_error = [(path, "=", "error")]
        has_done = [(path, "=", "done")]
        if value == "error":
            domain = has_error
        elif value == "ok":
            domain = ["&"] + has_done + ["!"] + has_error
        else:
            domain = ["&", "!"] + has_done + ["!"] + has_error
        # The documents are read by invoicing users only: the orders that match are found in
        # sudo (the order's own access rules still apply to the search that uses this).
        orders = self.sudo().with_context(active_test=False)._search(domain)
        return [("id", "in" if operator == "=" else "not in", orders)]

    @api.depends("order_line.invoice_lines")
    def _compute_infakt_document_count(self):
        for order in self:
            order.infakt_document_count = len(order._infakt_documents())

    def _infakt_sync_error_tag(self):
        """The error tag of the accounts is on the orders that have a document in error."""
        for order in self.sudo():
            current = order._infakt_current_documents()
            error_tags = current.filtered(lambda d: d.state == "error").account_id.error_tag_id
            all_tags = order._infakt_documents().account_id.error_tag_id
            commands = [fields.Command.link(tag.id) for tag in error_tags - order.tag_ids]
            commands += [fields.Command.unlink(tag.id)
                         for tag in (all_tags - error_tags) & order.tag_ids]
            if commands:
                order.write({"tag_ids": commands})

    def _infakt_attach_pdf(self, document, filename, datas):
        """Attach the inFakt PDF of ``document`` to these orders (invoices and corrections
        apart)."""
        field = ("infakt_correction_attachment_ids" if document.document_type == "correction"
                 else "infakt_invoice_attachment_ids")
        Attachment = self.env["ir.attachment"].sudo()
        author = self.env.ref("base.partner_root", raise_if_not_found=False)
        for order in self.sudo():
            attachment = Attachment.with_company(order.company_id).create({
                "name": filename,
                "datas": datas,
                "res_model": "sale.order",
                "res_id": order.id,
                "mimetype": "application/pdf",
                "description": "l10n_pl_infakt",
            })
            order.write({field: [fields.Command.link(attachment.id)]})
            order.message_post(
                body=self.env._("inFakt PDF of %s.", document.move_id.name),
                attachment_ids=attachment.ids, subtype_xmlid="mail.mt_note",
                author_id=author.id if author else None,
            )

    def action_view_infakt_documents(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "l10n_pl_infakt.infakt_document_action"
        )
        action["domain"] = [("id", "in", self._infakt_documents().ids)]
        action["context"] = {"create": False}
        return action
