"""Browser test (Odoo tour in headless Chromium) of the whole error -> fix -> send again path
with the user in Polish: the banner, the chatter and the activity say it in Polish, the banner
links to the inFakt account where the bank accounts are read again, and Send again sends the
invoice once. The tour is ``static/tests/tours/error_fix_tour.js``."""

from odoo.tests import tagged

from .common import InfaktTourCase
from .test_tours import NEW_BANK_ACCOUNT


@tagged("post_install", "-at_install")
class TestTourErrorFixPolish(InfaktTourCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("pl_PL")
        cls.env["ir.module.module"]._load_module_terms(["l10n_pl_infakt"], ["pl_PL"],
                                                       overwrite=True)
        cls.env.ref("base.user_admin").sudo().lang = "pl_PL"

    def test_error_fix_send_again_in_polish(self):
        order = self.create_order()
        invoice = self.invoice_order(order)
        invoice.invoice_user_id = self.env.ref("base.user_admin")
        # In inFakt the company replaced its bank account: inFakt refuses the old one.
        self.simulator.configure(bank_accounts=[NEW_BANK_ACCOUNT])
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        self.assertEqual(document.error_fix, "bank")
        # Written for its reader (the salesperson, in Polish).
        self.assertIn("konto bankowe do przelewów", document.error_message)
        self.assertFalse(self.sim_invoices())

        self.start_infakt_tour(f"/odoo/action-account.action_move_out_invoice_type/{invoice.id}",
                               "l10n_pl_infakt_error_fix_pl")

        self.assertEqual(self.infakt_account.bank_account_id.account_number,
                         NEW_BANK_ACCOUNT["account_number"])
        self.assertEqual(document.state, "to_send")
        self.assertFalse(document.error_fix)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        sim_invoices = self.sim_invoices()
        self.assertEqual(len(sim_invoices), 1, "sent once after the fix")
        self.assertEqual(sim_invoices[0]["bank_account"], NEW_BANK_ACCOUNT["account_number"])
