from datetime import timedelta

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged

from .common import InfaktCommon


@tagged("post_install", "-at_install")
class TestSending(InfaktCommon):
    def test_post_queues_without_http(self):
        order = self.create_order()
        before = len(self.sim_state()["requests"])
        invoice = self.invoice_order(order)
        document = invoice.infakt_document_ids
        self.assertEqual(len(document), 1)
        self.assertEqual(document.state, "to_send")
        self.assertEqual(invoice.infakt_state, "to_send")
        self.assertEqual(document.account_id, self.infakt_account)
        self.assertEqual(len(self.sim_state()["requests"]), before, "posting made an HTTP call")
        cron = self.env.ref("l10n_pl_infakt.ir_cron_infakt_send")
        self.assertTrue(
            self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)]),
            "posting must trigger the sender",
        )

    def test_happy_path_order_to_pdf(self):
        order = self.create_order(
            [
                (self.product, 3, 33.33, 0.0, self.tax_23),
                (self.product_8, 1.5, 39.99, 10.0, self.tax_8),
            ]
        )
        invoice = self.invoice_order(order)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        self.assertTrue(document.infakt_uuid)
        self.assertEqual(document.infakt_number, invoice.name)
        self.assertEqual(invoice.infakt_number, invoice.name)
        self.assertEqual(invoice.infakt_state, "done")
        remote = self.sim_invoices()
        self.assertEqual(len(remote), 1)
        remote = remote[0]
        self.assertEqual(remote["number"], invoice.name)
        self.assertEqual(remote["payment_method"], "transfer")
        self.assertEqual(remote["bank_account"], self.infakt_account.bank_account_id.account_number)
        self.assertEqual(remote["client_tax_code"], "1234563218")
        self.assertEqual(remote["client_company_name"], "Kowalski Sp. z o.o.")
        self.assertEqual(remote["net_price"], self.grosze(invoice.amount_untaxed))
        self.assertEqual(remote["tax_price"], self.grosze(invoice.amount_tax))
        self.assertEqual(remote["gross_price"], self.grosze(invoice.amount_total))
        self.assertFalse(document.amount_mismatch)
        discounted = next(s for s in remote["services"] if s["name"] == self.product_8.name)
        self.assertEqual(float(discounted["discount"]), 10.0)
        self.assertEqual(discounted["unit_net_price_before_discount"], 3999)
        # PDF on the invoice and on the order, invoice PDFs apart from corrections.
        self.assertTrue(document.pdf_attachment_id)
        self.assertEqual(document.pdf_attachment_id.res_model, "account.move")
        self.assertTrue(document.pdf_attachment_id.raw.startswith(b"%PDF"))
        self.assertEqual(len(order.infakt_invoice_attachment_ids), 1)
        self.assertFalse(order.infakt_correction_attachment_ids)
        self.assertEqual(order.infakt_invoice_attachment_ids.res_model, "sale.order")
        self.assertEqual(order.infakt_state, "ok")
        self.assertEqual(order.infakt_document_count, 1)
        # Downloaded once only.
        self.run_processor()
        self.assertEqual(len(self.sim_requests("GET", "/pdf")), 1)

    def test_tax_included_prices_match_to_the_grosz(self):
        order = self.create_order(
            [
                (self.product, 1, 123.45, 0.0, self.tax_23_incl),
                (self.product, 7, 9.99, 3.0, self.tax_23_incl),
            ]
        )
        invoice = self.invoice_order(order)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        remote = self.sim_invoices()[0]
        self.assertEqual(remote["gross_price"], self.grosze(invoice.amount_total))
        self.assertEqual(remote["net_price"], self.grosze(invoice.amount_untaxed))
        self.assertEqual(remote["tax_price"], self.grosze(invoice.amount_tax))
        self.assertFalse(document.amount_mismatch)

    def test_auto_send_off_uses_the_button(self):
        self.infakt_account.auto_send = False
        invoice = self.invoice_order(self.create_order())
        self.assertFalse(invoice.infakt_document_ids)
        self.assertTrue(invoice.infakt_can_send)
        invoice.action_infakt_send()
        self.assertEqual(invoice.infakt_document_ids.state, "to_send")
        with self.assertRaises(UserError):
            invoice.action_infakt_send()

    def test_invoice_outside_series_is_ignored(self):
        other_journal = self.journal.copy({"name": "Other sales", "code": "OTH"})
        order = self.create_order()
        invoice = order._create_invoices()
        invoice.journal_id = other_journal
        invoice.action_post()
        self.assertFalse(invoice.infakt_document_ids)
        self.assertFalse(invoice.infakt_can_send)

    def test_reset_to_draft_refused_once_in_infakt(self):
        invoice = self.invoice_order(self.create_order())
        self.assertTrue(invoice.show_reset_to_draft_button)
        self.send_and_complete(invoice)
        self.assertFalse(invoice.show_reset_to_draft_button)
        self.assertFalse(
            invoice.message_ids.filtered(lambda m: "not updated from the attachment" in
                                         (m.body or "")),
            "the inFakt PDF is not taken for an invoice to import",
        )
        with self.assertRaisesRegex(UserError, "credit note"):
            invoice.button_draft()
        with self.assertRaisesRegex(UserError, "credit note"):
            invoice.button_cancel()

    def test_reset_to_draft_before_sending_cancels_the_document(self):
        invoice = self.invoice_order(self.create_order())
        document = invoice.infakt_document_ids
        invoice.button_draft()
        self.assertEqual(document.state, "cancelled")
        invoice.action_post()
        self.assertEqual(len(invoice.infakt_document_ids), 2)
        self.assertEqual(invoice.infakt_document_id.state, "to_send")
        self.send_and_complete(invoice)
        self.assertEqual(invoice.infakt_state, "done")
        self.assertEqual(len(self.sim_invoices()), 1)

    def test_validation_error_then_fix_and_send_again(self):
        # inFakt does not know the bank account any more: 422 on bank_account.
        self.simulator.configure(bank_accounts=[{"id": 7, "account_number": "PL11 1111"}])
        order = self.create_order()
        invoice = self.invoice_order(order)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        self.assertIn("bank account for transfers", document.error_message)
        self.assertEqual(invoice.infakt_state, "error")
        self.assertEqual(order.infakt_state, "error")
        self.assertIn(self.error_tag, order.tag_ids)
        error_type = self.env.ref("l10n_pl_infakt.mail_activity_infakt_error")
        activities = invoice.activity_ids.filtered(lambda a: a.activity_type_id == error_type)
        self.assertEqual(len(activities), 1)
        self.assertFalse(self.sim_invoices())
        # A second failure does not pile up activities.
        document.action_send_again()
        self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        self.assertEqual(
            len(invoice.activity_ids.filtered(lambda a: a.activity_type_id == error_type)), 1)
        # Fix: read the bank accounts again, choose the one inFakt knows, send again.
        self.infakt_account.action_refresh_bank_accounts()
        self.assertEqual(self.infakt_account.bank_account_id.account_number, "PL11 1111")
        invoice.action_infakt_send_again()
        self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        self.assertEqual(order.infakt_state, "ok")
        self.assertNotIn(self.error_tag, order.tag_ids)
        self.assertFalse(invoice.activity_ids.filtered(lambda a: a.activity_type_id == error_type))
        self.assertEqual(len(self.sim_invoices()), 1)

    def test_configuration_error_names_the_field(self):
        self.product.taxes_id = False
        order = self.create_order([(self.product, 1, 10.0, 0.0, self.env["account.tax"])])
        invoice = self.invoice_order(order)
        self.run_sender()
        document = invoice.infakt_document_ids
        self.assertEqual(document.state, "error")
        self.assertIn("exactly one tax", document.error_message)
        self.assertFalse(self.sim_requests("POST"))

    def test_rate_limited_retry_later(self):
        """A 429 pauses the account for a while; the document is not lost nor duplicated."""
        self.infakt_account.rate_limit_window = 4  # pause of 1 s
        self.simulator.add_fault(fail_next=1, status=429, methods=["POST"])
        invoice = self.invoice_order(self.create_order())
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        self.assertEqual(len(self.sim_invoices()), 1)
        statuses = [r["status"] for r in self.sim_requests("POST", "/async/invoices")]
        self.assertEqual(statuses, [429, 201])
        self.assertEqual(document.attempt_count, 1, "a 429 is not a failed attempt")

    def test_transient_failures_back_off_then_error(self):
        self.infakt_account.max_attempts = 2
        self.simulator.add_fault(fail_next=10, status=500, methods=["POST"],
                                 path_contains="/async/invoices")
        invoice = self.invoice_order(self.create_order())
        self.run_sender()
        document = invoice.infakt_document_ids
        # A 5xx on a create is in doubt: never resent blindly.
        self.assertEqual(document.state, "in_doubt")
        self.assertEqual(len(self.sim_invoices()), 0)

    def test_lost_answer_reconciled_without_duplicate(self):
        self.simulator.add_fault(drop_after_create=1)
        invoice = self.invoice_order(self.create_order())
        self.run_sender()
        document = invoice.infakt_document_ids
        self.assertEqual(document.state, "in_doubt")
        self.simulator.flush(timeout=5)
        document.sudo().next_attempt_at = fields.Datetime.now() - timedelta(seconds=1)
        self.run_processor()
        self.assertEqual(document.state, "done", document.error_message)
        self.assertEqual(document.infakt_number, invoice.name)
        self.assertEqual(len(self.sim_invoices()), 1)
        self.assertEqual(len(self.sim_requests("POST", "/async/invoices")), 1)

    def test_in_doubt_not_found_after_window_is_sent_again(self):
        self.simulator.add_fault(drop_before_processing=1)
        invoice = self.invoice_order(self.create_order())
        self.run_sender()
        document = invoice.infakt_document_ids
        self.assertEqual(document.state, "in_doubt")
        document.sudo().next_attempt_at = fields.Datetime.now() - timedelta(seconds=1)
        self.run_processor()
        # Not found, but the task window is not over: still in doubt.
        self.assertEqual(document.state, "in_doubt")
        document.sudo().write({
            "sending_started_at": fields.Datetime.now() - timedelta(minutes=11),
            "next_attempt_at": fields.Datetime.now() - timedelta(seconds=1),
        })
        self.run_processor()
        self.assertEqual(document.state, "to_send")
        self.send_and_complete(invoice)
        self.assertEqual(document.state, "done")
        self.assertEqual(len(self.sim_invoices()), 1)

    def test_duplicate_number_in_infakt_is_linked(self):
        """Sent again while inFakt already has it: the duplicate-number refusal is resolved by
        linking the existing invoice."""
        invoice = self.invoice_order(self.create_order())
        document = self.send_and_complete(invoice)
        uuid = document.infakt_uuid
        document.sudo().write({"state": "to_send", "infakt_uuid": False, "infakt_number": False})
        self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        self.assertEqual(document.infakt_uuid, uuid)
        self.assertEqual(len(self.sim_invoices()), 1)

    def test_task_polling_backs_off_while_pending(self):
        self.simulator.configure(task_delay=3600)
        invoice = self.invoice_order(self.create_order())
        self.run_sender()
        document = invoice.infakt_document_ids
        self.assertEqual(document.state, "processing")
        run = self.env["infakt.document.runner"]._new_run(time_budget=20, with_commit=False)
        delays = []
        for _poll in range(6):
            self.env["infakt.document.poll"]._process(document, run)
            delays.append((document.next_poll_at - fields.Datetime.now()).total_seconds())
        run.close()
        self.assertEqual(document.poll_count, 6)
        self.assertEqual(document.state, "processing")
        # A second apart at first, then further and further apart.
        self.assertLessEqual(delays[0], 1.5)
        self.assertGreaterEqual(delays[-1], 4)

    def test_sale_order_filters(self):
        order = self.create_order()
        invoice = self.invoice_order(order)
        SaleOrder = self.env["sale.order"]
        self.assertIn(order, SaleOrder.search(
            [("invoice_ids.infakt_state", "in", ("to_send", "sending", "processing"))]))
        self.send_and_complete(invoice)
        self.assertIn(order, SaleOrder.search([("infakt_state", "=", "ok")]))
        self.assertNotIn(order, SaleOrder.search(
            [("invoice_ids.infakt_state", "in", ("to_send", "sending", "processing"))]))


@tagged("post_install", "-at_install")
class TestCurrentDocument(InfaktCommon):
    """The invoice's current document is computed (nothing written on the invoice when a
    document is queued or moves): the invoice filters and the sale order's state follow it."""

    def _search_moves(self, domain, moves):
        return self.env["account.move"].search(domain + [("id", "in", moves.ids)])

    def test_invoice_filters_follow_the_current_document(self):
        refused = self.invoice_order(self.create_order(
            [(self.product, 1, 100.0, -5.0, self.tax_23)]))
        waiting = self.invoice_order(self.create_order())
        moves = refused | waiting
        self.run_sender()
        self.assertEqual(refused.infakt_state, "error")
        first = refused.infakt_document_id
        self.assertEqual(self._search_moves([("infakt_state", "=", "error")], moves), refused)
        self.assertEqual(self._search_moves([("infakt_document_id", "=", first.id)], moves),
                         refused)
        # Reset and posted again: the cancelled document is history, the new one is current.
        refused.button_draft()
        self.assertEqual(refused.infakt_document_id, first, "the last one while none active")
        self.assertEqual(first.state, "cancelled")
        refused.invoice_line_ids.discount = 0.0
        refused.action_post()
        second = refused.infakt_document_ids.filtered(lambda d: d.state != "cancelled")
        self.assertEqual(len(second), 1)
        self.assertEqual(refused.infakt_document_id, second)
        self.assertFalse(self._search_moves([("infakt_state", "=", "error")], moves))
        self.assertFalse(self._search_moves([("infakt_state", "=", "cancelled")], moves))
        self.assertEqual(self._search_moves([("infakt_state", "=", "to_send")], moves), refused)
        self.assertEqual(self._search_moves([("infakt_document_id", "in", second.ids)], moves),
                         refused)
        self.assertFalse(self._search_moves([("infakt_document_id", "=", first.id)], moves))
        self.assertEqual(self._search_moves([("infakt_document_id", "!=", False)], moves), moves)
        draft = self.invoice_order(self.create_order(), post=False)
        self.assertEqual(self._search_moves([("infakt_document_id", "=", False)],
                                            moves | draft), draft)
        self.assertEqual(self._search_moves([("infakt_document_id", "in", [False, first.id,
                                                                          second.id])],
                                            moves | draft), refused | draft)
        # Nothing is stored on the invoice: queueing and transitions never write it.
        self.assertFalse(refused._fields["infakt_document_id"].store)
