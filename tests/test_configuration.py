import psycopg2

from odoo import Command
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import new_test_user, tagged
from odoo.tools import file_open, mute_logger

from .common import API_KEY, InfaktCommon


@tagged("post_install", "-at_install")
class TestConfiguration(InfaktCommon):
    def _new_account(self, **values):
        return self.env["infakt.account"].create(
            {
                "name": "Second account",
                "company_id": self.company.id,
                "environment": "custom",
                "api_url": self.simulator.base_url,
                **values,
            }
        )

    # --- series ---------------------------------------------------------------------------
    def test_series_assigned_once_across_accounts(self):
        other = self._new_account()
        with self.assertRaisesRegex(ValidationError, "inFakt test"):
            other.write(
                {"series_ids": [Command.create({"journal_id": self.journal.id,
                                                "document_type": "invoice"})]}
            )
        # Another type of the same journal is another series.
        journal_2 = self.journal.copy({"name": "Sales 2", "code": "SAL2"})
        other.write(
            {"series_ids": [Command.create({"journal_id": journal_2.id,
                                            "document_type": "invoice"})]}
        )
        series = other.series_ids
        with self.assertRaisesRegex(ValidationError, "already used by the inFakt account"):
            series.journal_id = self.journal

    def test_series_uniqueness_is_enforced_by_the_database(self):
        other = self._new_account()
        with mute_logger("odoo.sql_db"), self.assertRaises(psycopg2.IntegrityError):
            with self.env.cr.savepoint():
                self.env.cr.execute(
                    "INSERT INTO infakt_series (account_id, journal_id, document_type, company_id)"
                    " VALUES (%s, %s, 'invoice', %s)",
                    (other.id, self.journal.id, self.company.id),
                )

    def test_series_name_and_problems(self):
        series = self.infakt_account.series_ids.filtered(lambda s: s.document_type == "invoice")
        # The journal code is the series: "Invoices of journal INV", not "FV - Invoice (INV)".
        self.assertEqual(series.display_name, f"Invoices of journal {self.journal.code}")
        self.assertFalse(series.has_config_problems)
        other = self._new_account(series_ids=[Command.create({"document_type": "correction"})])
        self.assertTrue(other.series_ids.has_config_problems)
        self.assertIn("sales journal", other.series_ids.config_problems)

    # --- configuration check --------------------------------------------------------------
    def test_configuration_check_lists_every_problem(self):
        self.company.vat = False
        account = self._new_account()
        problems = account._get_config_problems()
        labels = {label for label, _message in problems}
        for expected in ("API Key", "Webhook URL", "Webhook HMAC Secret", "Document Series",
                         "Payment Method Mapping", "Company"):
            self.assertIn(expected, labels)
        self.assertTrue(account.has_config_problems)
        self.assertIn("Tax ID (NIP)", account.config_problems)

    def test_configuration_check_unmappable_tax_and_missing_bank(self):
        tax_15 = self.tax_23.copy({"name": "VAT 15% test", "amount": 15.0})
        account = self.infakt_account
        account.bank_account_id = False
        messages = " ".join(message for _label, message in account._get_config_problems())
        self.assertNotIn(tax_15.name, messages, "a tax no product uses is no problem")
        self.product.taxes_id |= tax_15
        messages = " ".join(message for _label, message in account._get_config_problems())
        self.assertIn(tax_15.name, messages)
        self.assertIn("Refresh bank accounts", messages)
        tax_15.infakt_tax_symbol = "23"
        messages = " ".join(message for _label, message in account._get_config_problems())
        self.assertNotIn(tax_15.name, messages)

    def test_configuration_check_clean_account(self):
        account = self.infakt_account
        account.action_test_connection()
        account._webhook_mark_verified()
        self.assertEqual(account._get_config_problems(), [])
        self.assertFalse(account.has_config_problems)

    # --- connection test ------------------------------------------------------------------
    def test_connection_ok_reads_bank_accounts(self):
        self.infakt_account.bank_account_ids.unlink()
        self.infakt_account.action_test_connection()
        self.assertEqual(self.infakt_account.connection_state, "ok")
        self.assertTrue(self.infakt_account.bank_account_ids)
        self.assertEqual(self.infakt_account.bank_account_id,
                         self.infakt_account.bank_account_ids[:1])

    def test_connection_errors_in_words(self):
        account = self.infakt_account
        cases = [
            ({"api_key_new": "wrong-key"}, None, "rejected the API key"),
            ({"api_key_new": "no-plan"}, {"key": "no-plan", "plan_api": False}, "plan"),
            (
                {"api_key_new": "no-scope"},
                {"key": "no-scope", "scopes": ["api:accounting:read"]},
                "permission",
            ),
        ]
        for values, key_config, words in cases:
            keys = [API_KEY] + ([key_config] if key_config else [])
            self.simulator.configure(api_keys=keys)
            account.write(values)
            account.action_test_connection()
            self.assertEqual(account.connection_state, "failed")
            self.assertIn(words, account.connection_message)
        # Unreachable says nothing about the key: the account is not stopped, and the message
        # says what happened.
        account.write({"api_url": "http://127.0.0.1:9/api/v3", "api_key_new": API_KEY})
        account.action_test_connection()
        self.assertEqual(account.connection_state, "untested")
        self.assertIn("could not be reached", account.connection_message)
        # ... and that the key was not checked (not that it was rejected).
        self.assertIn("The API key was not checked", account.connection_message)
        self.assertNotIn("rejected", account.connection_message)

    def test_custom_url_must_end_in_api_v3(self):
        with self.assertRaises(ValidationError):
            self.infakt_account.api_url = "http://127.0.0.1:1234/"

    # --- secrets and access ---------------------------------------------------------------
    def test_secrets_are_for_administrators_only(self):
        salesman = new_test_user(
            self.env, login="salesman_infakt", groups="sales_team.group_sale_salesman",
            company_id=self.company.id, company_ids=[self.company.id],
        )
        account = self.infakt_account.with_user(salesman)
        self.assertEqual(account.name, "inFakt test")
        for field in ("api_key", "webhook_secret", "webhook_token"):
            with self.assertRaises(AccessError):
                account.read([field])
        self.assertNotIn("api_key", account.fields_get())
        with self.assertRaises(AccessError):
            account.write({"name": "hacked"})
        # The administrator reads them.
        self.assertEqual(self.infakt_account.sudo().api_key, API_KEY)

    def test_api_key_is_write_only(self):
        account = self.infakt_account
        self.assertTrue(account.api_key_set)
        self.assertFalse(account.api_key_new)
        account.api_key_new = "  new-key  "
        self.assertEqual(account.sudo().api_key, "new-key")
        account.invalidate_recordset()
        self.assertFalse(account.api_key_new)
        self.assertEqual(account.connection_state, "untested")

    def test_copy_and_export_leave_secrets_out(self):
        copy = self.infakt_account.copy({"name": "Copy", "series_ids": []})
        self.assertFalse(copy.sudo().api_key)
        self.assertFalse(copy.sudo().webhook_secret)
        self.assertNotEqual(copy.sudo().webhook_token, self.infakt_account.sudo().webhook_token)
        user = new_test_user(self.env, login="billing_infakt",
                             groups="account.group_account_invoice,base.group_allow_export",
                             company_id=self.company.id, company_ids=[self.company.id])
        with self.assertRaises(AccessError):
            self.infakt_account.with_user(user).export_data(["name", "api_key"])

    def test_webhook_url_and_regeneration(self):
        account = self.infakt_account
        base_url = self.env["ir.config_parameter"].sudo().get_param("web.base.url")
        token = account.sudo().webhook_token
        self.assertGreaterEqual(len(token), 40)
        self.assertEqual(account.webhook_url, f"{base_url}/infakt/webhook/{token}")
        account._webhook_mark_verified()
        account.action_regenerate_webhook_token()
        self.assertNotEqual(account.sudo().webhook_token, token)
        self.assertFalse(account.webhook_verified_at)
        self.assertNotIn(token, account.webhook_url)

    def test_neutralize_blanks_secrets(self):
        with file_open("l10n_pl_infakt/data/neutralize.sql") as sql:
            self.env.cr.execute(sql.read())
        self.env.invalidate_all()
        account = self.infakt_account.sudo()
        self.assertFalse(account.api_key)
        self.assertFalse(account.webhook_secret)
        self.assertEqual(account.environment, "sandbox")
        self.assertFalse(account.auto_send)

    def test_multi_company_isolation(self):
        other_company = self.env["res.company"].create({"name": "Other company"})
        user = new_test_user(self.env, login="other_co_infakt",
                             groups="account.group_account_manager",
                             company_id=other_company.id, company_ids=[other_company.id])
        accounts = self.env["infakt.account"].with_user(user).search([])
        self.assertNotIn(self.infakt_account, accounts)
        documents = self.env["infakt.document"].with_user(user).search([])
        self.assertFalse(documents)

    # --- mappings -------------------------------------------------------------------------
    def test_payment_method_resolution(self):
        account = self.infakt_account
        term = self.env.ref("account.account_payment_term_immediate")
        account.write({"payment_mapping_ids": [
            Command.create({"payment_term_id": term.id, "infakt_payment_method": "cash"}),
        ]})
        invoice = self.invoice_order(self.create_order(), post=False)
        self.assertEqual(self.env["infakt.payload"]._payment_method(invoice, account), "transfer")
        invoice.invoice_payment_term_id = term
        self.assertEqual(self.env["infakt.payload"]._payment_method(invoice, account), "cash")
        provider = self.env["payment.provider"].create({"name": "Przelewy24 test",
                                                        "company_id": self.company.id})
        account.write({"payment_mapping_ids": [
            Command.create({"payment_provider_id": provider.id,
                            "infakt_payment_method": "przelewy24"}),
        ]})
        method = self.env["payment.method"].search([("code", "=", "card")], limit=1) or \
            self.env["payment.method"].create({"name": "Card test", "code": "card_test"})
        self.env["payment.transaction"].create({
            "provider_id": provider.id,
            "payment_method_id": method.id,
            "amount": invoice.amount_total,
            "currency_id": invoice.currency_id.id,
            "partner_id": invoice.partner_id.id,
            "reference": "INFAKT-TX-1",
            "invoice_ids": [Command.set(invoice.ids)],
        })
        self.assertEqual(self.env["infakt.payload"]._payment_method(invoice, account), "przelewy24")
        account.payment_mapping_ids.filtered("is_default").unlink()
        invoice.transaction_ids.unlink()
        invoice.invoice_payment_term_id = False
        with self.assertRaisesRegex(UserError, "default line"):
            self.env["infakt.payload"]._payment_method(invoice, account)

    def test_duplicate_mapping_refused(self):
        with self.assertRaises(ValidationError):
            self.infakt_account.write({"payment_mapping_ids": [
                Command.create({"infakt_payment_method": "cash"}),
            ]})

    def test_tax_symbols(self):
        self.assertEqual(self.tax_23._get_infakt_tax_symbol(), "23")
        self.assertEqual(self.tax_8._get_infakt_tax_symbol(), "8")
        self.assertEqual(self.tax_zw._get_infakt_tax_symbol(), "zw")
        tax_7 = self.tax_23.copy({"name": "VAT 7% test", "amount": 7.0})
        self.assertFalse(tax_7._get_infakt_tax_symbol())
        tax_np = self.tax_23.copy({"name": "VAT np test", "amount": 0.0,
                                   "infakt_tax_symbol": "np"})
        self.assertEqual(tax_np._get_infakt_tax_symbol(), "np")

    def test_zw_line_carries_the_exemption_reason(self):
        order = self.create_order([(self.product, 1, 100.0, 0.0, self.tax_zw)])
        invoice = self.invoice_order(order)
        payload = self.env["infakt.payload"]._invoice(invoice, self.infakt_account)
        self.assertEqual(payload["services"][0]["tax_symbol"], "zw")
        self.assertEqual(payload["vat_exemption_reason"], 1)  # inFakt's integer id
