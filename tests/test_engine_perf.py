"""What a document costs (issue 13): completed from the task of our own create without a
read-back, the first poll left to a live webhook, the processor woken once per send run, the
webhook event stored by one INSERT, nothing written on the invoice when it is queued."""

from unittest.mock import patch

from odoo.tests import tagged

from .. import const
from .common import InfaktCommon, InfaktWebhookMixin


@tagged("post_install", "-at_install")
class TestDocumentCost(InfaktWebhookMixin, InfaktCommon):
    def post_invoice(self):
        return self.invoice_order(self.create_order())

    def invoice_reads(self):
        """Reads of an invoice itself (not its task, not its PDF)."""
        return [r for r in self.sim_requests("GET", "/invoices/")
                if "/status/" not in r["path"] and not r["path"].endswith("/pdf.json")]

    def test_task_done_completes_without_read_back(self):
        invoice = self.post_invoice()
        self.run_sender()
        document = invoice.infakt_document_id
        self.assertEqual(document.state, "processing")
        self.simulator.flush(timeout=5)
        before = len(self.invoice_reads())
        self.advance_clock(document)
        self.run_processor()
        self.assertEqual(document.state, "done")
        self.assertEqual(document.infakt_number, invoice.name)
        self.assertEqual(document.infakt_uuid, self.sim_invoices()[-1]["uuid"])
        self.assertEqual(len(self.invoice_reads()), before, "no read-back of the invoice")
        self.assertTrue(document.pdf_attachment_id, "the PDF is the only read")

    def test_signed_webhook_of_our_task_completes_without_a_read(self):
        self.simulator.configure(task_delay=3600)
        invoice = self.post_invoice()
        self.run_sender()
        document = invoice.infakt_document_id
        Event = self.env["infakt.webhook.event"].sudo()
        # An event naming another task (not ours) and the uuid only: a nudge, not a proof.
        stranger = Event.create({
            "account_id": self.infakt_account.id, "event_uuid": "evt-other",
            "name": "async_invoice_creation_success", "invoice_uuid": "uuid-other",
        })
        ours = Event.create({
            "account_id": self.infakt_account.id, "event_uuid": "evt-ours",
            "name": "async_invoice_creation_success",
            "task_reference": document.task_reference, "invoice_uuid": "uuid-ours",
        })
        before = len(self.sim_requests("GET"))
        run = self.env["infakt.document.runner"]._new_run(with_commit=False)
        Event._process_pending(run)
        self.assertEqual(stranger.state, "new", "matches no document: kept for a while")
        self.assertEqual(ours.state, "done")
        self.assertEqual(document.state, "done")
        self.assertEqual(document.infakt_uuid, "uuid-ours")
        self.assertEqual(document.infakt_number, invoice.name)
        self.assertEqual(len(self.sim_requests("GET")), before, "no read at all")

    def test_first_poll_waits_for_a_live_webhook(self):
        def first_poll_delay(move):
            document = move.infakt_document_id
            return (document.next_poll_at - document.sent_at).total_seconds()

        first = self.post_invoice()
        self.run_sender()
        self.assertLess(first_poll_delay(first), const.WEBHOOK_FIRST_POLL_SECONDS,
                        "no webhook seen: polled soon")
        self.env["infakt.webhook.event"].sudo().create({
            "account_id": self.infakt_account.id, "event_uuid": "evt-alive",
            "name": "invoice_paid",
        })
        second = self.post_invoice()
        self.run_sender()
        self.assertGreaterEqual(first_poll_delay(second), const.WEBHOOK_FIRST_POLL_SECONDS,
                                "webhooks alive: the webhook usually tells first")

    def test_processor_woken_once_per_send_run(self):
        moves = self.post_invoice() | self.post_invoice() | self.post_invoice()
        cron = self.env.ref("l10n_pl_infakt.ir_cron_infakt_process")
        Trigger = self.env["ir.cron.trigger"].sudo()
        before = Trigger.search_count([("cron_id", "=", cron.id)])
        with patch.object(const, "PROCESSOR_NUDGE_SECONDS", 3600):
            self.run_sender()
        self.assertEqual(set(moves.infakt_document_id.mapped("state")), {"processing"})
        # The first create wakes it, the end of the run once more (for the ones after).
        self.assertEqual(Trigger.search_count([("cron_id", "=", cron.id)]), before + 2)

    def test_queueing_writes_nothing_on_the_invoice(self):
        self.infakt_account.auto_send = False
        invoice = self.post_invoice()
        self.assertFalse(invoice.infakt_document_id)
        Move = type(invoice)
        with patch.object(Move, "write", autospec=True, side_effect=Move.write) as write:
            documents = self.env["infakt.document.queue"]._queue_moves(invoice, force=True)
        self.assertEqual(len(documents), 1)
        self.assertFalse(write.called, "the invoice is not written when it is queued")
        self.assertEqual(invoice.infakt_document_id, documents)
        self.assertEqual(invoice.infakt_state, "to_send")

    def test_webhook_event_stored_once(self):
        from ..infakt_api import webhook as infakt_webhook

        event = infakt_webhook.parse_event(self.event(
            "async_invoice_creation_success",
            {"invoice_task_reference_number": "task-1", "invoice_uuid": "uuid-1"},
            uuid="evt-once"))
        Event = self.env["infakt.webhook.event"].sudo()
        self.assertTrue(Event._store(self.infakt_account, event))
        self.assertFalse(Event._store(self.infakt_account, event), "a redelivery is a no-op")
        stored = Event.search([("event_uuid", "=", "evt-once")])
        self.assertEqual(len(stored), 1)
        self.assertEqual((stored.state, stored.task_reference, stored.invoice_uuid,
                          stored.company_id), ("new", "task-1", "uuid-1", self.company))
