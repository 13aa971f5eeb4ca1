"""Browser test (Odoo tour in headless Chromium) of the reconciliation of a month with inFakt:
the accountant opens Invoicing > inFakt > Reconciliation, starts the last month, sees the
differences, sends the invoice missing in inFakt from its row and filters the rows inFakt
alone holds. No cron thread runs in tests: the Python side runs the reconciliation job between
the two tours (``static/tests/tours/reconciliation_tour.js``)."""

from datetime import timedelta

from odoo import fields
from odoo.tests import tagged

from .common import InfaktTourCase
from .test_reconciliation import ReconciliationHelpers

ONLY_IN_INFAKT = "R/1/TOUR"


@tagged("post_install", "-at_install")
class TestReconciliationTour(ReconciliationHelpers, InfaktTourCase):

    def test_reconcile_a_month(self):
        # The form proposes the month before today: the invoices are of that month.
        last_month_end = fields.Date.today().replace(day=1) - timedelta(days=1)
        day = last_month_end.replace(day=10).isoformat()
        done = self.make_invoice(100, day)
        self.send_and_complete(done)
        self.infakt_account.auto_send = False
        missing = self.make_invoice(500, day)
        self.make_in_infakt(ONLY_IN_INFAKT, day)

        self.start_infakt_tour("/odoo", "l10n_pl_infakt_reconcile_start")
        record = self.env["infakt.reconciliation"].search(
            [("account_id", "=", self.infakt_account.id)])
        self.assertEqual(len(record), 1)
        self.assertEqual(record.state, "running")
        self.assertEqual(record.date_to, last_month_end)

        self.env["infakt.reconciliation.match"]._cron_reconcile(time_budget=20,
                                                                with_commit=False)
        self.assertEqual(record.state, "done", record.message)
        self.assertEqual((record.count_matched, record.count_missing_in_infakt,
                          record.count_only_in_infakt), (1, 1, 1))

        self.start_infakt_tour(
            f"/odoo/action-l10n_pl_infakt.infakt_reconciliation_action/{record.id}",
            "l10n_pl_infakt_reconcile_fix")
        self.assertEqual(missing.infakt_document_id.state, "to_send")
        line = record.line_ids.filtered(lambda line: line.move_id == missing)
        self.assertTrue(line.fixed)
