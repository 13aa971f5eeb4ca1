from odoo import api, fields, models


class InfaktBankAccount(models.Model):
    _name = "infakt.bank.account"
    _description = "inFakt Bank Account"
    _order = "is_default desc, id"
    _rec_names_search = ["custom_name", "bank_name", "account_number"]

    account_id = fields.Many2one(
        "infakt.account", required=True, ondelete="cascade", index=True, string="inFakt Account"
    )
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    active = fields.Boolean(default=True)
    infakt_id = fields.Integer(string="inFakt ID", required=True)
    account_number = fields.Char(required=True)
    bank_name = fields.Char()
    swift = fields.Char(string="SWIFT")
    currency = fields.Char()
    custom_name = fields.Char()
    is_default = fields.Boolean(string="Default in inFakt")

    _sql_constraints = [
        ("infakt_id_uniq", "unique(account_id, infakt_id)", "This bank account is already known."),
    ]

    @api.depends("account_number", "bank_name", "custom_name")
    def _compute_display_name(self):
        for bank in self:
            label = bank.custom_name or bank.bank_name
            bank.display_name = (
                f"{label} - {bank.account_number}" if label else bank.account_number
            )
