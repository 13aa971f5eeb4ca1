"""Errors that lead to the fix (issue 14, points 3, 4 and 6): each failure says what happened in
words (unreachable, key rejected, plan without API, a refused field), and links to the record
that fixes it; KSeF shown only where it is on; the smaller points (series names, line breaks of
the activity, names without a repeated prefix)."""

import socket

from odoo import fields
from odoo.tests import tagged

from ..infakt_api import errors as infakt_errors
from .common import API_KEY, InfaktCommon
from .test_tours import NEW_BANK_ACCOUNT


def _closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@tagged("post_install", "-at_install")
class TestErrorsUx(InfaktCommon):
    # ------------------------------------------------------------------------------------
    # What happened, in words
    # ------------------------------------------------------------------------------------
    def test_unreachable_is_not_a_rejected_key(self):
        account = self.infakt_account
        account.api_url = f"http://127.0.0.1:{_closed_port()}/api/v3"
        account.action_test_connection()
        self.assertEqual(account.connection_state, "untested",
                         "no connection says nothing about the key")
        message = account.connection_message
        self.assertIn("could not be reached", message)
        self.assertIn("The API key was not checked", message)
        self.assertNotIn("rejected", message)
        problems = " ".join(m for _label, m in account._get_config_problems())
        self.assertIn("did not reach inFakt", problems)
        self.assertNotIn("rejected", problems)

    def test_key_rejected(self):
        account = self.infakt_account
        account.api_key = "wrong-key"
        account.action_test_connection()
        self.assertEqual(account.connection_state, "failed")
        self.assertIn("rejected the API key (HTTP 401)", account.connection_message)
        self.assertIn("Settings > Other options > API", account.connection_message)

    def test_plan_without_api(self):
        self.simulator.configure(api_keys=[{"key": API_KEY, "plan_api": False}])
        account = self.infakt_account
        account.action_test_connection()
        self.assertEqual(account.connection_state, "failed")
        self.assertIn("plan of this account does not include the API", account.connection_message)
        self.assertNotIn("rejected the API key", account.connection_message)

    def test_error_classes(self):
        classify = infakt_errors.classify_http_error
        self.assertIsInstance(classify(500, b"", method="GET"), infakt_errors.InfaktServerError)
        self.assertIsInstance(classify(408, b"", method="GET"), infakt_errors.InfaktTimeout)
        self.assertIsInstance(classify(500, b"", method="POST"), infakt_errors.InfaktInDoubt)
        runner = self.env["infakt.document.runner"]
        server = runner._describe(classify(502, b"", method="GET"))
        self.assertIn("internal error (HTTP 502)", server)
        refused = runner._describe(classify(
            422, {"errors": {"client_tax_code": ["jest nieprawidłowy"]}}, method="POST"))
        self.assertIn("refused the data", refused)
        self.assertIn("jest nieprawidłowy", refused)

    # ------------------------------------------------------------------------------------
    # Links to the record that fixes the error
    # ------------------------------------------------------------------------------------
    def test_refused_bank_account_links_the_account(self):
        order = self.create_order()
        invoice = self.invoice_order(order)
        self.simulator.configure(bank_accounts=[NEW_BANK_ACCOUNT])
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        self.assertEqual(document.error_fix, "bank")
        self.assertIn("Refresh bank accounts", document.error_message)
        action = invoice.action_infakt_open_fix()
        self.assertEqual((action["res_model"], action["res_id"]),
                         ("infakt.account", self.infakt_account.id))
        # The order names its failed invoice and links to it.
        self.assertEqual(order.infakt_state, "error")
        self.assertIn(invoice.name, order.infakt_error_html)
        self.assertIn(f'href="/odoo/account.move/{invoice.id}"', order.infakt_error_html)
        self.assertIn("bank account", order.infakt_error_html)
        action = order.action_infakt_open_error_invoice()
        self.assertEqual((action["res_model"], action["res_id"]), ("account.move", invoice.id))
        # Sending again clears the link with the error.
        self.infakt_account.action_refresh_bank_accounts()
        invoice.action_infakt_send_again()
        self.assertEqual(document.state, "to_send")
        self.assertFalse(order.infakt_error_html)

    def test_tax_without_symbol_links_the_tax(self):
        tax = self.env["account.tax"].create({
            "name": "VAT 0% do wyjaśnienia", "amount": 0.0, "amount_type": "percent",
            "type_tax_use": "sale", "company_id": self.company.id,
            "tax_group_id": self.tax_23.tax_group_id.id,
        })
        order = self.create_order(lines=[(self.product, 1, 100.0, 0.0, tax)])
        invoice = self.invoice_order(order)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        self.assertEqual((document.error_fix, document.error_fix_res_id), ("tax", tax.id))
        action = invoice.action_infakt_open_fix()
        self.assertEqual((action["res_model"], action["res_id"]), ("account.tax", tax.id))
        self.assertFalse(self.sim_invoices(), "refused before anything left Odoo")

    def test_refused_customer_field_links_the_customer(self):
        order = self.create_order()
        invoice = self.invoice_order(order)
        error = infakt_errors.InfaktValidationError(
            status=422, field_errors={"client_tax_code": ["NIP jest nieprawidłowy"]})
        invoice.infakt_document_id._infakt_refused(error)
        document = invoice.infakt_document_id
        self.assertEqual(document.error_fix, "customer")
        self.assertIn("the Tax ID (NIP) of the customer", document.error_message)
        action = invoice.action_infakt_open_fix()
        self.assertEqual((action["res_model"], action["res_id"]),
                         ("res.partner", self.partner.id))

    def test_blocked_account_shows_on_invoice(self):
        order = self.create_order()
        invoice = self.invoice_order(order)
        self.infakt_account.api_key = "wrong-key"
        self.run_sender()
        self.assertEqual(invoice.infakt_state, "to_send", "the document keeps its place")
        self.assertEqual(invoice.infakt_account_state, "failed")
        self.assertIn("rejected the API key", invoice.infakt_account_message)
        action = invoice.action_infakt_open_account()
        self.assertEqual((action["res_model"], action["res_id"]),
                         ("infakt.account", self.infakt_account.id))

    # ------------------------------------------------------------------------------------
    # KSeF only where it is on
    # ------------------------------------------------------------------------------------
    def _ksef_lines(self, invoice):
        """What the invoice's history says about KSeF (the document keeps no history of its
        own: everything the engine tells a person is on the invoice)."""
        invoice.invalidate_recordset(["message_ids"])
        return [message.body for message in invoice.message_ids if "KSeF" in (message.body or "")]

    def test_ksef_hidden_and_not_logged_when_off(self):
        self.infakt_account.send_to_ksef = False
        invoice = self.invoice_order(self.create_order())
        document = invoice.infakt_document_id
        self.assertFalse(document.show_ksef)
        self.assertFalse(invoice.infakt_show_ksef)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        self.assertEqual(document.ksef_state, "none")
        self.assertFalse(document.show_ksef)
        self.assertFalse(self._ksef_lines(invoice), "no word about KSeF where it is off")

    def test_ksef_shown_and_logged_when_on(self):
        self.infakt_account.send_to_ksef = True
        self.simulator.configure(ksef_delay=0.0)
        invoice = self.invoice_order(self.create_order())
        document = invoice.infakt_document_id
        self.assertTrue(document.show_ksef)
        self.assertTrue(invoice.infakt_show_ksef)
        document = self.send_and_complete(invoice)
        for _round in range(3):
            self.simulator.flush(timeout=5)
            document.sudo().ksef_next_check_at = fields.Datetime.now()
            self.run_processor()
            if document.ksef_state != "pending":
                break
        self.assertEqual(document.ksef_state, "success")
        self.assertTrue(self._ksef_lines(invoice), "KSeF acceptance is logged where it is on")

    # ------------------------------------------------------------------------------------
    # Smaller points
    # ------------------------------------------------------------------------------------
    def test_series_names_say_the_journal(self):
        names = self.infakt_account.series_ids.mapped("display_name")
        code = self.journal.code
        self.assertEqual(sorted(names), sorted([f"Corrections of journal {code}",
                                                f"Invoices of journal {code}"]))
        self.env["res.lang"]._activate_lang("pl_PL")
        self.env["ir.module.module"]._load_module_terms(["l10n_pl_infakt"], ["pl_PL"],
                                                        overwrite=True)
        series = self.infakt_account.series_ids.with_context(lang="pl_PL")
        self.assertIn(f"Korekty z dziennika {code}", series.mapped("display_name"))

    def test_names_do_not_repeat_the_prefix(self):
        invoice = self.invoice_order(self.create_order())
        document = self.send_and_complete(invoice)
        self.assertEqual(document.name, invoice.name)
        self.assertEqual(document.display_name, invoice.name)
        filename = self.env["infakt.document.attach"]._filename(document)
        self.assertEqual(filename, "inFakt {}.pdf".format(invoice.name.replace("/", "-")))

    def test_activity_note_keeps_line_breaks(self):
        invoice = self.invoice_order(self.create_order())
        document = invoice.infakt_document_id
        document._infakt_to_error("inFakt refused the document:\n- first\n- second")
        activity = invoice.activity_ids.filtered(
            lambda a: a.activity_type_id == self.env.ref(
                "l10n_pl_infakt.mail_activity_infakt_error"))
        self.assertEqual(len(activity), 1)
        self.assertIn("<br>- first<br>- second", str(activity.note))

    def test_messages_in_polish(self):
        self.env["res.lang"]._activate_lang("pl_PL")
        self.env["ir.module.module"]._load_module_terms(["l10n_pl_infakt"], ["pl_PL"],
                                                        overwrite=True)
        runner = self.env["infakt.document.runner"].with_context(lang="pl_PL")
        unreachable = runner._describe(infakt_errors.InfaktUnreachable("x"))
        self.assertIn("Nie można połączyć się z inFaktem", unreachable)
        rejected = runner._describe(infakt_errors.InfaktAuthError(status=401))
        self.assertIn("odrzucił klucz API", rejected)
