"""Least privilege (issue 12), tried as a real attacker would: real users of each group over
JSON-RPC (the browser's own ``/web/dataset/call_kw``), not ``with_user`` in Python.

- Where the API key goes (environment, API URL) is changed by Settings administrators only;
  nothing leaves for another host (a second simulator plays the attacker's server).
- The custom URL is https, or http to this machine (the simulator) or an allowed host.
- Documents are read by invoicing users only; nobody writes, creates or deletes them over RPC
  (the state cannot be forged, a done document cannot be switched to another invoice or type).
- Documents in flight are not deleted; a cancelled document never blocks deleting its draft.
- The webhook URL (the token) and the HMAC secret never reach a non-administrator, and the
  secret never reaches the browser at all.
"""

import json

from odoo import Command
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tests.common import JsonRpcException

from .common import API_KEY, WEBHOOK_SECRET, InfaktCommon, load_simulator_module

ATTACKER_URL = "https://attacker.example/api/v3"


@tagged("post_install", "-at_install")
class TestSecurity(InfaktCommon, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        company = {"company_id": cls.company.id, "company_ids": [Command.set(cls.company.ids)]}
        cls.users = {
            "employee": new_test_user(cls.env, "sec_employee", groups="base.group_user",
                                      **company),
            # A salesperson reads the invoices of their orders, but is not an invoicing user.
            "salesman": new_test_user(cls.env, "sec_salesman",
                                      groups="sales_team.group_sale_salesman", **company),
            "billing": new_test_user(cls.env, "sec_billing",
                                     groups="account.group_account_invoice", **company),
            "accountant": new_test_user(cls.env, "sec_accountant",
                                        groups="account.group_account_user", **company),
            "acc_admin": new_test_user(
                cls.env, "sec_acc_admin",
                groups="account.group_account_manager,sales_team.group_sale_salesman",
                **company),
            "settings": new_test_user(
                cls.env, "sec_settings",
                groups="base.group_system,account.group_account_invoice", **company),
        }

    # ------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------
    def rpc(self, who, model, method, *args, **kwargs):
        """``model.method(*args, **kwargs)`` over JSON-RPC as the user ``who``; returns the
        result, or the name of the exception class the server answered with."""
        login = self.users[who].login
        self.authenticate(login, login)
        try:
            return self.make_jsonrpc_request(f"/web/dataset/call_kw/{model}/{method}", {
                "model": model, "method": method, "args": list(args), "kwargs": kwargs,
            })
        except JsonRpcException as error:
            return str(error).rsplit(".", 1)[-1]

    def assert_refused(self, result, expected=("AccessError",), msg=None):
        self.assertIn(result, expected, msg)

    def post_invoice(self, price=100.0):
        invoice = self.env["account.move"].create({
            "move_type": "out_invoice",
            "partner_id": self.partner.id,
            "journal_id": self.journal.id,
            "invoice_user_id": self.users["billing"].id,
            "invoice_line_ids": [Command.create({
                "product_id": self.product.id, "quantity": 1, "price_unit": price,
                "tax_ids": [Command.set(self.tax_23.ids)]})],
        })
        invoice.action_post()
        return invoice

    def done_invoice(self):
        invoice = self.post_invoice()
        self.send_and_complete(invoice)
        self.assertEqual(invoice.infakt_state, "done")
        return invoice

    def start_attacker(self):
        """A second simulator: the attacker's server (it logs every request it gets)."""
        attacker = load_simulator_module().InfaktSimulator(
            port=0, api_keys=("anything",), task_delay=0.0, quiet=True).start()
        self.addCleanup(attacker.stop)
        return attacker

    # ------------------------------------------------------------------------------------
    # 1. where the key goes
    # ------------------------------------------------------------------------------------
    def test_destination_reserved_to_settings_administrators(self):
        account = self.infakt_account
        attacker = self.start_attacker()
        legit_url = account.sudo().api_url
        for who in ("employee", "billing", "accountant", "acc_admin"):
            for values in ({"environment": "custom", "api_url": attacker.base_url},
                           {"api_url": attacker.base_url}, {"environment": "sandbox"}):
                self.assert_refused(self.rpc(who, "infakt.account", "write", [account.id],
                                             values), msg=f"{who} {values}")
            # Reading the destination is refused too (it is not an oracle either).
            self.assert_refused(self.rpc(who, "infakt.account", "read", [account.id],
                                         ["api_url"]), msg=who)
            self.assert_refused(self.rpc(who, "infakt.account", "search_count",
                                         [("api_url", "ilike", "127.0.0.1")]), msg=who)
        # Buttons that talk to inFakt or change the account: inFakt administrators only,
        # refused before any request leaves.
        requests_before = len(self.sim_requests())
        for who in ("employee", "billing", "accountant"):
            for method in ("action_test_connection", "action_refresh_bank_accounts",
                           "action_refresh_lists"):
                self.assert_refused(self.rpc(who, "infakt.account", method, [account.id]),
                                    msg=f"{who} {method}")
        self.assert_refused(self.rpc("employee", "infakt.account", "action_send_pending",
                                     [account.id]))
        self.assertEqual(len(self.sim_requests()), requests_before)
        # An Accounting Administrator creates accounts, but not one with its own destination.
        self.assert_refused(self.rpc("acc_admin", "infakt.account", "create", {
            "name": "mine", "environment": "custom", "api_url": attacker.base_url}))
        # ...and the Test connection it may click goes to the configured host only.
        requests_before = len(self.sim_requests())
        result = self.rpc("acc_admin", "infakt.account", "action_test_connection",
                          [account.id])
        self.assertIsInstance(result, dict, result)
        self.assertEqual(account.sudo().api_url, legit_url)
        self.assertEqual(attacker.state()["requests"], [])
        self.assertGreater(len(self.sim_requests()), requests_before)
        self.assertEqual(account.connection_state, "ok")
        # The Settings administrator may change it.
        self.assertTrue(self.rpc("settings", "infakt.account", "write", [account.id],
                                 {"api_url": attacker.base_url}))
        self.assertEqual(account.sudo().api_url, attacker.base_url)
        self.assertEqual(account.connection_state, "untested")

    def test_destination_not_changed_while_documents_are_on_their_way(self):
        account = self.infakt_account
        attacker = self.start_attacker()
        invoice = self.post_invoice()
        self.assertEqual(invoice.infakt_state, "to_send")
        for values in ({"api_url": attacker.base_url}, {"environment": "sandbox"}):
            self.assertEqual(self.rpc("settings", "infakt.account", "write", [account.id],
                                      values), "UserError")
        # The same URL written again is no change.
        self.assertTrue(self.rpc("settings", "infakt.account", "write", [account.id],
                                 {"api_url": account.sudo().api_url}))
        self.send_and_complete(invoice)
        self.assertEqual(invoice.infakt_state, "done")
        self.assertEqual(attacker.state()["requests"], [])
        self.assertTrue(self.rpc("settings", "infakt.account", "write", [account.id],
                                 {"api_url": attacker.base_url}))

    def test_custom_url_https_or_loopback(self):
        account = self.infakt_account
        Account = self.env["infakt.account"]
        for url in ("https://infakt.example.com/api/v3", "http://127.0.0.1:8070/api/v3",
                    "http://localhost:8070/api/v3", "http://[::1]:8070/api/v3"):
            self.assertTrue(Account.check_custom_api_url(url), url)
        for url in ("http://10.0.0.5/api/v3", "http://simulator:8070/api/v3",
                    "http://169.254.169.254/api/v3", "ftp://127.0.0.1/api/v3",
                    "https://infakt.example.com/other", "http://127.0.0.1.evil.example/api/v3"):
            with self.assertRaises(Exception, msg=url) as caught:
                Account.check_custom_api_url(url)
            self.assertEqual(type(caught.exception).__name__, "ValidationError", url)
        self.assertEqual(self.rpc("settings", "infakt.account", "write", [account.id],
                                  {"api_url": "http://simulator:8070/api/v3"}),
                         "ValidationError")
        # A simulator in a container: its host is allowed by a system parameter.
        self.env["ir.config_parameter"].sudo().set_param(
            "l10n_pl_infakt.http_hosts", "other.local, simulator")
        self.assertTrue(self.rpc("settings", "infakt.account", "write", [account.id],
                                 {"api_url": "http://simulator:8070/api/v3"}))

    def test_connection_message_does_not_reflect_a_foreign_body(self):
        from ..infakt_api import errors as infakt_errors

        account = self.infakt_account.sudo()
        error = infakt_errors.InfaktUnexpectedResponse(
            "<html>internal admin panel: db password hunter2</html>", status=500)
        # The simulator (loopback) is the developer's own inFakt: its words are shown.
        self.assertIn("hunter2", account._describe_error(error))
        account.api_url = "https://intranet.example/api/v3"
        message = account._describe_error(error)
        self.assertNotIn("hunter2", message)
        self.assertIn("HTTP 500", message)

    # ------------------------------------------------------------------------------------
    # 2. documents
    # ------------------------------------------------------------------------------------
    def test_documents_readable_by_invoicing_users_only(self):
        invoice = self.done_invoice()
        document = invoice.infakt_document_id
        for who in ("employee", "salesman"):
            self.assert_refused(self.rpc(who, "infakt.document", "search_read", [],
                                         ["infakt_number", "partner_id"]), msg=who)
            self.assert_refused(self.rpc(who, "infakt.document", "read", [document.id],
                                         ["error_message"]), msg=who)
        for who in ("billing", "accountant", "acc_admin", "settings"):
            rows = self.rpc(who, "infakt.document", "search_read",
                            [("id", "=", document.id)], ["infakt_number", "state"])
            self.assertEqual(rows[0]["state"], "done", who)
        # The salesperson still sees the inFakt status of their invoice (related, sudo).
        invoice.invoice_user_id = self.users["salesman"]
        rows = self.rpc("salesman", "account.move", "read", [invoice.id], ["infakt_state"])
        self.assertEqual(rows, [{"id": invoice.id, "infakt_state": "done"}])

    def test_salesperson_screens_without_document_access(self):
        """A salesperson (no access to the documents) still opens and filters orders and
        invoices: what they show of inFakt is computed in sudo, and the buttons that open
        documents are not theirs."""
        order = self.create_order()
        order.user_id = self.users["salesman"]
        invoice = self.invoice_order(order)
        invoice.invoice_user_id = self.users["salesman"]
        self.send_and_complete(invoice)
        self.assertEqual(invoice.infakt_state, "done")
        rows = self.rpc("salesman", "sale.order", "search_read",
                        [("infakt_state", "=", "ok")], ["infakt_state", "infakt_document_count"])
        self.assertEqual([(r["id"], r["infakt_state"], r["infakt_document_count"])
                          for r in rows], [(order.id, "ok", 1)])
        self.assertEqual(self.rpc("salesman", "sale.order", "search_count",
                                  [("infakt_state", "=", "error")]), 0)
        for model, record in (("sale.order", order), ("account.move", invoice)):
            views = self.rpc("salesman", model, "get_views", [[False, "form"]])
            arch = views["views"]["form"]["arch"]
            self.assertNotIn("infakt_documents", arch, model)
            self.assertIsInstance(self.rpc("salesman", model, "web_read", [record.id],
                                           specification={"infakt_state": {}}), list, model)

    def test_state_and_identity_cannot_be_forged(self):
        invoice = self.done_invoice()
        document = invoice.infakt_document_id
        other = self.post_invoice(price=50.0)
        forged = ({"state": "error"}, {"document_type": "correction"},
                  {"move_id": other.id}, {"infakt_number": "FV 1/2000"},
                  {"state": "cancelled", "error_message": "x"})
        for who in ("billing", "accountant", "acc_admin", "settings"):
            for values in forged:
                self.assert_refused(self.rpc(who, "infakt.document", "write", [document.id],
                                             values), msg=f"{who} {values}")
            self.assert_refused(self.rpc(who, "infakt.document", "create", {
                "move_id": other.id, "account_id": self.infakt_account.id,
                "state": "done"}), msg=who)
            self.assert_refused(self.rpc(who, "infakt.document", "unlink", [document.id]),
                                msg=who)
        document.invalidate_recordset()
        self.assertEqual((document.state, document.document_type, document.move_id),
                         ("done", "invoice", invoice))
        # So the invoice stays locked: no reset to draft.
        self.assertEqual(self.rpc("billing", "account.move", "button_draft", [invoice.id]),
                         "UserError")
        self.assertEqual(invoice.state, "posted")
        # The form shows the identity fields read-only (model fields, also in views).
        fields = self.env["infakt.document"].fields_get(
            ["move_id", "account_id", "document_type", "number", "infakt_uuid", "infakt_id",
             "infakt_number", "state"], ["readonly"])
        self.assertTrue(all(f["readonly"] for f in fields.values()), fields)

    def test_actions_check_the_group_in_code(self):
        invoice = self.post_invoice()
        document = invoice.infakt_document_id
        document.sudo()._infakt_to_error("fix the customer")
        # A salesperson reads the invoice, but cannot send it again (the button is hidden;
        # the method refuses too).
        self.assert_refused(self.rpc("salesman", "account.move", "action_infakt_send_again",
                                     [invoice.id]))
        self.assert_refused(self.rpc("salesman", "account.move", "action_infakt_check",
                                     [invoice.id]))
        self.assert_refused(self.rpc("employee", "infakt.document", "action_send_again",
                                     [document.id]))
        self.assertEqual(document.state, "error")
        self.assertTrue(self.rpc("billing", "account.move", "action_infakt_send_again",
                                 [invoice.id]))
        document.invalidate_recordset()
        self.assertEqual(document.state, "to_send")
        # Only a Settings administrator makes a new webhook URL.
        token = self.infakt_account.sudo().webhook_token
        for who in ("billing", "acc_admin"):
            self.assert_refused(self.rpc(who, "infakt.account",
                                         "action_regenerate_webhook_token",
                                         [self.infakt_account.id]), msg=who)
        self.assertEqual(self.infakt_account.sudo().webhook_token, token)
        self.rpc("settings", "infakt.account", "action_regenerate_webhook_token",
                 [self.infakt_account.id])
        self.assertNotEqual(self.infakt_account.sudo().webhook_token, token)

    def test_only_cancelled_or_error_documents_deleted_by_managers(self):
        done = self.done_invoice().infakt_document_id
        waiting = self.post_invoice(price=70.0)
        in_error = self.post_invoice(price=80.0).infakt_document_id
        in_error.sudo()._infakt_to_error("refused")
        self.assert_refused(self.rpc("billing", "infakt.document", "action_delete",
                                     [in_error.id]))
        for document in (done, waiting.infakt_document_id):
            self.assertEqual(self.rpc("acc_admin", "infakt.document", "action_delete",
                                      [document.id]), "UserError", document.state)
            self.assertTrue(document.exists())
        self.assertTrue(self.rpc("acc_admin", "infakt.document", "action_delete",
                                 [in_error.id]))
        self.assertFalse(in_error.exists())
        # The action of the list and form (inFakt administrators only).
        draft = self.post_invoice(price=90.0)
        cancelled = draft.infakt_document_id
        draft.button_draft()
        self.assertEqual(cancelled.state, "cancelled")
        action = self.env.ref("l10n_pl_infakt.infakt_document_action_delete")
        context = {"active_model": "infakt.document", "active_ids": [cancelled.id],
                   "active_id": cancelled.id}
        self.assert_refused(self.rpc("billing", "ir.actions.server", "run", [action.id],
                                     context=context))
        self.assertTrue(cancelled.exists())
        self.rpc("acc_admin", "ir.actions.server", "run", [action.id], context=context)
        self.assertFalse(cancelled.exists())
        # Not even the superuser deletes a document that is in inFakt.
        with self.assertRaises(Exception) as caught:
            done.sudo().unlink()
        self.assertEqual(type(caught.exception).__name__, "UserError")

    def test_cancelled_document_does_not_block_deleting_the_draft(self):
        invoice = self.post_invoice()
        document = invoice.infakt_document_id
        self.assertEqual(document.state, "to_send")
        self.rpc("billing", "account.move", "button_draft", [invoice.id])
        self.assertEqual(invoice.state, "draft")
        self.assertEqual(document.state, "cancelled")
        self.assertTrue(self.rpc("billing", "account.move", "unlink", [invoice.id]))
        self.assertFalse(invoice.exists())
        self.assertFalse(document.exists())

    def test_billing_user_flow_still_works(self):
        """Read-only documents do not get in a Billing user's way: reset a waiting invoice,
        change it, post it again (a new document is queued by the engine)."""
        invoice = self.post_invoice()
        first = invoice.infakt_document_id
        self.rpc("billing", "account.move", "button_draft", [invoice.id])
        self.assertTrue(self.rpc("billing", "account.move", "write", [invoice.id],
                                 {"ref": "PO-7"}))
        self.assertFalse(self.rpc("billing", "account.move", "action_post", [invoice.id]))
        self.assertEqual(first.state, "cancelled")
        second = invoice.infakt_document_id
        self.assertNotEqual(second, first)
        self.assertEqual((second.state, second.name), ("to_send", invoice.name))

    # ------------------------------------------------------------------------------------
    # 3. webhook URL and secret
    # ------------------------------------------------------------------------------------
    def test_webhook_url_and_secret_never_reach_non_administrators(self):
        account = self.infakt_account
        token = account.sudo().webhook_token
        for who in ("employee", "billing", "acc_admin"):
            for field in ("webhook_url", "webhook_secret", "webhook_secret_new",
                          "webhook_token"):
                self.assert_refused(self.rpc(who, "infakt.account", "read", [account.id],
                                             [field]), msg=f"{who} {field}")
        # What the Accounting Administrator's form loads holds neither the token nor the
        # secret, and the form says whether a secret is stored.
        views = self.rpc("acc_admin", "infakt.account", "get_views", [[False, "form"]])
        arch = views["views"]["form"]["arch"]
        for field in ("webhook_url", "webhook_secret", "webhook_secret_new", "environment",
                      "api_url", "api_key_new"):
            self.assertNotIn(f'name="{field}"', arch)
        specification = {name: {} for name in views["models"]["infakt.account"]["fields"]
                         if name not in ("series_ids", "payment_mapping_ids",
                                         "bank_account_ids", "document_ids",
                                         "vat_exemption_ids", "message_ids",
                                         "message_follower_ids")}
        loaded = self.rpc("acc_admin", "infakt.account", "web_read", [account.id],
                          specification=specification)
        dumped = json.dumps(loaded)
        self.assertNotIn(token, dumped)
        self.assertNotIn(WEBHOOK_SECRET, dumped)
        self.assertNotIn(API_KEY, dumped)
        self.assertTrue(loaded[0]["webhook_secret_set"])
        # Where the documents go is told (not the URL's path, and it cannot be changed).
        self.assertIn('name="destination"', arch)
        self.assertEqual(loaded[0]["destination"], "Custom URL (127.0.0.1)")

    def test_webhook_secret_is_write_only(self):
        account = self.infakt_account
        views = self.rpc("settings", "infakt.account", "get_views", [[False, "form"]])
        arch = views["views"]["form"]["arch"]
        self.assertIn('name="webhook_secret_new"', arch)
        self.assertIn('name="webhook_url"', arch)
        self.assertNotIn('name="webhook_secret"', arch)
        self.assertNotIn('name="destination"', arch)
        fields = [name for name in views["models"]["infakt.account"]["fields"]
                  if name not in ("message_ids", "message_follower_ids")]
        loaded = self.rpc("settings", "infakt.account", "web_read", [account.id],
                          specification={name: {} for name in fields})
        self.assertNotIn(WEBHOOK_SECRET, json.dumps(loaded))
        self.assertFalse(loaded[0]["webhook_secret_new"])
        self.assertIn(account.sudo().webhook_token, loaded[0]["webhook_url"])
        # Pasted, stored, never shown again.
        self.assertTrue(self.rpc("settings", "infakt.account", "web_save", [account.id],
                                 {"webhook_secret_new": "  whsec-new-one "},
                                 specification={"webhook_secret_new": {}}))
        self.assertEqual(account.sudo().webhook_secret, "whsec-new-one")
        loaded = self.rpc("settings", "infakt.account", "web_read", [account.id],
                          specification={"webhook_secret_new": {}, "webhook_secret_set": {}})
        self.assertEqual(loaded[0]["webhook_secret_new"], False)
        self.assertTrue(loaded[0]["webhook_secret_set"])
