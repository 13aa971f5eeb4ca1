"""inFakt's limits are shared fairly: PDFs are never held back by unrelated work, KSeF and task
checks end in a visible "check in inFakt", one pacer serves every account of one inFakt host,
and accounts are served in turn (review A10)."""

from datetime import timedelta

from odoo import Command, fields
from odoo.tests import tagged

from .. import const
from .common import API_KEY, InfaktCommon


@tagged("post_install", "-at_install")
class TestReadsShared(InfaktCommon):
    def other_account(self, **values):
        journal = self.journal.copy({"name": "Shop sales", "code": "SHOP"})
        account = self.env["infakt.account"].create({
            "name": "inFakt shop",
            "company_id": self.company.id,
            "environment": "custom",
            "api_url": self.simulator.base_url,
            "api_key": API_KEY,
            "rate_limit_window": 1,
            "series_ids": [Command.create({"journal_id": journal.id,
                                           "document_type": "invoice"})],
            "payment_mapping_ids": [Command.create({"infakt_payment_method": "cash"})],
            **values,
        })
        return account, journal

    def post_in(self, journal, count):
        moves = self.env["account.move"].create([{
            "move_type": "out_invoice",
            "partner_id": self.partner.id,
            "journal_id": journal.id,
            "invoice_line_ids": [Command.create({
                "product_id": self.product.id, "quantity": 1, "price_unit": 10.0 + index,
                "tax_ids": [Command.set(self.tax_23.ids)],
            })],
        } for index in range(count)])
        moves.action_post()
        return moves

    def test_pdf_not_held_back_by_documents_waiting_elsewhere(self):
        """A document waiting in backoff (here: another account's, due in an hour) does not
        hold back the PDF of a document that is done."""
        _shop, shop_journal = self.other_account()
        waiting = self.post_in(shop_journal, 1).infakt_document_id
        waiting.sudo().write({"next_attempt_at": fields.Datetime.now() + timedelta(hours=1)})
        invoice = self.invoice_order(self.create_order())
        self.run_sender()
        self.simulator.flush(timeout=5)
        self.run_processor()
        document = invoice.infakt_document_id
        self.assertEqual(document.state, "done")
        self.assertTrue(document.pdf_attachment_id, "the PDF came in the same run")
        self.assertEqual(waiting.state, "to_send")

    def test_ksef_checks_end_in_check_manually(self):
        self.infakt_account.send_to_ksef = True
        self.simulator.configure(ksef_outcome="pending-forever")
        invoice = self.invoice_order(self.create_order())
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done")
        self.assertEqual(document.ksef_state, "pending")
        self.advance_clock(document)
        self.run_processor(time_budget=2)
        self.assertEqual(document.ksef_state, "pending", "pending for hours is waiting")
        reads = len(self.sim_requests("GET", "/ksef2/"))
        self.assertGreater(reads, 0)
        # A week later inFakt still says pending: the module stops reading and says so.
        document.sudo().write({"done_at": fields.Datetime.now() - timedelta(
            days=const.KSEF_MAX_DAYS, hours=1)})
        self.advance_clock(document)
        self.run_processor(time_budget=2)
        self.assertEqual(document.ksef_state, "manual")
        self.assertFalse(document.ksef_next_check_at)
        self.assertTrue(invoice.message_ids.filtered(lambda m: "Check it in inFakt" in m.body))
        reads = len(self.sim_requests("GET", "/ksef2/"))
        self.advance_clock(document)
        self.run_processor(time_budget=2)
        self.assertEqual(len(self.sim_requests("GET", "/ksef2/")), reads, "no more reads")
        # The person checks; the button starts the reads again.
        document.action_check_in_infakt()
        self.assertEqual(document.ksef_state, "pending")

    def test_retired_ksef_endpoint_is_said_once(self):
        """inFakt retired the endpoint (410): said in words, never read again and again."""
        self.infakt_account.send_to_ksef = True
        self.simulator.configure(ksef_outcome="pending-forever")
        self.simulator.add_fault(fail_next=5, status=410, methods=["GET"],
                                 path_contains="/ksef2/")
        invoice = self.invoice_order(self.create_order())
        document = self.send_and_complete(invoice)
        self.assertEqual(document.ksef_state, "manual")
        self.assertEqual(len(self.sim_requests("GET", "/ksef2/")), 1)
        self.assertTrue(invoice.message_ids.filtered(
            lambda m: "no longer offers" in m.body))

    def test_task_polls_end_in_check_manually(self):
        self.simulator.configure(task_delay=10**6)
        invoice = self.invoice_order(self.create_order())
        self.run_sender()
        document = invoice.infakt_document_id
        self.assertEqual(document.state, "processing")
        document.sudo().write({"sent_at": fields.Datetime.now() - timedelta(
            hours=const.POLL_MAX_HOURS, minutes=1)})
        self.advance_clock(document)
        self.run_processor(time_budget=2)
        self.assertEqual(document.state, "processing", "uncertain: never an error")
        self.assertTrue(document.check_manually)
        self.assertTrue(invoice.infakt_check_manually)
        self.assertFalse(document.next_poll_at)

    def test_one_pacer_for_every_account_of_one_host(self):
        """inFakt limits per source address: two accounts on one inFakt host share one pace,
        so together they never exceed the limit (here 4 writes a second)."""
        self.simulator.configure(rate_window=1.0, rate_limit_write=4)
        self.infakt_account.rate_limit_write = 4
        shop, shop_journal = self.other_account(rate_limit_write=4)
        moves = self.post_in(self.journal, 5) | self.post_in(shop_journal, 5)
        self.send_and_complete(moves, rounds=10)
        statuses = [r["status"] for r in self.sim_requests("POST")]
        self.assertNotIn(429, statuses)
        self.assertEqual(statuses.count(201), 10)
        self.assertEqual(set(moves.infakt_document_id.mapped("state")), {"done"})

    def test_accounts_are_served_in_turn(self):
        """A big backlog of one account does not make another account's invoices wait."""
        _shop, shop_journal = self.other_account()
        big = self.post_in(self.journal, 8)
        small = self.post_in(shop_journal, 2)
        self.run_sender()
        self.assertTrue(self.simulator.flush(timeout=5))
        # The simulator creates the invoices in the order their creates arrived.
        order = [invoice["number"] for invoice in self.sim_invoices()]
        self.assertEqual(sorted(order), sorted((big | small).mapped("name")))
        self.assertTrue(set(small.mapped("name")) <= set(order[:4]), order)
