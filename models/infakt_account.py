import copy
import logging
import re
import secrets
import time
from urllib.parse import urlsplit

from markupsafe import Markup

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import SQL

from .. import const
from ..infakt_api import client as infakt_client
from ..infakt_api import errors as infakt_errors
from .infakt_run import InfaktAccountBlocked

_logger = logging.getLogger(__name__)

ENVIRONMENTS = [
    ("production", "Production (api.infakt.pl)"),
    ("sandbox", "Sandbox (api.sandbox-infakt.pl)"),
    ("custom", "Custom URL"),
]

# A request waits at most this long for its moment (the pacer); past it, the step stops and the
# run plans itself for later. User actions (test connection) wait a little longer.
MAX_READ_WAIT = 2.0
MAX_WRITE_WAIT = 10.0
MAX_USER_WAIT = 10.0
# Hosts the API key may be sent to over plain http (the simulator on this machine); more in the
# system parameter below (comma separated host names, e.g. a simulator container).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
HTTP_HOSTS_PARAM = "l10n_pl_infakt.http_hosts"
# Characters that a key pasted from a web page or an e-mail may carry without being part of it.
_INVISIBLE_CHARACTERS = re.compile(r"[\s\u200b\u200c\u200d\u2060\ufeff\u00a0]+")


def _new_webhook_token():
    return secrets.token_urlsafe(32)


def _problems_html(problems):
    """Render ``(field label, message)`` pairs as an HTML list (escaped), or False."""
    if not problems:
        return False
    items = Markup("").join(
        Markup("<li><strong>%s</strong>: %s</li>") % (label, message)
        for label, message in problems
    )
    return Markup('<ul class="mb-0">%s</ul>') % items


class InfaktAccount(models.Model):
    _name = "infakt.account"
    _description = "inFakt Account"
    _inherit = ["mail.thread"]
    _order = "sequence, name, id"
    _check_company_auto = True

    # --- identity -------------------------------------------------------------------------
    name = fields.Char(required=True, tracking=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True, tracking=True)
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company, index=True
    )
    series_ids = fields.One2many("infakt.series", "account_id", string="Document Series")
    payment_mapping_ids = fields.One2many(
        "infakt.payment.mapping", "account_id", string="Payment Method Mapping"
    )
    bank_account_ids = fields.One2many(
        "infakt.bank.account", "account_id", string="inFakt Bank Accounts"
    )
    document_ids = fields.One2many("infakt.document", "account_id", string="Documents")

    # --- connection -----------------------------------------------------------------------
    # Where the API key goes: Settings administrators only (the key leaves in every request).
    environment = fields.Selection(
        ENVIRONMENTS, required=True, default="production", tracking=True,
        groups="base.group_system",
    )
    api_url = fields.Char(
        string="API URL",
        groups="base.group_system",
        help="Base URL of the inFakt API ending in /api/v3, used with the custom environment "
        "(for example the local inFakt simulator): https, or http to this machine "
        "(127.0.0.1, localhost, ::1) or to a host of the system parameter "
        "l10n_pl_infakt.http_hosts.",
    )
    # What the others see of the destination (no URL path, no way to change it).
    destination = fields.Char(
        string="inFakt Environment", compute="_compute_destination",
        help="Where this account sends its documents; set by Settings administrators.",
    )
    api_key = fields.Char(
        string="API Key",
        groups="base.group_system",
        copy=False,
        prefetch=False,
        help="The key made in inFakt under Settings > Other options > API (Ustawienia > Inne "
        "opcje > API). inFakt shows it only once.",
    )
    api_key_new = fields.Char(
        string="New API Key",
        compute="_compute_api_key_new",
        inverse="_inverse_api_key_new",
        groups="base.group_system",
        help="Paste the API key here. Once saved it is never shown again.",
    )
    api_key_set = fields.Boolean(string="API Key Set", compute="_compute_api_key_set")
    connection_state = fields.Selection(
        [("untested", "Not tested"), ("ok", "Connected"), ("failed", "Failed")],
        default="untested",
        readonly=True,
        copy=False,
    )
    connection_message = fields.Char(readonly=True, copy=False)
    connection_tested_at = fields.Datetime(readonly=True, copy=False)

    # --- webhook --------------------------------------------------------------------------
    webhook_token = fields.Char(
        default=lambda self: _new_webhook_token(),
        copy=False,
        readonly=True,
        groups="base.group_system",
    )
    webhook_url = fields.Char(string="Webhook URL", compute="_compute_webhook_url",
                              groups="base.group_system")
    webhook_secret = fields.Char(
        string="Webhook HMAC Secret",
        groups="base.group_system",
        copy=False,
        prefetch=False,
        help="The secret key for HMAC that inFakt shows in the webhook details after the "
        "webhook is created.",
    )
    webhook_secret_new = fields.Char(
        string="New Webhook HMAC Secret",
        compute="_compute_api_key_new",
        inverse="_inverse_webhook_secret_new",
        groups="base.group_system",
        help="Paste the HMAC secret shown in inFakt's webhook details. Once saved it is never "
        "shown again.",
    )
    webhook_secret_set = fields.Boolean(compute="_compute_api_key_set")
    webhook_verified_at = fields.Datetime(readonly=True, copy=False)
    webhook_last_delivery_at = fields.Datetime(
        compute="_compute_webhook_last_delivery_at", string="Last Webhook Delivery"
    )
    webhook_state = fields.Selection(
        [("not_verified", "Not verified"), ("verified", "Verified")],
        compute="_compute_webhook_state",
    )

    # --- behaviour ------------------------------------------------------------------------
    auto_send = fields.Boolean(
        string="Send Invoices Automatically",
        default=True,
        tracking=True,
        help="Posting an invoice in one of the series queues it for inFakt. When off, "
        "invoices are sent with the Send to inFakt button.",
    )
    download_pdf = fields.Boolean(
        string="Download and Store PDFs",
        default=True,
        help="Download the PDF of each document from inFakt and attach it to the invoice.",
    )
    attach_pdf_to_order = fields.Boolean(
        string="Attach PDFs to the Sale Order",
        default=True,
        help="Also attach the downloaded PDFs to the sale order of the invoice.",
    )
    customer_pdf = fields.Boolean(
        string="Customers Receive the inFakt PDF",
        default=True,
        help="Send & Print and the customer portal give the customer the PDF of inFakt (the "
        "legal document, with its KSeF number) instead of Odoo's rendering.",
    )
    send_to_ksef = fields.Boolean(
        string="Send to KSeF through inFakt",
        help="Ask inFakt to file each document with KSeF right after creating it. Needs an "
        "active KSeF integration in inFakt.",
    )
    error_tag_id = fields.Many2one(
        "crm.tag",
        string="Error Status",
        help="Tag put on the sale order when sending one of its documents to inFakt fails; "
        "removed once the document reaches inFakt.",
    )
    bank_account_id = fields.Many2one(
        "infakt.bank.account",
        string="Bank Account for Transfers",
        domain="[('account_id', '=', id)]",
        help="The bank account (as registered and verified in inFakt) printed on invoices "
        "paid by transfer.",
    )
    vat_exemption_reason = fields.Char(
        string="Default VAT Exemption Reason (old)",
        help="The inFakt id typed by hand in earlier versions. It is used until a default basis "
        "is chosen from inFakt's list, and chosen for you when inFakt's list is read.",
    )
    # --- inFakt's reference lists (read by Refresh inFakt lists, and by Test connection) -----
    vat_exemption_ids = fields.One2many(
        "infakt.vat.exemption", "account_id", string="VAT Exemption Bases"
    )
    vat_exemption_id = fields.Many2one(
        "infakt.vat.exemption",
        string="Default VAT Exemption Basis",
        domain="[('account_id', '=', id)]",
        help="The legal basis printed on invoices with lines taxed 'zw' whose tax does not give "
        "one (for example 'art. 113 ust. 1 i 9', the small business exemption).",
    )
    gtu_ids_by_code = fields.Json(
        string="inFakt GTU Codes", readonly=True, copy=False,
        help="inFakt's ids of the GTU codes (GTU_01...), as read from inFakt.",
    )
    marking_ids_by_code = fields.Json(
        string="inFakt Document Markings", readonly=True, copy=False,
        help="inFakt's ids of the document markings (TP, I_42...), as read from inFakt.",
    )
    lists_read_at = fields.Datetime(string="inFakt Lists Read", readonly=True, copy=False)
    rate_limit_write = fields.Integer(
        string="Write Requests per Window",
        default=150,
        help="inFakt allows 150 non-GET requests per 60 seconds per IP address.",
    )
    rate_limit_read = fields.Integer(
        string="Read Requests per Window",
        default=300,
        help="inFakt allows 300 GET requests per 60 seconds per IP address.",
    )
    rate_limit_window = fields.Integer(string="Rate Limit Window (s)", default=60)
    max_attempts = fields.Integer(
        default=8, help="Transient failures are retried this many times before an error."
    )

    # --- status card ----------------------------------------------------------------------
    document_to_send_count = fields.Integer(compute="_compute_document_counts")
    document_error_count = fields.Integer(compute="_compute_document_counts")
    document_in_doubt_count = fields.Integer(compute="_compute_document_counts")
    document_done_count = fields.Integer(compute="_compute_document_counts")
    config_problems = fields.Html(
        string="Configuration Problems", compute="_compute_config_problems", sanitize=False
    )
    has_config_problems = fields.Boolean(compute="_compute_config_problems")

    _sql_constraints = [
        (
            "webhook_token_uniq",
            "unique(webhook_token)",
            "The webhook token must be unique.",
        ),
        (
            "rate_limit_positive",
            "CHECK(rate_limit_write > 0 AND rate_limit_read > 0 AND rate_limit_window > 0)",
            "The rate limit must be positive.",
        ),
    ]

    # ------------------------------------------------------------------------------------
    # Computes
    # ------------------------------------------------------------------------------------
    def _compute_api_key_new(self):
        self.api_key_new = False
        self.webhook_secret_new = False

    def _inverse_webhook_secret_new(self):
        for account in self:
            if account.webhook_secret_new:
                account.sudo().write({"webhook_secret": account.webhook_secret_new})

    def _inverse_api_key_new(self):
        for account in self:
            if account.api_key_new:
                account.sudo().write(
                    {
                        "api_key": account.api_key_new.strip(),
                        "connection_state": "untested",
                        "connection_message": False,
                    }
                )

    @api.depends("environment", "api_url")
    def _compute_destination(self):
        labels = dict(self._fields["environment"]._description_selection(self.env))
        for account, sudo_account in zip(self, self.sudo(), strict=True):
            label = labels.get(sudo_account.environment) or ""
            if sudo_account.environment == "custom":
                host = urlsplit(sudo_account.api_url or "").hostname
                label = f"{label} ({host})" if host else label
            account.destination = label

    def _compute_api_key_set(self):
        for account, sudo_account in zip(self, self.sudo(), strict=True):
            account.api_key_set = bool(sudo_account.api_key)
            account.webhook_secret_set = bool(sudo_account.webhook_secret)

    @api.depends("webhook_token")
    def _compute_webhook_url(self):
        base_url = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        for account, sudo_account in zip(self, self.sudo(), strict=True):
            token = sudo_account.webhook_token
            account.webhook_url = (
                f"{base_url.rstrip('/')}/infakt/webhook/{token}" if token and base_url else False
            )

    def _compute_webhook_last_delivery_at(self):
        data = {}
        if self.ids:
            groups = (
                self.env["infakt.webhook.event"]
                .sudo()
                ._read_group(
                    [("account_id", "in", self.ids)], ["account_id"], ["received_at:max"]
                )
            )
            data = {account.id: last for account, last in groups}
        for account in self:
            account.webhook_last_delivery_at = data.get(account.id, False)

    @api.depends("webhook_verified_at")
    def _compute_webhook_state(self):
        for account in self:
            account.webhook_state = "verified" if account.webhook_verified_at else "not_verified"

    def _compute_document_counts(self):
        counts = {}
        if self.ids:
            groups = (
                self.env["infakt.document"]
                .sudo()
                ._read_group(
                    [("account_id", "in", self.ids)], ["account_id", "state"], ["__count"]
                )
            )
            for account, state, count in groups:
                counts[(account.id, state)] = count
        for account in self:
            account.document_to_send_count = sum(
                counts.get((account.id, state), 0)
                for state in ("to_send", "sending", "processing")
            )
            account.document_error_count = counts.get((account.id, "error"), 0)
            account.document_in_doubt_count = counts.get((account.id, "in_doubt"), 0)
            account.document_done_count = counts.get((account.id, "done"), 0)

    @api.depends(
        "environment",
        "api_url",
        "connection_state",
        "webhook_verified_at",
        "series_ids.journal_id",
        "payment_mapping_ids.infakt_payment_method",
        "bank_account_id",
        "company_id.vat",
        "company_id.street",
        "company_id.city",
        "company_id.zip",
        "company_id.tax_calculation_rounding_method",
        "lists_read_at",
        "vat_exemption_id",
    )
    def _compute_config_problems(self):
        for account in self:
            problems = account._get_config_problems()
            account.has_config_problems = bool(problems)
            account.config_problems = _problems_html(problems)

    # ------------------------------------------------------------------------------------
    # Configuration check
    # ------------------------------------------------------------------------------------
    def _get_config_problems(self):
        """Return a list of ``(field_label, message)`` telling what to fix before sending."""
        self.ensure_one()
        problems = []
        sudo_self = self.sudo()
        if sudo_self.environment == "custom" and not sudo_self.api_url:
            problems.append(
                (
                    self.env._("API URL"),
                    self.env._("Enter the API URL of the custom environment."),
                )
            )
        if not sudo_self.api_key:
            problems.append(
                (
                    self.env._("API Key"),
                    self.env._("Paste the API key created in inFakt (Settings > Other "
                               "options > API)."),
                )
            )
        elif self.connection_state == "failed":
            problems.append(
                (
                    self.env._("API Key"),
                    self.env._("The last connection test failed: %(message)s",
                               message=self.connection_message or ""),
                )
            )
        elif self.connection_state == "untested" and self.connection_message:
            problems.append(
                (
                    self.env._("Connection"),
                    self.env._("The last connection test did not reach inFakt, so the API key "
                               "is not checked yet: %(message)s Click Test connection again.",
                               message=self.connection_message),
                )
            )
        elif self.connection_state == "untested":
            problems.append(
                (
                    self.env._("API Key"),
                    self.env._("Click Test connection to check the API key."),
                )
            )
        if not self.webhook_verified_at:
            problems.append(
                (
                    self.env._("Webhook URL"),
                    self.env._("The webhook has never been verified: create it in inFakt with this "
                      "URL and click Verify there."),
                )
            )
        if not sudo_self.webhook_secret:
            problems.append(
                (
                    self.env._("Webhook HMAC Secret"),
                    self.env._("Copy the HMAC secret shown in inFakt's webhook details; without it "
                      "webhook deliveries are refused."),
                )
            )
        if not self.series_ids:
            problems.append(
                (
                    self.env._("Document Series"),
                    self.env._("Add at least one document series (FV or KOR)."),
                )
            )
        for series in self.series_ids:
            for label, message in series._get_series_problems():
                problems.append((label, message))
        if not self.payment_mapping_ids.filtered(lambda m: m._is_default()):
            problems.append(
                (
                    self.env._("Payment Method Mapping"),
                    self.env._("Add a default payment method (a mapping line with no provider, "
                      "method or payment term)."),
                )
            )
        needs_bank = any(
            m.infakt_payment_method == "transfer" for m in self.payment_mapping_ids
        )
        if needs_bank and not self.bank_account_id:
            problems.append(
                (
                    self.env._("Bank Account for Transfers"),
                    self.env._("Payments by transfer need the inFakt bank account: click Refresh "
                      "bank accounts and choose one."),
                )
            )
        company = self.company_id
        if not company.vat:
            problems.append(
                (
                    self.env._("Company"),
                    self.env._("Set the Tax ID (NIP) of %s.", company.name),
                )
            )
        if not (company.street and company.city and company.zip):
            problems.append(
                (
                    self.env._("Company"),
                    self.env._("Complete the address (street, city, ZIP) of %s.", company.name),
                )
            )
        for tax in self._get_unmappable_taxes():
            problems.append(
                (
                    self.env._("Taxes"),
                    self.env._(
                        "Tax %(tax)s cannot be mapped to an inFakt tax symbol: set the inFakt "
                      "Tax Symbol on the tax.", tax=tax.display_name),
                )
            )
        problems.extend(self._get_legal_content_problems())
        return problems

    def _get_legal_content_problems(self):
        """What the legal content of the invoices (JPK_V7, KSeF) needs: inFakt's lists, an
        exemption basis for every exempt tax in use, and per-line rounding."""
        self.ensure_one()
        problems = []
        if not self.series_ids:
            return problems
        if not self.lists_read_at:
            problems.append((
                self.env._("inFakt Lists"),
                self.env._("inFakt's lists (VAT exemption bases, GTU codes, document markings) "
                           "have not been read: click Refresh inFakt lists."),
            ))
        for tax in self._get_exempt_taxes_without_basis():
            problems.append((
                self.env._("Taxes"),
                self.env._(
                    "Tax %(tax)s is exempt (zw) but has no VAT exemption basis: choose the basis "
                    "on the tax, or a Default VAT Exemption Basis on the inFakt account.",
                    tax=tax.display_name),
            ))
        if self.company_id.tax_calculation_rounding_method == "round_globally":
            problems.append((
                self.env._("Company"),
                self.env._(
                    "%s computes taxes with Round globally, but inFakt rounds the VAT of each "
                    "line: invoices whose totals differ are stopped before sending. Choose Round "
                    "per line (Invoicing > Configuration > Settings > Taxes).",
                    self.company_id.name),
            ))
        return problems

    def _get_used_sale_taxes(self):
        """The sale taxes that can reach an invoice of this account's company: the default sale
        tax, the taxes of products, and what the fiscal positions turn them into."""
        self.ensure_one()
        company = self.company_id
        Tax = self.env["account.tax"].sudo()
        used = company.account_sale_tax_id
        self.env["product.template"].flush_model(["taxes_id"])
        self.env["account.tax"].flush_model(["type_tax_use", "active", "company_id"])
        self.env.cr.execute(SQL(
            """SELECT DISTINCT rel.tax_id FROM product_taxes_rel rel
                 JOIN account_tax t ON t.id = rel.tax_id
                WHERE t.type_tax_use = 'sale' AND t.active AND t.company_id IN %s""",
            tuple((company | company.parent_ids).ids),
        ))
        used |= Tax.browse([row[0] for row in self.env.cr.fetchall()])
        positions = self.env["account.fiscal.position"].sudo().search(
            self.env["account.fiscal.position"]._check_company_domain(company))
        mappings = positions.tax_ids.filtered(lambda m: m.tax_src_id in used)
        used |= mappings.tax_dest_id
        return used.filtered(lambda t: t.type_tax_use == "sale" and t.active)

    def _get_exempt_taxes_without_basis(self):
        self.ensure_one()
        if self.vat_exemption_id or (self.vat_exemption_reason or "").strip():
            return self.env["account.tax"]
        used = self._get_used_sale_taxes()
        templates = used._infakt_template_ids()
        return used.filtered(
            lambda t: t._infakt_profile(templates)["symbol"] == "zw"
            and not t._infakt_exemption_id())

    def _get_unmappable_taxes(self):
        """The sale taxes that can reach an invoice (an unused tax of the chart of accounts is
        no problem) and have no inFakt symbol: a 0 % tax that is not one of the Polish chart's
        and has no explicit symbol is one (0 %, zw and np are told apart by the law)."""
        self.ensure_one()
        journals = self.series_ids.journal_id
        if not journals:
            return self.env["account.tax"]
        used = self._get_used_sale_taxes()
        templates = used._infakt_template_ids()
        return used.filtered(lambda t: not t._infakt_profile(templates)["symbol"])

    # ------------------------------------------------------------------------------------
    # API access
    # ------------------------------------------------------------------------------------
    def _get_base_url(self):
        self.ensure_one()
        account = self.sudo()  # the destination is readable by Settings administrators only
        return infakt_client.base_url_for(account.environment, account.api_url)

    def _get_client(self, run=None):
        """An API client for this account; every request it makes waits for its moment in the
        shared pacer (``infakt.pacer``). Raises :class:`UserError` when the account cannot
        have one (no key, invalid key or URL), or, inside a run of the scheduled actions,
        :class:`InfaktAccountBlocked` (the run stops the account and says why, once)."""
        self.ensure_one()
        try:
            api_key = self.sudo().api_key
            if not api_key:
                raise UserError(self.env._(
                    "The inFakt account %s has no API key: paste the key made in inFakt "
                    "(Settings > Other options > API) in New API Key.", self.name))
            try:
                base_url = self._get_base_url()
                return infakt_client.InfaktClient(
                    api_key, environment=self.sudo().environment, base_url=base_url,
                    user_agent="Odoo l10n_pl_infakt",
                    timeout=self._infakt_timeout(),
                    on_request=self._infakt_pacing_hook(base_url, run),
                )
            except ValueError as error:
                raise UserError(self.env._(
                    "The inFakt account %(account)s cannot connect: %(error)s",
                    account=self.name, error=error)) from error
        except UserError as error:
            if run is not None:
                raise InfaktAccountBlocked(self, str(error.args[0])) from error
            raise

    def _infakt_client(self, run):
        return self._get_client(run=run)

    @staticmethod
    def _infakt_timeout():
        return infakt_client.RequestTimeout(const.HTTP_CONNECT_TIMEOUT, const.HTTP_READ_TIMEOUT)

    def _describe_error(self, error):
        """Words a person understands for an API error raised while talking to inFakt."""
        return self.env["infakt.document.runner"]._describe(self._infakt_unreflected(error))

    def _infakt_unreflected(self, error):
        """``error`` as it may be shown to every employee (``connection_message``): the text
        of an answer of a host that is neither inFakt nor the simulator (a custom URL) is
        replaced by its HTTP status, so that a custom URL cannot read other servers."""
        account = self[:1].sudo()
        if not account or account.environment != "custom" or error.status is None:
            return error
        host = (urlsplit(account.api_url or "").hostname or "").lower()
        if host in self._infakt_http_hosts():
            return error
        safe = copy.copy(error)
        safe.message = f"HTTP {error.status}"
        safe.args = (safe.message,)
        safe.field_errors = {}
        safe.payload = None
        return safe

    # ------------------------------------------------------------------------------------
    # Pacing (shared by every account with the same egress, and every Odoo process)
    # ------------------------------------------------------------------------------------
    def _infakt_egress(self, base_url=None):
        self.ensure_one()
        return self.env["infakt.pacer"]._egress_of(base_url or self._get_base_url())

    def _infakt_spacing(self, kind):
        limit = self.rate_limit_write if kind == "write" else self.rate_limit_read
        return self.rate_limit_window / max(1, limit - 1)

    def _infakt_pacing_hook(self, base_url, run):
        """The client's ``on_request``: wait for this request's moment, or give up (the step
        stops and its run plans the next one) when that moment is too far away."""
        account = self.sudo()
        egress = account._infakt_egress(base_url)
        spacing = {kind: account._infakt_spacing(kind) for kind in ("read", "write")}
        Pacer = self.env["infakt.pacer"].sudo()

        def on_request(method, path):
            kind = "read" if method in ("GET", "HEAD") else "write"
            if run is None:
                max_wait = MAX_USER_WAIT
            else:
                cap = MAX_READ_WAIT if kind == "read" else MAX_WRITE_WAIT
                max_wait = max(0.0, min(cap, run.remaining()))
            wait = Pacer._reserve(egress, kind, spacing[kind], max_wait)
            if wait < 0:
                error = infakt_errors.InfaktRateLimited(
                    "waiting for the pace of inFakt's limits", retry_after=-wait)
                error.from_pacer = True
                raise error
            if wait > 0:
                time.sleep(wait)
        return on_request

    def _infakt_pause(self, kind, seconds):
        """inFakt answered 429: pause requests of ``kind`` to its host for everybody."""
        self.ensure_one()
        self.env["infakt.pacer"].sudo()._pause(self._infakt_egress(), kind, seconds)

    # ------------------------------------------------------------------------------------
    # Circuit breaker
    # ------------------------------------------------------------------------------------
    def _infakt_block(self, message):
        """The account cannot talk to inFakt (key rejected, plan, permission, no key): stop
        its work, say so once on the account. Its documents keep their place; a successful
        Test connection (or a new key) lets them go on."""
        author = self.env.ref("base.partner_root", raise_if_not_found=False)
        for account in self.sudo():
            if account.connection_state == "failed" and account.connection_message == message:
                continue
            account.write({
                "connection_state": "failed",
                "connection_message": message,
                "connection_tested_at": fields.Datetime.now(),
            })
            account = account.with_context(
                lang=account.company_id.partner_id.lang or self.env.lang)
            account.message_post(
                body=Markup("%s<br/>%s") % (
                    account.env._("Sending to inFakt is stopped for this account:"), message),
                author_id=author.id if author else None, subtype_xmlid="mail.mt_note",
            )

    # ------------------------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------------------------
    def action_test_connection(self):
        self.ensure_one()
        self.check_access("write")  # inFakt administrators: before any request leaves
        message_type = "success"
        try:
            client = self._get_client()
        except UserError as error:
            self.write(
                {
                    "connection_state": "failed",
                    "connection_message": str(error),
                    "connection_tested_at": fields.Datetime.now(),
                }
            )
            return self._notify(str(error), "danger")
        try:
            client.test_connection()
            message = self.env._("Connected to inFakt.")
            state = "ok"
            try:
                self._sync_bank_accounts(client)
            except infakt_errors.InfaktError as error:
                message = self.env._(
                    "Connected to inFakt, but the bank accounts could not be read: %s",
                    self._describe_error(error))
                message_type = "warning"
            if message_type == "success":
                try:
                    self._sync_reference_lists(client)
                except infakt_errors.InfaktError as error:
                    message = self.env._(
                        "Connected to inFakt, but its lists (VAT exemption bases, GTU codes, "
                        "document markings) could not be read: %s", self._describe_error(error))
                    message_type = "warning"
        except (infakt_errors.InfaktAuthError, infakt_errors.InfaktPlanError,
                infakt_errors.InfaktPermissionError) as error:
            state = "failed"
            message = self._describe_error(error)
            message_type = "danger"
        except infakt_errors.InfaktError as error:
            # Unreachable, or slow: says nothing about the key; sending is not stopped.
            state = "untested"
            message = self._describe_error(error)
            message_type = "warning"
        finally:
            client.close()
        was_failed = self.connection_state == "failed"
        self.write(
            {
                "connection_state": state,
                "connection_message": message,
                "connection_tested_at": fields.Datetime.now(),
            }
        )
        if was_failed and state != "failed":
            self.message_post(body=self.env._("Sending to inFakt goes on: %s", message),
                              subtype_xmlid="mail.mt_note")
        if state == "ok":
            Document = self.env["infakt.document"]
            Document._trigger_sender()
            Document._trigger_processor()
        return self._notify(message, message_type)

    def action_refresh_bank_accounts(self):
        self.ensure_one()
        self.check_access("write")  # inFakt administrators: before any request leaves
        client = self._get_client()
        try:
            self._sync_bank_accounts(client)
        except infakt_errors.InfaktError as error:
            raise UserError(self._describe_error(error)) from error
        finally:
            client.close()
        return self._notify(
            self.env._("%s bank account(s) read from inFakt.", len(self.bank_account_ids)),
            "success",
        )

    def action_refresh_lists(self):
        """Read inFakt's lists: VAT exemption bases, GTU codes and document markings."""
        self.ensure_one()
        self.check_access("write")  # inFakt administrators: before any request leaves
        client = self._get_client()
        try:
            self._sync_reference_lists(client)
        except infakt_errors.InfaktError as error:
            raise UserError(self._describe_error(error)) from error
        finally:
            client.close()
        return self._notify(
            self.env._(
                "Read from inFakt: %(bases)s VAT exemption bases, %(gtus)s GTU codes, "
                "%(markings)s document markings.",
                bases=len(self.vat_exemption_ids), gtus=len(self.gtu_ids_by_code or {}),
                markings=len(self.marking_ids_by_code or {})),
            "success",
        )

    def _sync_reference_lists(self, client):
        """Store inFakt's lists (4 to 5 reads): the exemption bases as records to choose from,
        the GTU codes and document markings as ids by code (sending reads nothing)."""
        self.ensure_one()
        exemptions = client.list_vat_exemptions()
        gtus = client.list_gtus()
        markings = client.list_document_markings()
        Exemption = self.env["infakt.vat.exemption"]
        existing = {e.infakt_id: e for e in self.with_context(active_test=False).vat_exemption_ids}
        seen = Exemption
        for entry in exemptions:
            try:
                infakt_id = int(entry.get("id"))
            except (TypeError, ValueError):
                continue
            values = {
                "account_id": self.id,
                "infakt_id": infakt_id,
                "description": (entry.get("description") or "").strip() or str(infakt_id),
                "legal_basis_rule": entry.get("legal_basis_rule") or False,
                "legal_basis_source": entry.get("legal_basis_source") or False,
                "active": True,
            }
            record = existing.get(infakt_id)
            if record:
                record.write(values)
            else:
                record = Exemption.create(values)
            seen |= record
        (self.with_context(active_test=False).vat_exemption_ids - seen).write({"active": False})

        def ids_by(entities, key):
            result = {}
            for entity in entities:
                code = str(entity.get(key) or "").strip().upper()
                if code and isinstance(entity.get("id"), int):
                    result[code] = entity["id"]
            return result

        self.write({
            "gtu_ids_by_code": ids_by(gtus, "name"),
            "marking_ids_by_code": ids_by(markings, "code"),
            "lists_read_at": fields.Datetime.now(),
        })
        self._link_typed_exemption_reasons()

    def _link_typed_exemption_reasons(self):
        """The exemption ids typed by hand in earlier versions become choices from the list."""
        self.ensure_one()
        by_id = {e.infakt_id: e for e in self.vat_exemption_ids}

        def basis(text):
            text = (text or "").strip()
            return by_id.get(int(text)) if text.isdigit() else None

        if not self.vat_exemption_id and basis(self.vat_exemption_reason):
            self.vat_exemption_id = basis(self.vat_exemption_reason)
        company = self.company_id
        taxes = self.env["account.tax"].sudo().with_context(active_test=False).search([
            ("company_id", "in", (company | company.parent_ids).ids),
            ("infakt_vat_exemption_reason", "!=", False),
            ("infakt_vat_exemption_id", "=", False),
        ])
        for tax in taxes:
            if basis(tax.infakt_vat_exemption_reason):
                tax.infakt_vat_exemption_id = basis(tax.infakt_vat_exemption_reason)

    def _infakt_list_id(self, field, code):
        """inFakt's id of a GTU code or document marking, as read from inFakt (None when the
        lists were never read or inFakt has no such code)."""
        self.ensure_one()
        return (self[field] or {}).get(str(code or "").strip().upper())

    def _sync_bank_accounts(self, client):
        self.ensure_one()
        remote = client.list_bank_accounts()
        BankAccount = self.env["infakt.bank.account"]
        existing = {b.infakt_id: b for b in self.with_context(active_test=False).bank_account_ids}
        seen = BankAccount
        for entry in remote:
            infakt_id = entry.get("id")
            if infakt_id is None:
                continue
            values = {
                "account_id": self.id,
                "infakt_id": infakt_id,
                "account_number": entry.get("account_number") or "",
                "bank_name": entry.get("bank_name") or False,
                "swift": entry.get("swift") or False,
                "currency": entry.get("currency") or False,
                "custom_name": entry.get("custom_name") or False,
                "is_default": bool(entry.get("default")),
                "active": True,
            }
            record = existing.get(infakt_id)
            if record:
                record.write(values)
            else:
                record = BankAccount.create(values)
            seen |= record
        (self.with_context(active_test=False).bank_account_ids - seen).write({"active": False})
        if not self.bank_account_id or not self.bank_account_id.active:
            default = seen.filtered("is_default")[:1] or seen[:1]
            self.bank_account_id = default

    def _webhook_mark_verified(self):
        """inFakt's verification request reached us (the user clicked Verify in inFakt)."""
        self.ensure_one()
        self.sudo().write({"webhook_verified_at": fields.Datetime.now()})
        self.sudo().message_post(
            body=self.env._("The webhook was verified by inFakt."),
            author_id=self.env.ref("base.partner_root").id,
        )

    def action_regenerate_webhook_token(self):
        if not self.env.su and not self.env.user.has_group("base.group_system"):
            raise AccessError(self.env._(
                "Only Settings administrators can generate a new webhook URL."))
        for account in self:
            account.sudo().write(
                {"webhook_token": _new_webhook_token(), "webhook_verified_at": False}
            )
            account.message_post(
                body=self.env._("A new webhook URL was generated: update the webhook in inFakt.")
            )

    def action_view_documents(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "l10n_pl_infakt.infakt_document_action"
        )
        action["domain"] = [("account_id", "=", self.id)]
        action["context"] = {"default_account_id": self.id}
        state = self.env.context.get("infakt_state")
        if state:
            action["context"]["search_default_filter_" + state] = 1
        return action

    def action_send_pending(self):
        """Run the sender now for this account's waiting documents."""
        self.env["infakt.document"]._infakt_check_user()
        self.env["infakt.document"]._trigger_sender()
        return self._notify(self.env._("The documents waiting will be sent in a moment."), "info")

    def _notify(self, message, message_type):
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "message": message,
                "type": message_type,
                "sticky": message_type == "danger",
                "next": {"type": "ir.actions.act_window_close"}
                if self.env.context.get("dialog")
                else {"type": "ir.actions.client", "tag": "soft_reload"},
            },
        }

    # ------------------------------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------------------------------
    @api.constrains("environment", "api_url")
    def _check_api_url(self):
        for account in self.sudo():
            if account.environment == "custom":
                account.check_custom_api_url(account.api_url)

    @api.model
    def check_custom_api_url(self, url):
        """Refuse a custom API URL the key must not be sent to: not shaped like inFakt's
        (``http(s)://host/.../api/v3``), or plain http to a host that is not this machine
        (the simulator) nor one of the system parameter ``l10n_pl_infakt.http_hosts``."""
        try:
            url = infakt_client.base_url_for("custom", url)
        except ValueError as error:
            raise ValidationError(self.env._(
                "The API URL must start with http:// or https:// and end with /api/v3 (%s).",
                error,
            )) from error
        parsed = urlsplit(url)
        if parsed.scheme.lower() == "https":
            return True
        if (parsed.hostname or "").lower() not in self._infakt_http_hosts():
            raise ValidationError(self.env._(
                "The API URL must use https://: the API key would travel unencrypted to %s. "
                "Plain http is accepted only for this machine (127.0.0.1, localhost, ::1) and "
                "the hosts of the system parameter l10n_pl_infakt.http_hosts (the inFakt "
                "simulator).", parsed.hostname or url,
            ))
        return True

    @api.model
    def _infakt_http_hosts(self):
        """Hosts that may be reached over plain http: loopback, and the comma separated list
        of the system parameter ``l10n_pl_infakt.http_hosts`` (a simulator in a container)."""
        extra = self.env["ir.config_parameter"].sudo().get_param(HTTP_HOSTS_PARAM) or ""
        return LOOPBACK_HOSTS | {h.strip().lower().strip("[]") for h in extra.split(",")
                                 if h.strip()}

    def _infakt_check_destination_change(self, vals):
        """Where the API key goes (environment, API URL) is changed by Settings administrators
        only (also over RPC), and never while documents are on their way (their answers
        would be looked for on another inFakt)."""
        if not {"environment", "api_url"} & set(vals):
            return
        if not self.env.su and not self.env.user.has_group("base.group_system"):
            raise AccessError(self.env._(
                "Only Settings administrators can change where the API key is sent "
                "(environment, API URL)."))
        for account in self.sudo():
            new_url = account._infakt_url_with(vals)
            if new_url == account._infakt_url_with({}):
                continue
            if account.document_ids.filtered(lambda d: d.state in const.ON_ITS_WAY):
                raise UserError(self.env._(
                    "Documents of the inFakt account %s are on their way to inFakt: wait until "
                    "they are done (or in error) before changing the environment or the API "
                    "URL.", account.name))

    def _infakt_url_with(self, vals):
        """The base URL the account would use with ``vals`` written (None if invalid)."""
        self.ensure_one()
        account = self.sudo()
        environment = vals.get("environment", account.environment)
        api_url = vals.get("api_url", account.api_url)
        try:
            return infakt_client.base_url_for(environment, api_url)
        except ValueError:
            return None

    def _clean_secret(self, value, label):
        """A pasted key or secret without the spaces, line breaks and invisible characters a web
        page or an e-mail adds; refused when something else is not a printable ASCII character
        (inFakt's keys and secrets are)."""
        if not value:
            return value
        cleaned = _INVISIBLE_CHARACTERS.sub("", value)
        if not cleaned.isascii() or not cleaned.isprintable():
            raise ValidationError(self.env._(
                "The %s contains characters that cannot be part of it: copy it again from "
                "inFakt.", label))
        return cleaned

    def _take_new_api_key(self, vals):
        """The pasted key (secret) goes to ``api_key`` (``webhook_secret``) and never comes
        back to the form."""
        new_key = vals.pop("api_key_new", None)
        if new_key and new_key.strip():
            vals["api_key"] = new_key
        new_secret = vals.pop("webhook_secret_new", None)
        if new_secret and new_secret.strip():
            vals["webhook_secret"] = new_secret
        if vals.get("api_key"):
            vals["api_key"] = self._clean_secret(vals["api_key"], self.env._("API key"))
        if vals.get("webhook_secret"):
            vals["webhook_secret"] = self._clean_secret(
                vals["webhook_secret"], self.env._("webhook HMAC secret"))
        return vals

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            self.browse()._infakt_check_destination_change(vals)
        self.env.registry.clear_cache()  # infakt.series._posting_map
        return super().create([self._take_new_api_key(dict(vals)) for vals in vals_list])

    def write(self, vals):
        vals = self._take_new_api_key(dict(vals))
        self._infakt_check_destination_change(vals)
        if "api_key" in vals or "environment" in vals or "api_url" in vals:
            vals.setdefault("connection_state", "untested")
            vals.setdefault("connection_message", False)
        if "active" in vals or "auto_send" in vals:
            self.env.registry.clear_cache()  # infakt.series._posting_map
        return super().write(vals)

    def _find_by_webhook_token(self, token):
        """Return the account a webhook token belongs to (sudo), or an empty recordset."""
        if not token or len(token) > 128:
            return self.browse()
        return self.sudo().with_context(active_test=False).search(
            [("webhook_token", "=", token)], limit=1
        )
