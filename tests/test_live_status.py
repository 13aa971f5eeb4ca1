"""Live status: who hears about a document that moved, when, and how often; and the wake-up of
the scheduled actions when the server starts with documents waiting."""

import json
import select
import time

import odoo
from odoo import Command, fields
from odoo.tests import HttpCase, new_test_user, tagged

from ..models.infakt_document_live import NOTIFICATION_TYPE, SUBCHANNEL
from ..models.infakt_document_wakeup import notify_crons_when_ready
from .common import InfaktCommon


@tagged("post_install", "-at_install")
class TestLiveStatus(InfaktCommon):
    def company_channel(self, company):
        return json.dumps((self.env.cr.dbname, "res.company", company.id, SUBCHANNEL),
                          separators=(",", ":"))

    def live_messages(self, after_id):
        """The inFakt bus messages written since ``after_id``, as (channel, payload)."""
        # Odoo's bus writes its messages when the transaction commits: run that part now.
        self.env.cr.precommit.run()
        messages = self.env["bus.bus"].sudo().search([("id", ">", after_id)], order="id")
        result = []
        for message in messages:
            content = json.loads(message.message)
            if content["type"] == NOTIFICATION_TYPE:
                result.append((message.channel, content["payload"]))
        return result

    def last_bus_id(self):
        self.env.cr.precommit.run()
        return self.env["bus.bus"].sudo().search([], order="id desc", limit=1).id or 0

    def test_company_channel_follows_the_document(self):
        order = self.create_order()
        invoices = self.invoice_order(order) | self.invoice_order(self.create_order())
        start = self.last_bus_id()
        self.send_and_complete(invoices)
        documents = invoices.infakt_document_id
        self.assertEqual(set(documents.mapped("state")), {"done"})
        messages = self.live_messages(start)
        self.assertTrue(messages)
        self.assertEqual({channel for channel, _payload in messages},
                         {self.company_channel(self.company)})
        last = {}
        for _channel, payload in messages:
            last.update({doc["id"]: doc for doc in payload["documents"]})
        self.assertEqual(set(last), set(documents.ids))
        first = last[order.invoice_ids.infakt_document_id.id]
        self.assertEqual(first["move_id"], order.invoice_ids.id)
        self.assertEqual(first["sale_order_ids"], order.ids)
        self.assertEqual({doc["state"] for doc in last.values()}, {"done"})

    def test_one_message_per_company_and_transaction(self):
        invoices = self.invoice_order(self.create_order()) | self.invoice_order(
            self.create_order())
        documents = invoices.infakt_document_id
        start = self.last_bus_id()
        for document in documents:
            document._infakt_transition("sending", {"sending_started_at": fields.Datetime.now()})
            document._infakt_to_error("Refused")
        messages = self.live_messages(start)
        self.assertEqual(len(messages), 1, "four changes, one commit, one message")
        payload = messages[0][1]
        self.assertEqual(sorted(doc["id"] for doc in payload["documents"]), sorted(documents.ids))
        self.assertEqual({doc["state"] for doc in payload["documents"]}, {"error"})

    def test_posting_sends_nothing(self):
        start = self.last_bus_id()
        invoice = self.invoice_order(self.create_order())
        self.assertEqual(invoice.infakt_state, "to_send")
        self.assertFalse(self.live_messages(start))

    def test_rolled_back_change_is_not_announced(self):
        invoice = self.invoice_order(self.create_order())
        document = invoice.infakt_document_id
        start = self.last_bus_id()
        with self.env.cr.savepoint() as savepoint:
            document._infakt_to_error("Nope")
            savepoint.rollback()
        self.assertFalse(self.live_messages(start))
        document.invalidate_recordset()
        document._infakt_to_error("Now for real")
        self.assertEqual([p["documents"][0]["state"] for _c, p in self.live_messages(start)],
                         ["error"])

    def test_each_company_hears_only_its_documents(self):
        other_company = self.env["res.company"].create({"name": "Inna Firma"})
        invoice = self.invoice_order(self.create_order())
        start = self.last_bus_id()
        invoice.infakt_document_id._infakt_to_error("Refused")
        channels = [channel for channel, _payload in self.live_messages(start)]
        self.assertEqual(channels, [self.company_channel(self.company)])

        Live = self.env["infakt.document.live"]
        accountant = new_test_user(self.env, "live_accountant",
                                   groups="account.group_account_invoice",
                                   company_id=self.company.id,
                                   company_ids=[Command.set(self.company.ids)])
        both = new_test_user(self.env, "live_both", groups="base.group_user",
                             company_id=self.company.id,
                             company_ids=[Command.set((self.company | other_company).ids)])
        other = new_test_user(self.env, "live_other", groups="base.group_user",
                              company_id=other_company.id,
                              company_ids=[Command.set(other_company.ids)])
        portal = new_test_user(self.env, "live_portal", groups="base.group_portal",
                               company_id=self.company.id,
                               company_ids=[Command.set(self.company.ids)])
        self.assertEqual(Live._bus_channels(accountant), [(self.company, SUBCHANNEL)])
        self.assertEqual(set(Live._bus_channels(both)),
                         {(self.company, SUBCHANNEL), (other_company, SUBCHANNEL)})
        self.assertEqual(Live._bus_channels(other), [(other_company, SUBCHANNEL)])
        self.assertEqual(Live._bus_channels(portal), [], "customers never hear about documents")

    # ------------------------------------------------------------------------------------------
    # The scheduled actions at server start
    # ------------------------------------------------------------------------------------------
    def cron_triggers(self, xmlid):
        cron = self.env.ref(xmlid)
        return self.env["ir.cron.trigger"].search(
            [("cron_id", "=", cron.id), ("call_at", "<=", fields.Datetime.now())])

    def test_start_triggers_the_sender_when_documents_wait(self):
        Wakeup = self.env["infakt.document.wakeup"]
        self.env["ir.cron.trigger"].search([]).unlink()
        self.env["infakt.document"].sudo().search([]).write({"state": "done", "pdf_pending": False})
        self.assertFalse(Wakeup._trigger_waiting_work(), "nothing waits: no trigger")
        self.assertFalse(self.cron_triggers("l10n_pl_infakt.ir_cron_infakt_send"))

        self.invoice_order(self.create_order())
        self.env["ir.cron.trigger"].search([]).unlink()
        self.assertTrue(Wakeup._trigger_waiting_work())
        self.assertTrue(self.cron_triggers("l10n_pl_infakt.ir_cron_infakt_send"))
        self.assertFalse(self.cron_triggers("l10n_pl_infakt.ir_cron_infakt_process"))

    def test_cron_threads_woken_once_the_registry_is_ready(self):
        dbname = self.env.cr.dbname
        # Odoo's cron threads LISTEN on the 'postgres' database: so does this test.
        with odoo.sql_db.db_connect("postgres").cursor() as cr:
            cr.execute("LISTEN cron_trigger")
            # LISTEN takes effect at commit (a connection of its own, not the test's).
            cr.commit()  # pylint: disable=invalid-commit
            self.assertFalse(notify_crons_when_ready("no_such_database", timeout=0.3),
                             "never ready: no wake-up")
            self.assertTrue(notify_crons_when_ready(dbname, timeout=5))
            connection = cr._cnx
            deadline = time.monotonic() + 10
            payloads = []
            while dbname not in payloads and time.monotonic() < deadline:
                select.select([connection], [], [], 1)
                connection.poll()
                payloads += [n.payload for n in connection.notifies]
                connection.notifies.clear()
            self.assertIn(dbname, payloads)


@tagged("post_install", "-at_install")
class TestLiveStatusDelivery(InfaktCommon, HttpCase):
    """The messages as Odoo's bus delivers them to each user (its channels built by the server,
    as for the websocket; /websocket/peek_notifications is the same path without one)."""

    def received(self, login, last):
        self.authenticate(login, login)
        result = self.make_jsonrpc_request(
            "/websocket/peek_notifications", {"channels": [], "last": last, "is_first_poll": True})
        return [n["message"]["payload"] for n in result["notifications"]
                if n["message"]["type"] == NOTIFICATION_TYPE]

    def test_only_the_company_users_receive_it(self):
        other_company = self.env["res.company"].create({"name": "Inna Firma"})
        new_test_user(self.env, "live_accountant", groups="account.group_account_invoice",
                      company_id=self.company.id, company_ids=[Command.set(self.company.ids)])
        new_test_user(self.env, "live_other", groups="account.group_account_invoice",
                      company_id=other_company.id, company_ids=[Command.set(other_company.ids)])
        new_test_user(self.env, "live_portal", groups="base.group_portal",
                      company_id=self.company.id, company_ids=[Command.set(self.company.ids)])
        invoice = self.invoice_order(self.create_order())
        self.env.cr.precommit.run()
        last = self.env["bus.bus"].sudo().search([], order="id desc", limit=1).id
        invoice.infakt_document_id._infakt_to_error("Refused")
        self.env.cr.precommit.run()

        received = self.received("live_accountant", last)
        self.assertEqual(len(received), 1)
        self.assertEqual(received[0]["documents"][0]["move_id"], invoice.id)
        self.assertEqual(received[0]["documents"][0]["state"], "error")
        self.assertFalse(self.received("live_other", last), "another company's user")
        self.assertFalse(self.received("live_portal", last), "a customer")
