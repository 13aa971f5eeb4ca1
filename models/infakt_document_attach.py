import base64
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api import errors as infakt_errors


class InfaktDocument(models.Model):
    """Step 4: attach. The PDF of a done document is downloaded from inFakt once and stored on
    the invoice and (when the account says so) on its sale orders, invoice PDFs and correction
    PDFs apart. Downloads take their turn with the other reads in every pass of the processor:
    nothing else (documents in backoff, other accounts) holds them back."""

    _inherit = "infakt.document"

    @api.model
    def _infakt_pick_attach(self, run):
        return self._infakt_pick(
            SQL("d.state = 'done' AND d.pdf_pending "
                "AND (d.pdf_next_at IS NULL OR d.pdf_next_at <= %s)", fields.Datetime.now()),
            SQL("d.pdf_next_at NULLS FIRST, d.id"))

    def _infakt_attach_one(self, run):
        self.ensure_one()
        client = run.client_for(self.account_id)
        try:
            content = client.download_pdf(self.infakt_uuid, kind=self._infakt_remote_kind())
        except infakt_errors.InfaktError as error:
            self._infakt_stop_for(error, "read", run)
            if error.retryable:
                self._infakt_attach_later(self._infakt_describe(error))
            else:
                self._infakt_attach_give_up(self._infakt_describe(error))
            return
        self._infakt_store_pdf(content)

    def _infakt_attach_later(self, message):
        attempt = self.pdf_attempt_count + 1
        if attempt >= const.PDF_MAX_ATTEMPTS:
            self._infakt_attach_give_up(message)
            return
        self.write({
            "pdf_attempt_count": attempt,
            "pdf_next_at": fields.Datetime.now() + timedelta(
                seconds=self._infakt_schedule_delay(const.PDF_SCHEDULE, attempt - 1)),
        })

    def _infakt_attach_give_up(self, message):
        self.write({"pdf_pending": False, "pdf_next_at": False})
        self._infakt_log(self.env._("The PDF could not be downloaded from inFakt: %s", message))
        self._infakt_notify_change()

    def _infakt_attach_crashed(self, run, error):
        self._infakt_attach_later(type(error).__name__)

    def _infakt_pdf_filename(self):
        self.ensure_one()
        number = (self.infakt_number or self.number or self.move_id.name or "").replace("/", "-")
        return f"inFakt {number}.pdf"

    def _infakt_store_pdf(self, content):
        """Store the inFakt PDF on the invoice and on its sale orders."""
        self.ensure_one()
        move = self.move_id.sudo()
        filename = self._infakt_pdf_filename()
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
        self.write({"pdf_attachment_id": attachment.id, "pdf_pending": False,
                    "pdf_next_at": False})
        author = self.env.ref("base.partner_root", raise_if_not_found=False)
        # no_new_invoice: the PDF must not be read back as an invoice to import.
        move.with_context(no_new_invoice=True).message_post(
            body=self.env._("PDF downloaded from inFakt."), attachment_ids=attachment.ids,
            author_id=author.id if author else None, subtype_xmlid="mail.mt_note",
        )
        if self.account_id.attach_pdf_to_order:
            move._infakt_sale_orders()._infakt_attach_pdf(self, filename, datas)
        self._infakt_notify_change()
        return attachment
