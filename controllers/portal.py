from odoo import http
from odoo.exceptions import AccessError, MissingError
from odoo.http import content_disposition, request

from odoo.addons.account.controllers.portal import PortalAccount


class InfaktPortalAccount(PortalAccount):
    @http.route()
    def portal_my_invoice_detail(self, invoice_id, access_token=None, report_type=None,
                                 download=False, **kw):
        # EXTENDS 'account': the customer downloads (or prints) inFakt's PDF, the legal
        # invoice, once inFakt has it; Odoo's rendering otherwise.
        if report_type == "pdf":
            try:
                invoice_sudo = self._document_check_access("account.move", invoice_id,
                                                           access_token)
            except (AccessError, MissingError):
                return request.redirect("/my")
            response = self._infakt_pdf_response(invoice_sudo, download)
            if response:
                return response
        return super().portal_my_invoice_detail(
            invoice_id, access_token=access_token, report_type=report_type, download=download,
            **kw)

    def _infakt_pdf_response(self, invoice_sudo, download):
        if invoice_sudo.state != "posted":
            return None
        state, pdf = request.env["account.move.send"]._infakt_customer_pdf(invoice_sudo)
        if state != "ready":
            return None
        content = pdf.sudo().raw
        headers = [("Content-Type", "application/pdf"), ("Content-Length", len(content))]
        if download:
            headers.append(("Content-Disposition", content_disposition(pdf.name)))
        return request.make_response(content, headers)
