"""Odoo's Polish chart (``l10n_pl``) as it comes, sent to inFakt: every legal field checked
in what the simulator received (and stored)."""

from odoo import Command
from odoo.exceptions import UserError
from odoo.tests import tagged

from .common import InfaktCommon

# The ids the simulator (and inFakt's recorded lists) give: GTU_06 -> 6, marking TP -> 3.
GTU_06_ID = 6
TP_MARKING_ID = 3
# A basis of inFakt's list: "korepetycje udzielane przez nauczycieli", art. 43 ust. 1 pkt 27.
TUTORING_BASIS_ID = 4


@tagged("post_install", "-at_install")
class InfaktPlChartCommon(InfaktCommon):
    """The common setup on the ``pl`` chart: the chart's own taxes and fiscal positions, nothing
    set by hand on them; the inFakt account has read inFakt's lists."""

    chart_template = "pl"

    @classmethod
    def _setup_infakt_taxes(cls):
        ref = cls.env["account.chart.template"].with_company(cls.company).ref
        cls.tax_23 = ref("vs_kraj_23")
        cls.tax_23_services = ref("vs_kraj_usl_23")
        cls.tax_8 = ref("vs_kraj_8")
        cls.tax_5 = ref("vs_kraj_5")
        cls.tax_zw = ref("vs_kraj_zw")
        cls.tax_eu_goods = ref("vs_unia")
        cls.tax_eu_services = ref("vs_dostu")
        cls.tax_export_goods = ref("vs_eksp_tow")
        cls.tax_export_services = ref("vs_ekspu")
        cls.tax_23_incl = cls.tax_23.copy(
            {"name": "23% G incl.", "price_include_override": "tax_included"})

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = cls.env
        cls.infakt_account.action_refresh_lists()
        cls.eur = cls.setup_other_currency("EUR", rates=[("2000-01-01", 0.25)])
        cls.germany = env.ref("base.de")
        cls.partner_de = env["res.partner"].create({
            "name": "Müller GmbH", "is_company": True, "vat": "DE136695976",
            "street": "Hauptstraße 5", "city": "Berlin", "zip": "10115",
            "country_id": cls.germany.id,
        })
        cls.partner_us = env["res.partner"].create({
            "name": "Smith Inc.", "is_company": True, "street": "5th Avenue 1",
            "city": "New York", "zip": "10001", "country_id": env.ref("base.us").id,
        })
        cls.service = env["product.product"].create({
            "name": "Audyt", "type": "service", "list_price": 500.0,
            "taxes_id": [Command.set(cls.tax_23_services.ids)], "invoice_policy": "order",
        })
        cls.goods = env["product.product"].create({
            "name": "Regał", "type": "consu", "list_price": 250.0,
            "taxes_id": [Command.set(cls.tax_23.ids)], "invoice_policy": "order",
        })
        cls.product_5 = env["product.product"].create({
            "name": "Chleb", "type": "consu", "list_price": 10.0,
            "taxes_id": [Command.set(cls.tax_5.ids)], "invoice_policy": "order",
        })

    # ------------------------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------------------------
    def order_with_fiscal_position(self, partner, lines, currency=None):
        """A confirmed order whose taxes Odoo chooses (product taxes through the partner's
        fiscal position); ``lines`` = [(product, qty, price_unit)]."""
        values = {
            "partner_id": partner.id,
            "company_id": self.company.id,
            "order_line": [Command.create({"product_id": product.id, "product_uom_qty": qty,
                                           "price_unit": price})
                           for product, qty, price in lines],
        }
        if currency:
            values["pricelist_id"] = self.env["product.pricelist"].create(
                {"name": f"{currency.name} prices", "currency_id": currency.id}).id
        order = self.env["sale.order"].create(values)
        order.action_confirm()
        return order

    def remote(self, move, collection="invoices"):
        """What the simulator holds for ``move`` (the document it received, priced)."""
        document = move.infakt_document_id
        self.assertEqual(document.state, "done", document.error_message)
        found = [d for d in self.sim_state()[collection] if d["uuid"] == document.infakt_uuid]
        self.assertEqual(len(found), 1, f"{move.name} not in the simulator's {collection}")
        return found[0]

    def sent_invoice(self, order):
        invoice = self.invoice_order(order)
        self.send_and_complete(invoice)
        return invoice, self.remote(invoice)

    def assert_totals(self, remote, move, sign=1):
        self.assertEqual(remote["net_price"], sign * self.grosze(move.amount_untaxed))
        self.assertEqual(remote["tax_price"], sign * self.grosze(move.amount_tax))
        self.assertEqual(remote["gross_price"], sign * self.grosze(move.amount_total))
        self.assertFalse(move.infakt_document_id.amount_mismatch)

    def problems(self, account=None):
        return " ".join(message for _label, message in
                        (account or self.infakt_account)._get_config_problems())


@tagged("post_install", "-at_install")
class TestPlChartTaxes(InfaktPlChartCommon):
    def test_chart_taxes_have_their_legal_symbols(self):
        ref = self.env["account.chart.template"].with_company(self.company).ref
        expected = {
            "vs_kraj_23": "23", "vs_kraj_usl_23": "23", "vs_kraj_8": "8", "vs_kraj_5": "5",
            "vs_kraj_0": "0", "vs_zwrot_podróżnych_0": "0", "vs_kraj_zw": "zw",
            "vs_kraj_zw_gold": "zw", "vs_unia": "0", "vs_unia_i42": "0", "vs_unia_i63": "0",
            "vs_unia_triangular": "np", "vs_dostu": "np", "vs_eksp_tow": "0",
            "vs_ekspu": "np", "vs_stal": False,
        }
        for template_id, symbol in expected.items():
            tax = ref(template_id)
            self.assertEqual(tax._get_infakt_tax_symbol(), symbol, template_id)
        self.assertEqual(ref("vs_unia_i42")._infakt_profile()["markings"], ("I_42",))
        self.assertEqual(ref("vs_dostu")._infakt_profile()["note"], "odwrotne obciążenie")
        # An explicit symbol wins, and drops the chart's words that no longer apply.
        ref("vs_dostu").infakt_tax_symbol = "0"
        self.assertEqual(ref("vs_dostu")._infakt_profile(),
                         {"symbol": "0", "markings": (), "note": None, "source": "explicit"})
        # A 0 % tax that is not the chart's is not guessed.
        custom = self.env["account.tax"].create(
            {"name": "0% custom", "amount": 0.0, "type_tax_use": "sale",
             "company_id": self.company.id})
        self.assertFalse(custom._get_infakt_tax_symbol())

    def test_configuration_clean_on_the_chart_as_it_comes(self):
        """Every tax that can reach an invoice (default tax, product taxes and what the
        fiscal positions turn them into: 0% EU G/S, 0% EX G/S) is mapped without a hand."""
        account = self.infakt_account
        account.action_test_connection()
        account._webhook_mark_verified()
        self.assertEqual(account._get_config_problems(), [])
        used = account._get_used_sale_taxes()
        for tax in (self.tax_eu_goods, self.tax_eu_services, self.tax_export_goods,
                    self.tax_export_services):
            self.assertIn(tax, used, "fiscal position targets are checked")

    def test_unmapped_zero_tax_is_a_configuration_problem_and_is_refused(self):
        custom = self.env["account.tax"].create(
            {"name": "0% custom", "amount": 0.0, "type_tax_use": "sale",
             "company_id": self.company.id})
        self.assertNotIn("0% custom", self.problems(), "an unused tax is no problem")
        # As the target of a fiscal position...
        position = self.env["account.fiscal.position"].create({
            "name": "Custom", "company_id": self.company.id,
            "tax_ids": [Command.create({"tax_src_id": self.tax_8.id,
                                        "tax_dest_id": custom.id})],
        })
        self.assertIn("Tax 0% custom cannot be mapped to an inFakt tax symbol", self.problems())
        position.unlink()
        # ... or on a product.
        self.product.taxes_id = custom
        self.assertIn("Tax 0% custom cannot be mapped to an inFakt tax symbol", self.problems())
        order = self.create_order([(self.product, 1, 100.0, 0.0, custom)])
        invoice = self.invoice_order(order)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        self.assertIn("The tax 0% custom cannot be sent to inFakt: set its inFakt Tax Symbol",
                      document.error_message)
        self.assertFalse(self.sim_invoices(), "nothing reached inFakt")
        custom.infakt_tax_symbol = "0"
        self.assertNotIn("0% custom", self.problems())
        # The repealed domestic reverse charge of the chart is not guessed either.
        steel = self.env["account.chart.template"].with_company(self.company).ref("vs_stal")
        steel.active = True
        self.product.taxes_id = steel
        self.assertIn(f"Tax {steel.display_name} cannot be mapped", self.problems())

    def test_exempt_tax_needs_a_basis_from_inFakts_list(self):
        tutoring = self.env["product.product"].create({
            "name": "Korepetycje", "type": "service", "list_price": 80.0,
            "taxes_id": [Command.set(self.tax_zw.ids)], "invoice_policy": "order",
        })
        self.assertIn(f"Tax {self.tax_zw.display_name} is exempt (zw) but has no VAT exemption "
                      "basis", self.problems())
        order = self.create_order([(tutoring, 2, 80.0, 0.0, self.tax_zw)])
        invoice = self.invoice_order(order)
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        self.assertIn("Lines taxed 'zw' need a VAT exemption basis: choose it on the tax",
                      document.error_message)
        self.assertFalse(self.sim_invoices())
        # The user chooses the basis from inFakt's list (112 bases, sparse ids).
        basis = self.infakt_account.vat_exemption_ids.filtered(
            lambda b: b.infakt_id == TUTORING_BASIS_ID)
        self.assertEqual(basis.display_name,
                         "art. 43 ust. 1 pkt 27 - korepetycje udzielane przez nauczycieli")
        self.tax_zw.infakt_vat_exemption_id = basis
        self.assertNotIn("exempt (zw)", self.problems())
        invoice.action_infakt_send_again()
        self.send_and_complete(invoice)
        remote = self.remote(invoice)
        self.assertEqual(remote["vat_exemption_reason"], TUTORING_BASIS_ID)
        self.assertEqual([s["tax_symbol"] for s in remote["services"]], ["zw"])
        self.assertEqual(remote["services"][0]["net_price"], 16000)
        self.assertEqual(remote["tax_price"], 0)
        self.assert_totals(remote, invoice)

    def test_typed_exemption_ids_become_choices_when_the_list_is_read(self):
        self.tax_zw.infakt_vat_exemption_reason = str(TUTORING_BASIS_ID)
        self.infakt_account.vat_exemption_reason = "1"
        self.infakt_account.vat_exemption_id = False
        # Until then the typed id is sent.
        self.assertEqual(self.tax_zw._infakt_exemption_id(), TUTORING_BASIS_ID)
        self.infakt_account.action_refresh_lists()
        self.assertEqual(self.tax_zw.infakt_vat_exemption_id.infakt_id, TUTORING_BASIS_ID)
        self.assertEqual(self.infakt_account.vat_exemption_id.infakt_id, 1)
        self.assertEqual(self.infakt_account.gtu_ids_by_code["GTU_06"], GTU_06_ID)
        self.assertEqual(self.infakt_account.marking_ids_by_code["TP"], TP_MARKING_ID)

    def test_lists_not_read_is_a_configuration_problem(self):
        self.infakt_account.lists_read_at = False
        self.assertIn("click Refresh inFakt lists", self.problems())
        self.company.tax_calculation_rounding_method = "round_globally"
        self.assertIn("computes taxes with Round globally", self.problems())


@tagged("post_install", "-at_install")
class TestPlChartSending(InfaktPlChartCommon):
    def test_domestic_23_8_5(self):
        order = self.create_order([
            (self.product, 2, 100.0, 0.0, self.tax_23),
            (self.product_8, 3, 39.99, 10.0, self.tax_8),
            (self.product_5, 5, 10.0, 0.0, self.tax_5),
        ])
        invoice, remote = self.sent_invoice(order)
        self.assertEqual(invoice.infakt_document_id.document_type, "invoice")
        rows = remote["services"]
        self.assertEqual([r["tax_symbol"] for r in rows], ["23", "8", "5"])
        self.assertEqual([r["quantity"] for r in rows], [2, 3, 5])
        self.assertEqual([r["net_price"] for r in rows], [20000, 10797, 5000])
        self.assertEqual([r["tax_price"] for r in rows], [4600, 864, 250])
        self.assertEqual(rows[1]["discount"], "10.0")
        self.assertEqual([r["gtu_id"] for r in rows], [None, None, None])
        self.assertEqual(remote["client_tax_code"], "1234563218")
        self.assertEqual(remote["client_country"], "PL")
        self.assertEqual(remote["currency"], "PLN")
        self.assertEqual(remote["number"], invoice.name)
        self.assertEqual(remote["sale_type"], "")
        self.assertEqual(remote["document_markings_ids"], [])
        self.assertIsNone(remote["split_payment_type"])
        self.assertIsNone(remote["vat_exemption_reason"])
        self.assert_totals(remote, invoice)

    def test_eu_services_are_np_with_reverse_charge_words(self):
        order = self.order_with_fiscal_position(self.partner_de, [(self.service, 2, 500.0)])
        self.assertEqual(order.order_line.tax_id, self.tax_eu_services,
                         "the Community fiscal position turned 23% S into 0% EU S")
        invoice, remote = self.sent_invoice(order)
        self.assertEqual([r["tax_symbol"] for r in remote["services"]], ["np"])
        self.assertEqual(remote["sale_type"], "service")
        self.assertIn("odwrotne obciążenie", remote["notes"])
        self.assertEqual(remote["client_country"], "DE")
        self.assertEqual(remote["client_tax_code"], "DE136695976")
        self.assertEqual(remote["tax_price"], 0)
        self.assert_totals(remote, invoice)

    def test_export_of_goods_is_zero_rated(self):
        order = self.order_with_fiscal_position(self.partner_us, [(self.goods, 4, 250.0)])
        self.assertEqual(order.order_line.tax_id, self.tax_export_goods)
        invoice, remote = self.sent_invoice(order)
        self.assertEqual([r["tax_symbol"] for r in remote["services"]], ["0"])
        self.assertEqual(remote["sale_type"], "merchandise")
        self.assertEqual(remote["client_country"], "US")
        self.assertNotIn("client_tax_code", {k for k, v in remote.items() if v})
        self.assertNotIn("odwrotne", remote["notes"] or "")
        self.assert_totals(remote, invoice)

    def test_eur_intra_eu_supply_of_goods(self):
        order = self.order_with_fiscal_position(self.partner_de, [(self.goods, 4, 250.0)],
                                                currency=self.eur)
        self.assertEqual(order.order_line.tax_id, self.tax_eu_goods)
        invoice, remote = self.sent_invoice(order)
        self.assertEqual(invoice.currency_id, self.eur)
        self.assertEqual(remote["currency"], "EUR")
        self.assertEqual(remote["vat_exchange_date_kind"], "vat")
        self.assertEqual([r["tax_symbol"] for r in remote["services"]], ["0"])
        self.assertEqual(remote["services"][0]["unit_net_price"], 25000)
        self.assertEqual(remote["services"][0]["net_price"], 100000)
        self.assertEqual(remote["sale_type"], "merchandise")
        self.assertEqual(remote["client_tax_code"], "DE136695976")
        self.assertIsNone(remote["split_payment_type"])
        self.assert_totals(remote, invoice)

    def test_gtu_per_line_from_the_product(self):
        self.goods.l10n_pl_vat_gtu = "GTU_06"
        order = self.create_order([(self.goods, 1, 250.0, 0.0, self.tax_23),
                                   (self.product, 1, 100.0, 0.0, self.tax_23)])
        invoice, remote = self.sent_invoice(order)
        self.assertEqual([r["gtu_id"] for r in remote["services"]], [GTU_06_ID, None])
        # An account that never read inFakt's lists refuses it, saying what to click.
        self.infakt_account.gtu_ids_by_code = {}
        with self.assertRaisesRegex(UserError, "GTU_06.*click Refresh inFakt lists"):
            self.env["infakt.payload"]._invoice(invoice, self.infakt_account)

    def test_tp_partner_is_marked(self):
        self.partner.l10n_pl_links_with_customer = True
        order = self.create_order([(self.product, 1, 100.0, 0.0, self.tax_23)])
        invoice, remote = self.sent_invoice(order)
        self.assertEqual(remote["document_markings_ids"], [TP_MARKING_ID])
        self.assertEqual(remote["sale_type"], "")

    def test_split_payment_where_the_law_requires_it(self):
        laptop = self.env["product.product"].create({
            "name": "Laptop", "type": "consu", "list_price": 1500.0,
            "taxes_id": [Command.set(self.tax_23.ids)], "invoice_policy": "order",
            "l10n_pl_vat_gtu": "GTU_06", "infakt_split_payment": True,
        })
        # 10 x 1500 net = 18 450 gross > 15 000 PLN, Annex 15, a Polish business: required.
        order = self.create_order([(laptop, 10, 1500.0, 0.0, self.tax_23)])
        invoice, remote = self.sent_invoice(order)
        self.assertEqual(remote["split_payment_type"], "required")
        self.assertTrue(remote["split_payment"])
        self.assertEqual(remote["services"][0]["gtu_id"], GTU_06_ID)
        # 8 x 1500 net = 14 760 gross: not required...
        order = self.create_order([(laptop, 8, 1500.0, 0.0, self.tax_23)])
        invoice, remote = self.sent_invoice(order)
        self.assertIsNone(remote["split_payment_type"])
        # ... unless the invoice says so (voluntary: printed, not marked MPP in JPK_V7).
        order = self.create_order([(laptop, 8, 1500.0, 0.0, self.tax_23)])
        invoice = self.invoice_order(order, post=False)
        invoice.infakt_split_payment = "optional"
        invoice.action_post()
        self.send_and_complete(invoice)
        self.assertEqual(self.remote(invoice)["split_payment_type"], "optional")

    def test_correction_of_a_tax_included_invoice_priced_from_odoos_net(self):
        order = self.create_order([(self.goods, 7, 9.99, 0.0, self.tax_23_incl)])
        invoice, remote = self.sent_invoice(order)
        self.assertEqual(remote["gross_price"], 6993)
        self.assert_totals(remote, invoice)
        credit_note = invoice._reverse_moves(
            [{"ref": "Zwrot", "invoice_date": invoice.invoice_date,
              "journal_id": self.journal.id}])
        credit_note.invoice_line_ids.quantity = 2
        credit_note.action_post()
        self.send_and_complete(credit_note)
        self.assertEqual(credit_note.infakt_document_id.document_type, "correction")
        remote = self.remote(credit_note, "corrective_invoices")
        before = next(r for r in remote["services"] if not r["correction"])
        after = next(r for r in remote["services"] if r["correction"])
        line = invoice.invoice_line_ids
        self.assertEqual(before["net_price"], self.grosze(line.price_subtotal))  # 56.85
        self.assertEqual(before["unit_net_price"], round(5685 / 7))
        self.assertEqual(before["quantity"], 7)
        refunded = credit_note.invoice_line_ids.price_subtotal
        self.assertEqual(after["net_price"], self.grosze(line.price_subtotal - refunded))
        self.assertEqual(after["unit_net_price"], round(4061 / 5))
        self.assertEqual(after["quantity"], 5)
        self.assertEqual(remote["corrected_invoice_number"], invoice.name)
        self.assert_totals(remote, credit_note, sign=-1)


@tagged("post_install", "-at_install")
class TestPlChartDownPayments(InfaktPlChartCommon):
    def down_payment(self, order, journal=None, **values):
        """Odoo's down payment wizard (``values`` as on the wizard): the new invoice, posted."""
        before = order.invoice_ids
        self.env["sale.advance.payment.inv"].with_context(
            active_model="sale.order", active_ids=order.ids, active_id=order.id,
        ).create(values).create_invoices()
        invoice = order.invoice_ids - before
        self.assertEqual(len(invoice), 1)
        invoice.journal_id = journal or self.journal
        invoice.action_post()
        return invoice

    def test_down_payments_and_final_invoice(self):
        order = self.create_order([(self.product, 2, 1000.0, 0.0, self.tax_23)])
        first = self.down_payment(order, advance_payment_method="percentage", amount=30)
        self.assertEqual(first.infakt_document_id.document_type, "advance")
        with self.assertRaisesRegex(UserError, "down payment invoice: it is an advance invoice"):
            self.env["infakt.payload"]._invoice(first, self.infakt_account)
        self.send_and_complete(first)
        remote_first = self.remote(first, "advance_invoices")
        self.assertEqual(remote_first["number"], first.name)
        self.assertEqual(remote_first["advance_price"], 73800)
        self.assertIsNone(remote_first["previous_advance_id"])
        # The whole order is what the advance is paid for.
        self.assertEqual([(r["name"], r["quantity"], r["unit_net_price"], r["net_price"],
                           r["tax_symbol"]) for r in remote_first["services"]],
                         [(order.order_line[0].name, 2, 100000, 200000, "23")])
        self.assertEqual(remote_first["gross_price"], 246000)
        self.assertEqual(first.infakt_document_id.infakt_amount_total, 738.0)
        self.assertFalse(first.infakt_document_id.amount_mismatch)
        self.assertFalse(self.sim_invoices(), "never a plain invoice")

        # A second down payment, and the final invoice posted before it reached inFakt: the
        # final invoice waits for it.
        second = self.down_payment(order, advance_payment_method="fixed", fixed_amount=500.0)
        final = self.down_payment(order, advance_payment_method="delivered")
        self.assertEqual(final.infakt_document_id.document_type, "final")
        self.run_sender()
        self.assertEqual(second.infakt_document_id.state, "processing")
        self.assertEqual(final.infakt_document_id.state, "to_send")
        self.assertIn(f"Waiting for the down payment invoice {second.name}",
                      final.infakt_document_id.error_message)
        self.send_and_complete(second | final)

        remote_second = self.remote(second, "advance_invoices")
        self.assertEqual(remote_second["advance_price"], 50000)
        self.assertEqual(remote_second["previous_advance_id"], remote_first["id"])
        self.assertEqual(second.infakt_document_id.infakt_id, remote_second["id"])

        remote_final = self.remote(final, "final_invoices")
        self.assertEqual(remote_final["number"], final.name)
        self.assertEqual(remote_final["previous_advance_id"], remote_second["id"])
        self.assertEqual([a["id"] for a in remote_final["previous_advances"]],
                         [remote_first["id"], remote_second["id"]])
        self.assertEqual([(r["quantity"], r["net_price"], r["tax_symbol"])
                          for r in remote_final["services"]], [(2, 200000, "23")])
        self.assertEqual(remote_final["gross_price"], 246000)
        self.assertEqual(remote_final["left_to_pay"], self.grosze(final.amount_total))
        self.assertEqual(final.infakt_document_id.infakt_amount_total, final.amount_total)
        self.assertFalse(final.infakt_document_id.amount_mismatch)
        self.assertFalse(self.sim_invoices(), "never a plain invoice")

    def test_final_invoice_must_deduct_every_advance(self):
        order = self.create_order([(self.product, 2, 1000.0, 0.0, self.tax_23)])
        first = self.down_payment(order, advance_payment_method="fixed", fixed_amount=300.0)
        second = self.down_payment(order, advance_payment_method="fixed", fixed_amount=200.0)
        self.send_and_complete(first | second)
        before = order.invoice_ids
        self.env["sale.advance.payment.inv"].with_context(
            active_model="sale.order", active_ids=order.ids, active_id=order.id,
        ).create({"advance_payment_method": "delivered"}).create_invoices()
        final = order.invoice_ids - before
        final.journal_id = self.journal
        deduction = final.invoice_line_ids.filtered(
            lambda line: line.is_downpayment and line.display_type == "product"
            and second in line.sale_line_ids.invoice_lines.move_id)
        final.invoice_line_ids = [Command.delete(deduction.id)]
        final.action_post()
        document = self.send_and_complete(final)
        self.assertEqual(document.state, "error")
        self.assertIn(f"does not deduct the down payment invoice(s) {second.name}",
                      document.error_message)
        self.assertFalse(self.sim_state()["final_invoices"])
        self.assertFalse(self.sim_invoices())

    def test_advance_waits_for_the_earlier_advance_and_refuses_without_it(self):
        order = self.create_order([(self.product, 2, 1000.0, 0.0, self.tax_23)])
        first = self.down_payment(order, advance_payment_method="fixed", fixed_amount=300.0)
        first.infakt_document_id.sudo()._infakt_to_error("test: refused by inFakt")
        second = self.down_payment(order, advance_payment_method="fixed", fixed_amount=200.0)
        self.run_sender()
        self.assertEqual(second.infakt_document_id.state, "to_send")
        self.assertIn(f"Waiting for the down payment invoice {first.name} to be in inFakt "
                      "(Error)", second.infakt_document_id.error_message)
        # A down payment issued in a journal without inFakt series never reaches inFakt: the
        # next advance of the order cannot be chained to it.
        other_journal = self.env["account.journal"].create(
            {"name": "Other sales", "code": "OTHS", "type": "sale",
             "company_id": self.company.id})
        order = self.create_order([(self.product, 2, 1000.0, 0.0, self.tax_23)])
        first = self.down_payment(order, journal=other_journal,
                                  advance_payment_method="fixed", fixed_amount=300.0)
        self.assertFalse(first.infakt_document_id)
        second = self.down_payment(order, advance_payment_method="fixed", fixed_amount=200.0)
        document = self.send_and_complete(second)
        self.assertEqual(document.state, "error")
        self.assertIn(f"needs the down payment invoice {first.name} in inFakt first",
                      document.error_message)
        self.assertFalse(self.sim_state()["advance_invoices"])


@tagged("post_install", "-at_install")
class TestPlChartTotalsCheck(InfaktPlChartCommon):
    def assert_stopped(self, invoice, *texts):
        document = self.send_and_complete(invoice)
        self.assertEqual(document.state, "error")
        for text in texts:
            self.assertIn(text, document.error_message)
        self.assertFalse(self.sim_invoices())
        self.assertFalse(self.sim_requests("POST"), "nothing was posted to inFakt")
        return document

    def test_round_globally_difference_stops_the_document(self):
        self.company.tax_calculation_rounding_method = "round_globally"
        order = self.create_order([(self.product, 1, 0.10, 0.0, self.tax_23)] * 3)
        invoice = self.invoice_order(order)
        self.assertEqual(invoice.amount_tax, 0.07)  # 0.30 x 23 %, rounded once
        self.assert_stopped(
            invoice, "the totals inFakt would compute differ from the invoice",
            "VAT 0.06 in inFakt, 0.07 in Odoo", "Nothing was created in inFakt",
            "Round globally")
        # Fixed as told: per-line rounding, the invoice (certainly not in inFakt) reset to
        # draft, its taxes computed again, posted and sent.
        self.company.tax_calculation_rounding_method = "round_per_line"
        invoice.button_draft()
        invoice.invoice_line_ids.write({"price_unit": 0.11})
        invoice.action_post()
        self.assertEqual(invoice.amount_tax, 0.09)  # 3 x round(0.11 x 23 %)
        self.send_and_complete(invoice)
        self.assert_totals(self.remote(invoice), invoice)

    def test_cash_rounding_stops_the_document(self):
        rounding = self.env["account.cash.rounding"].create({
            "name": "1 zł", "rounding": 1.0, "strategy": "add_invoice_line",
            "rounding_method": "HALF-UP",
            "profit_account_id": self.company_data["default_account_revenue"].id,
            "loss_account_id": self.company_data["default_account_expense"].id,
        })
        order = self.create_order([(self.product, 1, 10.10, 0.0, self.tax_23)])
        invoice = self.invoice_order(order, post=False)
        invoice.invoice_cash_rounding_id = rounding
        invoice.action_post()
        self.assertEqual(invoice.amount_total, 12.0)
        self.assert_stopped(invoice, "gross 12.42 in inFakt, 12.00 in Odoo",
                            "uses a cash rounding")

    def test_price_with_more_than_two_decimals_stops_the_document(self):
        precision = self.env.ref("product.decimal_price")
        precision.digits = 4
        self.addCleanup(setattr, precision, "digits", 2)
        order = self.create_order([(self.product, 3, 33.3333, 0.0, self.tax_23)])
        invoice = self.invoice_order(order)
        self.assertEqual(invoice.amount_untaxed, 100.0)
        self.assert_stopped(invoice, "the unit price 33.3333", "more than two decimals")
