from odoo import fields, models


class ProductTemplate(models.Model):
    _inherit = "product.template"

    infakt_split_payment = fields.Boolean(
        string="Split Payment (Annex 15)",
        help="The product is listed in Annex 15 of the VAT act. An invoice to a Polish business "
        "whose total exceeds 15 000 PLN and that has such a product is sent to inFakt with the "
        "split payment marking (mechanizm podzielonej płatności, MPP in JPK_V7).",
    )
