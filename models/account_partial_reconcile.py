from odoo import api, models


class AccountPartialReconcile(models.Model):
    _inherit = "account.partial.reconcile"

    @api.model_create_multi
    def create(self, vals_list):
        partials = super().create(vals_list)
        moves = (partials.debit_move_id | partials.credit_move_id).move_id
        moves.filtered(lambda m: m.move_type == "out_invoice")._infakt_sync_payment_state()
        return partials
