"""Browser tests (Odoo tours in headless Chromium) of the three flows a user clicks through:
configure an account, sale order to a done invoice, and error -> fix -> send again.

The tours are in ``static/tests/tours/infakt_tours.js``. No cron thread runs in tests, so the
Python side runs the sender and the processor (and inFakt's webhook verification, through the
simulator) between the tours.
"""

from odoo import Command
from odoo.tests import tagged

from .common import API_KEY, WEBHOOK_SECRET, InfaktTourCase

ACCOUNT_NAME = "inFakt - Moja Firma"
SIMULATOR_URL_PARAM = "l10n_pl_infakt.tour_simulator_url"
# The company changed banks in inFakt: the old account is gone, this one replaces it.
NEW_BANK_ACCOUNT = {
    "id": 2,
    "account_number": "49114020040000320276543210",
    "bank_name": "mBank",
    "swift": "BREXPLPW",
    "currency": "PLN",
    "custom_name": "mBank firmowe",
    "default": True,
    "verified": True,
}


@tagged("post_install", "-at_install")
class TestTours(InfaktTourCase):

    @staticmethod
    def form_url(action, record):
        return f"/odoo/action-{action}/{record.id}"

    # ------------------------------------------------------------------------------------------
    # a. Configure an account, verify the webhook
    # ------------------------------------------------------------------------------------------
    def test_01_configure_account(self):
        # Start from nothing: the journal's series must be free for the account made in the UI.
        self.infakt_account.unlink()
        self.env["ir.config_parameter"].sudo().set_param(
            SIMULATOR_URL_PARAM, self.simulator.base_url
        )
        self.start_infakt_tour("/odoo", "l10n_pl_infakt_configure_account")

        account = self.env["infakt.account"].search([("name", "=", ACCOUNT_NAME)])
        self.assertEqual(len(account), 1)
        self.assertEqual(account.environment, "custom")
        self.assertEqual(account.api_url, self.simulator.base_url)
        self.assertEqual(account.sudo().api_key, API_KEY)
        self.assertEqual(account.sudo().webhook_secret, WEBHOOK_SECRET)
        self.assertEqual(account.connection_state, "ok")
        self.assertEqual(account.series_ids.journal_id, self.journal)
        self.assertEqual(account.series_ids.document_type, "invoice")
        self.assertEqual(account.payment_mapping_ids.infakt_payment_method, "transfer")
        self.assertTrue(account.bank_account_id, "Test connection reads the bank accounts")
        self.assertEqual(account.webhook_state, "not_verified")

        # In inFakt: create the webhook with the account's URL and click Verify.
        url = self.base_url() + f"/infakt/webhook/{account.sudo().webhook_token}"
        self.simulator.configure(webhook_url=url, webhook_secret=WEBHOOK_SECRET)
        result = self.simulator.verify_webhook()
        self.assertTrue(result["verified"], result)
        self.env.invalidate_all()
        self.assertEqual(account.webhook_state, "verified")
        self.assertFalse(account.has_config_problems, account._get_config_problems())

        self.start_infakt_tour(
            self.form_url("l10n_pl_infakt.infakt_account_action", account),
            "l10n_pl_infakt_account_verified",
        )

    # ------------------------------------------------------------------------------------------
    # b. Sale order -> invoice -> done, PDF on the order
    # ------------------------------------------------------------------------------------------
    def test_02_sale_order_to_done(self):
        order = self.env["sale.order"].create(
            {
                "partner_id": self.partner.id,
                "company_id": self.company.id,
                "order_line": [
                    Command.create(
                        {
                            "product_id": self.product.id,
                            "product_uom_qty": 3,
                            "price_unit": 150.0,
                            "tax_id": [Command.set(self.tax_23.ids)],
                        }
                    )
                ],
            }
        )
        self.start_infakt_tour(
            self.form_url("sale.action_quotations_with_onboarding", order),
            "l10n_pl_infakt_order_invoice",
        )

        invoice = order.invoice_ids
        self.assertEqual(len(invoice), 1)
        self.assertEqual(invoice.state, "posted")
        self.assertEqual(invoice.journal_id, self.journal)
        self.assertEqual(invoice.infakt_state, "to_send")

        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        self.assertEqual(document.infakt_number, invoice.name)
        self.assertTrue(order.infakt_invoice_attachment_ids)
        self.assertEqual(len(self.sim_invoices()), 1)

        self.start_infakt_tour(
            self.form_url("sale.action_orders", order), "l10n_pl_infakt_order_done"
        )

    # ------------------------------------------------------------------------------------------
    # c. inFakt refuses the invoice -> fix in the UI -> send again -> done
    # ------------------------------------------------------------------------------------------
    def test_03_error_fix_send_again(self):
        order = self.create_order()
        invoice = self.invoice_order(order)
        old_bank = self.infakt_account.bank_account_id
        self.assertTrue(old_bank)
        # In inFakt the company replaced its bank account: inFakt refuses the old one.
        self.simulator.configure(bank_accounts=[NEW_BANK_ACCOUNT])
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        self.assertIn("bank account for transfers", document.error_message)
        self.assertEqual(order.infakt_state, "error")
        self.assertIn(self.error_tag, order.tag_ids)
        self.assertFalse(self.sim_invoices())

        self.start_infakt_tour(
            self.form_url("account.action_move_out_invoice_type", invoice),
            "l10n_pl_infakt_fix_error",
        )

        bank = self.infakt_account.bank_account_id
        self.assertEqual(bank.account_number, NEW_BANK_ACCOUNT["account_number"])
        self.assertFalse(old_bank.active)
        self.assertEqual(document.state, "to_send")
        self.assertEqual(order.infakt_state, False)

        self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        self.assertEqual(order.infakt_state, "ok")
        self.assertNotIn(self.error_tag, order.tag_ids)
        sim_invoices = self.sim_invoices()
        self.assertEqual(len(sim_invoices), 1, "sent once after the fix")
        self.assertEqual(
            sim_invoices[0]["bank_account"], NEW_BANK_ACCOUNT["account_number"]
        )

        self.start_infakt_tour(
            self.form_url("sale.action_orders", order), "l10n_pl_infakt_order_done"
        )
