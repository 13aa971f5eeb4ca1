"""A month reconciled with inFakt (mission B12): Odoo's posted invoices and credit notes of a
period side by side with inFakt's documents of the period (read page by page from the
simulator within the read limit), each kind of difference, and the action that fixes it."""

import requests

from odoo import Command
from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged

from ..infakt_api import payload as P
from .common import API_KEY, InfaktCommon
from .test_tours import NEW_BANK_ACCOUNT

DATE_FROM = "2026-10-01"
DATE_TO = "2026-10-31"
OTHER_BUYER = {"company_name": "Obcy Sp. z o.o.", "nip": "5260001246", "city": "Gdańsk",
               "postal_code": "80-001", "street": "Długa", "street_number": "1",
               "country": "PL"}


class ReconciliationHelpers:
    """Invoices of a month in Odoo and documents made in inFakt only (shared with the tour)."""

    def make_invoice(self, price, day="2026-10-10"):
        move = self.env["account.move"].create({
            "move_type": "out_invoice",
            "partner_id": self.partner.id,
            "journal_id": self.journal.id,
            "invoice_date": day,
            "invoice_line_ids": [Command.create({
                "product_id": self.product.id, "quantity": 1, "price_unit": price,
                "tax_ids": [Command.set(self.tax_23.ids)]})],
        })
        move.action_post()
        return move

    def make_in_infakt(self, number, day, buyer=None):
        """A document made in inFakt itself (its web application), unknown to Odoo."""
        client = self.infakt_account._get_client()
        body = P.build_invoice(
            lines=[{"name": "Usługa w inFakt", "quantity": 1, "tax_symbol": "23",
                    "unit_net_price": "50.00"}],
            buyer=buyer or OTHER_BUYER, invoice_date=day, number=number,
            payment_method="cash")
        client.create_invoice(body)
        self.simulator.flush(timeout=5)
        return next(d for d in self.sim_invoices() if d["number"] == number)


@tagged("post_install", "-at_install")
class TestReconciliation(ReconciliationHelpers, InfaktCommon):
    def edit_in_infakt(self, uuid, **changes):
        """A change made in inFakt's web application (the simulator has no edit endpoint)."""
        with self.simulator._lock:
            self.simulator._invoices[uuid].update(changes)

    def reconcile(self, page_size=100, rounds=10, time_budget=20):
        record = self.env["infakt.reconciliation"].create({
            "account_id": self.infakt_account.id, "date_from": DATE_FROM, "date_to": DATE_TO,
            "page_size": page_size})
        record.action_start()
        self.assertEqual(record.state, "running")
        runs = 0
        while record.state == "running" and runs < rounds:
            self.env["infakt.reconciliation.match"]._cron_reconcile(
                time_budget=time_budget, with_commit=False)
            runs += 1
        self.assertEqual(record.state, "done", record.message)
        return record, runs

    def line(self, record, kind, number):
        lines = record.line_ids.filtered(
            lambda line: line.kind == kind and number in (line.odoo_number, line.infakt_number))
        self.assertEqual(len(lines), 1, f"{kind} {number}: {record.line_ids.mapped('note')}")
        return lines

    # ------------------------------------------------------------------------------------
    # Tests
    # ------------------------------------------------------------------------------------
    def _lose_link(self, move):
        """Odoo lost the link of ``move`` to its document (a restored backup): the row is gone.
        A done document is never deleted through the ORM (documents are the engine's)."""
        self.env.cr.execute("DELETE FROM infakt_document WHERE id = %s",
                            [move.infakt_document_id.id])
        self.env.invalidate_all()

    def test_each_kind_of_difference_and_its_fix(self):
        matched = self.make_invoice(100)
        total = self.make_invoice(200)
        ksef = self.make_invoice(300)
        renumbered = self.make_invoice(400)
        unknown = self.make_invoice(600)
        credit_note = matched._reverse_moves([{"invoice_date": "2026-10-20"}])
        credit_note.action_post()
        sent = matched | total | ksef | renumbered | unknown | credit_note
        self.send_and_complete(sent)
        self.assertEqual(set(sent.infakt_document_id.mapped("state")), {"done"})
        # Invoices posted while automatic sending is off: nothing went to inFakt.
        self.infakt_account.auto_send = False
        missing = self.make_invoice(500)
        collision = self.make_invoice(700)
        self.assertFalse(missing.infakt_document_ids | collision.infakt_document_ids)
        # In inFakt: a total edited, a KSeF number Odoo never heard of, a number changed.
        uuid = total.infakt_document_id.infakt_uuid
        self.edit_in_infakt(uuid, gross_price=self.simulator._invoices[uuid]["gross_price"]
                            + 100)
        self.edit_in_infakt(ksef.infakt_document_id.infakt_uuid, ksef_data={
            "status": "success", "ksef_number": "5260250274-20261010-0123456789AB-01"})
        self.edit_in_infakt(renumbered.infakt_document_id.infakt_uuid, number="FV/INNY/1")
        # Odoo lost the link of one invoice (restored backup): inFakt still has it.
        unknown_uuid = unknown.infakt_document_id.infakt_uuid
        self._lose_link(unknown)
        # Made in inFakt only: one of the month, one of another month, one using Odoo's number.
        self.make_in_infakt("R/1/10/2026", "2026-10-15")
        self.make_in_infakt("R/1/11/2026", "2026-11-02")
        self.make_in_infakt(collision.name, "2026-10-10")

        # KSeF goes through inFakt: inFakt's lists do not carry the KSeF state, so the linked
        # documents are read one by one.
        self.infakt_account.send_to_ksef = True
        record, _runs = self.reconcile(page_size=2)
        self.infakt_account.send_to_ksef = False
        self.assertTrue(self.sim_requests(
            "GET", f"/invoices/{ksef.infakt_document_id.infakt_uuid}.json"))

        # Pages of 2 rows: the invoices took several list calls, each kind was read.
        self.assertGreaterEqual(record.pages_read, 7)
        lists = self.sim_requests("GET", "/invoices.json")
        self.assertTrue(any("offset=6" in r.get("query", "") for r in lists), lists)
        self.assertTrue(all("q%5Binvoice_date_gteq%5D=2026-10-01" in r.get("query", "")
                            for r in lists))
        self.assertEqual(record.count_matched, 2)
        self.line(record, "matched", matched.name)
        self.line(record, "matched", credit_note.name)
        self.assertEqual(self.line(record, "matched", credit_note.name).infakt_kind,
                         "corrective")
        line_total = self.line(record, "total_differs", total.name)
        self.assertEqual(line_total.infakt_total - line_total.odoo_total, 1.0)
        line_ksef = self.line(record, "ksef_differs", ksef.name)
        self.assertEqual(line_ksef.fix, "look_up")
        line_number = self.line(record, "wrong_number", renumbered.name)
        self.assertEqual(line_number.infakt_number, "FV/INNY/1")
        line_missing = self.line(record, "missing_in_infakt", missing.name)
        self.assertEqual(line_missing.fix, "send")
        line_unknown = self.line(record, "only_in_infakt", unknown.name)
        self.assertEqual((line_unknown.fix, line_unknown.move_id), ("link", unknown))
        line_extra = self.line(record, "only_in_infakt", "R/1/10/2026")
        self.assertEqual((line_extra.fix, line_extra.move_id.id), ("open", False))
        line_collision = self.line(record, "wrong_number", collision.name)
        self.assertFalse(line_collision.infakt_uuid == line_unknown.infakt_uuid)
        self.assertFalse(record.line_ids.filtered(lambda line: line.infakt_number == "R/1/11/2026"))
        self.assertEqual(len(record.line_ids), 9)

        # Send: the invoice missing in inFakt is queued, then sent by the engine.
        line_missing.action_send()
        self.assertTrue(line_missing.fixed)
        self.assertEqual(missing.infakt_document_id.state, "to_send")
        self.assertEqual(self.send_and_complete(missing).state, "done")
        # Link: identity checked against inFakt's document, no second document made.
        invoices_before = len(self.sim_invoices())
        line_unknown.action_link()
        self.assertEqual(unknown.infakt_document_id.state, "done")
        self.assertEqual(unknown.infakt_document_id.infakt_uuid, unknown_uuid)
        self.assertEqual(len(self.sim_invoices()), invoices_before)
        # A document of another buyer under Odoo's number is never linked.
        with self.assertRaises(UserError):
            line_collision.action_link()
        self.assertFalse(collision.infakt_document_ids)
        # Look up: inFakt's KSeF number is read, the row is matched.
        line_ksef.action_look_up()
        self.assertEqual(ksef.infakt_document_id.ksef_number,
                         "5260250274-20261010-0123456789AB-01")
        self.assertEqual((line_ksef.kind, line_ksef.fixed), ("matched", True))
        # Open: in Odoo, and in inFakt.
        self.assertEqual(line_total.action_open_move()["res_id"], total.id)
        self.assertEqual(line_extra.action_open_infakt()["type"], "ir.actions.act_url")
        with self.assertRaises(UserError):
            line_extra.action_open_move()

        # Started again: what was fixed is matched now.
        record.action_start()
        self.env["infakt.reconciliation.match"]._cron_reconcile(time_budget=20,
                                                                with_commit=False)
        self.assertEqual(record.state, "done")
        self.assertEqual(record.count_missing_in_infakt, 0)
        self.assertEqual(record.count_ksef_differs, 0)
        self.assertEqual(record.count_matched, 5)

    def test_read_limit_respected_over_several_runs(self):
        """inFakt allows 3 reads per 2 s here (and so does the account): the month is read
        page by page over several runs, never beyond the limit, and resumed where it
        stopped."""
        for index in range(5):
            self.make_in_infakt(f"L/{index}/10/2026", f"2026-10-{index + 10}")
        self.simulator.configure(rate_limit_get=3, rate_window=2)
        self.infakt_account.write({"rate_limit_read": 3, "rate_limit_window": 2})
        requests_before = len(self.sim_requests("GET"))

        record, runs = self.reconcile(page_size=1, rounds=20, time_budget=2.5)

        self.assertEqual(self.sim_state()["counters"]["rate_limited"], 0)
        self.assertGreater(runs, 1)
        self.assertGreater(len(self.sim_requests("GET")) - requests_before, 3)
        self.assertEqual(record.count_only_in_infakt, 5)
        self.assertEqual(sorted(record.line_ids.mapped("infakt_number")),
                         [f"L/{index}/10/2026" for index in range(5)])

    def test_invoice_in_error_is_sent_again(self):
        invoice = self.make_invoice(100)
        # inFakt refuses the bank account: the invoice is in error, not in inFakt.
        self.simulator.configure(bank_accounts=[NEW_BANK_ACCOUNT])
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        record, _runs = self.reconcile()
        line = self.line(record, "missing_in_infakt", invoice.name)
        self.assertEqual((line.fix, line.document_id), ("send", document))
        line.action_send()
        self.assertEqual(document.state, "to_send")
        self.assertEqual(invoice.infakt_document_ids, document)
        with self.assertRaises(UserError):
            line.action_send()  # already on its way

    def test_deleted_in_infakt_is_looked_up_then_sent_again(self):
        invoice = self.make_invoice(100)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "done")
        response = requests.delete(
            f"{self.simulator.base_url}/invoices/{document.infakt_uuid}.json",
            headers={"X-inFakt-ApiKey": API_KEY}, timeout=5)
        self.assertEqual(response.status_code, 204)
        record, _runs = self.reconcile()
        line = self.line(record, "missing_in_infakt", invoice.name)
        self.assertEqual((line.fix, line.document_id), ("look_up", document))
        line.action_look_up()
        self.assertEqual(document.state, "cancelled")
        self.assertEqual(line.fix, "send")
        line.action_send()
        self.assertEqual(invoice.infakt_document_id.state, "to_send")
        self.assertNotEqual(invoice.infakt_document_id, document)

    def test_credit_note_only_in_infakt_is_linked(self):
        invoice = self.make_invoice(100)
        credit_note = invoice._reverse_moves([{"invoice_date": "2026-10-20"}])
        credit_note.invoice_line_ids.price_unit = 40
        credit_note.action_post()
        self.send_and_complete(invoice | credit_note)
        uuid = credit_note.infakt_document_id.infakt_uuid
        self.assertTrue(uuid)
        self._lose_link(credit_note)
        record, _runs = self.reconcile()
        line = self.line(record, "only_in_infakt", credit_note.name)
        self.assertEqual((line.fix, line.infakt_kind, line.odoo_total), ("link", "corrective",
                                                                          -49.2))
        line.action_link()
        document = credit_note.infakt_document_id
        self.assertEqual((document.state, document.infakt_uuid, document.document_type),
                         ("done", uuid, "correction"))
        self.assertEqual(len(self.sim_correctives()), 1)

    def test_only_the_series_of_the_account(self):
        """The journal's credit notes go through another inFakt account: they are not part
        of this account's month."""
        self.infakt_account.series_ids.filtered(
            lambda series: series.document_type == "correction").unlink()
        self.env["infakt.account"].create({
            "name": "inFakt korekty", "company_id": self.company.id, "environment": "custom",
            "api_url": self.simulator.base_url, "api_key": API_KEY, "auto_send": False,
            "series_ids": [Command.create({"journal_id": self.journal.id,
                                           "document_type": "correction"})]})
        self.infakt_account.auto_send = False
        invoice = self.make_invoice(100)
        credit_note = invoice._reverse_moves([{"invoice_date": "2026-10-20"}])
        credit_note.action_post()
        record, _runs = self.reconcile()
        self.assertEqual(record.line_ids.move_id, invoice)

    def test_rate_limited_by_infakt_pauses_and_goes_on(self):
        """inFakt answers 429 (its limit is lower than the account says): the reads pause and
        the reconciliation goes on in the next runs, where it stopped."""
        for index in range(3):
            self.make_in_infakt(f"Z/{index}/10/2026", f"2026-10-{index + 10}")
        self.simulator.configure(rate_limit_get=2, rate_window=1, retry_after=1)

        record, runs = self.reconcile(page_size=1, rounds=20, time_budget=3)

        self.assertGreater(self.sim_state()["counters"]["rate_limited"], 0)
        self.assertGreater(runs, 1)
        self.assertEqual(record.count_only_in_infakt, 3)

    def test_rows_in_the_language_of_the_accountant(self):
        self.env["res.lang"]._activate_lang("pl_PL")
        self.env["ir.module.module"]._load_module_terms(["l10n_pl_infakt"], ["pl_PL"],
                                                       overwrite=True)
        self.env.user.lang = "pl_PL"
        self.infakt_account.auto_send = False
        invoice = self.make_invoice(100)
        record, _runs = self.reconcile()
        line = self.line(record, "missing_in_infakt", invoice.name)
        self.assertEqual(line.note, "Brak w inFakt: wyślij ją.")
        polish = line.with_context(lang="pl_PL")
        labels = dict(polish._fields["kind"]._description_selection(polish.env))
        self.assertEqual(labels["missing_in_infakt"], "Brak w inFakt")

    def test_failure_is_said_on_the_record(self):
        self.simulator.configure(api_keys=["another-key"])
        record = self.env["infakt.reconciliation"].create({
            "account_id": self.infakt_account.id, "date_from": DATE_FROM, "date_to": DATE_TO})
        record.action_start()
        self.env["infakt.reconciliation.match"]._cron_reconcile(time_budget=10,
                                                                with_commit=False)
        self.assertEqual(record.state, "failed")
        self.assertTrue(record.message)
        self.assertFalse(record.line_ids)

    def test_access(self):
        record = self.env["infakt.reconciliation"].create({
            "account_id": self.infakt_account.id, "date_from": DATE_FROM, "date_to": DATE_TO})
        employee = new_test_user(self.env, "recon_employee", groups="base.group_user",
                                 company_id=self.company.id)
        with self.assertRaises(AccessError):
            record.with_user(employee).action_start()
        with self.assertRaises(AccessError):
            record.with_user(employee).read(["state"])
        accountant = new_test_user(self.env, "recon_accountant",
                                   groups="account.group_account_invoice",
                                   company_id=self.company.id)
        self.assertEqual(record.with_user(accountant).read(["state"])[0]["state"], "draft")
        record.with_user(accountant).action_start()
        self.assertEqual(record.state, "running")
