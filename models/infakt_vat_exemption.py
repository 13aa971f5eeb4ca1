from odoo import api, fields, models


class InfaktVatExemption(models.Model):
    """A VAT exemption basis as inFakt lists it (``GET /vat_exemptions.json``: 112 entries with
    sparse integer ids), read by the account's Refresh inFakt lists. A line taxed ``zw`` is sent
    with the id of the basis chosen on its tax (or the account's default): inFakt prints the
    basis on the invoice (art. 106e ust. 1 pkt 19a of the VAT act) and files it with KSeF."""

    _name = "infakt.vat.exemption"
    _description = "inFakt VAT Exemption Basis"
    _order = "account_id, infakt_id"
    _rec_names_search = ["description", "legal_basis_rule", "infakt_id"]

    account_id = fields.Many2one(
        "infakt.account", required=True, ondelete="cascade", index=True, string="inFakt Account"
    )
    company_id = fields.Many2one(related="account_id.company_id", store=True, index=True)
    active = fields.Boolean(default=True)
    infakt_id = fields.Integer(string="inFakt ID", required=True)
    description = fields.Char(required=True)
    legal_basis_rule = fields.Char(string="Legal Basis")
    legal_basis_source = fields.Char(string="Legal Act")

    _sql_constraints = [
        ("infakt_id_uniq", "unique(account_id, infakt_id)",
         "This VAT exemption basis is already known."),
    ]

    @api.depends("description", "legal_basis_rule")
    def _compute_display_name(self):
        for basis in self:
            basis.display_name = (
                f"{basis.legal_basis_rule} - {basis.description}" if basis.legal_basis_rule
                else basis.description
            )
