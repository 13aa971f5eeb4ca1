"""One bad record never stops the others; an account that cannot talk to inFakt is stopped
once, with one message, and its documents keep their place (review A1, A11)."""

from unittest.mock import patch

from odoo import Command
from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .common import API_KEY, InfaktCommon


@tagged("post_install", "-at_install")
class TestOneBadRecord(InfaktCommon):
    def post_invoice(self, discount=0.0, price=100.0):
        """An invoice with a line of ``price`` and ``discount`` (and a plain line, so that a
        discount over 100 % still leaves a positive total Odoo posts)."""
        invoice = self.env["account.move"].create({
            "move_type": "out_invoice",
            "partner_id": self.partner.id,
            "journal_id": self.journal.id,
            "invoice_line_ids": [
                Command.create({"product_id": self.product.id, "quantity": 1,
                                "price_unit": price, "discount": discount,
                                "tax_ids": [Command.set(self.tax_23.ids)]}),
                Command.create({"product_id": self.product_8.id, "quantity": 1,
                                "price_unit": 200.0, "tax_ids": [Command.set(self.tax_8.ids)]}),
            ],
        })
        invoice.action_post()
        return invoice

    def test_negative_and_huge_discounts_are_that_invoice_in_error(self):
        """Odoo allows a line discount of -10 % or 150 %; inFakt does not. That invoice is in
        error with what to fix; the invoices before and after it reach inFakt."""
        first = self.post_invoice()
        negative = self.post_invoice(discount=-10.0)
        huge = self.post_invoice(discount=150.0)
        last = self.post_invoice(price=50.0)
        self.send_and_complete(first | negative | huge | last)
        for bad, shown in ((negative, "-10"), (huge, "150")):
            document = bad.infakt_document_id
            self.assertEqual(document.state, "error")
            self.assertIn("discount", document.error_message)
            self.assertIn(shown, document.error_message)
            self.assertIn("Konsultacje", document.error_message, "the line is named")
        self.assertEqual((first | last).infakt_document_id.mapped("state"), ["done", "done"])
        self.assertEqual(sorted(i["number"] for i in self.sim_invoices()),
                         sorted((first | last).mapped("name")))

    def test_unexpected_failure_of_one_document_is_its_own(self):
        """Any exception while preparing one document is that document's error, in words (the
        traceback goes to the server log); any exception while completing one leaves it to be
        tried again. The other documents go on in the same runs."""
        Send = type(self.env["infakt.document.send"])
        first, second, third = self.post_invoice(), self.post_invoice(), self.post_invoice()
        broken = first.infakt_document_id
        prepare = Send._prepare_payload

        def prepare_or_fail(service, document):
            if document == broken:
                raise ZeroDivisionError("boom")
            return prepare(service, document)

        with patch.object(Send, "_prepare_payload", prepare_or_fail), \
                self.assertLogs("odoo.addons.l10n_pl_infakt", level="ERROR"):
            self.run_sender()
        self.assertEqual(broken.state, "error")
        self.assertIn("ZeroDivisionError", broken.error_message)
        self.assertEqual((second | third).infakt_document_id.mapped("state"),
                         ["processing", "processing"])
        slow = second.infakt_document_id
        # Completed from the task of the create (no read-back): that step fails for one.
        Document = type(self.env["infakt.document"])
        to_done = Document._infakt_to_done_from_task

        def to_done_or_fail(document, invoice_uuid):
            if document == slow:
                raise KeyError("boom")
            return to_done(document, invoice_uuid)

        self.simulator.flush(timeout=5)
        with patch.object(Document, "_infakt_to_done_from_task", to_done_or_fail), \
                self.assertLogs("odoo.addons.l10n_pl_infakt", level="ERROR"):
            self.run_processor(time_budget=3)
        self.assertEqual(third.infakt_document_id.state, "done")
        self.assertEqual(slow.state, "processing", "tried again later")
        self.assertTrue(slow.next_poll_at)
        self.send_and_complete(second)
        self.assertEqual(slow.state, "done")


@tagged("post_install", "-at_install")
class TestAccountStopped(InfaktCommon):
    def second_account(self, api_key):
        """A second account of the company, with its own sales journal and series."""
        journal = self.journal.copy({"name": "Shop sales", "code": "SHOP"})
        account = self.env["infakt.account"].create({
            "name": "inFakt shop",
            "company_id": self.company.id,
            "environment": "custom",
            "api_url": self.simulator.base_url,
            "api_key": api_key,
            "rate_limit_window": 1,
            "series_ids": [Command.create({"journal_id": journal.id,
                                           "document_type": "invoice"})],
            "payment_mapping_ids": [Command.create({"infakt_payment_method": "cash"})],
        })
        return account, journal

    def post_in(self, journal, count=1):
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

    def test_pasted_key_with_invisible_characters_is_cleaned(self):
        self.infakt_account.api_key_new = f" \u200b{API_KEY}\u200b\n"
        self.assertEqual(self.infakt_account.sudo().api_key, API_KEY)
        with self.assertRaises(ValidationError):
            self.infakt_account.api_key_new = "kl\u00fcsz"

    def test_broken_key_stops_that_account_only(self):
        """A key that cannot even be sent (an inner space, stored before keys were checked)
        stops its account with one message; the other account's invoices go on."""
        shop, shop_journal = self.second_account(API_KEY)
        self.env.cr.execute("UPDATE infakt_account SET api_key = %s WHERE id = %s",
                            ("bad key", shop.id))
        shop.invalidate_recordset()
        shop_moves = self.post_in(shop_journal, count=3)
        main_moves = self.post_in(self.journal, count=2)
        self.send_and_complete(main_moves)
        self.assertEqual(set(main_moves.infakt_document_id.mapped("state")), {"done"})
        self.assertEqual(set(shop_moves.infakt_document_id.mapped("state")), {"to_send"})
        self.assertEqual(shop.connection_state, "failed")
        self.assertEqual(len(shop.message_ids.filtered(
            lambda m: "stopped" in (m.body or ""))), 1)

    def test_revoked_key_one_request_one_message(self):
        """inFakt rejects the key (401): one request, one message on the account, the
        documents wait in the queue (no error, no activity, no error tag on the orders); with
        a working key again they all go."""
        orders = [self.create_order() for _index in range(6)]
        moves = self.env["account.move"].browse(
            [self.invoice_order(order).id for order in orders])
        self.simulator.configure(api_keys=["another-key"])
        self.run_sender()
        self.run_sender()
        self.assertEqual(len(self.sim_requests("POST")), 1, "one request, not one per invoice")
        self.assertEqual(set(moves.infakt_document_id.mapped("state")), {"to_send"})
        account = self.infakt_account
        self.assertEqual(account.connection_state, "failed")
        self.assertIn("rejected the API key", account.connection_message)
        self.assertEqual(len(account.message_ids.filtered(
            lambda m: "stopped" in (m.body or ""))), 1)
        self.assertFalse(moves.activity_ids)
        self.assertFalse([o for o in orders if self.error_tag in o.tag_ids])
        # The key works again: a connection test lets the queue go.
        self.simulator.configure(api_keys=[API_KEY])
        account.action_test_connection()
        self.assertEqual(account.connection_state, "ok")
        self.send_and_complete(moves)
        self.assertEqual(set(moves.infakt_document_id.mapped("state")), {"done"})
        self.assertEqual(len(self.sim_invoices()), 6)

    def test_missing_key_in_doubt_stays_in_doubt(self):
        """A document in doubt is never put in error because its account lost its key: the
        account is stopped, the document stays in doubt (its invoice stays frozen)."""
        self.simulator.add_fault(drop_after_create=1)
        invoice = self.invoice_order(self.create_order())
        self.run_sender()
        document = invoice.infakt_document_id
        self.assertEqual(document.state, "in_doubt")
        self.infakt_account.sudo().api_key = False
        self.advance_clock(document)
        self.run_processor()
        self.assertEqual(document.state, "in_doubt")
        self.assertEqual(self.infakt_account.connection_state, "failed")
        self.assertFalse(invoice.show_reset_to_draft_button)
