#!/usr/bin/env python3
"""Screenshots of the real screens of l10n_pl_infakt for the README.

    python3 tools/screenshots.py                  # -> static/description/screenshots/*.png
    python3 tools/screenshots.py --only invoice_error,documents_graph --out /tmp/shots

What it does, with processes of its own that it stops at the end:

1. starts the inFakt simulator (``tools/infakt_simulator.py``) on a free loopback port;
2. installs the module and the Sales app (``sale_management``) into a fresh database
   (``l10n_pl_infakt_screenshots``, dropped before and after; its files in a temporary data
   directory);
3. loads demo data with ``odoo-bin shell``: a Polish company, a complete inFakt account and a
   half-configured one, customers, sale orders and invoices sent to the simulator by the
   module's own scheduled actions: done (with PDFs), a correction, one refused by inFakt
   (the bank account), one in doubt (the simulator drops the answer) and one waiting. The
   documents are dated over the last five days so that the chart has days to show;
4. starts Odoo on a free loopback port (no cron thread, so nothing moves while shooting) and
   has the simulator verify the webhook (a real request to the account's webhook URL);
5. drives headless Chromium through the DevTools protocol (``websocket-client``), logged in
   as admin, at 1400 x 900, and saves one PNG per screen (reduced to a palette when large,
   with Pillow).

Needs Odoo 18 (``odoo-bin``), PostgreSQL, Chromium, ``websocket-client`` and Pillow.
"""

import argparse
import base64
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = "l10n_pl_infakt"
SIMULATOR = ROOT / "tools" / "infakt_simulator.py"
DEFAULT_OUT = ROOT / "static" / "description" / "screenshots"
DEFAULT_DB = "l10n_pl_infakt_screenshots"
API_KEY = "screenshots-api-key"
WEBHOOK_SECRET = "screenshots-webhook-secret"
LOGIN = PASSWORD = "admin"
WIDTH, HEIGHT = 1400, 900
# PNGs above this size are reduced to a 256-colour palette.
MAX_PNG_BYTES = 200 * 1024


def say(message):
    print(message, flush=True)


class ShotError(Exception):
    """A failure explained to the user."""


# ------------------------------------------------------------------------------------------
# Demo data, run inside ``odoo-bin shell`` (``env`` is given by the shell)
# ------------------------------------------------------------------------------------------
SETUP_CODE = textwrap.dedent(
    r'''
    import datetime, json, os, time, urllib.request
    from odoo import Command, fields

    SIM = os.environ["INFAKT_SHOTS_SIM_URL"]
    ODOO = os.environ["INFAKT_SHOTS_ODOO_URL"]
    API_KEY = os.environ["INFAKT_SHOTS_API_KEY"]
    SECRET = os.environ["INFAKT_SHOTS_WEBHOOK_SECRET"]
    OUT = os.environ["INFAKT_SHOTS_IDS_FILE"]

    def sim(path, payload=None):
        request = urllib.request.Request(
            SIM + path, data=None if payload is None else json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="GET" if payload is None else "POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read().decode() or "null")

    admin = env.ref("base.user_admin")
    env = env(user=admin.id, su=True, context={"tz": "Europe/Warsaw"})
    admin.write({"tz": "Europe/Warsaw"})
    env["ir.config_parameter"].set_param("web.base.url", ODOO)
    env["ir.config_parameter"].set_param("web.base.url.freeze", "1")

    # --- company ---------------------------------------------------------------------------
    company = env.ref("base.main_company")
    pln = env.ref("base.PLN")
    pln.active = True
    poland = env.ref("base.pl")
    company.write({
        "name": "Przykładowa Firma Sp. z o.o.", "vat": "PL7343521162",
        "street": "ul. Marszałkowska 100", "zip": "00-026", "city": "Warszawa",
        "country_id": poland.id, "currency_id": pln.id, "email": "biuro@przykladowa.example",
    })
    journal = env["account.journal"].search(
        [("type", "=", "sale"), ("company_id", "=", company.id)], limit=1)
    journal.write({"name": "Faktury sprzedaży", "code": "FV"})
    journal_krakow = journal.copy({"code": "FVK"})
    journal_krakow.name = "Sprzedaż Kraków"
    # Orders and invoices in złoty (the default pricelist was made in the install currency).
    env["product.pricelist"].search([]).write({"currency_id": pln.id})

    Tax = env["account.tax"]
    template = company.account_sale_tax_id
    old_taxes = Tax.search([("company_id", "=", company.id), ("type_tax_use", "=", "sale")])
    taxes = {}
    for key, amount, symbol, reason in (("23", 23, "", ""), ("8", 8, "", ""),
                                        ("5", 5, "", ""), ("zw", 0, "zw", "1")):
        group = template.tax_group_id.copy({"name": f"VAT {key}"})
        taxes[key] = template.copy({
            "name": f"VAT {key}%" if key != "zw" else "VAT zw",
            "amount": amount, "tax_group_id": group.id,
            "infakt_tax_symbol": symbol or False,
            "infakt_vat_exemption_reason": reason or False,
        })
    company.account_sale_tax_id = taxes["23"]
    old_taxes.write({"active": False})

    # --- inFakt accounts -------------------------------------------------------------------
    tag = env["crm.tag"].create({"name": "inFakt error", "color": 1})
    immediate = env.ref("account.account_payment_term_immediate")
    account = env["infakt.account"].create({
        "name": "inFakt - Przykładowa Firma", "company_id": company.id,
        "environment": "custom", "api_url": SIM + "/api/v3",
        "api_key": API_KEY, "webhook_secret": SECRET, "error_tag_id": tag.id,
        "series_ids": [
            Command.create({"journal_id": journal.id, "document_type": "invoice"}),
            Command.create({"journal_id": journal.id, "document_type": "correction"}),
        ],
        "payment_mapping_ids": [
            Command.create({"infakt_payment_method": "transfer", "sequence": 20}),
            Command.create({"payment_term_id": immediate.id, "infakt_payment_method": "cash",
                            "sequence": 10}),
        ],
    })
    account.action_test_connection()
    assert account.connection_state == "ok", account.connection_message
    # Half-configured: a second branch whose setup has just begun.
    half = env["infakt.account"].create({
        "name": "inFakt - Oddział Kraków", "company_id": company.id,
        "environment": "sandbox", "sequence": 20,
        "api_key": "pasted-but-not-tested",
        "series_ids": [Command.create({"journal_id": journal_krakow.id,
                                       "document_type": "invoice"})],
        "payment_mapping_ids": [Command.create({"infakt_payment_method": "transfer"})],
    })

    # --- customers, products ---------------------------------------------------------------
    Partner = env["res.partner"]
    def partner(name, vat, street, city, zip_code, email, company_type=True):
        return Partner.create({
            "name": name, "is_company": company_type, "vat": vat, "street": street,
            "city": city, "zip": zip_code, "country_id": poland.id, "email": email})
    kowalski = partner("Kowalski i Syn Sp. z o.o.", "PL5260250274", "ul. Długa 5/3",
                       "Kraków", "31-147", "biuro@kowalski.example")
    nowak = partner("Nowak Consulting S.A.", "PL1234563218", "al. Jerozolimskie 44",
                    "Warszawa", "00-024", "faktury@nowak.example")
    zielona = partner("Zielona Łąka Sp. j.", "PL9542583988", "ul. Ogrodowa 12",
                      "Gdańsk", "80-001", "kontakt@zielona.example")
    anna = partner("Anna Wiśniewska", False, "ul. Lipowa 7", "Poznań", "60-101",
                   "anna@wisniewska.example", company_type=False)
    Product = env["product.product"]
    def product(name, price, tax, kind="service"):
        return Product.create({"name": name, "list_price": price, "type": kind,
                               "invoice_policy": "order",
                               "taxes_id": [Command.set(taxes[tax].ids)]})
    consulting = product("Konsultacje (godzina)", 250.0, "23")
    implementation = product("Wdrożenie systemu", 4800.0, "23")
    book = product("Książka: Faktury w KSeF", 59.9, "5", "consu")
    catering = product("Catering szkoleniowy", 45.0, "8")
    training = product("Szkolenie BHP", 900.0, "zw")

    def order(customer, lines, **values):
        sale = env["sale.order"].create({
            "partner_id": customer.id, "company_id": company.id,
            "order_line": [Command.create({"product_id": p.id, "product_uom_qty": q})
                           for p, q in lines],
            **values})
        sale.action_confirm()
        return sale

    Document = env["infakt.document.cron"]
    def run_crons(moves, rounds=40):
        Document._cron_send(time_budget=20)
        for _round in range(rounds):
            Document._cron_process(time_budget=5)
            env.invalidate_all()
            documents = moves.infakt_document_ids
            if not set(documents.mapped("state")) & {"to_send", "sending", "processing"} \
                    and not documents.filtered("pdf_pending"):
                return
            time.sleep(0.3)

    today = fields.Date.context_today(env["res.users"].browse(admin.id))
    def invoice(sale, days_ago, send=True):
        move = sale._create_invoices()
        move.invoice_date = today - datetime.timedelta(days=days_ago)
        sale.date_order = datetime.datetime.combine(move.invoice_date, datetime.time(8, 30))
        move.action_post()
        env.cr.commit()
        if send:
            run_crons(move)
        return move

    def refuse_bank_account():
        """The bank account was replaced in inFakt after the last refresh: refused."""
        banks = sim("/_simulator/state")["config"]["bank_accounts"]
        sim("/_simulator/config", {"bank_accounts": [{
            "id": 7, "account_number": "49114020040000320276543210", "bank_name": "mBank",
            "custom_name": "mBank firmowe", "default": True}]})
        return banks

    # (customer, lines, days ago, what happens) in the order of their dates.
    plan = [
        (kowalski, [(implementation, 1), (consulting, 6)], 4, "done"),
        (nowak, [(consulting, 12)], 4, "done"),
        (zielona, [(catering, 20), (training, 1)], 3, "done"),
        (anna, [(book, 2)], 3, "done"),
        (nowak, [(consulting, 3), (book, 5)], 2, "done"),
        (zielona, [(consulting, 5), (catering, 30)], 2, "error"),
        (kowalski, [(consulting, 8)], 1, "done"),
        (zielona, [(book, 10), (consulting, 2)], 1, "done"),
        (nowak, [(implementation, 1)], 0, "done"),
    ]
    ids = {"account": account.id, "half_account": half.id}
    invoices = []
    for customer, lines, days_ago, outcome in plan:
        sale = order(customer, lines)
        banks = refuse_bank_account() if outcome == "error" else None
        move = invoice(sale, days_ago)
        if banks:
            sim("/_simulator/config", {"bank_accounts": banks})
            ids.update(order_error=sale.id, invoice_error=move.id)
        assert move.infakt_state == outcome, (move.name, move.infakt_state,
                                              move.infakt_error_message)
        invoices.append(move)
        if customer == kowalski and "order_done" not in ids:
            ids.update(order_done=sale.id, invoice_done=move.id)

    # A correction (KOR): part of the first invoice is credited.
    first = invoices[0]
    reversal = env["account.move.reversal"].with_context(
        active_model="account.move", active_ids=first.ids).create({
            "reason": "Rabat za opóźnienie wdrożenia", "journal_id": journal.id,
            "date": today})
    credit = env["account.move"].browse(reversal.refund_moves()["res_id"])
    for line in credit.invoice_line_ids:
        if line.product_id == implementation:
            line.price_unit = 800.0
        else:
            line.unlink()
    credit.action_post()
    env.cr.commit()
    run_crons(credit)
    assert credit.infakt_state == "done", (credit.infakt_state, credit.infakt_error_message)

    # In doubt: inFakt created it but the answer was lost on the way back.
    sim("/_simulator/faults", {"drop_after_create": 1})
    sale = order(anna, [(book, 1), (consulting, 1)], payment_term_id=immediate.id)
    doubt_move = invoice(sale, 0, send=False)
    Document._cron_send(time_budget=20)
    env.invalidate_all()
    assert doubt_move.infakt_state == "in_doubt", doubt_move.infakt_state

    # Waiting: posted a moment ago, the sender has not run yet.
    sale = order(kowalski, [(training, 2)])
    invoice(sale, 0, send=False)
    # Quotations / orders still to invoice.
    order(zielona, [(implementation, 1)])
    env["sale.order"].create({"partner_id": nowak.id, "order_line": [
        Command.create({"product_id": consulting.id, "product_uom_qty": 10})]})

    # The documents of earlier days were queued on their invoice dates (the chart shows days).
    for document in env["infakt.document"].search([]):
        move = document.move_id
        if move.invoice_date >= today:
            continue
        when = fields.Datetime.to_datetime(move.invoice_date) + datetime.timedelta(
            hours=9, minutes=(document.id * 37) % 480)
        env.cr.execute("UPDATE infakt_document SET create_date = %s WHERE id = %s",
                       (when, document.id))
    env.cr.commit()
    with open(OUT, "w", encoding="utf-8") as handle:
        json.dump(ids, handle)
    print("demo data ready:", json.dumps(ids))
    '''
)


# ------------------------------------------------------------------------------------------
# The screens
# ------------------------------------------------------------------------------------------
# Each shot: name, URL (with {ids}), what must be on the page, JavaScript actions (each
# followed by a wait for its selector), and the height of the capture.
def shots(ids):
    account = f"/odoo/action-{MODULE}.infakt_account_action"
    invoices = "/odoo/action-account.action_move_out_invoice_type"
    orders = "/odoo/orders"  # the action's path: the Sales app's menu is shown
    documents = f"/odoo/action-{MODULE}.infakt_document_action"
    return [
        {
            "name": "accounts_kanban",
            "url": account,
            "ready": ".o_kanban_record .o_field_widget[name=webhook_state]",
        },
        {
            "name": "account_form",
            "url": f"{account}/{ids['account']}",
            "ready": ".o_field_widget[name=webhook_state] .badge",
            "height": 1250,
        },
        {
            "name": "account_form_problems",
            "url": f"{account}/{ids['half_account']}",
            "ready": ".o_form_view .alert-warning li",
        },
        {
            "name": "account_basic_configuration",
            "url": f"{account}/{ids['account']}",
            "ready": ".o_field_widget[name=webhook_state] .badge",
            "actions": [
                (CLICK_TEXT % (".o_notebook .nav-link", "Basic Configuration"),
                 ".o_field_widget[name=bank_account_id]"),
                (SCROLL_TO % ".o_notebook", None),
            ],
        },
        {
            "name": "account_setup_guide",
            "url": f"{account}/{ids['account']}",
            "ready": ".o_field_widget[name=webhook_state] .badge",
            "actions": [
                (CLICK_TEXT % (".o_notebook .nav-link", "Setup Guide"), ".o_notebook ol li"),
                (SCROLL_TO % ".o_notebook", None),
            ],
        },
        {
            "name": "invoice_error",
            "url": f"{invoices}/{ids['invoice_error']}",
            "ready": ".o_form_view .alert-danger",
        },
        {
            "name": "invoice_done",
            "url": f"{invoices}/{ids['invoice_done']}",
            "ready": ".o_form_view button[name=action_infakt_view_documents]",
            "actions": [
                (CLICK_TEXT % (".o_notebook .nav-link", "inFakt"),
                 ".o_field_widget[name=infakt_number]"),
            ],
            "height": 1250,
        },
        {
            "name": "sale_order_done",
            "url": f"{orders}/{ids['order_done']}",
            "ready": ".o_form_view button[name=action_view_infakt_documents]",
            "actions": [
                (CLICK_TEXT % (".o_notebook .nav-link", "inFakt"),
                 ".o_field_widget[name=infakt_invoice_attachment_ids] .o_attachment"),
            ],
            "height": 1250,
        },
        {
            "name": "sale_order_error",
            "url": f"{orders}/{ids['order_error']}",
            "ready": ".o_form_view .alert-danger",
            "actions": [
                (CLICK_TEXT % (".o_notebook .nav-link", "inFakt"),
                 ".o_field_widget[name=infakt_state]"),
            ],
        },
        {
            "name": "sale_orders_list",
            "url": orders,
            "ready": ".o_list_view .o_data_row .o_field_widget[name=infakt_state]",
        },
        {
            "name": "documents_list",
            "url": documents,
            "ready": ".o_list_view .o_data_row",
            "actions": [
                (SELECT_ROWS % "Error", ".o_control_panel button[name=action_send_again]"),
            ],
        },
        {
            "name": "documents_filters",
            "url": documents,
            "ready": ".o_list_view .o_data_row",
            "actions": [
                (CLICK % ".o_searchview_dropdown_toggler", ".o_filter_menu"),
                (CLICK_TEXT % (".o_group_by_menu .o-dropdown-item", "State"),
                 ".o_group_header"),
                (CLICK_TEXT % (".o_filter_menu .o-dropdown-item", "Last 7 days"),
                 ".o_searchview_facet"),
            ],
        },
        {
            "name": "documents_graph",
            "url": f"{documents}?view_type=graph",
            "ready": ".o_graph_renderer canvas",
        },
        {
            "name": "documents_pivot",
            "url": f"{documents}?view_type=pivot",
            "ready": ".o_pivot table",
        },
    ]


CLICK = "document.querySelector(%r).click()"
CLOSE_NOTIFICATIONS = (
    "document.querySelectorAll('.o_notification_manager .o_notification_close')"
    ".forEach((button) => button.click())"
)
CLICK_TEXT = (
    "[...document.querySelectorAll(%r)].find((el) => el.textContent.trim() === %r).click()"
)
SCROLL_TO = "document.querySelector(%r).scrollIntoView({block: 'start'})"
SELECT_ROWS = (
    "document.querySelectorAll('.o_list_view .o_data_row').forEach((row) => {"
    " if (row.querySelector('[name=state]').textContent.includes(%r)) {"
    " row.querySelector('.o_list_record_selector input').click(); } })"
)


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url, timeout, process=None, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ShotError(f"the {what} stopped (exit code {process.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ShotError(f"the {what} did not answer at {url} within {timeout} s")


def http_json(url, payload=None, headers=None, timeout=60):
    request = urllib.request.Request(
        url, data=None if payload is None else json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="GET" if payload is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode() or "null"), response.headers


class Processes:
    """The processes this script started; stopped (by their own ids) at the end."""

    def __init__(self):
        self.items = []

    def start(self, command, log_path, **kwargs):
        log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(  # noqa: S603 - our own commands
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        self.items.append((process, log))
        return process

    def stop(self):
        for process, log in reversed(self.items):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)
            log.close()
        self.items = []


def odoo_paths(args):
    odoo_bin = args.odoo_bin or shutil.which("odoo-bin") or "/opt/odoo18/odoo-bin"
    if not Path(odoo_bin).exists():
        raise ShotError("odoo-bin not found: pass --odoo-bin")
    core = args.addons_path
    if not core:
        base = Path(odoo_bin).resolve().parent
        core = ",".join(
            str(p) for p in (base / "odoo" / "addons", base / "addons") if p.is_dir()
        )
    return odoo_bin, core


# ------------------------------------------------------------------------------------------
# Chromium through the DevTools protocol
# ------------------------------------------------------------------------------------------
class Chrome:
    def __init__(self, chromium, processes, workdir):
        import websocket  # websocket-client, as for Odoo's own browser tests

        self.profile = Path(workdir) / "chrome-profile"
        self.profile.mkdir()
        self.process = processes.start(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                "--disable-extensions", "--mute-audio", "--lang=en-US",
                f"--user-data-dir={self.profile}", "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0", f"--window-size={WIDTH},{HEIGHT}",
                "about:blank",
            ],
            Path(workdir) / "chromium.log",
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise ShotError("Chromium did not start (see chromium.log)")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets, _headers = http_json(f"http://127.0.0.1:{port}/json")
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        message_id = self.next_id
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise ShotError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if result.get("exceptionDetails"):
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ShotError(f"JavaScript failed: {text}\n  in: {expression}")
        return result.get("result", {}).get("value")

    def wait_for(self, selector, timeout=60):
        check = (
            f"!!document.querySelector({json.dumps(selector)})"
            " && !document.querySelector('.o_blockUI, .o-main-components-container .o_loading')"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(check):
                return
            time.sleep(0.25)
        url = self.evaluate("location.href")
        raise ShotError(f"{selector!r} did not appear on {url}")

    def screenshot(self, height):
        self.call(
            "Emulation.setDeviceMetricsOverride", width=WIDTH, height=height,
            deviceScaleFactor=1, mobile=False,
        )
        time.sleep(0.6)  # layout after the resize, animations
        data = self.call("Page.captureScreenshot", format="png", fromSurface=True)["data"]
        return base64.b64decode(data)

    def close(self):
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        with contextlib.suppress(Exception):
            self.ws.close()


def login(chrome, odoo_url, db):
    _result, headers = http_json(
        odoo_url + "/web/session/authenticate",
        {"jsonrpc": "2.0", "method": "call",
         "params": {"db": db, "login": LOGIN, "password": PASSWORD}},
    )
    cookies = [c for c in headers.get_all("Set-Cookie") or [] if c.startswith("session_id=")]
    if not cookies:
        raise ShotError("logging in as admin failed (no session cookie)")
    session_id = cookies[0].split(";", 1)[0].split("=", 1)[1]
    chrome.call("Network.enable")
    chrome.call(
        "Network.setCookie", name="session_id", value=session_id, url=odoo_url, path="/"
    )


def save_png(data, path):
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    if buffer.tell() > MAX_PNG_BYTES:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                       dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
    path.write_bytes(buffer.getvalue())
    return buffer.tell()


def take_shots(chrome, odoo_url, ids, out_dir, only):
    out_dir.mkdir(parents=True, exist_ok=True)
    taken = []
    for shot in shots(ids):
        if only and shot["name"] not in only:
            continue
        chrome.call(
            "Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT,
            deviceScaleFactor=1, mobile=False,
        )
        chrome.call("Page.navigate", url=odoo_url + shot["url"])
        chrome.wait_for(".o_action_manager .o_view_controller")
        chrome.wait_for(shot["ready"])
        for script, selector in shot.get("actions", ()):
            chrome.evaluate(script)
            if selector:
                chrome.wait_for(selector)
            time.sleep(0.4)
        if chrome.evaluate("location.pathname.startsWith('/web/login')"):
            raise ShotError("the browser is on the login page")
        # Notifications of the page itself (e.g. the bus' "page is out of date" after a
        # navigation) are not part of the screen.
        time.sleep(1.0)
        chrome.evaluate(CLOSE_NOTIFICATIONS)
        path = out_dir / f"{shot['name']}.png"
        size = save_png(chrome.screenshot(shot.get("height", HEIGHT)), path)
        say(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
            f" ({size // 1024} KB)")
        taken.append(path)
    return taken


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------
def run(args):
    odoo_bin, core_addons = odoo_paths(args)
    chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise ShotError("Chromium not found: pass --chromium")
    only = set(filter(None, (args.only or "").split(",")))
    workdir = Path(tempfile.mkdtemp(prefix="infakt-screenshots-"))
    # The module must be in a folder named l10n_pl_infakt: link this repository there.
    addons_dir = workdir / "addons"
    addons_dir.mkdir()
    (addons_dir / MODULE).symlink_to(ROOT, target_is_directory=True)
    addons_path = f"{core_addons},{addons_dir}"
    data_dir = workdir / "data"
    processes = Processes()
    odoo_common = [
        sys.executable, odoo_bin, "-d", args.db, f"--addons-path={addons_path}",
        f"--data-dir={data_dir}", "--without-demo=all", "--max-cron-threads=0",
    ]
    sim_port, odoo_port = free_port(), free_port()
    simulator_url = f"http://127.0.0.1:{sim_port}"
    odoo_url = f"http://127.0.0.1:{odoo_port}"
    started = time.monotonic()
    try:
        say(f"inFakt simulator on {simulator_url}")
        simulator = processes.start(
            [sys.executable, str(SIMULATOR), "--port", str(sim_port), "--api-key", API_KEY,
             "--task-delay", "0.2", "--quiet"],
            workdir / "simulator.log",
        )
        wait_http(simulator_url + "/_simulator/health", 30, simulator, "simulator")

        say(f"Installing {MODULE} into the database {args.db} (about a minute)")
        subprocess.run(["dropdb", "--if-exists", args.db], check=True)  # noqa: S603, S607
        install_log = workdir / "install.log"
        with open(install_log, "wb") as log:
            result = subprocess.run(  # noqa: S603
                # sale_management: the Sales app (menus), as users have it.
                [*odoo_common, "-i", f"{MODULE},sale_management", "--stop-after-init",
                 "--no-http",
                 "--log-level=warn"],
                stdout=log, stderr=subprocess.STDOUT, check=False,
            )
        if result.returncode:
            raise ShotError(f"the installation failed, see {install_log}")

        say("Loading the demo data (invoices sent to the simulator)")
        ids_file = workdir / "ids.json"
        setup_log = workdir / "setup.log"
        environ = {
            **os.environ,
            "INFAKT_SHOTS_SIM_URL": simulator_url,
            "INFAKT_SHOTS_ODOO_URL": odoo_url,
            "INFAKT_SHOTS_API_KEY": API_KEY,
            "INFAKT_SHOTS_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "INFAKT_SHOTS_IDS_FILE": str(ids_file),
        }
        with open(setup_log, "wb") as log:
            result = subprocess.run(  # noqa: S603
                [*odoo_common[:2], "shell", *odoo_common[2:], "--no-http", "--log-level=warn"],
                input=SETUP_CODE.encode(), stdout=log, stderr=subprocess.STDOUT,
                env=environ, check=False,
            )
        if result.returncode or not ids_file.exists():
            raise ShotError(f"loading the demo data failed, see {setup_log}")
        ids = json.loads(ids_file.read_text())

        say(f"Odoo on {odoo_url}")
        odoo = processes.start(
            [*odoo_common, "--http-interface=127.0.0.1", f"--http-port={odoo_port}",
             f"--db-filter=^{args.db}$", "--log-level=warn"],
            workdir / "odoo.log",
        )
        wait_http(odoo_url + "/web/login", 120, odoo, "Odoo server")

        say("inFakt verifies the webhook (the simulator calls the account's URL)")
        state, _headers = http_json(odoo_url + "/jsonrpc", {
            "jsonrpc": "2.0", "method": "call", "params": {
                "service": "object", "method": "execute_kw", "args": [
                    args.db, 2, PASSWORD, "infakt.account", "read", [[ids["account"]]],
                    {"fields": ["webhook_url"]}]}})
        webhook_url = state["result"][0]["webhook_url"]
        http_json(simulator_url + "/_simulator/config",
                  {"webhook_url": webhook_url, "webhook_secret": WEBHOOK_SECRET})
        verified, _headers = http_json(simulator_url + "/_simulator/webhooks/verify", {})
        if not verified.get("verified"):
            raise ShotError(f"the webhook verification failed: {verified}")

        say(f"Screenshots ({WIDTH} x {HEIGHT}, headless Chromium)")
        chrome = Chrome(chromium, processes, workdir)
        try:
            login(chrome, odoo_url, args.db)
            taken = take_shots(chrome, odoo_url, ids, Path(args.out).resolve(), only)
        finally:
            chrome.close()
        say(f"{len(taken)} screenshots in {time.monotonic() - started:.0f} s")
    finally:
        processes.stop()
        if args.keep:
            say(f"Kept: database {args.db}, files in {workdir}")
        else:
            subprocess.run(["dropdb", "--if-exists", args.db], check=False)  # noqa: S603, S607
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder of the PNG files")
    parser.add_argument("--only", help="comma-separated names of the screenshots to take")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"database (default {DEFAULT_DB}; "
                        "dropped before and after)")
    parser.add_argument("--odoo-bin", help="path of odoo-bin (default: on PATH, or "
                        "/opt/odoo18/odoo-bin)")
    parser.add_argument("--addons-path", help="Odoo's core addons (default: next to odoo-bin)")
    parser.add_argument("--chromium", help="Chromium executable (default: chromium on PATH)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the database and the work folder (logs) afterwards")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ShotError as error:
        say(f"Screenshots failed: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
