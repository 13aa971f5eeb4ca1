#!/usr/bin/env python3
"""One-command demo of l10n_pl_infakt: the inFakt simulator and Odoo 18 with a ready database.

    python3 tools/demo.py                 # start, print the URL and login, Ctrl+C stops
    python3 tools/demo.py --detach        # start in the background, print, exit
    python3 tools/demo.py --stop          # stop a demo started with --detach

It starts ``tools/infakt_simulator.py`` and ``odoo-bin`` on 127.0.0.1 (processes of its own,
stopped on Ctrl+C / SIGTERM) with a fresh database ``l10n_pl_infakt_demo`` (dropped and made
again on every run): the module installed, a Polish company with PLN, a chart of accounts and
VAT 23 / 8 / 5 % / zw, an inFakt account on the simulator (Test connection done, FV and KOR
series, payment mapping, bank account read from inFakt, error tag), the simulator's webhook
verified by a real verification request, customers, products, sale orders ready to invoice and
one invoice already in inFakt. Its files live in one fixed folder under the temporary
directory (``l10n_pl_infakt_demo-<uid>``), reused by every run.

The same code prepares the database of ``docker-compose.yml``:

    tools/demo.py --setup-only ...        # install + demo data (needs ``import odoo``)
    tools/demo.py --verify-only ...       # verify the simulator's webhook (standard library)

Only the standard library is imported at module level: Odoo is imported by ``--setup-only``.
"""

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = "l10n_pl_infakt"
DB_NAME = "l10n_pl_infakt_demo"
LOGIN = "admin"
PASSWORD = "admin"
API_KEY = "demo-api-key"
WEBHOOK_SECRET = "demo-webhook-hmac-secret"
ACCOUNT_NAME = "inFakt (simulator)"
COMPANY_NIP = "7343521162"
SIMULATOR = ROOT / "tools" / "infakt_simulator.py"
STATE_DIR = Path(tempfile.gettempdir()) / f"{MODULE}_demo-{os.getuid()}"
PID_FILE = STATE_DIR / "demo.json"

SETUP_TIMEOUT = 900
SERVER_TIMEOUT = 180


class DemoError(Exception):
    """A failure explained to the user (printed without a traceback)."""


def say(message):
    print(message, flush=True)


# ------------------------------------------------------------------------------------------
# HTTP helpers (standard library only: used without Odoo, e.g. in the docker verify step)
# ------------------------------------------------------------------------------------------
def http_json(url, payload=None, timeout=30.0):
    """GET (payload None) or POST JSON; return the decoded answer."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"},
        method="GET" if payload is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        detail = error.read(2000).decode(errors="replace")
        raise DemoError(f"{url} answered {error.code}: {detail}") from error
    except (urllib.error.URLError, OSError) as error:
        raise DemoError(f"{url} could not be reached: {error}") from error
    return json.loads(body.decode() or "null")


def wait_http(url, timeout, process=None, what="server"):
    """Wait until ``url`` answers 200; fail early when ``process`` died."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DemoError(f"The {what} stopped (exit code {process.returncode}).")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as error:
            last = error
        time.sleep(0.3)
    raise DemoError(f"The {what} did not answer at {url} within {timeout:.0f} s ({last}).")


def odoo_rpc(odoo_url, service, method, *args):
    payload = {
        "jsonrpc": "2.0", "method": "call", "id": 1,
        "params": {"service": service, "method": method, "args": list(args)},
    }
    answer = http_json(odoo_url.rstrip("/") + "/jsonrpc", payload, timeout=60)
    if answer.get("error"):
        error = answer["error"]
        message = (error.get("data") or {}).get("message") or error.get("message")
        raise DemoError(f"Odoo answered an error to {service}.{method}: {message}")
    return answer["result"]


def port_is_free(port, host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred, avoid=()):
    """``preferred`` when free, else the next free one of the 20 after it, else any."""
    for port in range(preferred, preferred + 21) if preferred else ():
        if port not in avoid and port < 65536 and port_is_free(port):
            return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


# ------------------------------------------------------------------------------------------
# Webhook verification (after the Odoo server is up)
# ------------------------------------------------------------------------------------------
def verify_webhook(odoo_url, simulator_url, db, timeout=SERVER_TIMEOUT, process=None):
    """Make the simulator send inFakt's verification request to Odoo, then read the account
    through JSON-RPC and check that it shows the webhook verified. Returns the account."""
    wait_http(odoo_url.rstrip("/") + "/web/login", timeout, process, "Odoo server")
    wait_http(simulator_url.rstrip("/") + "/_simulator/health", 60, None, "inFakt simulator")
    result = http_json(simulator_url.rstrip("/") + "/_simulator/webhooks/verify", {})
    if not result.get("verified"):
        raise DemoError(
            "The webhook verification failed: the simulator's request to Odoo got "
            f"status {result.get('status')} ({result.get('error') or result.get('body')})."
        )
    uid = odoo_rpc(odoo_url, "common", "authenticate", db, LOGIN, PASSWORD, {})
    if not uid:
        raise DemoError(f"Could not log in to {db} as {LOGIN}/{PASSWORD}.")
    accounts = odoo_rpc(
        odoo_url, "object", "execute_kw", db, uid, PASSWORD, "infakt.account", "search_read",
        [[["name", "=", ACCOUNT_NAME]]],
        {"fields": ["webhook_state", "webhook_verified_at", "connection_state",
                    "has_config_problems", "config_problems"]},
    )
    if not accounts or accounts[0]["webhook_state"] != "verified":
        raise DemoError(f"The account {ACCOUNT_NAME!r} does not show the webhook verified.")
    return accounts[0]


# ------------------------------------------------------------------------------------------
# Database and demo data (runs where ``import odoo`` works: --setup-only)
# ------------------------------------------------------------------------------------------
CUSTOMERS = [
    {"name": "Kowalski i Wspólnicy Sp. z o.o.", "is_company": True, "vat": "PL5260250274",
     "street": "ul. Długa 5/3", "zip": "31-147", "city": "Kraków",
     "email": "biuro@kowalski.example", "phone": "+48 12 345 67 89"},
    {"name": "Piekarnia Nowak Sp. j.", "is_company": True, "vat": "PL5840253622",
     "street": "ul. Piwna 12", "zip": "80-831", "city": "Gdańsk",
     "email": "zamowienia@piekarnia-nowak.example"},
    {"name": "Zielona Energia S.A.", "is_company": True, "vat": "PL7792411336",
     "street": "ul. Głogowska 40", "zip": "60-734", "city": "Poznań",
     "email": "faktury@zielona-energia.example"},
    {"name": "Anna Wiśniewska", "is_company": False,
     "street": "ul. Kwiatowa 8 m. 4", "zip": "02-495", "city": "Warszawa",
     "email": "anna.wisniewska@poczta.example"},
]

# key: (name, product type, sales price, VAT key of TAXES, internal reference, GTU code)
PRODUCTS = {
    "implementation": ("Wdrożenie systemu Odoo", "service", 4500.0, "23s", "WDR-ODOO", False),
    "consulting": ("Konsultacje (godzina)", "service", 250.0, "23s", "KONS-H", False),
    "license": ("Abonament roczny — hosting", "service", 1200.0, "23s", "ABO-12M", False),
    # An exempt service (zw): the invoice states the legal basis of the exemption.
    "training": ("Szkolenie zawodowe dla pracowników", "service", 1800.0, "zw", "SZK-1D",
                 False),
    "catering": ("Catering na szkolenie (osoba)", "service", 45.0, "8", "CAT-OS", False),
    "book": ("Książka „Odoo w praktyce”", "consu", 89.9, "5", "KS-ODOO", False),
    # Electronics: JPK_V7 marks the line GTU_06.
    "laptop": ("Laptop Dell Latitude 5550", "consu", 5200.0, "23", "LAP-5550", "GTU_06"),
}

# key -> the sale tax of Odoo's Polish chart (l10n_pl), by template id: the taxes users have.
TAXES = {
    "23": "vs_kraj_23",
    "23s": "vs_kraj_usl_23",
    "8": "vs_kraj_8",
    "5": "vs_kraj_5",
    "zw": "vs_kraj_zw",
}
# The exemption of vocational training (art. 43 ust. 1 pkt 29 lit. c of the VAT act).
TRAINING_BASIS = "pkt 29"


def _setup_company(env):
    company = env.ref("base.main_company")
    poland = env.ref("base.pl")
    pln = env.ref("base.PLN")
    pln.active = True
    company.write({
        "name": "Przykładowa Firma Sp. z o.o.",
        "vat": "PL" + COMPANY_NIP,
        "street": "ul. Marszałkowska 100",
        "zip": "00-026",
        "city": "Warszawa",
        "country_id": poland.id,
        "email": "biuro@przykladowa-firma.example",
        "phone": "+48 22 123 45 67",
        "website": "https://przykladowa-firma.example",
        "currency_id": pln.id,
    })
    if company.chart_template != "pl":
        # Odoo's Polish chart (l10n_pl): its accounts, taxes and fiscal positions.
        env["account.chart.template"].try_loading("pl", company, install_demo=False)
    # Sale orders take their currency from the pricelist: zł there too.
    env["product.pricelist"].with_context(active_test=False).search(
        [("company_id", "in", (company.id, False))]
    ).write({"currency_id": pln.id})
    # Polish numbering: FV/2026/00001 on the sales journal.
    journal = env["account.journal"].search(
        [("type", "=", "sale"), ("company_id", "=", company.id)], limit=1
    )
    journal.write({"name": "Faktury sprzedaży", "code": "FV"})
    return company, journal


def _setup_taxes(env, company):
    """The sale taxes of Odoo's Polish chart, as they come (the module maps them by what they
    are), by the keys of TAXES; 23 % on goods is the default sale tax."""
    ref = env["account.chart.template"].with_company(company).ref
    taxes = {key: ref(template) for key, template in TAXES.items()}
    company.write({"account_sale_tax_id": taxes["23"].id,
                   # inFakt rounds the VAT of each line: so does Odoo here.
                   "tax_calculation_rounding_method": "round_per_line"})
    return taxes


def _setup_exemption_basis(account, taxes):
    """The exempt tax gets its legal basis from inFakt's list (read by Refresh inFakt lists)."""
    account.action_refresh_lists()
    bases = account.vat_exemption_ids
    basis = bases.filtered(lambda b: TRAINING_BASIS in (b.display_name or ""))[:1] or bases[:1]
    if not basis:
        raise DemoError("The simulator returned no VAT exemption basis.")
    taxes["zw"].infakt_vat_exemption_id = basis


def _setup_account(env, company, journal, simulator_url, webhook_base_url):
    tag = env["crm.tag"].create({"name": "inFakt: błąd", "color": 1})
    cash_term = env.ref("account.account_payment_term_immediate")
    # The simulator speaks plain http: its host (a container's name) must be allowed for it.
    host = urllib.parse.urlsplit(simulator_url).hostname
    if host and host not in ("127.0.0.1", "localhost", "::1"):
        env["ir.config_parameter"].sudo().set_param("l10n_pl_infakt.http_hosts", host)
    account = env["infakt.account"].create({
        "name": ACCOUNT_NAME,
        "company_id": company.id,
        "environment": "custom",
        "api_url": simulator_url.rstrip("/") + "/api/v3",
        "api_key": API_KEY,
        "webhook_secret": WEBHOOK_SECRET,
        "error_tag_id": tag.id,
        "series_ids": [
            (0, 0, {"journal_id": journal.id, "document_type": "invoice"}),
            (0, 0, {"journal_id": journal.id, "document_type": "correction"}),
        ],
        "payment_mapping_ids": [
            (0, 0, {"infakt_payment_method": "transfer", "sequence": 20}),
            (0, 0, {"payment_term_id": cash_term.id, "infakt_payment_method": "cash",
                    "sequence": 10}),
        ],
    })
    account.action_test_connection()
    if account.connection_state != "ok":
        raise DemoError(f"Test connection failed: {account.connection_message}")
    account.action_refresh_bank_accounts()
    if not account.bank_account_id:
        raise DemoError("The simulator returned no bank account.")
    webhook_url = (
        f"{webhook_base_url.rstrip('/')}/infakt/webhook/{account.sudo().webhook_token}"
    )
    http_json(simulator_url.rstrip("/") + "/_simulator/config", {
        "webhook_url": webhook_url,
        "webhook_secret": WEBHOOK_SECRET,
        "seller_nip": COMPANY_NIP,
    })
    return account


def _setup_sales(env, company, taxes):
    poland = env.ref("base.pl")
    Partner = env["res.partner"]
    customers = [
        Partner.create({**values, "country_id": poland.id, "lang": env.user.lang})
        for values in CUSTOMERS
    ]
    kowalski, nowak, zielona, anna = customers
    products = {}
    for key, (name, kind, price, tax, code, gtu) in PRODUCTS.items():
        products[key] = env["product.product"].create({
            "name": name,
            "type": kind,
            "list_price": price,
            "default_code": code,
            "invoice_policy": "order",
            "taxes_id": [(6, 0, taxes[tax].ids)],
            "l10n_pl_vat_gtu": gtu,
        })
    cash_term = env.ref("account.account_payment_term_immediate")
    term_15 = env.ref("account.account_payment_term_15days", raise_if_not_found=False)
    # Show the discount column on orders and invoices.
    env["res.config.settings"].create({"group_discount_per_so_line": True}).execute()

    def order(partner, lines, **extra):
        sale = env["sale.order"].create({
            "partner_id": partner.id,
            "company_id": company.id,
            "order_line": [
                (0, 0, {"product_id": products[key].id, "product_uom_qty": qty,
                        "discount": discount})
                for key, qty, discount in lines
            ],
            **extra,
        })
        sale.action_confirm()
        return sale

    orders = [
        # Several lines, four VAT rates and a discount.
        order(kowalski, [("implementation", 1, 0.0), ("consulting", 12, 10.0),
                         ("training", 1, 0.0), ("catering", 15, 0.0), ("book", 5, 5.0)],
              payment_term_id=term_15.id if term_15 else False,
              client_order_ref="Umowa 12/2026"),
        order(nowak, [("consulting", 4, 0.0), ("license", 1, 0.0)]),
        # A private person paying cash (payment terms "Immediate Payment" -> inFakt cash).
        order(anna, [("book", 2, 0.0), ("consulting", 1, 0.0)], payment_term_id=cash_term.id),
        # A GTU product (GTU_06) with a down payment of 30 % invoiced (an advance invoice,
        # faktura zaliczkowa, in inFakt); the rest is invoiced by the user (final invoice).
        order(zielona, [("laptop", 3, 0.0), ("implementation", 1, 0.0)]),
        order(zielona, [("license", 2, 0.0), ("consulting", 3, 0.0)]),
    ]
    return orders


def _invoice_down_payment(env, sale, percent=30.0):
    """Invoice and post a down payment of ``percent`` of ``sale`` (sent to inFakt as an
    advance invoice)."""
    wizard = env["sale.advance.payment.inv"].with_context(
        active_model="sale.order", active_ids=sale.ids, active_id=sale.id,
    ).create({"advance_payment_method": "percentage", "amount": percent})
    wizard.create_invoices()
    invoice = sale.invoice_ids.filtered(lambda m: m.state == "draft")
    invoice.action_post()
    return invoice


def _setup_failing_order(env, company, partner):
    """An order that fails until fixed: its service is taxed with a 0 % tax made by hand,
    which says nothing about what the 0 % is (0 % rate, exempt or outside Poland: the law
    tells them apart, JPK_V7 too), so the invoice is refused before it leaves Odoo. The banner
    of the invoice links to the tax; choosing its inFakt Tax Symbol and Send again fixes it."""
    ref = env["account.chart.template"].with_company(company).ref
    base = ref("vs_kraj_23")
    tax = base.copy({"name": "0% (do ustalenia)", "amount": 0.0, "invoice_label": "0%",
                     "description": "0%"})
    # Not the 23 % tax's JPK_V7 fields: what this 0 % is, is what the user decides.
    (tax.invoice_repartition_line_ids | tax.refund_repartition_line_ids).write(
        {"tag_ids": [(5, 0, 0)]})
    product = env["product.product"].create({
        "name": "Usługa serwisowa (stawka do ustalenia)", "type": "service",
        "list_price": 700.0, "default_code": "SERW-0", "invoice_policy": "order",
        "taxes_id": [(6, 0, base.ids)],
    })
    sale = env["sale.order"].create({
        "partner_id": partner.id, "company_id": company.id,
        "order_line": [(0, 0, {"product_id": product.id, "product_uom_qty": 1,
                               "tax_id": [(6, 0, tax.ids)]})],
    })
    sale.action_confirm()
    invoice = sale._create_invoices()
    invoice.action_post()
    return sale, invoice


def _send_invoice_now(env, sale, timeout=60.0):
    """Invoice and post ``sale`` and run the inFakt scheduled actions here until the document
    is done with its PDF, so that the documents list of the demo is not empty."""
    invoice = sale._create_invoices()
    invoice.action_post()
    env.cr.commit()
    Document = env["infakt.document.cron"]
    Document._cron_send(time_budget=20)
    deadline = time.monotonic() + timeout
    document = invoice.infakt_document_ids[:1]
    while time.monotonic() < deadline:
        Document._cron_process(time_budget=20)
        env.invalidate_all()
        if document.state == "done" and not document.pdf_pending:
            return invoice
        if document.state in ("error", "in_doubt", "cancelled"):
            break
        time.sleep(0.5)
    raise DemoError(
        f"The demo invoice {invoice.name} did not reach inFakt: {document.state} "
        f"({document.error_message or ''})."
    )


def setup_database(args):
    """Drop and create the demo database, install the module and load the demo data."""
    try:
        import odoo
        from odoo import api
        from odoo.modules.registry import Registry
        from odoo.tools import config
    except ImportError as error:
        raise DemoError(f"Odoo is not importable by {sys.executable} ({error}).") from error
    if odoo.release.version_info[0] != 18:
        raise DemoError(f"This module needs Odoo 18, found {odoo.release.version}.")
    import psycopg2

    db = args.db
    argv = []
    if args.odoo_config:
        argv += ["-c", args.odoo_config]
    for option, value in (
        ("--db_host", args.db_host), ("--db_port", args.db_port), ("--db_user", args.db_user),
        ("--db_password", args.db_password), ("--addons-path", args.addons_path),
        ("--data-dir", args.data_dir), ("--logfile", args.log_file),
    ):
        if value:
            argv += [option, str(value)]
    argv += ["-d", db, "--without-demo=all", "--max-cron-threads=0", "--log-level=warn"]
    if args.lang and args.lang != "en_US":
        argv += ["--load-language", args.lang]
    config.parse_config(argv)
    config["list_db"] = True  # this process only: lets exp_drop see the database

    started = time.monotonic()
    say(f"  PostgreSQL: {config['db_host'] or 'local socket'}, database {db}")
    deadline = time.monotonic() + 30
    while True:
        try:
            with odoo.sql_db.db_connect("postgres").cursor() as cr:
                cr.execute("SELECT 1")
            break
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                raise DemoError(f"PostgreSQL does not answer: {error}".strip()) from error
            time.sleep(1)

    if odoo.service.db.exp_db_exist(db):
        say(f"  Dropping the previous database {db}")
        odoo.service.db.exp_drop(db)
    say(f"  Installing {MODULE} into a new database (sale, account, mail; about a minute)")
    odoo.service.db._create_empty_database(db)
    config["init"][MODULE] = 1
    registry = Registry.new(db, update_module=True)
    config["init"] = {}
    say(f"  Installed in {time.monotonic() - started:.0f} s; loading the demo data")

    with registry.cursor() as cr:
        env = api.Environment(cr, odoo.SUPERUSER_ID, {})
        admin = env.ref("base.user_admin")
        env = env(user=admin.id, su=True, context={"lang": admin.lang, "tz": "Europe/Warsaw"})
        env["ir.config_parameter"].set_param("web.base.url", args.odoo_url.rstrip("/"))
        values = {"tz": "Europe/Warsaw"}
        if args.lang:
            # --load-language leaves English inactive on a new database: keep both.
            env["res.lang"]._activate_lang("en_US")
            env["res.lang"]._activate_lang(args.lang)
            values["lang"] = args.lang
        admin.write(values)
        company, journal = _setup_company(env)
        taxes = _setup_taxes(env, company)
        simulator_url = args.simulator_url.rstrip("/")
        # A clean inFakt: the simulator may still hold the documents of a previous run.
        http_json(simulator_url + "/_simulator/reset", {"config": True})
        account = _setup_account(
            env, company, journal, simulator_url, args.webhook_base_url or args.odoo_url
        )
        _setup_exemption_basis(account, taxes)
        orders = _setup_sales(env, company, taxes)
        advance = _invoice_down_payment(env, orders[-2])
        failing_order, failing = _setup_failing_order(env, company, orders[1].partner_id)
        cr.commit()
        invoice = _send_invoice_now(env, orders[-1])
        cr.commit()
        env.invalidate_all()
        say(f"  Down payment of {orders[-2].name}: {advance.name} "
            f"(in inFakt: {advance.infakt_state}); {failing_order.name} invoiced as "
            f"{failing.name} fails until its tax is fixed (in inFakt: {failing.infakt_state})")
        webhook_label = env._("Webhook URL")  # verified once the server runs
        problems = [
            label for label, _message in account._get_config_problems()
            if label != webhook_label
        ]
        if problems:
            say("  Warning: the account still lists configuration problems: "
                + ", ".join(sorted(set(problems))))
        say(
            f"  Demo data: {company.name} (NIP {COMPANY_NIP}), {len(orders) - 1} sale orders "
            f"to invoice ({', '.join(o.name for o in orders[:-1])}), {orders[-1].name} "
            f"invoiced as {invoice.name} (in inFakt: {invoice.infakt_document_ids[:1].state})"
        )
    say(f"  Database ready in {time.monotonic() - started:.0f} s")


# ------------------------------------------------------------------------------------------
# Local processes
# ------------------------------------------------------------------------------------------
def find_odoo():
    """(odoo-bin command, core addons paths) of the Odoo 18 importable by this Python."""
    code = (
        "import os, odoo, odoo.release as r, odoo.addons as a\n"
        "print(r.version_info[0])\n"
        "print(os.path.dirname(os.path.dirname(odoo.__file__)))\n"
        "print(','.join(p for p in a.__path__ if os.path.isdir(p)))\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
            check=True,
        ).stdout.split("\n")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None, None, None
    version, root, addons = out[0].strip(), out[1].strip(), out[2].strip()
    candidates = [os.path.join(root, "odoo-bin"), shutil.which("odoo-bin"), shutil.which("odoo")]
    odoo_bin = next((c for c in candidates if c and os.path.isfile(c)), None)
    command = [sys.executable, odoo_bin] if odoo_bin else [
        sys.executable, "-c", "import odoo.cli; odoo.cli.main()"
    ]
    return version, command, addons


def no_odoo_message(reason):
    return (
        f"Cannot run the demo here: {reason}.\n\n"
        "The demo needs Odoo 18 importable by this Python (python3 -c 'import odoo') and a\n"
        "PostgreSQL server it can reach. Either install Odoo 18 (see README.md, "
        "'Requirements'\nand 'Installation'), or, with Docker, run from the repository root:\n\n"
        "    docker compose up\n\n"
        "and open http://localhost:8069 (login admin / admin): see README.md, 'Docker'."
    )


def module_addons_dir():
    """A folder holding the module as ``l10n_pl_infakt`` (the checkout itself when its folder
    has that name, otherwise a symbolic link in the demo folder)."""
    if ROOT.name == MODULE:
        return ROOT.parent
    addons = STATE_DIR / "addons"
    addons.mkdir(parents=True, exist_ok=True)
    link = addons / MODULE
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == ROOT:
            return addons
        if link.is_symlink():
            link.unlink()
        else:
            shutil.rmtree(link)
    link.symlink_to(ROOT, target_is_directory=True)
    return addons


def write_odoo_config(addons_path, port, db):
    conf = STATE_DIR / "odoo.conf"
    conf.write_text(
        "[options]\n"
        f"addons_path = {addons_path}\n"
        f"data_dir = {STATE_DIR / 'data'}\n"
        f"db_name = {db}\n"
        f"dbfilter = ^{db}$\n"
        "list_db = False\n"
        f"admin_passwd = {secrets.token_urlsafe(24)}\n"
        "http_interface = 127.0.0.1\n"
        f"http_port = {port}\n"
        "workers = 0\n"
        "max_cron_threads = 1\n"
        "without_demo = all\n"
        f"logfile = {STATE_DIR / 'odoo.log'}\n"
        "log_level = info\n",
        encoding="utf-8",
    )
    conf.chmod(0o600)
    return conf


def start_process(command, log_name):
    log_path = STATE_DIR / log_name
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=STATE_DIR, start_new_session=True,
        )


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


def stop_pids(entries, timeout=20.0):
    """Stop ``entries`` [(name, pid, marker, group)] that still run the command they were
    started with (``marker`` in their command line): SIGTERM (to the process group when
    ``group``: the demo starts the servers in sessions of their own), then SIGKILL."""
    running = []
    for name, pid, marker, group in entries:
        cmdline = _cmdline(pid) if pid else None
        if cmdline and marker in cmdline and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                (os.killpg if group else os.kill)(pid, signal.SIGTERM)
            running.append((name, pid, group))
    deadline = time.monotonic() + timeout
    for name, pid, group in running:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            say(f"  {name} did not stop in {timeout:.0f} s: killing it")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                (os.killpg if group else os.kill)(pid, signal.SIGKILL)
            time.sleep(0.2)
            _reap(pid)
        if group:  # whatever the process group may still hold (there should be nothing)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    return [name for name, _pid, _group in running]


def _alive(pid):
    """True while ``pid`` runs (a child of ours that exited is reaped, not counted)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited process that its parent has not reaped yet
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _reap(pid):
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def read_pid_file():
    try:
        return json.loads(PID_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def remove_pid_file(launcher_pid=None):
    """Remove the pid file (only when it is the one of ``launcher_pid``, when given)."""
    info = read_pid_file()
    if info is not None and launcher_pid and info.get("launcher_pid") != launcher_pid:
        return
    with contextlib.suppress(FileNotFoundError):
        PID_FILE.unlink()


def stop_previous(quiet=False):
    """Stop the demo registered in the pid file (detached, or running in another terminal)."""
    info = read_pid_file()
    if not info:
        if not quiet:
            say("No demo is running (no pid file).")
        return False
    entries = [
        ("Odoo server", info.get("odoo_pid"), str(STATE_DIR / "odoo.conf"), True),
        ("inFakt simulator", info.get("simulator_pid"), "infakt_simulator.py", True),
    ]
    if not info.get("detached"):
        entries.append(("demo launcher", info.get("launcher_pid"), "demo.py", False))
    stopped = stop_pids(entries)
    remove_pid_file()
    if stopped:
        say("Stopped the demo: " + ", ".join(stopped) + ".")
    elif not quiet:
        say("The demo was not running any more.")
    return bool(stopped)


def run_setup_subprocess(args, conf, odoo_url, simulator_url):
    command = [
        sys.executable, str(Path(__file__).resolve()), "--setup-only",
        "--odoo-config", str(conf), "--log-file", str(STATE_DIR / "setup.log"),
        "--db", args.db, "--odoo-url", odoo_url, "--simulator-url", simulator_url,
    ]
    if args.lang:
        command += ["--lang", args.lang]
    process = subprocess.Popen(command, cwd=STATE_DIR, stdin=subprocess.DEVNULL)
    try:
        returncode = process.wait(timeout=SETUP_TIMEOUT)
    except BaseException:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    if returncode:
        tail = _tail(STATE_DIR / "setup.log")
        raise DemoError(
            f"Preparing the database failed (exit code {returncode}). "
            f"Log: {STATE_DIR / 'setup.log'}{tail}"
        )


def _tail(path, lines=25):
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n  | " + "\n  | ".join(text) if text else ""


def banner(odoo_url, simulator_url, db, stop_line, hint, log_dir=None):
    lines = [
        "",
        "=" * 76,
        "  l10n_pl_infakt demo is running",
        "",
        f"  Odoo:             {odoo_url}/odoo",
        f"  Login / password: {LOGIN} / {PASSWORD}",
        f"  Database:         {db}",
        f"  inFakt simulator: {simulator_url}/api/v3  (state: {simulator_url}/_simulator/state)",
    ]
    if log_dir:
        lines.append(f"  Logs:             {log_dir}/{{odoo,simulator,setup}}.log")
    if hint:
        lines += [
            "",
            "  Try it: Sales > Orders > open a confirmed order > Create Invoice > Create Draft",
            "  > Confirm. Within seconds the invoice's inFakt state is Done and the inFakt PDF",
            "  is on the order (inFakt tab). The account: Invoicing > Configuration > inFakt >",
            "  inFakt Accounts. Every exchange: Invoicing > inFakt > Documents.",
        ]
    lines += ["", f"  {stop_line}", "=" * 76]
    say("\n".join(lines))


def run_demo(args):
    version, odoo_command, core_addons = find_odoo()
    if not version:
        say(no_odoo_message(f"Odoo is not importable by {sys.executable}"))
        return 1
    if version != "18":
        say(no_odoo_message(f"the importable Odoo is version {version}, not 18"))
        return 1

    if read_pid_file():
        say("A previous demo is still registered: stopping it first.")
        stop_previous(quiet=True)
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    # One folder reused by every run: logs and browser sessions of the last run only (the
    # database's filestore goes with the database).
    for name in ("odoo.log", "simulator.log", "setup.log"):
        with contextlib.suppress(FileNotFoundError):
            (STATE_DIR / name).unlink()
    shutil.rmtree(STATE_DIR / "data" / "sessions", ignore_errors=True)

    port = free_port(args.port)
    if port != args.port:
        say(f"Port {args.port} is taken: Odoo will listen on {port}.")
    sim_port = free_port(args.sim_port, avoid={port})
    if sim_port != args.sim_port:
        say(f"Port {args.sim_port} is taken: the simulator will listen on {sim_port}.")
    odoo_url = f"http://127.0.0.1:{port}"
    simulator_url = f"http://127.0.0.1:{sim_port}"
    conf = write_odoo_config(f"{core_addons},{module_addons_dir()}", port, args.db)

    started = time.monotonic()
    processes = {}

    def _on_signal(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        say(f"Starting the inFakt simulator on {simulator_url}")
        processes["simulator"] = start_process(
            [sys.executable, str(SIMULATOR), "--port", str(sim_port), "--api-key", API_KEY,
             "--task-delay", "0.5", "--quiet"],
            "simulator.log",
        )
        _write_pid_file(processes, odoo_url, simulator_url, args)
        wait_http(simulator_url + "/_simulator/health", 30, processes["simulator"],
                  "inFakt simulator")

        say(f"Preparing the database {args.db}")
        run_setup_subprocess(args, conf, odoo_url, simulator_url)

        say(f"Starting Odoo on {odoo_url}")
        processes["odoo"] = start_process(
            odoo_command + ["-c", str(conf), "-d", args.db], "odoo.log"
        )
        _write_pid_file(processes, odoo_url, simulator_url, args)
        say("Verifying the webhook (the simulator calls the account's webhook URL)")
        account = verify_webhook(odoo_url, simulator_url, args.db, process=processes["odoo"])
        say(f"  Webhook verified at {account['webhook_verified_at']} UTC; configuration "
            f"problems left: {'yes' if account['has_config_problems'] else 'none'}")
        say(f"Ready in {time.monotonic() - started:.0f} s.")
        stop_line = (
            "Running in the background. Stop it with: python3 tools/demo.py --stop"
            if args.detach else "Press Ctrl+C to stop"
        )
        banner(odoo_url, simulator_url, args.db, stop_line, not args.no_browser_hint,
               STATE_DIR)
        if args.detach:
            processes.clear()  # left running: --stop ends them
            return 0
        while True:
            for key, name in (("odoo", "Odoo server"), ("simulator", "inFakt simulator")):
                process = processes[key]
                if process.poll() is not None:
                    log = STATE_DIR / f"{key}.log"
                    raise DemoError(
                        f"the {name} stopped (exit code {process.returncode}); "
                        f"log: {log}{_tail(log, 10)}"
                    )
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("\nStopping the demo...")
        return 0
    except DemoError as error:
        say(f"\nThe demo stopped: {error}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if processes:
            markers = {
                "odoo": ("Odoo server", str(conf)),
                "simulator": ("inFakt simulator", "infakt_simulator.py"),
            }
            stopped = stop_pids([
                (markers[key][0], process.pid, markers[key][1], True)
                for key, process in processes.items()
            ])
            for process in processes.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            remove_pid_file(os.getpid())
            say("Stopped: " + (", ".join(stopped) or "nothing was running") + ".")


def _write_pid_file(processes, odoo_url, simulator_url, args):
    PID_FILE.write_text(json.dumps({
        "odoo_pid": processes["odoo"].pid if "odoo" in processes else None,
        "simulator_pid": processes["simulator"].pid if "simulator" in processes else None,
        "odoo_url": odoo_url,
        "simulator_url": simulator_url,
        "db": args.db,
        "detached": bool(args.detach),
        "launcher_pid": os.getpid(),
    }), encoding="utf-8")


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Run the l10n_pl_infakt demo: the inFakt simulator and Odoo 18 on "
        "127.0.0.1 with a fresh database ready to invoice.",
    )
    parser.add_argument("--port", type=int, default=8069,
                        help="Odoo HTTP port (default 8069; a free one if taken)")
    parser.add_argument("--sim-port", type=int, default=8070,
                        help="simulator port (default 8070; a free one if taken)")
    parser.add_argument("--db", default=DB_NAME, help=f"database name (default {DB_NAME})")
    parser.add_argument("--lang", default=None,
                        help="language of the admin user, e.g. pl_PL (loads the translation)")
    parser.add_argument("--no-browser-hint", action="store_true",
                        help="print only the addresses and the login, not where to click")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--detach", action="store_true",
                      help="start, print and exit, leaving the servers running (pid file in "
                      f"{STATE_DIR})")
    mode.add_argument("--stop", action="store_true",
                      help="stop a demo started with --detach (or running elsewhere)")
    mode.add_argument("--setup-only", action="store_true",
                      help="only make the database and its data (needs import odoo and a "
                      "running simulator; used by docker-compose.yml)")
    mode.add_argument("--verify-only", action="store_true",
                      help="only verify the webhook of a running demo (standard library; "
                      "used by docker-compose.yml)")
    group = parser.add_argument_group("options of --setup-only and --verify-only")
    group.add_argument("--odoo-url", help="Odoo as this process reaches it; with "
                       "--setup-only also web.base.url")
    group.add_argument("--simulator-url", default="http://127.0.0.1:8070",
                       help="the simulator as Odoo (and this process) reaches it")
    group.add_argument("--webhook-base-url",
                       help="Odoo as the simulator reaches it (default --odoo-url)")
    group.add_argument("--public-url", help="Odoo URL printed for the user (--verify-only)")
    group.add_argument("--public-simulator-url",
                       help="simulator URL printed for the user (--verify-only)")
    group.add_argument("--stop-hint", default="Stop it with: docker compose down",
                       help="last line printed by --verify-only")
    group.add_argument("--odoo-config", help="Odoo configuration file")
    group.add_argument("--db-host")
    group.add_argument("--db-port")
    group.add_argument("--db-user")
    group.add_argument("--db-password")
    group.add_argument("--addons-path", help="default: Odoo's addons and this module's folder")
    group.add_argument("--data-dir")
    group.add_argument("--log-file", help="Odoo's log file (default: standard error)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.stop:
        stop_previous()
        return 0
    if not (args.setup_only or args.verify_only):
        return run_demo(args)
    if not args.odoo_url:
        say("--setup-only and --verify-only need --odoo-url.")
        return 2
    try:
        if args.setup_only:
            if not args.addons_path and not args.odoo_config:
                version, _command, core_addons = find_odoo()
                if not version:
                    say(no_odoo_message(f"Odoo is not importable by {sys.executable}"))
                    return 1
                args.addons_path = f"{core_addons},{module_addons_dir()}"
            setup_database(args)
        else:
            say(f"Waiting for Odoo at {args.odoo_url}, then verifying the webhook")
            account = verify_webhook(args.odoo_url, args.simulator_url, args.db)
            say(f"  Webhook verified at {account['webhook_verified_at']} UTC")
            banner(
                (args.public_url or args.odoo_url).rstrip("/"),
                (args.public_simulator_url or args.simulator_url).rstrip("/"),
                args.db, args.stop_hint, not args.no_browser_hint,
            )
    except DemoError as error:
        say(f"Error: {error}")
        return 1
    except KeyboardInterrupt:
        say("Interrupted.")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
