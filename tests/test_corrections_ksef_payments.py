from odoo import Command, fields
from odoo.tests import tagged

from .common import InfaktCommon


@tagged("post_install", "-at_install")
class TestCorrectionsKsefPayments(InfaktCommon):
    def _sent_invoice(self, lines=None):
        order = self.create_order(lines)
        invoice = self.invoice_order(order)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        return order, invoice

    def _credit_note(self, invoice, change=None):
        reversal = invoice._reverse_moves(
            [{"ref": f"Zwrot {invoice.name}", "invoice_date": invoice.invoice_date,
              "journal_id": self.journal.id}]
        )
        if change:
            change(reversal)
        reversal.action_post()
        return reversal

    def _assert_corrective_matches(self, credit_note):
        document = credit_note.infakt_document_id
        self.assertEqual(document.state, "done", document.error_message)
        self.assertEqual(document.document_type, "correction")
        correctives = self.sim_correctives()
        remote = next(c for c in correctives if c["uuid"] == document.infakt_uuid)
        self.assertEqual(remote["gross_price"], -self.grosze(credit_note.amount_total))
        self.assertEqual(remote["net_price"], -self.grosze(credit_note.amount_untaxed))
        self.assertEqual(remote["tax_price"], -self.grosze(credit_note.amount_tax))
        self.assertFalse(document.amount_mismatch)
        return remote

    def test_full_refund(self):
        order, invoice = self._sent_invoice()
        credit_note = self._credit_note(invoice)
        self.send_and_complete(credit_note)
        remote = self._assert_corrective_matches(credit_note)
        self.assertEqual(remote["corrected_invoice_number"], invoice.name)
        rows = remote["services"]
        self.assertEqual(len(rows), 2)
        self.assertEqual({r["correction"] for r in rows}, {False, True})
        self.assertEqual(len({r["group"] for r in rows}), 1)
        after = next(r for r in rows if r["correction"])
        self.assertEqual(float(after["quantity"]), 0.0)
        # The correction PDF is stored apart from the invoice PDF, on the note and the order.
        self.assertTrue(credit_note.infakt_document_id.pdf_attachment_id)
        self.assertEqual(len(order.infakt_correction_attachment_ids), 1)
        self.assertEqual(len(order.infakt_invoice_attachment_ids), 1)

    def test_partial_refunds(self):
        order, invoice = self._sent_invoice(
            [
                (self.product, 3, 100.0, 0.0, self.tax_23),
                (self.product_8, 2, 39.99, 0.0, self.tax_8),
            ]
        )

        def one_line_part_of_quantity(note):
            note.write({"invoice_line_ids": [
                Command.update(note.invoice_line_ids[0].id, {"quantity": 1}),
                Command.delete(note.invoice_line_ids[1].id),
            ]})

        note_1 = self._credit_note(invoice, one_line_part_of_quantity)
        self.send_and_complete(note_1)
        remote = self._assert_corrective_matches(note_1)
        self.assertEqual(len(remote["services"]), 2, "only the changed line is corrected")

        def price_reduction(note):
            line = note.invoice_line_ids.filtered(lambda line: line.product_id == self.product_8)
            note.write({"invoice_line_ids": [
                Command.update(line.id, {"price_unit": 5.0}),
                Command.delete((note.invoice_line_ids - line).id),
            ]})

        # A correction of the already corrected invoice: before = after the first one.
        note_2 = self._credit_note(invoice, price_reduction)
        self.send_and_complete(note_2)
        remote_2 = self._assert_corrective_matches(note_2)
        before = next(r for r in remote_2["services"] if not r["correction"])
        self.assertEqual(float(before["quantity"]), 2.0)
        self.assertEqual(len(self.sim_correctives()), 2)

    def test_refund_of_an_invoice_never_sent(self):
        self.infakt_account.auto_send = False
        invoice = self.invoice_order(self.create_order())
        self.infakt_account.auto_send = True
        credit_note = self._credit_note(invoice)
        self.run_sender()
        document = credit_note.infakt_document_id
        self.assertEqual(document.state, "error")
        self.assertIn("not in inFakt", document.error_message)
        self.assertFalse(self.sim_requests("POST", "/async/corrective_invoices"))

    def test_ksef_success(self):
        self.infakt_account.send_to_ksef = True
        self.simulator.configure(ksef_delay=0.0)
        _order, invoice = self._sent_invoice()
        document = invoice.infakt_document_id
        for _round in range(3):
            self.simulator.flush(timeout=5)
            document.sudo().ksef_next_check_at = fields.Datetime.now()
            self.run_processor()
            if document.ksef_state != "pending":
                break
        self.assertEqual(document.ksef_state, "success")
        self.assertTrue(document.ksef_number)
        self.assertEqual(invoice.infakt_ksef_number, document.ksef_number)

    def test_ksef_error_and_long_pending(self):
        self.infakt_account.send_to_ksef = True
        self.simulator.configure(ksef_outcome="error", ksef_delay=0.0)
        _order, invoice = self._sent_invoice()
        document = invoice.infakt_document_id
        self.simulator.flush(timeout=5)
        document.sudo().ksef_next_check_at = fields.Datetime.now()
        self.run_processor()
        self.assertEqual(document.ksef_state, "error")
        self.assertEqual(document.state, "done", "a KSeF refusal does not undo the invoice")
        # Pending for a long time is waiting, not failure.
        self.simulator.configure(ksef_outcome="pending-forever")
        _order, invoice_2 = self._sent_invoice()
        document_2 = invoice_2.infakt_document_id
        for _round in range(6):
            document_2.ksef_next_check_at = fields.Datetime.now()
            self.run_processor()
        self.assertEqual(document_2.ksef_state, "pending")
        self.assertGreater(document_2.ksef_next_check_at, fields.Datetime.now())

    def _register_payment(self, invoice):
        return self.env["account.payment.register"].with_context(
            active_model="account.move", active_ids=invoice.ids
        ).create({"payment_date": invoice.invoice_date})._create_payments()

    def test_payment_marks_the_infakt_invoice_paid_once(self):
        _order, invoice = self._sent_invoice()
        payment = self._register_payment(invoice)
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        document = invoice.infakt_document_id
        self.assertEqual(document.paid_sync_state, "to_send")
        self.run_processor()
        self.simulator.flush(timeout=5)
        self.run_processor()
        self.assertEqual(document.paid_sync_state, "done")
        remote = self.sim_invoices()[0]
        self.assertEqual(remote["paid_date"], str(invoice.invoice_date))
        # Reconciled again: still one mark-paid request.
        payment.move_id.line_ids.remove_move_reconcile()
        (payment.move_id.line_ids | invoice.line_ids).filtered(
            lambda line: line.account_id.account_type == "asset_receivable"
        ).reconcile()
        self.run_processor()
        self.assertEqual(len(self.sim_requests("POST", "/paid")), 1)

    def test_infakt_paid_event_recorded(self):
        _order, invoice = self._sent_invoice()
        document = invoice.infakt_document_id
        self.simulator.configure(ksef_integration=True)
        client = self.infakt_account._get_client()
        client.mark_paid(document.infakt_uuid, str(invoice.invoice_date))
        self.simulator.flush(timeout=5)
        self.env["infakt.webhook.event"].create({
            "account_id": self.infakt_account.id, "event_uuid": "evt-paid",
            "name": "invoice_paid", "invoice_uuid": document.infakt_uuid,
        })
        self.run_processor()
        self.assertEqual(fields.Date.to_string(document.infakt_paid_date),
                         str(invoice.invoice_date))
        self.assertEqual(invoice.infakt_paid_date, document.infakt_paid_date)

    def test_odoo_own_ksef_sending_is_disabled_for_infakt_ksef(self):
        """l10n_pl_edi offers 'pl_ksef' in Send & Print; an invoice filed through inFakt must
        never be sent that way too."""
        self.infakt_account.send_to_ksef = True
        invoice = self.invoice_order(self.create_order())
        other_journal = self.journal.copy({"name": "Not in inFakt", "code": "NOINF"})
        outside = self.create_order()._create_invoices()
        outside.journal_id = other_journal
        outside.action_post()
        sender = self.env["account.move.send"]
        edis = sender._infakt_filter_ksef_edis(
            {"pl_ksef": {"label": "by KSeF", "is_applicable": lambda move: True}}
        )
        self.assertFalse(edis["pl_ksef"]["is_applicable"](invoice))
        self.assertTrue(edis["pl_ksef"]["is_applicable"](outside))
        # Even when it was ticked, it is dropped before the web services are called.
        invoices_data = {invoice: {"extra_edis": ["pl_ksef"]}, outside: {"extra_edis": ["pl_ksef"]}}
        sender._call_web_service_before_invoice_pdf_render(invoices_data)
        self.assertEqual(invoices_data[invoice]["extra_edis"], [])
        self.assertEqual(invoices_data[outside]["extra_edis"], ["pl_ksef"])
        self.infakt_account.send_to_ksef = False
        self.assertTrue(edis["pl_ksef"]["is_applicable"](invoice))
