import json
from datetime import timedelta

from odoo import fields
from odoo.tests import HttpCase, tagged

from .common import WEBHOOK_SECRET, InfaktCommon, InfaktWebhookMixin, wait_until


@tagged("post_install", "-at_install")
class TestWebhookController(InfaktWebhookMixin, InfaktCommon, HttpCase):
    def events(self):
        return self.env["infakt.webhook.event"].sudo().search(
            [("account_id", "=", self.infakt_account.id)]
        )

    def test_unknown_token_404(self):
        response = self.url_open("/infakt/webhook/not-a-token", data=b"{}",
                                 headers={"Content-Type": "application/json"})
        self.assertEqual(response.status_code, 404)
        response = self.url_open("/infakt/webhook/" + "x" * 500, data=b"{}")
        self.assertEqual(response.status_code, 404)

    def test_get_is_refused(self):
        response = self.url_open(self.webhook_url())
        self.assertIn(response.status_code, (404, 405))

    def test_verification_request_echoed_and_marks_verified(self):
        self.assertFalse(self.infakt_account.webhook_verified_at)
        response = self.post_webhook({"verification_code": "abc123"}, secret=None)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"verification_code": "abc123"})
        self.infakt_account.invalidate_recordset()
        self.assertTrue(self.infakt_account.webhook_verified_at)
        self.assertEqual(self.infakt_account.webhook_state, "verified")

    def test_simulator_verification_flow(self):
        """inFakt's Verify button: the simulator POSTs the code to the account's URL."""
        url = self.base_url() + self.webhook_url()
        self.simulator.configure(webhook_url=url, webhook_secret=WEBHOOK_SECRET)
        result = self.simulator.verify_webhook()
        self.assertTrue(result["verified"], result)
        self.assertEqual(self.sim_state()["webhook"]["status"], "active")
        self.infakt_account.invalidate_recordset()
        self.assertTrue(self.infakt_account.webhook_verified_at)

    def test_missing_or_bad_signature_401_changes_nothing(self):
        body = self.event("invoice_paid", {"uuid": "u-1"})
        for kwargs in ({"secret": None}, {"secret": "wrong-secret"}, {"signature": "zz" * 32},
                       {"signature": "deadbeef"}):
            response = self.post_webhook(body, **kwargs)
            self.assertEqual(response.status_code, 401, kwargs)
        self.assertFalse(self.events())

    def test_no_secret_configured_401(self):
        self.infakt_account.webhook_secret = False
        response = self.post_webhook(self.event("invoice_paid", {"uuid": "u-1"}))
        self.assertEqual(response.status_code, 401)
        self.assertFalse(self.events())

    def test_malformed_bodies_400(self):
        for raw in (b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'"text"', b" ",
                    json.dumps({"event": {"name": "x"}}).encode(),
                    json.dumps({"event": {"uuid": "u", "name": "x"}, "resource": []}).encode()):
            response = self.post_webhook(raw)
            self.assertEqual(response.status_code, 400, raw)
            self.assertNotIn("Traceback", response.text)
        self.assertFalse(self.events())

    def test_oversized_body_413(self):
        raw = b'{"a": "' + b"x" * (300 * 1024) + b'"}'
        response = self.post_webhook(raw)
        self.assertEqual(response.status_code, 413)
        self.assertFalse(self.events())

    def test_event_recorded_once_and_replay_answered_200(self):
        body = self.event(
            "async_invoice_creation_success",
            {"invoice_task_reference_number": "ref-1", "invoice_uuid": "uuid-1",
             "processing_code": 201, "processing_description": "Faktura stworzona",
             "invoice_kind": "invoice", "client_company_name": "Personal data"},
            uuid="evt-42",
        )
        response = self.post_webhook(body)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["status"], "accepted")
        response = self.post_webhook(body)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["status"], "duplicate")
        events = self.events()
        self.assertEqual(len(events), 1)
        self.assertEqual(events.task_reference, "ref-1")
        self.assertEqual(events.invoice_uuid, "uuid-1")
        self.assertNotIn("client_company_name", events.resource, "buyer data is not stored")
        cron = self.env.ref("l10n_pl_infakt.ir_cron_infakt_process")
        self.assertTrue(self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)]))

    def test_ignored_event_still_200(self):
        response = self.post_webhook(self.event("draft_invoice_created", {"uuid": "u-9"},
                                                uuid="evt-9"))
        self.assertEqual(response.status_code, 200)
        Event = self.env["infakt.webhook.event"]
        run = self.env["infakt.document"]._infakt_new_run(with_commit=False)
        Event._process_pending(run)
        # No document matches it (yet: a task reference is committed a moment after the
        # create): kept for a while, then ignored.
        event = self.events()
        self.assertEqual(event.state, "new")
        self.assertTrue(event.retry_at)
        event.write({"received_at": fields.Datetime.now() - timedelta(hours=1),
                     "retry_at": False})
        Event._process_pending(run)
        self.assertEqual(event.state, "ignored")

    def test_uppercase_signature_accepted(self):
        from ..infakt_api.webhook import compute_signature

        raw = json.dumps(self.event("invoice_paid", {"uuid": "u-2"}, uuid="evt-up")).encode()
        response = self.post_webhook(raw, signature=compute_signature(WEBHOOK_SECRET, raw).upper())
        self.assertEqual(response.status_code, 200)

    def test_archived_account_404(self):
        self.infakt_account.active = False
        response = self.post_webhook(self.event("invoice_paid", {"uuid": "u-3"}))
        self.assertEqual(response.status_code, 404)

    def test_end_to_end_completed_by_webhook(self):
        """Sale order -> invoice -> sent; inFakt's webhook (real delivery by the simulator to
        this Odoo server) completes it before any poll would."""
        url = self.base_url() + self.webhook_url()
        self.simulator.configure(webhook_url=url, webhook_secret=WEBHOOK_SECRET, task_delay=0.3)
        self.assertTrue(self.simulator.verify_webhook()["verified"])
        order = self.create_order()
        invoice = self.invoice_order(order)
        self.run_sender()
        document = invoice.infakt_document_ids
        self.assertEqual(document.state, "processing")
        # Push the first poll far away: only the webhook can bring the document forward.
        document.next_poll_at = "2099-01-01 00:00:00"
        wait_until(lambda: any(d.get("success") for d in self.sim_state()["webhook_deliveries"]))
        self.env.invalidate_all()
        event = self.events().filtered(lambda e: e.name == "async_invoice_creation_success")
        self.assertEqual(len(event), 1)
        self.assertEqual(event.task_reference, document.task_reference)
        self.run_processor()
        self.assertEqual(event.state, "done")
        self.assertEqual(document.state, "done")
        self.assertEqual(document.infakt_number, invoice.name)
        self.assertTrue(order.infakt_invoice_attachment_ids)
