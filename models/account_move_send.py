from odoo import models

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
