"""Exactly once, through the UI too: ``error`` only when inFakt certainly does not hold the
document, a number found in inFakt linked only when it is this document, one active document
per invoice (enforced by the database), only posted invoices sent (review A2, A3, A6)."""

import datetime

import psycopg2

from odoo import fields
from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tools import mute_logger

from ..infakt_api import InfaktClient, build_invoice
from .common import API_KEY, InfaktCommon


@tagged("post_install", "-at_install")
class TestExactlyOnce(InfaktCommon):
    def queued_invoice(self):
        """A posted invoice whose number is known, not sent yet (sent with the button)."""
        self.infakt_account.auto_send = False
        invoice = self.invoice_order(self.create_order())
        self.infakt_account.auto_send = True
        return invoice

    def foreign_invoice(self, number, nip="5260250274", date=None, price=12300,
                        currency="PLN"):
        """An invoice created in inFakt by somebody else (typed by hand, a staging copy...),
        with ``number``."""
        client = InfaktClient(API_KEY, environment="custom", base_url=self.simulator.base_url)
        try:
            client.create_invoice(build_invoice(
                lines=[{"name": "Something else", "quantity": 1, "tax_symbol": "23",
                        "unit_net_price": price / 100, "net_price": price / 100}],
                buyer={"company_name": "Other Sp. z o.o.", "nip": nip, "is_company": True,
                       "street": "Inna 1", "city": "Gdańsk", "post_code": "80-001"},
                invoice_date=date or fields.Date.today(), number=number,
                payment_method="cash", currency=currency,
            ))
        finally:
            client.close()
        self.assertTrue(self.simulator.flush(timeout=5))
        return next(i for i in self.sim_invoices() if i["number"] == number)

    # ------------------------------------------------------------------------------------
    # error means "certainly not in inFakt"
    # ------------------------------------------------------------------------------------
    def test_number_refused_and_lookup_failing_stays_in_doubt(self):
        """inFakt refuses the number (it holds a document with it, maybe this one from a lost
        attempt) while looking it up fails for a while: the document stays in doubt and its
        invoice frozen — never an error that would let the user renumber and send twice."""
        invoice = self.invoice_order(self.create_order())
        document = self.send_and_complete(invoice)
        uuid = document.infakt_uuid
        # As if this create's answer had been lost and Odoo sent it again.
        document.sudo().write({"state": "to_send", "infakt_uuid": False,
                               "infakt_number": False})
        self.simulator.add_fault(fail_next=6, status=500, methods=["GET"],
                                 path_contains="/invoices.json")
        for _round in range(3):
            self.run_sender()
            self.simulator.flush(timeout=5)
            self.run_processor(time_budget=2)
            self.assertEqual(document.state, "in_doubt", document.error_message)
            self.advance_clock(document)
        with self.assertRaisesRegex(UserError, "credit note"):
            invoice.button_draft()
        self.simulator.clear_faults()
        self.advance_clock(document)
        self.run_processor()
        self.assertEqual(document.state, "done")
        self.assertEqual(document.infakt_uuid, uuid, "linked to the invoice inFakt holds")
        self.assertEqual(len(self.sim_invoices()), 1)

    def test_number_used_by_another_document_is_not_linked(self):
        """A document inFakt holds under this invoice's number but with another buyer, date,
        total or currency is not this invoice: it is never linked (no PDF, payment or KSeF of
        it lands on the invoice); the invoice is in error, saying so."""
        variants = {
            "buyer": {"nip": "7791011327"},
            "date": {"date": datetime.date(2025, 1, 15)},
            "total": {"price": 99900},
            "currency": {"currency": "EUR"},
        }
        for what, changes in variants.items():
            with self.subTest(differs=what):
                self.simulator.reset(config=True)
                invoice = self.queued_invoice()
                amount = round(invoice.amount_untaxed * 100)
                foreign = self.foreign_invoice(
                    invoice.name, **{"nip": "1234563218", "price": amount, **changes})
                invoice.action_infakt_send()
                self.send_and_complete(invoice)
                document = invoice.infakt_document_id
                self.assertEqual(document.state, "error")
                self.assertIn("already used in inFakt by another document",
                              document.error_message)
                self.assertNotEqual(document.infakt_uuid, foreign["uuid"])
                self.assertFalse(document.pdf_attachment_id)
                self.assertFalse(self.sim_requests("GET", "/pdf"))
                self.assertEqual(len(self.sim_invoices()), 1, "nothing created twice")

    def test_number_used_by_this_document_is_linked(self):
        """The same number with the same buyer, date, total and currency is this invoice (a
        lost answer of an earlier attempt): linked, not sent again."""
        invoice = self.queued_invoice()
        amount = round(invoice.amount_untaxed * 100)
        foreign = self.foreign_invoice(invoice.name, nip="PL 123-456-32-18", price=amount)
        invoice.action_infakt_send()
        self.send_and_complete(invoice)
        document = invoice.infakt_document_id
        self.assertEqual(document.state, "done")
        self.assertEqual(document.infakt_uuid, foreign["uuid"])
        self.assertEqual(len(self.sim_invoices()), 1)

    # ------------------------------------------------------------------------------------
    # one active document per invoice; only posted invoices
    # ------------------------------------------------------------------------------------
    def test_one_active_document_per_invoice_in_the_database(self):
        invoice = self.invoice_order(self.create_order())
        with self.assertRaises(psycopg2.errors.UniqueViolation), mute_logger("odoo.sql_db"), \
                self.env.cr.savepoint():
            self.env["infakt.document"].sudo().create({
                "move_id": invoice.id, "account_id": self.infakt_account.id,
            })
        self.assertFalse(self.env["infakt.document.queue"]._queue_moves(invoice, force=True))
        self.assertEqual(len(invoice.infakt_document_ids), 1)

    def test_send_again_refuses_a_cancelled_document_of_a_draft(self):
        """Reset to draft cancels the waiting document; "Send again" on it would create the
        invoice in inFakt (and KSeF) while it is editable in Odoo: refused."""
        invoice = self.invoice_order(self.create_order())
        document = invoice.infakt_document_id
        invoice.button_draft()
        self.assertEqual(document.state, "cancelled")
        with self.assertRaisesRegex(UserError, "not posted"):
            document.action_send_again()
        self.run_sender()
        self.assertFalse(self.sim_requests("POST"))
        # Posted again, the invoice gets a new document; the cancelled one stays cancelled.
        invoice.action_post()
        self.assertEqual(len(invoice.infakt_document_ids), 2)
        with self.assertRaisesRegex(UserError, "already has a document"):
            document.action_send_again()
        self.send_and_complete(invoice)
        self.assertEqual(len(self.sim_invoices()), 1)

    def test_only_posted_invoices_are_sent(self):
        """A queued document whose invoice is not posted (any path that left it so) is never
        sent."""
        invoice = self.invoice_order(self.create_order())
        self.env.cr.execute("UPDATE account_move SET state = 'draft' WHERE id = %s",
                            (invoice.id,))
        invoice.invalidate_recordset(["state"])
        self.run_sender()
        self.assertFalse(self.sim_requests("POST"))
        self.assertEqual(invoice.infakt_document_id.state, "to_send")

    def test_reset_to_draft_follows_certainty(self):
        """In doubt or processing: frozen. Refused by inFakt (error): may be reset."""
        self.simulator.configure(task_delay=3600)
        invoice = self.invoice_order(self.create_order())
        self.run_sender()
        self.assertEqual(invoice.infakt_state, "processing")
        with self.assertRaisesRegex(UserError, "credit note"):
            invoice.button_draft()
        refused = self.invoice_order(self.create_order(
            [(self.product, 1, 100.0, -5.0, self.tax_23)]))
        self.run_sender()
        self.assertEqual(refused.infakt_state, "error")
        self.assertTrue(refused.show_reset_to_draft_button)
        refused.button_draft()
        self.assertEqual(refused.infakt_document_id.state, "cancelled")
