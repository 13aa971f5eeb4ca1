"""The customer receives the legal document (B11): Send & Print and the customer portal give
inFakt's PDF once inFakt has it, and the wizard says which PDF the customer gets."""

from odoo.tests import HttpCase, tagged

from .common import InfaktCommon


@tagged("post_install", "-at_install")
class TestSendPrint(InfaktCommon, HttpCase):
    def send_wizard(self, invoice):
        return self.env["account.move.send.wizard"].with_context(
            active_model="account.move", active_ids=invoice.ids).create({})

    def done_invoice(self):
        invoice = self.invoice_order(self.create_order())
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        self.assertTrue(document.pdf_attachment_id)
        return invoice, document.pdf_attachment_id

    def widget_names(self, wizard):
        return [a["name"] for a in wizard.mail_attachments_widget]

    def test_wizard_sends_the_infakt_pdf(self):
        invoice, infakt_pdf = self.done_invoice()
        wizard = self.send_wizard(invoice)
        self.assertIn("l10n_pl_infakt_pdf", wizard.alerts)
        self.assertNotIn("l10n_pl_infakt_pdf_waiting", wizard.alerts)
        self.assertIn(invoice.name, wizard.alerts["l10n_pl_infakt_pdf"]["message"])
        self.assertEqual(self.widget_names(wizard), [infakt_pdf.name],
                         "inFakt's PDF, and no placeholder for Odoo's")
        self.assertIn("email", wizard.sending_methods)

        wizard.action_send_and_print()

        # The invoice's PDF is inFakt's (never rendered by Odoo), and so is the e-mail's.
        self.assertEqual(invoice.invoice_pdf_report_id.raw, infakt_pdf.raw)
        self.assertTrue(invoice.is_move_sent)
        message = self.env["mail.message"].search(
            [("model", "=", "account.move"), ("res_id", "=", invoice.id),
             ("message_type", "=", "comment")], limit=1)
        self.assertTrue(message, "the invoice was e-mailed")
        self.assertEqual([a.raw for a in message.attachment_ids], [infakt_pdf.raw])
        self.assertIn(self.partner, message.partner_ids)

    def test_wizard_says_when_the_infakt_pdf_is_not_there_yet(self):
        invoice = self.invoice_order(self.create_order())
        self.assertEqual(invoice.infakt_state, "to_send")
        wizard = self.send_wizard(invoice)
        alert = wizard.alerts.get("l10n_pl_infakt_pdf_waiting")
        self.assertTrue(alert, wizard.alerts)
        self.assertEqual(alert["level"], "warning", "said, not blocking")
        self.assertIn(invoice.name, alert["message"])
        self.assertEqual(alert["action"]["res_model"], "infakt.document")
        self.assertNotIn("l10n_pl_infakt_pdf", wizard.alerts)

    def test_odoo_pdf_when_the_account_says_so(self):
        self.infakt_account.customer_pdf = False
        invoice, infakt_pdf = self.done_invoice()
        wizard = self.send_wizard(invoice)
        self.assertFalse({"l10n_pl_infakt_pdf", "l10n_pl_infakt_pdf_waiting"}
                         & set(wizard.alerts or {}))
        self.assertEqual(self.widget_names(wizard), [invoice._get_invoice_report_filename()])
        Send = self.env["account.move.send"]
        self.assertEqual(Send._infakt_customer_pdf(invoice), (False, None))
        self.assertNotIn(infakt_pdf, Send._get_invoice_extra_attachments(invoice))

    def test_odoo_pdf_made_before_is_replaced_by_infakt_pdf(self):
        """An invoice e-mailed before inFakt had it: its legal documents are inFakt's now."""
        invoice, infakt_pdf = self.done_invoice()
        odoo_pdf = self.env["ir.attachment"].create({
            "name": invoice._get_invoice_report_filename(), "raw": b"%PDF-1.4 Odoo",
            "mimetype": "application/pdf", "res_model": "account.move", "res_id": invoice.id,
            "res_field": "invoice_pdf_report_file",
        })
        invoice.invalidate_recordset(["invoice_pdf_report_id"])
        self.assertEqual(invoice.invoice_pdf_report_id, odoo_pdf)
        documents = invoice._get_invoice_legal_documents_all()
        self.assertEqual([d["content"] for d in documents], [infakt_pdf.raw])

    def test_portal_offers_the_infakt_pdf(self):
        invoice, infakt_pdf = self.done_invoice()
        token = invoice._portal_ensure_token()
        url = f"/my/invoices/{invoice.id}?access_token={token}&report_type=pdf"
        response = self.url_open(url + "&download=true")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, infakt_pdf.raw)
        self.assertIn("inFakt%20", response.headers["Content-Disposition"])
        self.assertEqual(self.url_open(url).content, infakt_pdf.raw, "printed: the same PDF")
        # A wrong token gets nothing.
        response = self.url_open(
            f"/my/invoices/{invoice.id}?access_token=wrong&report_type=pdf&download=true")
        self.assertNotEqual(response.content, infakt_pdf.raw)

        self.infakt_account.customer_pdf = False
        response = self.url_open(url + "&download=true")
        self.assertEqual(response.status_code, 200)
        self.assertNotEqual(response.content, infakt_pdf.raw, "Odoo's PDF when switched off")
