# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0).
{
    "name": "Poland - inFakt Invoicing and KSeF",
    "summary": "Send invoices and corrections to inFakt.pl (and KSeF) exactly once, "
    "with PDFs back on the invoice and the sale order",
    "version": "18.0.3.0.0",
    "category": "Accounting/Localizations/EDI",
    "author": "l10n_pl_infakt developers",
    "website": "https://github.com/l10n-pl-infakt/l10n_pl_infakt",
    "license": "LGPL-3",
    "countries": ["pl"],
    "depends": ["sale", "sale_management", "account", "mail", "bus", "l10n_pl"],
    "external_dependencies": {"python": ["requests"]},
    "data": [
        "security/infakt_security.xml",
        "security/ir.model.access.csv",
        "data/ir_cron.xml",
        "data/mail_activity_type.xml",
        "security/infakt_reconciliation_security.xml",
        "views/infakt_reconciliation_views.xml",
        "views/infakt_account_views.xml",
        "views/infakt_series_views.xml",
        "views/infakt_payment_mapping_views.xml",
        "views/infakt_document_views.xml",
        "views/infakt_webhook_event_views.xml",
        "views/account_move_views.xml",
        "views/account_tax_views.xml",
        "views/product_template_views.xml",
        "views/sale_order_views.xml",
        "views/infakt_menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "l10n_pl_infakt/static/src/**/*",
        ],
        "web.assets_tests": [
            "l10n_pl_infakt/static/tests/tours/**/*",
        ],
    },
}
