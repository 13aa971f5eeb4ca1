import importlib.util
import json
import os
import sys
import time
from datetime import timedelta

from odoo import SUPERUSER_ID, Command, api, fields
from odoo.tests import HttpCase, tagged

from odoo.addons.account.tests.common import AccountTestInvoicingCommon

from ..infakt_api.webhook import compute_signature

TOOLS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
API_KEY = "test-key"
WEBHOOK_SECRET = "test-webhook-secret"


def load_simulator_module():
    """The simulator is a standalone script (tools/infakt_simulator.py): load it by path."""
    name = "l10n_pl_infakt_simulator"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(TOOLS_DIR, "infakt_simulator.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class InfaktSimulatorMixin:
    """Runs one inFakt simulator (a real HTTP server on loopback) for a test class."""

    simulator_task_delay = 0.0

    @classmethod
    def _start_simulator(cls):
        module = load_simulator_module()
        cls.simulator = module.InfaktSimulator(
            port=0, api_keys=(API_KEY,), task_delay=cls.simulator_task_delay, quiet=True,
            webhook_retry_delay=0.2,
        ).start()
        cls.addClassCleanup(cls.simulator.stop)

    def sim_state(self):
        return self.simulator.state()

    def sim_invoices(self):
        return self.sim_state()["invoices"]

    def sim_correctives(self):
        return self.sim_state()["corrective_invoices"]

    def sim_requests(self, method=None, path_contains=None):
        return [
            r
            for r in self.sim_state()["requests"]
            if (method is None or r.get("method") == method)
            and (path_contains is None or path_contains in r.get("path", ""))
        ]


class CommittedBacklogMixin:
    """Data committed for real (its own company), for tests with several Odoo processes."""

    def _setup_committed_backlog(self, count, label="backlog", price_base=100):
        """Posted invoices of a new company in a series of a new inFakt account on the
        simulator, committed; returns (account id, move ids, move names)."""
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            poland = env.ref("base.pl")
            pln = env.ref("base.PLN")
            pln.active = True
            company = env["res.company"].create(
                {"name": f"inFakt {label} {time.time_ns()}", "vat": "PL5260250274",
                 "street": "Prosta 1", "city": "Warszawa", "zip": "00-001",
                 "country_id": poland.id, "currency_id": pln.id}
            )
            env["account.chart.template"].try_loading("generic_coa", company=company,
                                                     install_demo=False)
            env = env(context={"allowed_company_ids": [company.id]})
            journal = env["account.journal"].search(
                [("company_id", "=", company.id), ("type", "=", "sale")], limit=1
            )
            tax = env["account.tax"].create(
                {"name": f"VAT 23% {label}", "amount": 23.0, "type_tax_use": "sale",
                 "company_id": company.id}
            )
            partner = env["res.partner"].create(
                {"name": "Nowak S.A.", "is_company": True, "vat": "PL7791011327",
                 "country_id": poland.id, "city": "Poznań", "zip": "60-001",
                 "street": "Święty Marcin 1"}
            )
            account = env["infakt.account"].create(
                {
                    "name": f"inFakt {label}",
                    "company_id": company.id,
                    "environment": "custom",
                    "api_url": self.simulator.base_url,
                    "api_key": API_KEY,
                    "series_ids": [Command.create({"journal_id": journal.id,
                                                   "document_type": "invoice"})],
                    "payment_mapping_ids": [Command.create({"infakt_payment_method": "cash"})],
                }
            )
            moves = env["account.move"].create(
                [
                    {
                        "move_type": "out_invoice",
                        "partner_id": partner.id,
                        "journal_id": journal.id,
                        "invoice_date": "2026-11-24",
                        "invoice_line_ids": [Command.create(
                            {"name": f"Usługa {index}", "quantity": 1,
                             "price_unit": price_base + index,
                             "tax_ids": [Command.set(tax.ids)]}
                        )],
                    }
                    for index in range(count)
                ]
            )
            moves.action_post()
            self.assertEqual(len(moves.infakt_document_ids), count)
            return account.id, moves.ids, moves.mapped("name")

    def _cleanup(self, account_id):
        """Leave nothing in the engine's queues (they are global): the account's documents,
        events and the account itself are deleted (its company and invoices stay, in no
        queue)."""
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            cr.execute("DELETE FROM infakt_document WHERE account_id = %s", (account_id,))
            account = env["infakt.account"].with_context(active_test=False).browse(account_id)
            account.unlink()


@tagged("post_install", "-at_install")
class InfaktCommon(InfaktSimulatorMixin, AccountTestInvoicingCommon):
    """A Polish company with 23% / 8% / zw taxes, an inFakt account on the simulator with FV and
    KOR series on the sales journal, a default transfer mapping and the bank account read from
    inFakt, a customer and a product."""

    country_code = "PL"
    chart_template = "generic_coa"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._start_simulator()
        env = cls.env
        cls.company = cls.company_data["company"]
        poland = env.ref("base.pl")
        cls.company.write(
            {
                "vat": "PL5260250274",
                "street": "ul. Prosta 20",
                "city": "Warszawa",
                "zip": "00-850",
                "country_id": poland.id,
            }
        )
        cls.journal = cls.company_data["default_journal_sale"]
        cls._setup_infakt_taxes()
        cls.error_tag = env["crm.tag"].create({"name": "inFakt error"})
        cls.infakt_account = env["infakt.account"].create(
            {
                "name": "inFakt test",
                "company_id": cls.company.id,
                "environment": "custom",
                "api_url": cls.simulator.base_url,
                "api_key": API_KEY,
                "webhook_secret": WEBHOOK_SECRET,
                "error_tag_id": cls.error_tag.id,
                # Requests of one test are spaced ~7 ms apart (inFakt's 60 s window would
                # space them 0.4 s apart): the tests are not about pacing, the bench is.
                "rate_limit_window": 1,
                "series_ids": [
                    Command.create({"journal_id": cls.journal.id, "document_type": "invoice"}),
                    Command.create({"journal_id": cls.journal.id,
                                    "document_type": "correction"}),
                ],
                "payment_mapping_ids": [Command.create({"infakt_payment_method": "transfer"})],
            }
        )
        cls.infakt_account.action_refresh_bank_accounts()
        cls.partner = env["res.partner"].create(
            {
                "name": "Kowalski Sp. z o.o.",
                "is_company": True,
                "vat": "PL1234563218",
                "street": "ul. Długa 5/3",
                "city": "Kraków",
                "zip": "31-147",
                "country_id": poland.id,
                "email": "biuro@kowalski.example",
            }
        )
        cls.product = env["product.product"].create(
            {
                "name": "Konsultacje",
                "type": "service",
                "list_price": 100.0,
                "taxes_id": [Command.set(cls.tax_23.ids)],
                "invoice_policy": "order",
            }
        )
        cls.product_8 = env["product.product"].create(
            {
                "name": "Książka",
                "type": "consu",
                "list_price": 39.99,
                "taxes_id": [Command.set(cls.tax_8.ids)],
                "invoice_policy": "order",
            }
        )

    @classmethod
    def _setup_infakt_taxes(cls):
        """``tax_23``, ``tax_8``, ``tax_23_incl`` and ``tax_zw`` of the test company (the
        chart's other sale taxes are archived); tests on another chart override this."""
        tax_group = cls.env["account.tax.group"].create(
            {"name": "VAT PL", "company_id": cls.company.id}
        )
        Tax = cls.env["account.tax"]
        common = {"type_tax_use": "sale", "company_id": cls.company.id,
                  "tax_group_id": tax_group.id, "amount_type": "percent"}
        cls.tax_23 = Tax.create({**common, "name": "VAT 23%", "amount": 23.0})
        cls.tax_8 = Tax.create({**common, "name": "VAT 8%", "amount": 8.0})
        cls.tax_23_incl = Tax.create(
            {**common, "name": "VAT 23% incl.", "amount": 23.0, "price_include_override":
             "tax_included"}
        )
        cls.tax_zw = Tax.create(
            {**common, "name": "VAT zw", "amount": 0.0, "infakt_tax_symbol": "zw",
             "infakt_vat_exemption_reason": "1"}
        )
        # Every other sale tax of the test company gets a symbol so the configuration is clean.
        others = Tax.search([("company_id", "=", cls.company.id), ("type_tax_use", "=", "sale"),
                             ("id", "not in", (cls.tax_23 | cls.tax_8 | cls.tax_23_incl
                                               | cls.tax_zw).ids)])
        others.write({"active": False})

    def setUp(self):
        super().setUp()
        self.simulator.reset(config=True)

    # --------------------------------------------------------------------------------------
    # Odoo side helpers
    # --------------------------------------------------------------------------------------
    def create_order(self, lines=None, partner=None):
        """A confirmed sale order; ``lines`` = [(product, qty, price_unit, discount, taxes)]."""
        lines = lines or [(self.product, 2, 100.0, 0.0, self.tax_23)]
        order = self.env["sale.order"].create(
            {
                "partner_id": (partner or self.partner).id,
                "company_id": self.company.id,
                "order_line": [
                    Command.create(
                        {
                            "product_id": product.id,
                            "product_uom_qty": qty,
                            "price_unit": price,
                            "discount": discount,
                            "tax_id": [Command.set(taxes.ids)],
                        }
                    )
                    for product, qty, price, discount, taxes in lines
                ],
            }
        )
        order.action_confirm()
        return order

    def invoice_order(self, order, post=True):
        invoice = order._create_invoices()
        invoice.journal_id = self.journal
        if post:
            invoice.action_post()
        return invoice

    def run_sender(self, time_budget=20):
        """The sender's scheduled action, in the test's transaction (no commits)."""
        self.env["infakt.document.cron"]._cron_send(time_budget=time_budget, with_commit=False)

    def run_processor(self, time_budget=20):
        """The processor's scheduled action, in the test's transaction (no commits)."""
        self.env["infakt.document.cron"]._cron_process(time_budget=time_budget, with_commit=False)

    def advance_clock(self, documents):
        """Pretend the waits the documents asked for are over: their due dates into the past
        (the engine's schedules are tested on their own; here the flow is)."""
        past = fields.Datetime.now() - timedelta(seconds=1)
        for document in documents:
            values = {}
            for field in ("next_attempt_at", "next_poll_at", "pdf_next_at", "ksef_next_check_at",
                          "paid_next_at"):
                if document[field] and document[field] > past:
                    values[field] = past
            if values:
                document.sudo().write(values)

    def send_and_complete(self, moves, rounds=6):
        """Run the sender, then the processor, round after round until the documents are no
        longer on their way (their waits shortened between rounds)."""
        for _round in range(rounds):
            self.run_sender()
            self.simulator.flush(timeout=5)
            self.run_processor()
            documents = moves.infakt_document_ids
            states = set(documents.mapped("state"))
            if not states & {"to_send", "sending", "processing"} and not documents.filtered(
                lambda d: d.pdf_pending and d.state == "done"
            ):
                break
            self.advance_clock(documents)
        return moves.infakt_document_id

    def grosze(self, amount):
        return round(amount * 100)


class InfaktTourCase(InfaktCommon, HttpCase):
    """Browser tours: they log in as admin, in the Polish test company."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env.ref("base.user_admin").sudo().write({
            "company_id": cls.company.id, "company_ids": [Command.link(cls.company.id)],
        })

    def start_infakt_tour(self, url, name):
        self.start_tour(url, name, login="admin", timeout=120)
        # After a tour Odoo refuses requests without the browser's test cookie; the simulator's
        # webhook deliveries (inFakt calling Odoo) never carry one.
        self.http_request_strict_check = False
        # The browser wrote through its own environment: read afresh.
        self.env.invalidate_all()


class InfaktWebhookMixin:
    """Signed webhook requests to the Odoo server under test."""

    def webhook_url(self, account=None):
        account = account or self.infakt_account
        return f"/infakt/webhook/{account.sudo().webhook_token}"

    def post_webhook(self, body, secret=WEBHOOK_SECRET, signature=None, account=None,
                     headers=None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json"}
        if signature is None and secret:
            signature = compute_signature(secret, raw)
        if signature:
            all_headers["X-Infakt-Signature"] = signature
        all_headers.update(headers or {})
        return self.url_open(self.webhook_url(account), data=raw, headers=all_headers)

    @staticmethod
    def event(name, resource, uuid="evt-1", retry_counter=0):
        return {
            "event": {"uuid": uuid, "name": name, "retry_counter": retry_counter,
                      "created_at": "2026-11-24T10:00:00.000+01:00"},
            "resource": resource,
        }


def wait_until(predicate, timeout=10.0, interval=0.05):
    """Wait (without touching the database) until ``predicate()`` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)
