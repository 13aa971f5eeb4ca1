from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError

LINE_KINDS = [
    ("missing_in_infakt", "Missing in inFakt"),
    ("only_in_infakt", "Only in inFakt"),
    ("total_differs", "Total differs"),
    ("ksef_differs", "KSeF differs"),
    ("wrong_number", "Wrong number"),
    ("matched", "Matched"),
]
# The counters of the form, one per kind.
COUNT_FIELDS = {kind: f"count_{kind}" for kind, _label in LINE_KINDS}


def _last_month(record):
    """The month before today (the month of the coming VAT return)."""
    end = fields.Date.context_today(record).replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


class InfaktReconciliation(models.Model):
    """A period of an inFakt account reconciled with inFakt (mission B12): Odoo's posted
    invoices and credit notes of the period side by side with inFakt's documents of the same
    invoice dates, each difference a line with the action that fixes it. Read in the
    background (``infakt.reconciliation.match``), page by page, within inFakt's read limit."""

    _name = "infakt.reconciliation"
    _description = "inFakt Reconciliation of a Period"
    _order = "date_from desc, id desc"
    _check_company_auto = True

    name = fields.Char(string="Period", compute="_compute_name", store=True)
    account_id = fields.Many2one("infakt.account", required=True,
                                 ondelete="cascade", check_company=True,
                                 default=lambda self: self._default_account())
    company_id = fields.Many2one("res.company", related="account_id.company_id", store=True,
                                 index=True)
    date_from = fields.Date(string="From", required=True,
                            default=lambda self: _last_month(self)[0])
    date_to = fields.Date(string="To", required=True, default=lambda self: _last_month(self)[1])
    state = fields.Selection(
        [("draft", "Not started"), ("running", "Reading inFakt"), ("done", "Reconciled"),
         ("failed", "Failed to read")],
        string="Reconciliation", default="draft", required=True, readonly=True, copy=False)
    message = fields.Text(readonly=True, copy=False)
    progress = fields.Float(readonly=True, copy=False, help="Percentage of the period read.")
    pages_read = fields.Integer(readonly=True, copy=False)
    infakt_read_count = fields.Integer(string="Read from inFakt", readonly=True, copy=False)
    started_at = fields.Datetime(readonly=True, copy=False)
    finished_at = fields.Datetime(readonly=True, copy=False)
    # Where the reading stopped (kind, offset) and what was read so far: the job resumes here.
    cursor = fields.Json(readonly=True, copy=False)
    remote_rows = fields.Json(readonly=True, copy=False)
    page_size = fields.Integer(default=100, help="Rows per list call (inFakt's maximum: 100).")
    line_ids = fields.One2many("infakt.reconciliation.line", "reconciliation_id",
                               string="Lines", readonly=True)
    count_missing_in_infakt = fields.Integer(compute="_compute_counts",
                                             string="Missing in inFakt")
    count_only_in_infakt = fields.Integer(compute="_compute_counts", string="Only in inFakt")
    count_total_differs = fields.Integer(compute="_compute_counts", string="Total differs")
    count_ksef_differs = fields.Integer(compute="_compute_counts", string="KSeF differs")
    count_wrong_number = fields.Integer(compute="_compute_counts", string="Wrong number")
    count_matched = fields.Integer(compute="_compute_counts", string="Matched")

    _sql_constraints = [
        ("period_check", "CHECK(date_from <= date_to)", "The period must end after it starts."),
    ]

    @api.model
    def _default_account(self):
        return self.env["infakt.account"].search(
            [("company_id", "in", self.env.companies.ids)], limit=1)

    @api.depends("account_id.name", "date_from", "date_to")
    def _compute_name(self):
        for record in self:
            record.name = f"{record.account_id.name or ''} {record.date_from or ''}.." \
                          f"{record.date_to or ''}"

    @api.depends("line_ids.kind")
    def _compute_counts(self):
        groups = self.env["infakt.reconciliation.line"]._read_group(
            [("reconciliation_id", "in", self.ids)], ["reconciliation_id", "kind"],
            ["__count"])
        counts = {(record.id, kind): count for record, kind, count in groups}
        for record in self:
            for kind, field in COUNT_FIELDS.items():
                record[field] = counts.get((record.id, kind), 0)

    # ------------------------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------------------------
    def _check_infakt_user(self):
        self.env["infakt.document"]._infakt_check_user()
        self.check_access("write")

    def action_start(self):
        """Read the period again from inFakt, in the background (progress on the form)."""
        self._check_infakt_user()
        for record in self:
            if record.state == "running":
                raise UserError(self.env._("This reconciliation is already running."))
            record.line_ids.sudo().unlink()
            record.sudo().write({
                "state": "running", "message": False, "progress": 0.0, "pages_read": 0,
                "infakt_read_count": 0, "cursor": {"kind": 0, "offset": 0},
                "remote_rows": [], "started_at": fields.Datetime.now(),
                "finished_at": False,
            })
        self.env["infakt.reconciliation.match"]._trigger()
        return True

    def action_refresh(self):
        """Read the progress again (the form reloads after a button)."""
        return True

    def action_view_lines(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "l10n_pl_infakt.infakt_reconciliation_line_action")
        action["domain"] = [("reconciliation_id", "=", self.id)]
        kind = self.env.context.get("reconciliation_kind")
        action["context"] = {"search_default_filter_" + kind: 1} if kind else {}
        return action


class InfaktReconciliationLine(models.Model):
    """One difference (or one match) of a reconciliation: an Odoo invoice, an inFakt document
    or both, with the action that fixes it."""

    _name = "infakt.reconciliation.line"
    _description = "inFakt Reconciliation Line"
    _order = "kind_sequence, invoice_date, id"

    reconciliation_id = fields.Many2one("infakt.reconciliation", required=True,
                                        ondelete="cascade", index=True, readonly=True)
    company_id = fields.Many2one(related="reconciliation_id.company_id", store=True)
    account_id = fields.Many2one(related="reconciliation_id.account_id",
                                 string="Reconciled Account")
    kind = fields.Selection(LINE_KINDS, required=True, readonly=True, string="Difference")
    kind_sequence = fields.Integer(readonly=True)
    move_id = fields.Many2one("account.move", string="Invoice in Odoo", readonly=True,
                              index="btree_not_null")
    document_id = fields.Many2one("infakt.document", string="Exchange with inFakt",
                                  readonly=True)
    partner_id = fields.Many2one(related="move_id.partner_id", string="Buyer in Odoo")
    invoice_date = fields.Date(string="Date in Odoo", readonly=True)
    odoo_number = fields.Char(string="Number in Odoo", readonly=True)
    infakt_number = fields.Char(string="Number in inFakt", readonly=True)
    infakt_uuid = fields.Char(string="UUID in inFakt", readonly=True)
    infakt_kind = fields.Char(string="Kind in inFakt", readonly=True)
    infakt_date = fields.Date(string="Date in inFakt", readonly=True)
    infakt_buyer = fields.Char(string="Buyer in inFakt", readonly=True)
    currency = fields.Char(string="Currency Code", readonly=True)
    odoo_total = fields.Float(string="Total in Odoo", readonly=True, digits=(16, 2))
    infakt_total = fields.Float(string="Total in inFakt", readonly=True, digits=(16, 2))
    odoo_ksef = fields.Char(string="KSeF in Odoo", readonly=True)
    infakt_ksef = fields.Char(string="KSeF in inFakt", readonly=True)
    note = fields.Char(string="What to do", readonly=True)
    # The action offered on the row (the buttons follow it).
    fix = fields.Selection(
        [("send", "Send"), ("link", "Link"), ("look_up", "Look up"), ("open", "Open")],
        readonly=True)
    fixed = fields.Boolean(readonly=True, help="The action of this row was done.")

    def _service(self):
        return self.env["infakt.reconciliation.fix"]

    def action_send(self):
        """Missing in inFakt: queue the invoice (or send it again after an error)."""
        self.reconciliation_id._check_infakt_user()
        for line in self:
            self._service()._fix_send(line)
        return True

    def action_link(self):
        """Link the inFakt document of the row to the Odoo invoice, when it is the same
        document (number, buyer tax id, date, gross total and currency)."""
        self.reconciliation_id._check_infakt_user()
        for line in self:
            self._service()._fix_link(line)
        return True

    def action_look_up(self):
        """Read the document again from inFakt (KSeF state, totals, number)."""
        self.reconciliation_id._check_infakt_user()
        for line in self:
            self._service()._fix_look_up(line)
        return True

    def action_open_move(self):
        self.ensure_one()
        if not self.move_id:
            raise UserError(self.env._("This row has no Odoo invoice."))
        return self.move_id._get_records_action()

    def action_open_infakt(self):
        """inFakt's web application, where the document is found by its number."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_url",
            "url": self._service()._app_url(self.account_id),
            "target": "new",
        }
