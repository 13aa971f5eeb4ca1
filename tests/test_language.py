"""Texts written by the scheduled actions are in the language of who reads them (issue 12).

The cron context has no language: without care, the error on the invoice banner, the lines in
the invoice's history and the activity are stored in English. They are written in the language
of the invoice's salesperson, else of the company (its partner). Both the step services (their
own messages) and the records run with that language.
"""

from odoo import Command
from odoo.tests import new_test_user, tagged

from .common import InfaktCommon

# pl.po of the module (what a Polish accountant reads).
PL_REFUSED = "inFakt odrzucił dokument:"
PL_FAILED_LOG = "Wysyłanie do inFakt nie powiodło się:"
PL_ACTIVITY = "inFakt: popraw i wyślij ponownie"
PL_LOST = "Odpowiedź inFakt nie dotarła: trwa sprawdzanie, czy dokument został utworzony."
PL_LOST_LOG = "Odpowiedź inFakt nie dotarła: status dokumentu jest niepewny"
EN_LOST = "The answer of inFakt was lost: whether the document was created is being checked."
EN_LOST_LOG = "The answer of inFakt was lost: the document is in doubt"


@tagged("post_install", "-at_install")
class TestLanguage(InfaktCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("pl_PL")
        cls.env["ir.module.module"]._load_module_terms(
            ["l10n_pl_infakt"], ["pl_PL"], overwrite=True)
        company = {"company_id": cls.company.id, "company_ids": [Command.set(cls.company.ids)]}
        cls.polish_user = new_test_user(cls.env, "sprzedawca_pl", lang="pl_PL",
                                        groups="account.group_account_invoice", **company)
        cls.english_user = new_test_user(cls.env, "salesperson_en", lang="en_US",
                                         groups="account.group_account_invoice", **company)

    def post_invoice(self, user):
        invoice = self.env["account.move"].create({
            "move_type": "out_invoice",
            "partner_id": self.partner.id,
            "journal_id": self.journal.id,
            "invoice_user_id": user.id if user else False,
            "invoice_line_ids": [Command.create({
                "product_id": self.product.id, "quantity": 1, "price_unit": 100.0,
                "tax_ids": [Command.set(self.tax_23.ids)]})],
        })
        invoice.action_post()
        return invoice

    def history(self, invoice):
        return "\n".join(invoice.message_ids.mapped("body"))

    def lose_the_answer(self, invoice):
        self.simulator.add_fault(drop_after_create=1, reset=True)
        self.run_sender()
        self.assertEqual(invoice.infakt_state, "in_doubt")

    def test_refused_document_in_polish_for_a_polish_salesperson(self):
        self.simulator.configure(bank_accounts=[{"id": 7, "account_number": "PL11 1111"}])
        invoice = self.post_invoice(self.polish_user)
        self.send_and_complete(invoice)
        self.assertEqual(invoice.infakt_state, "error")
        # The banner, the history and the activity: Polish.
        self.assertTrue(invoice.infakt_error_message.startswith(PL_REFUSED),
                        invoice.infakt_error_message)
        self.assertIn(PL_FAILED_LOG, self.history(invoice))
        activity = invoice.activity_ids.filtered(
            lambda a: a.activity_type_id == self.env.ref(
                "l10n_pl_infakt.mail_activity_infakt_error"))
        self.assertEqual(activity.summary, PL_ACTIVITY)
        self.assertEqual(activity.user_id, self.polish_user)
        self.assertIn(PL_REFUSED, activity.note)
        self.assertEqual(activity.activity_type_id.with_context(lang="pl_PL").name,
                         PL_ACTIVITY)

    def test_texts_of_the_step_services_in_polish(self):
        """The step's own messages (the send step's chatter line, the runner's description of
        the error on the banner) are Polish too, not only the record's."""
        invoice = self.post_invoice(self.polish_user)
        self.lose_the_answer(invoice)
        self.assertEqual(invoice.infakt_error_message, PL_LOST)
        self.assertIn(PL_LOST_LOG, self.history(invoice))
        self.assertNotIn(EN_LOST_LOG, self.history(invoice))

    def test_company_language_without_salesperson(self):
        self.company.partner_id.lang = "pl_PL"
        invoice = self.post_invoice(None)
        self.assertFalse(invoice.invoice_user_id)
        self.lose_the_answer(invoice)
        self.assertEqual(invoice.infakt_error_message, PL_LOST)
        self.assertIn(PL_LOST_LOG, self.history(invoice))

    def test_english_salesperson_reads_english(self):
        self.company.partner_id.lang = "pl_PL"
        invoice = self.post_invoice(self.english_user)
        self.lose_the_answer(invoice)
        self.assertEqual(invoice.infakt_error_message, EN_LOST)
        self.assertIn(EN_LOST_LOG, self.history(invoice))
