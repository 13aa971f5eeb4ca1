"""11. Secrets: the API key and the webhook secret never leak.

A full run with failures (rejected key, validation error, lost answers, timeouts, 5xx, rate
limits, webhook deliveries good and bad) is made with every log record captured at DEBUG;
then the key and the secret must appear nowhere: log records, chatter, activities, error and
connection messages, webhook events, HTTP answers, exports. Users without the system group
cannot read them (AccessError), and another company's accounts and documents are invisible.
"""

import json
import logging
from contextlib import contextmanager
from datetime import timedelta
from unittest.mock import patch

from odoo import Command, fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, new_test_user, tagged

from .. import const
from ..infakt_api.webhook import compute_signature
from .common import (
    API_KEY,
    InfaktCommon,
    InfaktWebhookMixin,
    load_simulator_module,
    wait_until,
)

SECRET_KEY = "sk-live-Q7v9TzK3pW2m-INFAKTKEY-8d41c6e0b3a5"
SECRET_HMAC = "whsec-Lx4Rb8Nq1Ye6-INFAKTHMAC-f09e27d5c1b8"
# Distinctive pieces too: a truncated or partial copy is a leak as well.
NEEDLES = (SECRET_KEY, SECRET_HMAC, "Q7v9TzK3pW2m", "8d41c6e0b3a5", "Lx4Rb8Nq1Ye6",
           "f09e27d5c1b8")
DEBUG_LOGGERS = ("", "odoo", "odoo.addons.l10n_pl_infakt", "urllib3", "requests", "werkzeug",
                 "odoo.http", "odoo.addons.mail")
# Odoo's SQL debug log prints every query with its parameters: that is core tooling for
# developers, not a log of this module.
QUIET_LOGGERS = {"odoo.sql_db": logging.INFO}


class _CaptureHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts = []

    def emit(self, record):
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a broken record is still looked at
            text = f"{record.msg!r}"
        self.texts.append(f"{text} {record.args!r}")


@contextmanager
def capture_all_logs():
    """Every record of every logger at DEBUG, without flooding the console."""
    root = logging.getLogger()
    handler = _CaptureHandler()
    saved_levels = {name: logging.getLogger(name).level
                    for name in (*DEBUG_LOGGERS, *QUIET_LOGGERS)}
    saved_handler_levels = [(h, h.level) for h in root.handlers]
    for h in root.handlers:
        h.setLevel(logging.WARNING)
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        for h, level in saved_handler_levels:
            h.setLevel(level)


@tagged("post_install", "-at_install")
class TestSecrets(InfaktWebhookMixin, InfaktCommon, HttpCase):
    @classmethod
    def _start_simulator(cls):
        module = load_simulator_module()
        cls.simulator = module.InfaktSimulator(
            port=0, api_keys=(API_KEY, SECRET_KEY), task_delay=0.0, quiet=True,
            webhook_retry_delay=0.2,
        ).start()
        cls.addClassCleanup(cls.simulator.stop)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.infakt_account.write({"api_key": SECRET_KEY, "webhook_secret": SECRET_HMAC})

    def setUp(self):
        super().setUp()
        self.texts = []  # everything a person or a log could see, gathered during the run

    # ------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------
    def assert_no_secret(self, texts, where):
        for index, text in enumerate(texts):
            text = str(text)
            for needle in NEEDLES:
                self.assertNotIn(needle, text, f"secret leaked in {where} #{index}: {text[:500]}")

    def post_invoice(self):
        invoice = self.env["account.move"].create({
            "move_type": "out_invoice",
            "partner_id": self.partner.id,
            "journal_id": self.journal.id,
            "invoice_line_ids": [Command.create({
                "product_id": self.product.id, "quantity": 1, "price_unit": 123.0,
                "tax_ids": [Command.set(self.tax_23.ids)]})],
        })
        invoice.action_post()
        return invoice

    def run_until_settled(self, moves, rounds=6):
        documents = moves.infakt_document_ids
        for _round in range(rounds):
            past = fields.Datetime.now() - timedelta(seconds=1)
            for document in documents.filtered(lambda d: d.state in ("to_send", "in_doubt")):
                document.sudo().next_attempt_at = past
            for document in documents.filtered(lambda d: d.state == "processing"):
                document.sudo().next_poll_at = past
            self.run_sender()
            self.simulator.flush(timeout=5)
            self.run_processor()
            if not set(documents.mapped("state")) & {"to_send", "sending", "processing",
                                                     "in_doubt"}:
                break

    def user_error(self, method, *args):
        try:
            method(*args)
        except UserError as error:
            self.texts.append(str(error))
            return error
        return None

    def webhook(self, body, **kwargs):
        response = self.post_webhook(body, **kwargs)
        self.texts.append(response.text)
        self.texts.append(dict(response.headers))
        return response

    # ------------------------------------------------------------------------------------
    # the run
    # ------------------------------------------------------------------------------------
    def _full_run_with_failures(self):
        account = self.infakt_account
        sim = self.simulator
        default_banks = load_simulator_module()._default_config()["bank_accounts"]

        # Connection test: fine, then the key is rejected, then inFakt is unreachable.
        self.texts.append(account.action_test_connection())
        self.assertEqual(account.connection_state, "ok")
        sim.configure(api_keys=["someone-else"])
        self.texts.append(account.action_test_connection())
        self.assertEqual(account.connection_state, "failed")
        self.texts.append(account.connection_message)
        self.user_error(account.action_refresh_bank_accounts)
        # Unreachable (the destination changes only while no document is on its way).
        base_url = account.api_url
        account.api_url = "http://127.0.0.1:9/api/v3"
        self.texts.append(account.action_test_connection())
        self.texts.append(account.connection_message)
        account.api_url = base_url
        self.texts.append(account.action_test_connection())
        self.assertEqual(account.connection_state, "failed")
        rejected = self.post_invoice()
        self.run_sender()
        # The account is stopped (one message on it); the document keeps its place.
        self.assertEqual(rejected.infakt_document_id.state, "to_send")
        self.texts.append(rejected.infakt_document_id.error_message)
        self.texts.extend(account.message_ids.mapped("body"))
        sim.configure(api_keys=[API_KEY, SECRET_KEY])
        self.texts.append(account.action_test_connection())

        # The key pasted again through the write-only field.
        account.sudo().api_key_new = SECRET_KEY
        self.assertEqual(account.sudo().api_key, SECRET_KEY)

        # Validation error, then fixed and sent again.
        sim.configure(bank_accounts=[{"id": 7, "account_number": "PL11 1111"}])
        invalid = self.post_invoice()
        self.run_until_settled(invalid)
        self.assertEqual(invalid.infakt_document_id.state, "error")
        sim.configure(bank_accounts=default_banks)
        # Both went out meanwhile (the account goes on once its key is fixed) and were refused
        # for the bank account: sent again after the fix.
        (rejected | invalid).infakt_document_id.filtered(
            lambda d: d.state == "error").action_send_again()

        # Lost answers, a 500 on a create, rate limits, 5xx and a timeout on reads.
        sim.add_fault(drop_after_create=1, reset=True)
        sim.add_fault(fail_next=1, status=500, methods=["POST"], path_contains="/async/")
        sim.add_fault(fail_next=1, status=429, methods=["POST"], path_contains="/async/",
                      headers={"Retry-After": "0.1"})
        sim.add_fault(fail_next=2, status=503, methods=["GET"])
        lost, failed, limited = self.post_invoice(), self.post_invoice(), self.post_invoice()
        moves = rejected | invalid | lost | failed | limited
        self.run_sender()
        for document in moves.infakt_document_ids:
            self.texts.append(document.error_message)
        with patch.object(const, "HTTP_READ_TIMEOUT", 0.5):
            sim.add_fault(timeout_next=1, seconds=1.5, methods=["GET"])
            timed_out = self.post_invoice()
            moves |= timed_out
            self.run_sender()
            self.run_processor()
        # The 500: in doubt, not found, sent again after the task window.
        for document in moves.infakt_document_ids.filtered(lambda d: d.state == "in_doubt"):
            document.sudo().sending_started_at = fields.Datetime.now() - timedelta(hours=1)
        self.run_until_settled(moves)
        self.assertEqual(set(moves.infakt_document_ids.mapped("state")) - {"cancelled"},
                         {"done"}, moves.infakt_document_ids.mapped("error_message"))

        # Webhooks: inFakt verifies the URL, then delivers signed events. (The deliveries
        # come while this test waits without touching the database.)
        sim.configure(webhook_url=self.base_url() + self.webhook_url(),
                      webhook_secret=SECRET_HMAC, task_delay=0.3)
        self.assertTrue(sim.verify_webhook()["verified"])
        notified = self.post_invoice()
        moves |= notified
        self.run_sender()
        wait_until(lambda: sim.state()["webhook_deliveries"]
                   and not sim.state()["webhook"]["pending"], timeout=10)
        self.run_until_settled(notified)
        self.assertEqual(notified.infakt_document_id.state, "done")
        deliveries = sim.state()["webhook_deliveries"]
        self.assertTrue(all(d["success"] for d in deliveries), deliveries)
        sim.configure(webhook_url=None)

        # Hostile webhook deliveries: bad signatures, the secret itself as the signature,
        # signatures made with the API key, no signature.
        event = self.event("invoice_paid", {"uuid": lost.infakt_document_id.infakt_uuid},
                           uuid="evt-secret-1")
        raw = json.dumps(event).encode()
        for kwargs in ({"secret": "wrong"}, {"signature": SECRET_HMAC},
                       {"signature": "sha256=" + SECRET_HMAC},
                       {"signature": compute_signature(SECRET_KEY, raw)},
                       {"secret": None}, {"signature": SECRET_KEY}):
            response = self.webhook(raw, **kwargs)
            self.assertEqual(response.status_code, 401, kwargs)
        self.assertEqual(self.webhook(raw, secret=SECRET_HMAC).status_code, 200)
        # Account housekeeping that writes to the chatter.
        account.action_regenerate_webhook_token()
        self.webhook({"verification_code": "ping"}, secret=None)
        self.run_processor()
        return moves

    # ------------------------------------------------------------------------------------
    # tests
    # ------------------------------------------------------------------------------------
    def test_secrets_appear_nowhere_after_a_run_with_failures(self):
        last_message = self.env["mail.message"].sudo().search([], order="id desc", limit=1).id
        last_activity = self.env["mail.activity"].sudo().search(
            [], order="id desc", limit=1).id
        with capture_all_logs() as logs:
            moves = self._full_run_with_failures()
        # The capture works: the module's own records were seen.
        joined = "\n".join(logs.texts)
        self.assertIn("infakt", joined.lower())
        self.assertIn("refused: bad signature", joined)
        self.assertTrue(any("/async/invoices.json" in text for text in logs.texts))
        self.assert_no_secret(logs.texts, "log records")

        Message = self.env["mail.message"].sudo()
        messages = Message.search([("id", ">", last_message)])
        # The engine tells each invoice's history (and the account's, when it stops it).
        self.assertTrue(messages.filtered(lambda m: m.model == "account.move"))
        self.assertTrue(messages.filtered(lambda m: m.model == "infakt.account"))
        self.assert_no_secret(messages.mapped("body"), "chatter bodies")
        self.assert_no_secret(messages.mapped("subject"), "chatter subjects")
        tracking = messages.tracking_value_ids
        self.assert_no_secret(tracking.mapped("old_value_char") + tracking.mapped("new_value_char")
                              + tracking.mapped("old_value_text")
                              + tracking.mapped("new_value_text"), "tracking values")
        activities = self.env["mail.activity"].sudo().search([("id", ">", last_activity)])
        self.assert_no_secret(activities.mapped("note") + activities.mapped("summary"),
                              "activities")

        documents = self.env["infakt.document"].sudo().search([])
        self.assertGreaterEqual(len(documents), len(moves))
        self.assert_no_secret(documents.mapped("error_message"), "document errors")
        self.assert_no_secret(moves.mapped("infakt_error_message"), "invoice banners")
        account = self.infakt_account.sudo()
        self.assert_no_secret(
            [account.connection_message, account.config_problems, account.webhook_url,
             account.display_name], "account fields")
        events = self.env["infakt.webhook.event"].sudo().search([])
        self.assertTrue(events)
        self.assert_no_secret([json.dumps(e.resource) for e in events] + events.mapped("note"),
                              "webhook events")
        self.assert_no_secret(self.texts, "answers, notifications and errors")

    def test_exports_and_reads_by_an_administrator_without_the_system_group(self):
        manager = new_test_user(
            self.env, "infakt_manager_ns",
            groups="base.group_user,account.group_account_manager,base.group_allow_export,"
                   "sales_team.group_sale_salesman",
            company_id=self.company.id, company_ids=[Command.set(self.company.ids)],
        )
        self.assertFalse(manager.has_group("base.group_system"))
        self.assertTrue(manager.has_group("l10n_pl_infakt.group_infakt_manager"))
        Account = self.env["infakt.account"].with_user(manager)
        account = self.infakt_account.with_user(manager)
        for secret_field in ("api_key", "webhook_secret", "api_key_new"):
            with self.assertRaises(AccessError, msg=secret_field):
                account.export_data(["name", secret_field])
            with self.assertRaises(AccessError, msg=secret_field):
                account.read([secret_field])
            if Account._fields[secret_field].store:  # no search oracle on the secrets
                with self.assertRaises(AccessError, msg=secret_field):
                    Account.search_count([(secret_field, "=like", "sk-%")])
        visible = Account.fields_get()
        self.assertNotIn("api_key", visible)
        self.assertNotIn("webhook_secret", visible)
        exportable = ["id"] + [name for name, description in visible.items()
                               if description["type"] not in ("one2many", "many2many")]
        exported = account.export_data(exportable)
        self.assert_no_secret([json.dumps(exported, default=str)], "export")
        self.assert_no_secret([json.dumps(account.read(), default=str)], "read")
        self.assert_no_secret([json.dumps(Account.search_read([]), default=str)], "search_read")
        # What the administrator may see tells whether the secrets are set, not them.
        self.assertTrue(account.api_key_set)
        self.assertTrue(account.webhook_secret_set)

    def test_user_without_administrator_rights(self):
        user = new_test_user(
            self.env, "infakt_invoicing_user",
            groups="base.group_user,account.group_account_invoice",
            company_id=self.company.id, company_ids=[Command.set(self.company.ids)],
        )
        self.assertFalse(user.has_group("l10n_pl_infakt.group_infakt_manager"))
        account = self.infakt_account.with_user(user)
        for secret_field in ("api_key", "webhook_secret"):
            with self.assertRaises(AccessError, msg=secret_field):
                account.read([secret_field])
            with self.assertRaises(AccessError, msg=secret_field):
                account.search_read([], [secret_field])
            with self.assertRaises(AccessError, msg=secret_field):
                self.env["infakt.account"].with_user(user).search(
                    [(secret_field, "=", SECRET_KEY)])
        self.assert_no_secret([json.dumps(account.read(), default=str)], "read")
        with self.assertRaises(AccessError):
            account.write({"name": "mine now"})
        with self.assertRaises(AccessError):
            self.env["infakt.webhook.event"].with_user(user).search([])

    def test_other_company_is_invisible(self):
        other = self.setup_other_company(name="inFakt other company")["company"]
        other_journal = self.env["account.journal"].search(
            [("company_id", "=", other.id), ("type", "=", "sale")], limit=1)
        other_account = self.env["infakt.account"].create({
            "name": "inFakt other",
            "company_id": other.id,
            "environment": "custom",
            "api_url": self.simulator.base_url,
            "api_key": "other-company-key",
            "webhook_secret": "other-company-secret",
            "series_ids": [Command.create({"journal_id": other_journal.id,
                                           "document_type": "invoice"})],
            "payment_mapping_ids": [Command.create({"infakt_payment_method": "cash"})],
        })
        other_invoice = self.env["account.move"].with_company(other).create({
            "move_type": "out_invoice",
            "partner_id": self.partner.id,
            "journal_id": other_journal.id,
            "invoice_line_ids": [Command.create({"name": "Usługa", "quantity": 1,
                                                 "price_unit": 10.0, "tax_ids": False})],
        })
        other_invoice.action_post()
        other_document = other_invoice.infakt_document_ids
        self.assertEqual(len(other_document), 1)
        other_event = self.env["infakt.webhook.event"].sudo().create({
            "account_id": other_account.id, "event_uuid": "evt-other", "name": "invoice_paid"})
        own_invoice = self.post_invoice()
        own_document = own_invoice.infakt_document_ids

        manager = new_test_user(
            self.env, "infakt_manager_company_1",
            groups="base.group_user,account.group_account_manager",
            company_id=self.company.id, company_ids=[Command.set(self.company.ids)],
        )
        both = new_test_user(
            self.env, "infakt_manager_both",
            groups="base.group_user,account.group_account_manager",
            company_id=self.company.id, company_ids=[Command.set((self.company | other).ids)],
        )
        for user, context in ((manager, {}), (both, {"allowed_company_ids": self.company.ids})):
            env = self.env(user=user, context=context)
            accounts = env["infakt.account"].search([])
            self.assertIn(self.infakt_account, accounts)
            self.assertNotIn(other_account, accounts)
            documents = env["infakt.document"].search([])
            self.assertIn(own_document, documents)
            self.assertNotIn(other_document, documents)
            self.assertNotIn(other_event, env["infakt.webhook.event"].search([]))
            self.assertFalse(env["infakt.series"].search(
                [("account_id", "=", other_account.id)]))
            self.assertFalse(env["infakt.payment.mapping"].search(
                [("account_id", "=", other_account.id)]))
            with self.assertRaises(AccessError):
                other_account.with_env(env).read(["name"])
            with self.assertRaises(AccessError):
                other_document.with_env(env).read(["state"])
            with self.assertRaises(AccessError):
                other_event.with_env(env).read(["name"])
            self.assertEqual(
                env["infakt.document"].search_count([("account_id", "=", other_account.id)]), 0)
        # With both companies active, the second user sees both.
        env = self.env(user=both, context={"allowed_company_ids": (self.company | other).ids})
        self.assertIn(other_account, env["infakt.account"].search([]))
