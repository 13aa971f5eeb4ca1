from odoo import api, models

# The key under which Odoo's own KSeF module (l10n_pl_edi) offers its sending.
ODOO_KSEF_EDI = "pl_ksef"


class AccountMoveSend(models.AbstractModel):
    _inherit = "account.move.send"

    def _get_all_extra_edis(self) -> dict:
        # EXTENDS 'account': an invoice filed with KSeF through inFakt is never also sent by
        # Odoo's own KSeF sending (l10n_pl_edi), whatever the user ticks.
        return self._infakt_filter_ksef_edis(super()._get_all_extra_edis())

    def _infakt_filter_ksef_edis(self, extra_edis):
        edi = extra_edis.get(ODOO_KSEF_EDI)
        if not edi or edi.get("_infakt_wrapped"):
            return extra_edis
        is_applicable = edi.get("is_applicable") or (lambda move: True)
        extra_edis[ODOO_KSEF_EDI] = {
            **edi,
            "is_applicable": lambda move: (
                not move._infakt_files_ksef() and is_applicable(move)
            ),
            "_infakt_wrapped": True,
        }
        return extra_edis

    def _call_web_service_before_invoice_pdf_render(self, invoices_data):
        # EXTENDS 'account'
        for move, invoice_data in invoices_data.items():
            extra_edis = invoice_data.get("extra_edis")
            if extra_edis and ODOO_KSEF_EDI in extra_edis and move._infakt_files_ksef():
                invoice_data["extra_edis"] = [e for e in extra_edis if e != ODOO_KSEF_EDI]
        return super()._call_web_service_before_invoice_pdf_render(invoices_data)

    # ------------------------------------------------------------------------------------
    # The customer receives the legal document: inFakt's PDF, not Odoo's rendering
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_customer_pdf(self, move):
        """What the customer of ``move`` receives: ``("ready", attachment)`` inFakt's PDF;
        ``("waiting", None)`` they should, but inFakt's PDF is not stored yet; ``(False, None)``
        Odoo's rendering (no document in inFakt, or the account says so)."""
        document = move.sudo().infakt_document_id
        if not document or document.state == "cancelled":
            return False, None
        account = document.account_id
        if not (account.customer_pdf and account.download_pdf):
            return False, None
        if document.state == "done" and document.pdf_attachment_id:
            return "ready", document.pdf_attachment_id
        return "waiting", None

    def _infakt_moves_by_pdf_state(self, moves):
        result = {"ready": moves.browse(), "waiting": moves.browse()}
        for move in moves:
            state = self._infakt_customer_pdf(move)[0]
            if state:
                result[state] |= move
        return result

    @api.model
    def _get_invoice_extra_attachments(self, move):
        # EXTENDS 'account': inFakt's PDF is the invoice the customer gets (e-mail, portal).
        attachments = super()._get_invoice_extra_attachments(move)
        state, pdf = self._infakt_customer_pdf(move)
        if state == "ready":
            attachments = pdf | (attachments - move.invoice_pdf_report_id)
        return attachments

    @api.model
    def _get_placeholder_mail_attachments_data(self, move, invoice_edi_format=None,
                                               extra_edis=None):
        # EXTENDS 'account': no placeholder for Odoo's PDF when inFakt's is sent instead.
        placeholders = super()._get_placeholder_mail_attachments_data(
            move, invoice_edi_format=invoice_edi_format, extra_edis=extra_edis)
        if self._infakt_customer_pdf(move)[0] == "ready":
            odoo_pdf = move._get_invoice_report_filename()
            placeholders = [p for p in placeholders if p.get("name") != odoo_pdf]
        return placeholders

    @api.model
    def _prepare_invoice_pdf_report(self, invoices_data):
        # EXTENDS 'account': the invoice's PDF is inFakt's when inFakt has it (not rendered).
        rendered = {}
        for invoice, invoice_data in invoices_data.items():
            state, pdf = self._infakt_customer_pdf(invoice)
            if state != "ready":
                rendered[invoice] = invoice_data
                continue
            invoice_data["pdf_attachment_values"] = {
                "name": pdf.name,
                "raw": pdf.raw,
                "mimetype": "application/pdf",
                "res_model": invoice._name,
                "res_id": invoice.id,
                "res_field": "invoice_pdf_report_file",
            }
        if rendered:
            return super()._prepare_invoice_pdf_report(rendered)
        return None

    @api.model
    def _get_alerts(self, moves, moves_data):
        # EXTENDS 'account': say which PDF the customer receives.
        alerts = super()._get_alerts(moves, moves_data)
        by_state = self._infakt_moves_by_pdf_state(moves)
        if by_state["ready"]:
            alerts["l10n_pl_infakt_pdf"] = {
                "level": "info",
                "message": self.env._(
                    "The customer receives the PDF of inFakt, the legal invoice (as in inFakt "
                    "and KSeF), not Odoo's: %s.", ", ".join(by_state["ready"].mapped("name"))),
            }
        if by_state["waiting"]:
            waiting = by_state["waiting"]
            alerts["l10n_pl_infakt_pdf_waiting"] = {
                "level": "warning",
                "message": self.env._(
                    "The PDF of inFakt is not there yet for %s: sent now, the customer would "
                    "receive Odoo's PDF, not the legal invoice from inFakt. Wait until the "
                    "invoice is done in inFakt (its PDF appears in the chatter).",
                    ", ".join(waiting.mapped("name"))),
                "action_text": self.env._("View inFakt documents"),
                "action": waiting.action_infakt_view_documents(),
            }
        return alerts
