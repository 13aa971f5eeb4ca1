"""Real transactions: a user working on an invoice never makes its create's result get lost, a
document held by another sender is not spun on, a run fits Odoo's time limits, every posting
wakes the sender, a webhook faster than the task reference is kept (review A7, A8, A16)."""

import threading
from datetime import timedelta
from unittest.mock import patch

from odoo import SUPERUSER_ID, api, fields
from odoo.tests import TransactionCase, tagged

from .. import const
from .common import CommittedBacklogMixin, InfaktCommon, InfaktSimulatorMixin, wait_until


@tagged("post_install", "-at_install")
class TestUserHoldsTheInvoice(CommittedBacklogMixin, InfaktSimulatorMixin, TransactionCase):
    def test_create_result_recorded_while_a_user_holds_the_invoice(self):
        """Right after Confirm, the user's Send & Print (or a payment) holds the invoice's row
        while the sender's POST goes out: the sender neither waits for the user nor loses the
        task reference — the document is ``processing``, not in doubt."""
        self._start_simulator()
        self.simulator.add_fault(latency=0.5, methods=["POST"])
        account_id, move_ids, _names = self._setup_committed_backlog(1, label="held")
        self.addCleanup(self._cleanup, account_id)
        outcome = {}

        def sender():
            with self.registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                try:
                    env["infakt.document.cron"]._cron_send(time_budget=20)
                except Exception as error:  # noqa: BLE001 - reported below
                    outcome["error"] = repr(error)
            outcome["done"] = True

        with self.registry.cursor() as user_cr:
            # The user's transaction writes the invoice and keeps it open.
            user_cr.execute("UPDATE account_move SET ref = 'printing' WHERE id = %s",
                            (move_ids[0],))
            thread = threading.Thread(target=sender)
            thread.start()
            try:
                wait_until(lambda: "done" in outcome, timeout=60, interval=0.1)
            finally:
                user_cr.rollback()
                thread.join(timeout=60)
        self.assertNotIn("error", outcome)
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            document = env["account.move"].browse(move_ids).infakt_document_id
            self.assertEqual(document.state, "processing", document.error_message)
            self.assertTrue(document.task_reference)
        self.assertEqual(self.simulator.state()["counters"]["creates"], 1)


@tagged("post_install", "-at_install")
class TestSenderRuns(InfaktCommon):
    def test_document_held_by_another_sender_is_not_spun_on(self):
        """Another process holds this document's sender lock: this sender leaves it for later
        (it does not take it again and again until its time is up)."""
        invoice = self.invoice_order(self.create_order())
        document = invoice.infakt_document_id
        with self.registry.cursor() as other:
            other.execute("SELECT pg_advisory_lock(%s, %s)",
                          (const.ADVISORY_LOCK_NAMESPACE, document.id))
            try:
                self.run_sender(time_budget=3)
            finally:
                other.execute("SELECT pg_advisory_unlock(%s, %s)",
                              (const.ADVISORY_LOCK_NAMESPACE, document.id))
        self.assertFalse(self.sim_requests("POST"))
        self.assertEqual(document.state, "to_send")
        self.assertGreater(document.next_attempt_at, fields.Datetime.now())

    def test_time_budget_fits_odoo_cron_limits(self):
        """A run stops starting new work in time for Odoo's real-time limit of cron jobs: the
        limit, less a prefork cron worker's idle wait (same watchdog), less a full HTTP
        exchange, less a margin."""
        Runner = self.env["infakt.document.runner"]
        http = const.HTTP_CONNECT_TIMEOUT + const.HTTP_READ_TIMEOUT
        cases = [
            ({"workers": 2, "limit_time_real_cron": -1, "limit_time_real": 120},
             max(const.RUN_MIN_SECONDS,
                 120 - const.CRON_IDLE_SECONDS - http - const.RUN_MARGIN_SECONDS)),
            ({"workers": 0, "limit_time_real_cron": -1, "limit_time_real": 120},
             const.RUN_MAX_SECONDS),
            ({"workers": 4, "limit_time_real_cron": 600, "limit_time_real": 120},
             const.RUN_MAX_SECONDS),
            ({"workers": 0, "limit_time_real_cron": 50, "limit_time_real": 120},
             50 - http - const.RUN_MARGIN_SECONDS),
            ({"workers": 2, "limit_time_real_cron": 0, "limit_time_real": 120},
             const.RUN_MAX_SECONDS),
        ]
        from odoo.tools import config
        for options, expected in cases:
            with self.subTest(**options), patch.dict(config.options, options):
                budget = Runner._time_budget()
                self.assertEqual(budget, expected)
                limit = options["limit_time_real_cron"]
                if limit == -1:
                    limit = options["limit_time_real"]
                if limit > 0:
                    idle = const.CRON_IDLE_SECONDS if options["workers"] else 0
                    self.assertLessEqual(idle + budget + http, limit)

    def test_every_posting_wakes_the_sender(self):
        """An invoice posted while the sender runs (its own trigger still in the table) gets a
        trigger of its own: it never waits for the scheduled action's interval."""
        cron = self.env.ref("l10n_pl_infakt.ir_cron_infakt_send")
        Trigger = self.env["ir.cron.trigger"].sudo()
        cron._trigger()  # the trigger of the run in progress
        before = Trigger.search_count([("cron_id", "=", cron.id)])
        self.invoice_order(self.create_order())
        self.assertEqual(Trigger.search_count([("cron_id", "=", cron.id)]), before + 1)

    def test_webhook_faster_than_the_task_reference_is_kept(self):
        """inFakt's success webhook can arrive before the sender has recorded the create's
        task reference: it is kept, and applied once the reference is there."""
        self.simulator.configure(task_delay=3600)
        invoice = self.invoice_order(self.create_order())
        self.run_sender()
        document = invoice.infakt_document_id
        reference = document.task_reference
        self.assertTrue(reference)
        # As if the webhook had come before the reference was written.
        document.sudo().write({"task_reference": False})
        Event = self.env["infakt.webhook.event"].sudo()
        event = Event.create({
            "account_id": self.infakt_account.id, "event_uuid": "evt-early",
            "name": "async_invoice_creation_success", "task_reference": reference,
            "invoice_uuid": "uuid-from-webhook",
        })
        run = self.env["infakt.document.runner"]._new_run(with_commit=False)
        Event._process_pending(run)
        self.assertEqual(event.state, "new", "kept, not ignored")
        document.sudo().write({"task_reference": reference,
                               "next_poll_at": fields.Datetime.now() + timedelta(hours=1)})
        event.retry_at = False
        Event._process_pending(run)
        self.assertEqual(event.state, "done")
        self.assertEqual(event.document_id, document)
        self.assertEqual(document.infakt_uuid, "uuid-from-webhook")
        # Signed and naming the task of our create: done from it, without a read.
        self.assertEqual(document.state, "done")
        self.assertEqual(document.infakt_number, invoice.name)
