from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..const import INFAKT_PAYMENT_METHODS


class InfaktPaymentMapping(models.Model):
    _name = "infakt.payment.mapping"
    _description = "inFakt Payment Method Mapping"
    _order = "account_id, sequence, id"
    _check_company_auto = True

    account_id = fields.Many2one(
        "infakt.account", required=True, ondelete="cascade", index=True, string="inFakt Account"
    )
    company_id = fields.Many2one(related="account_id.company_id", store=True)
    sequence = fields.Integer(default=10)
    payment_provider_id = fields.Many2one(
        "payment.provider",
        check_company=True,
        help="Invoices paid (or to be paid) through this provider, e.g. an online shop "
        "payment.",
    )
    payment_method_id = fields.Many2one(
        "payment.method",
        help="Payment method of the transaction (card, BLIK, transfer ...).",
    )
    payment_term_id = fields.Many2one(
        "account.payment.term", string="Payment Terms", check_company=True
    )
    infakt_payment_method = fields.Selection(
        INFAKT_PAYMENT_METHODS, string="inFakt Payment Method", required=True
    )
    is_default = fields.Boolean(compute="_compute_is_default", string="Default")

    @api.depends("payment_provider_id", "payment_method_id", "payment_term_id")
    def _compute_is_default(self):
        for mapping in self:
            mapping.is_default = mapping._is_default()

    def _is_default(self):
        self.ensure_one()
        return not (self.payment_provider_id or self.payment_method_id or self.payment_term_id)

    @api.constrains(
        "account_id", "payment_provider_id", "payment_method_id", "payment_term_id"
    )
    def _check_unique_source(self):
        for mapping in self:
            duplicate = self.search_count(
                [
                    ("id", "!=", mapping.id),
                    ("account_id", "=", mapping.account_id.id),
                    ("payment_provider_id", "=", mapping.payment_provider_id.id),
                    ("payment_method_id", "=", mapping.payment_method_id.id),
                    ("payment_term_id", "=", mapping.payment_term_id.id),
                ]
            )
            if duplicate:
                raise ValidationError(
                    self.env._(
                        "The account %s already maps this provider, method and payment term.",
                        mapping.account_id.name,
                    )
                )

    @api.depends("payment_provider_id", "payment_method_id", "payment_term_id")
    def _compute_display_name(self):
        for mapping in self:
            parts = [
                record.display_name
                for record in (
                    mapping.payment_provider_id,
                    mapping.payment_method_id,
                    mapping.payment_term_id,
                )
                if record
            ]
            mapping.display_name = " / ".join(parts) or self.env._("Default")

    def _match_score(self, providers, methods, term):
        """How well this mapping fits; None when it does not apply."""
        self.ensure_one()
        if self.payment_provider_id and self.payment_provider_id not in providers:
            return None
        if self.payment_method_id and self.payment_method_id not in methods:
            return None
        if self.payment_term_id and self.payment_term_id != term:
            return None
        return (
            (4 if self.payment_method_id else 0)
            + (2 if self.payment_provider_id else 0)
            + (1 if self.payment_term_id else 0)
        )
