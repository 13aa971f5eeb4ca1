"""Browser tests (Odoo tours in headless Chromium) of the live status after Confirm and of Send &
Print with inFakt's PDF. The tours are in ``static/tests/tours/infakt_live_tours.js``.

Odoo refuses websockets in test mode: while the tour waits on the screen, a thread of this test
runs the sender and the processor (as the cron threads would); then the tour reads its user's bus
messages as the bus does without a websocket (/websocket/peek_notifications) and gives them to
the live status service as the bus would."""

import threading
import time

from odoo import SUPERUSER_ID, api
from odoo.tests import tagged

from .common import InfaktTourCase

LIVE_DONE_PARAM = "l10n_pl_infakt.tour_live_done"
LIVE_GO_PARAM = "l10n_pl_infakt.tour_live_go"


@tagged("post_install", "-at_install")
class TestToursLive(InfaktTourCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Else Send opens the document layout wizard first.
        cls.company.external_report_layout_id = cls.env.ref("web.external_layout_standard")

    def invoice_url(self, invoice):
        return f"/odoo/action-account.action_move_out_invoice_type/{invoice.id}"

    def run_engine_when_posted(self, invoice_id, errors, timeout=90):
        """In a thread: once the tour saw the invoice posted and on its way, send it and follow
        it to done (committed in the test's transaction), then let the tour read its bus
        messages."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                with self.registry.cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    invoice = env["account.move"].browse(invoice_id)
                    if env["ir.config_parameter"].get_param(LIVE_GO_PARAM):
                        self.assertEqual(invoice.infakt_state, "to_send")
                        start = env["bus.bus"].search([], order="id desc", limit=1).id or 0
                        break
                time.sleep(0.2)
            else:
                raise AssertionError("the tour never saw the invoice on its way")
            for _round in range(4):
                with self.registry.cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    cron = env["infakt.document.cron"]
                    cron._cron_send(time_budget=20, with_commit=False)
                    self.simulator.flush(timeout=5)
                    cron._cron_process(time_budget=20, with_commit=False)
                    document = env["account.move"].browse(invoice_id).infakt_document_id
                    if document.state == "done" and not document.pdf_pending:
                        break
            with self.registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                # The tour reads the bus messages written after this one.
                env["ir.config_parameter"].set_param(LIVE_DONE_PARAM, str(start))
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    def start_tour_with_engine(self, url, tour, invoice):
        """The tour, while a thread of this test plays inFakt and the cron threads."""
        errors = []
        engine = threading.Thread(target=self.run_engine_when_posted,
                                  args=(invoice.id, errors))
        engine.start()
        try:
            self.start_tour(url, tour, login="admin", timeout=120)
        finally:
            engine.join(timeout=120)
        self.assertFalse(errors, errors)
        self.env.invalidate_all()
        self.assertEqual(invoice.infakt_state, "done")
        self.assertTrue(invoice.infakt_pdf_attachment_id)

    def test_live_update_after_confirm(self):
        invoice = self.invoice_order(self.create_order(), post=False)
        self.start_tour_with_engine(self.invoice_url(invoice),
                                    "l10n_pl_infakt_live_after_confirm", invoice)

    def test_live_update_of_the_sale_order(self):
        order = self.create_order()
        invoice = self.invoice_order(order)
        self.start_tour_with_engine(f"/odoo/action-sale.action_orders/{order.id}",
                                    "l10n_pl_infakt_live_order", invoice)
        self.assertEqual(order.infakt_state, "ok")

    def test_live_update_of_the_documents_list(self):
        invoice = self.invoice_order(self.create_order())
        self.start_tour_with_engine("/odoo/action-l10n_pl_infakt.infakt_document_action",
                                    "l10n_pl_infakt_live_documents", invoice)

    def test_send_print_with_the_infakt_pdf(self):
        invoice = self.invoice_order(self.create_order())
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done", document.error_message)
        infakt_pdf = document.pdf_attachment_id
        self.start_tour(self.invoice_url(invoice), "l10n_pl_infakt_send_print_pdf",
                        login="admin", timeout=120)
        self.env.invalidate_all()
        message = self.env["mail.message"].search(
            [("model", "=", "account.move"), ("res_id", "=", invoice.id),
             ("message_type", "=", "comment")], limit=1)
        self.assertEqual([a.raw for a in message.attachment_ids], [infakt_pdf.raw])
        self.assertEqual(invoice.invoice_pdf_report_id.raw, infakt_pdf.raw)
