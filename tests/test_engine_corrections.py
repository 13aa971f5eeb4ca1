"""Credit notes: they wait for their invoice instead of failing; refund lines are matched by
product, price, discount and tax, each once; "before" counts only corrections that reached
inFakt (review A9)."""

from odoo import Command
from odoo.tests import tagged

from .common import InfaktCommon


@tagged("post_install", "-at_install")
class TestCreditNotes(InfaktCommon):
    def credit_note(self, invoice, change=None, journal=None):
        note = invoice._reverse_moves([{
            "ref": f"Zwrot {invoice.name}", "invoice_date": invoice.invoice_date,
            "journal_id": (journal or self.journal).id,
        }])
        if change:
            change(note)
        note.action_post()
        return note

    def corrective_of(self, note):
        document = note.infakt_document_id
        self.assertEqual(document.state, "done", document.error_message)
        return next(c for c in self.sim_correctives() if c["uuid"] == document.infakt_uuid)

    def test_credit_note_posted_before_its_invoice_is_done_waits(self):
        """Invoice, then "Reverse" a minute later while the invoice is still on its way: the
        credit note waits for it (no error, no activity), then follows it to inFakt."""
        invoice = self.invoice_order(self.create_order())
        note = self.credit_note(invoice)
        self.run_sender()
        self.assertEqual(invoice.infakt_state, "processing")
        document = note.infakt_document_id
        self.assertEqual(document.state, "to_send")
        self.assertIn(invoice.name, document.error_message)
        self.assertTrue(document.next_attempt_at)
        self.assertFalse(note.activity_ids)
        self.assertFalse(self.sim_requests("POST", "/async/corrective_invoices"))
        self.send_and_complete(invoice | note)
        self.assertEqual(invoice.infakt_state, "done")
        remote = self.corrective_of(note)
        self.assertEqual(remote["corrected_invoice_number"], invoice.name)

    def test_refund_line_matched_by_product_price_discount_and_tax(self):
        """The same product on two lines at two prices, with the same label: the credit note
        takes back one unit of the cheaper line, and the correction says so."""
        invoice = self.invoice_order(self.create_order([
            (self.product, 2, 100.0, 0.0, self.tax_23),
            (self.product, 3, 50.0, 0.0, self.tax_23),
        ]))
        self.send_and_complete(invoice)

        def one_cheap_unit(note):
            expensive = note.invoice_line_ids.filtered(lambda line: line.price_unit == 100.0)
            cheap = note.invoice_line_ids - expensive
            note.write({"invoice_line_ids": [Command.delete(expensive.id),
                                             Command.update(cheap.id, {"quantity": 1})]})

        note = self.credit_note(invoice, one_cheap_unit)
        self.send_and_complete(note)
        rows = self.corrective_of(note)["services"]
        self.assertEqual(len(rows), 2, "one line corrected")
        before = next(r for r in rows if not r["correction"])
        after = next(r for r in rows if r["correction"])
        self.assertEqual(before["unit_net_price"], 5000)
        self.assertEqual(float(before["quantity"]), 3.0)
        self.assertEqual(float(after["quantity"]), 2.0)

    def test_before_counts_only_corrections_that_reached_infakt(self):
        """An earlier credit note that never reached inFakt (posted in a journal without a
        correction series) is not in inFakt's "before" of the next correction."""
        invoice = self.invoice_order(self.create_order([(self.product, 4, 100.0, 0.0,
                                                         self.tax_23)]))
        self.send_and_complete(invoice)
        other_journal = self.journal.copy({"name": "Manual notes", "code": "MAN"})

        def one_unit(note):
            note.invoice_line_ids.quantity = 1

        unsent = self.credit_note(invoice, one_unit, journal=other_journal)
        self.assertFalse(unsent.infakt_document_ids)
        note = self.credit_note(invoice, one_unit)
        self.send_and_complete(note)
        rows = self.corrective_of(note)["services"]
        before = next(r for r in rows if not r["correction"])
        after = next(r for r in rows if r["correction"])
        self.assertEqual(float(before["quantity"]), 4.0, "as the invoice is in inFakt")
        self.assertEqual(float(after["quantity"]), 3.0)
