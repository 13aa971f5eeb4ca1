from odoo import api, fields, models, tools
from odoo.exceptions import ValidationError
from odoo.tools import SQL
from odoo.tools.translate import LazyTranslate

from ..const import DOCUMENT_TYPES
from .infakt_account import _problems_html

_lt = LazyTranslate(__name__)

# How a series reads: the documents it sends, then the journal whose numbers they take (the
# journal code is the series; "KOR - Correction (FV)" read like "a correction of FV").
SERIES_LABELS = {
    "invoice": _lt("Invoices of journal %(code)s"),
    "correction": _lt("Corrections of journal %(code)s"),
}
SERIES_LABELS_NO_JOURNAL = {
    "invoice": _lt("Invoices (no journal)"),
    "correction": _lt("Corrections (no journal)"),
}


class InfaktSeries(models.Model):
    _name = "infakt.series"
    _description = "inFakt Document Series"
    _order = "account_id, document_type, id"
    _check_company_auto = True

    account_id = fields.Many2one(
        "infakt.account", required=True, ondelete="cascade", index=True, string="inFakt Account"
    )
    company_id = fields.Many2one(related="account_id.company_id", store=True, index=True)
    journal_id = fields.Many2one(
        "account.journal",
        check_company=True,
        domain="[('type', '=', 'sale')]",
        ondelete="restrict",
        help="The sales journal whose documents of this type are sent to inFakt. The number "
        "Odoo gives a document becomes its number in inFakt.",
    )
    document_type = fields.Selection(DOCUMENT_TYPES, required=True, default="invoice")
    name = fields.Char(compute="_compute_name", store=True)
    config_problems = fields.Html(
        string="Configuration Problems", compute="_compute_config_problems", sanitize=False
    )
    has_config_problems = fields.Boolean(compute="_compute_config_problems")

    _sql_constraints = [
        (
            "journal_document_type_uniq",
            "unique(journal_id, document_type)",
            "Each document series (journal and document type) can belong to only one inFakt "
            "account.",
        ),
    ]

    @api.depends("journal_id.code", "document_type")
    def _compute_name(self):
        for series in self:
            series.name = series._series_label()

    @api.depends("journal_id.code", "document_type")
    @api.depends_context("lang")
    def _compute_display_name(self):
        for series in self:
            series.display_name = series._series_label(translate=True)

    def _series_label(self, translate=False):
        self.ensure_one()
        labels = SERIES_LABELS if self.journal_id else SERIES_LABELS_NO_JOURNAL
        label = labels.get(self.document_type)
        if not label:
            return ""
        text = self.env._(label) if translate else label._source
        return text % {"code": self.journal_id.code} if self.journal_id else text

    @api.depends("journal_id", "document_type", "account_id")
    def _compute_config_problems(self):
        for series in self:
            problems = series._get_series_problems()
            series.has_config_problems = bool(problems)
            series.config_problems = _problems_html(problems)

    def _get_series_problems(self):
        self.ensure_one()
        label = self.display_name or self.env._("Series")
        if not self.journal_id:
            return [(label, self.env._("Choose the sales journal of this series."))]
        if self.journal_id.type != "sale":
            return [
                (label, self.env._("The journal %s is not a sales journal.", self.journal_id.name))
            ]
        if self.journal_id.company_id != self.account_id.company_id:
            return [(label, self.env._("The journal belongs to another company than the account."))]
        return []

    def _series_by_journal_and_type(self, journals):
        """{(journal id, document type): series} of active accounts, in one query."""
        series = self.search(
            [("journal_id", "in", journals.ids), ("account_id.active", "=", True)]
        )
        return {(s.journal_id.id, s.document_type): s for s in series}

    @api.model
    @tools.ormcache()
    def _posting_map(self):
        """{(journal id, document type): (account id, automatic sending)} of the series of
        active accounts: what posting an invoice needs to queue it, read once per registry
        (posting one invoice per transaction must not pay for a search and its reads). Cleared
        when a series changes, or an account is created, archived or switches auto sending."""
        self.flush_model(["journal_id", "document_type", "account_id"])
        self.env["infakt.account"].flush_model(["active", "auto_send"])
        self.env.cr.execute(SQL(
            """SELECT s.journal_id, s.document_type, a.id, a.auto_send
                 FROM infakt_series s JOIN infakt_account a ON a.id = s.account_id
                WHERE a.active AND s.journal_id IS NOT NULL"""))
        return {(journal, kind): (account, bool(auto))
                for journal, kind, account, auto in self.env.cr.fetchall()}

    def _check_unique_assignment(self, pairs):
        """Refuse a journal + type already used by another account, naming that account."""
        for journal_id, document_type, own_ids in pairs:
            if not journal_id:
                continue
            other = self.sudo().with_context(active_test=False).search(
                [
                    ("journal_id", "=", journal_id),
                    ("document_type", "=", document_type),
                    ("id", "not in", own_ids),
                ],
                limit=1,
            )
            if other:
                raise ValidationError(
                    self.env._(
                        "The series %(series)s is already used by the inFakt account "
                        "\"%(account)s\". Each document series can be assigned only once.",
                        series=other.name,
                        account=other.account_id.name,
                    )
                )

    @api.model_create_multi
    def create(self, vals_list):
        seen = set()
        for vals in vals_list:
            key = (vals.get("journal_id"), vals.get("document_type", "invoice"))
            if key[0] and key in seen:
                raise ValidationError(
                    self.env._("The same journal and document type are entered twice.")
                )
            seen.add(key)
        self._check_unique_assignment([(j, t, []) for j, t in seen])
        self.env.registry.clear_cache()  # _posting_map
        return super().create(vals_list)

    def write(self, vals):
        if "journal_id" in vals or "document_type" in vals:
            for series in self:
                self._check_unique_assignment(
                    [
                        (
                            vals.get("journal_id", series.journal_id.id),
                            vals.get("document_type", series.document_type),
                            [series.id],
                        )
                    ]
                )
        self.env.registry.clear_cache()  # _posting_map
        return super().write(vals)

    def unlink(self):
        self.env.registry.clear_cache()  # _posting_map
        return super().unlink()
