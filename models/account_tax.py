from odoo import fields, models

INFAKT_TAX_SYMBOLS = [
    ("23", "23%"),
    ("8", "8%"),
    ("5", "5%"),
    ("0", "0%"),
    ("zw", "zw - exempt"),
    ("np", "np - not subject to VAT in Poland"),
    ("oo", "oo - reverse charge"),
]
AUTOMATIC_RATES = {23.0: "23", 8.0: "8", 5.0: "5", 0.0: "0"}


class AccountTax(models.Model):
    _inherit = "account.tax"

    infakt_tax_symbol = fields.Selection(
        INFAKT_TAX_SYMBOLS,
        string="inFakt Tax Symbol",
        help="How inFakt names this tax. Left empty, 23%, 8%, 5% and 0% percentage taxes are "
        "mapped by their rate; exempt (zw), not subject (np) and reverse charge (oo) must be "
        "set here.",
    )
    infakt_vat_exemption_reason = fields.Char(
        string="inFakt VAT Exemption Reason",
        help="inFakt id of the VAT exemption reason (list in inFakt: /vat_exemptions) for "
        "taxes with the symbol zw.",
    )

    def _get_infakt_tax_symbol(self):
        """The inFakt tax_symbol of this tax, or False when it cannot be mapped."""
        self.ensure_one()
        if self.infakt_tax_symbol:
            return self.infakt_tax_symbol
        if self.amount_type == "percent":
            return AUTOMATIC_RATES.get(round(self.amount, 4), False)
        return False
