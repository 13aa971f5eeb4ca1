import base64
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api import errors as infakt_errors


class InfaktDocumentAttach(models.AbstractModel):
    """Step 4: attach. The PDF of a done document is downloaded from inFakt once and stored on
    the invoice and (when the account says so) on its sale orders, invoice PDFs and correction
    PDFs apart. Downloads take their turn with the other reads in every pass of the processor:
    nothing else (documents in backoff, other accounts) holds them back."""

    _name = "infakt.document.attach"
    _description = "inFakt: step 4, attach the PDF"

    @api.model
    def _pick(self, run):
        return self.env["infakt.document.complete"]._pick(
            SQL("d.state = 'done' AND d.pdf_pending "
                "AND (d.pdf_next_at IS NULL OR d.pdf_next_at <= %s)", fields.Datetime.now()),
            SQL("d.pdf_next_at NULLS FIRST, d.id"))

    @api.model
    def _process(self, document, run):
        client = run.client_for(document.account_id)
        Runner = self.env["infakt.document.runner"]
        try:
            content = client.download_pdf(document.infakt_uuid,
                                          kind=document._infakt_remote_kind())
        except infakt_errors.InfaktError as error:
            Runner._stop_for(document, error, "read", run)
            if error.retryable:
                self._later(document, Runner._describe(error))
            else:
                self._give_up(document, Runner._describe(error))
            return
        self._store_pdf(document, content)

    @api.model
    def _crashed(self, document, run, error):
        self._later(document, type(error).__name__)

    @api.model
    def _later(self, document, message):
        attempt = document.pdf_attempt_count + 1
        if attempt >= const.PDF_MAX_ATTEMPTS:
            self._give_up(document, message)
            return
        document.write({
            "pdf_attempt_count": attempt,
            "pdf_next_at": fields.Datetime.now() + timedelta(
                seconds=document._infakt_schedule_delay(const.PDF_SCHEDULE, attempt - 1)),
        })

    @api.model
    def _give_up(self, document, message):
        document.write({"pdf_pending": False, "pdf_next_at": False})
        document._infakt_log(self.env._("The PDF could not be downloaded from inFakt: %s",
                                        message))
        document._infakt_notify_change()

    @api.model
    def _filename(self, document):
        number = (document.infakt_number or document.number or document.move_id.name or "")
        return f"inFakt {number.replace('/', '-')}.pdf"

    @api.model
    def _store_pdf(self, document, content):
        """Store the inFakt PDF on the invoice and on its sale orders."""
        move = document.move_id.sudo()
        filename = self._filename(document)
        Attachment = self.env["ir.attachment"].sudo().with_company(move.company_id)
        datas = base64.b64encode(content)
        attachment = Attachment.create({
            "name": filename,
            "datas": datas,
            "res_model": "account.move",
            "res_id": move.id,
            "mimetype": "application/pdf",
            "description": "l10n_pl_infakt",
        })
        document.write({"pdf_attachment_id": attachment.id, "pdf_pending": False,
                        "pdf_next_at": False})
        author = self.env.ref("base.partner_root", raise_if_not_found=False)
        # no_new_invoice: the PDF must not be read back as an invoice to import.
        move.with_context(no_new_invoice=True).message_post(
            body=self.env._("PDF downloaded from inFakt."), attachment_ids=attachment.ids,
            author_id=author.id if author else None, subtype_xmlid="mail.mt_note",
        )
        if document.account_id.attach_pdf_to_order:
            move._infakt_sale_orders()._infakt_attach_pdf(document, filename, datas)
        document._infakt_notify_change()
        return attachment
