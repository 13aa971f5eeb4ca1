from odoo import api, fields, models

from .. import const

INFAKT_TAX_SYMBOLS = [
    ("23", "23%"),
    ("8", "8%"),
    ("5", "5%"),
    ("0", "0%"),
    ("zw", "zw - exempt"),
    ("np", "np - not subject to VAT in Poland"),
    ("oo", "oo - reverse charge"),
]
# Kept for code that imported it from here; the table is in const.py.
AUTOMATIC_RATES = const.AUTOMATIC_RATES


class AccountTax(models.Model):
    _inherit = "account.tax"

    infakt_tax_symbol = fields.Selection(
        INFAKT_TAX_SYMBOLS,
        string="inFakt Tax Symbol",
        help="How inFakt names this tax. Left empty, the taxes of Odoo's Polish chart are "
        "mapped by what they are (0% Exempt: zw, 0% EU S and 0% EX S: np, 0% EU G and 0% EX G: "
        "0...) and other 23%, 8% and 5% taxes by their rate; any other tax must be given a "
        "symbol here.",
    )
    infakt_vat_exemption_id = fields.Many2one(
        "infakt.vat.exemption",
        string="VAT Exemption Basis",
        domain="[('company_id', 'child_of', company_id)]",
        ondelete="set null",
        help="The legal basis of the exemption, from inFakt's list (click Refresh inFakt lists on "
        "the inFakt account to read it), printed on invoices with lines taxed 'zw'.",
    )
    infakt_vat_exemption_reason = fields.Char(
        string="inFakt VAT Exemption Reason (old)",
        help="The inFakt id typed by hand in earlier versions. It is used until a basis is chosen "
        "from inFakt's list, and chosen for you when inFakt's list is read.",
    )
    infakt_symbol_sent = fields.Char(
        string="Sent to inFakt as", compute="_compute_infakt_symbol_sent",
        help="The inFakt tax symbol invoice lines with this tax are sent with.",
    )

    @api.depends("infakt_tax_symbol", "amount", "amount_type", "type_tax_use")
    def _compute_infakt_symbol_sent(self):
        templates = self._infakt_template_ids()
        for tax in self:
            if tax.type_tax_use != "sale":
                tax.infakt_symbol_sent = False
                continue
            symbol = tax._infakt_profile(templates).get("symbol")
            tax.infakt_symbol_sent = symbol or self.env._("Not mapped: set the inFakt Tax Symbol")

    # ------------------------------------------------------------------------------------
    # What the tax is in inFakt
    # ------------------------------------------------------------------------------------
    def _infakt_template_ids(self):
        """``{tax id: template id}`` of the taxes made from a chart template (their xmlid is
        ``account.<company id>_<template id>``, see ``account.chart.template.ref``)."""
        ids = [tax_id for tax_id in self.ids if isinstance(tax_id, int)]
        if not ids:
            return {}
        rows = self.env["ir.model.data"].sudo().search_read(
            [("model", "=", "account.tax"), ("module", "=", "account"), ("res_id", "in", ids)],
            ["name", "res_id"],
        )
        companies = {tax.id: tax.company_id for tax in self}
        result = {}
        for row in rows:
            company = companies.get(row["res_id"])
            for candidate in (company | company.parent_ids) if company else ():
                prefix = f"{candidate.id}_"
                if row["name"].startswith(prefix):
                    result[row["res_id"]] = row["name"][len(prefix):]
                    break
        return result

    def _infakt_profile(self, template_ids=None):
        """What this tax is in inFakt: ``{"symbol", "markings", "note", "source"}``;
        ``symbol`` is None when it cannot be mapped. An explicit inFakt Tax Symbol wins, then
        the Polish chart's table (``const.L10N_PL_TAXES``), then 23/8/5 % by rate."""
        self.ensure_one()
        if template_ids is None:
            template_ids = self._infakt_template_ids()
        chart = const.L10N_PL_TAXES.get(template_ids.get(self.id)) or {}
        profile = {
            "symbol": None,
            "markings": tuple(chart.get("markings", ())),
            "note": chart.get("note"),
            "source": None,
        }
        if self.infakt_tax_symbol:
            profile.update(symbol=self.infakt_tax_symbol, source="explicit")
            if chart and chart.get("symbol") != self.infakt_tax_symbol:
                # The user says the tax is something else than the chart says: the chart's
                # markings and words no longer apply.
                profile.update(markings=(), note=None)
        elif chart.get("symbol"):
            profile.update(symbol=chart["symbol"], source="chart")
        elif self.amount_type == "percent":
            symbol = const.AUTOMATIC_RATES.get(round(self.amount, 4))
            if symbol:
                profile.update(symbol=symbol, source="rate")
        return profile

    def _get_infakt_tax_symbol(self):
        """The inFakt tax_symbol of this tax, or False when it cannot be mapped."""
        self.ensure_one()
        return self._infakt_profile().get("symbol") or False

    def _infakt_exemption_id(self):
        """The inFakt id of this tax's VAT exemption basis, or None: the basis chosen from
        inFakt's list, else the id typed in earlier versions."""
        self.ensure_one()
        if self.infakt_vat_exemption_id:
            return self.infakt_vat_exemption_id.infakt_id
        legacy = (self.infakt_vat_exemption_reason or "").strip()
        return int(legacy) if legacy.isdigit() and int(legacy) > 0 else None
