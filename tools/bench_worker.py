#!/usr/bin/env python3
"""The Odoo side of the benchmark (``tools/bench.py``): one task per process.

Run by ``tools/bench.py`` only::

    python3 tools/bench_worker.py --config ODOO.CONF --db DB TASK 'JSON ARGUMENTS'

It loads the registry of the database, runs the task as the superuser in the benchmark's
company and prints one line ``BENCH-RESULT {json}`` on stdout. Everything is committed as it
goes: these are real transactions, like a user posting invoices and the scheduled actions
sending them (``infakt.document._can_commit()`` is true outside tests).
"""

import argparse
import json
import logging
import statistics
import sys
import threading
import time
import urllib.request

RESULT_MARK = "BENCH-RESULT "
INVOICE_DATE = "2026-11-24"


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _simulator_state(root_url):
    """The simulator's state (its control endpoint answers without an API key)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(root_url + "/_simulator/state", timeout=30) as response:
        return json.loads(response.read().decode("utf-8"))


class ResponseCounter(logging.Handler):
    """Counts the answers the module's inFakt client received, from its own debug line
    ``inFakt <method> <path> -> <status> in <s>`` (observation only: nothing is patched)."""

    LOGGER = "odoo.addons.l10n_pl_infakt.infakt_api.client"

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.counts = {}
        self.last_create_at = None

    def emit(self, record):
        if not record.msg.startswith("inFakt %s %s -> %s") or len(record.args) < 3:
            return
        method, path, status = record.args[:3]
        kind = "other"
        if "/status/" in path:
            kind = "task_status"
        elif path.endswith("/pdf.json"):
            kind = "pdf"
        elif path.startswith("/async/") and method == "POST":
            kind = "create"
        elif method == "GET" and path.startswith(("/invoices/", "/corrective_invoices/")):
            kind = "read_back"
        key = f"{method} {kind} {status}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if kind == "create" and 200 <= int(status) < 300:
            self.last_create_at = record.created

    def __enter__(self):
        logger = logging.getLogger(self.LOGGER)
        self._saved = (logger.level, logger.propagate)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False  # counted here, not printed
        logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        logger = logging.getLogger(self.LOGGER)
        logger.removeHandler(self)
        logger.setLevel(self._saved[0])
        logger.propagate = self._saved[1]


def _wait_until(moment):
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def _chunks(records, size):
    for start in range(0, len(records), size):
        yield records[start:start + size]


def _create_invoices(env, setup, journal_id, count, chunk=100):
    """``count`` draft customer invoices of one shape (two lines, 23 % VAT), committed."""
    from odoo import Command

    Move = env["account.move"]
    ids = []
    for start in range(0, count, chunk):
        vals_list = []
        for index in range(start, min(count, start + chunk)):
            vals_list.append({
                "move_type": "out_invoice",
                "partner_id": setup["partner_id"],
                "journal_id": journal_id,
                "invoice_date": INVOICE_DATE,
                "invoice_line_ids": [
                    Command.create({
                        "product_id": setup["product_ids"][0],
                        "quantity": 2,
                        "price_unit": 100 + index % 50,
                        "tax_ids": [Command.set([setup["tax_id"]])],
                    }),
                    Command.create({
                        "product_id": setup["product_ids"][1],
                        "quantity": 1,
                        "price_unit": 39.99,
                        "tax_ids": [Command.set([setup["tax_id"]])],
                    }),
                ],
            })
        ids.extend(Move.create(vals_list).ids)
        env.cr.commit()
    return Move.browse(ids)


def _document_states(env, account_id):
    env.cr.execute(
        "SELECT state, count(*) FROM infakt_document WHERE account_id = %s GROUP BY state",
        (account_id,),
    )
    return dict(env.cr.fetchall())


# ------------------------------------------------------------------------------------------
# Tasks
# ------------------------------------------------------------------------------------------


def task_setup(env, args):
    """A Polish company with the generic chart, a 23 % tax, a customer and two products."""
    from odoo import Command

    poland = env.ref("base.pl")
    pln = env.ref("base.PLN")
    pln.active = True
    company = env["res.company"].create({
        "name": f"inFakt benchmark {args['name_suffix']}", "vat": "PL5260250274",
        "street": "ul. Prosta 20", "city": "Warszawa", "zip": "00-850", "currency_id": pln.id,
    })
    # The country on the partner only: a company created (or written) with a country makes
    # Odoo install that country's localisation modules.
    company.partner_id.country_id = poland
    env.user.company_ids = [Command.link(company.id)]
    env["account.chart.template"].try_loading("generic_coa", company=company,
                                             install_demo=False)
    env = env(context={"allowed_company_ids": [company.id]})
    tax = env["account.tax"].create({
        "name": "VAT 23% (benchmark)", "amount": 23.0, "amount_type": "percent",
        "type_tax_use": "sale", "company_id": company.id,
    })
    partner = env["res.partner"].create({
        "name": "Nowak S.A.", "is_company": True, "vat": "PL7791011327",
        "country_id": poland.id, "city": "Poznań", "zip": "60-001",
        "street": "Święty Marcin 1", "email": "biuro@nowak.example",
    })
    products = env["product.product"].create([
        {"name": "Konsultacje", "type": "service", "list_price": 100.0,
         "taxes_id": [Command.set(tax.ids)]},
        {"name": "Książka", "type": "consu", "list_price": 39.99,
         "taxes_id": [Command.set(tax.ids)]},
    ])
    sale_journal = env["account.journal"].search(
        [("company_id", "=", company.id), ("type", "=", "sale")], limit=1
    )
    env.cr.commit()
    return {
        "company_id": company.id, "tax_id": tax.id, "partner_id": partner.id,
        "product_ids": products.ids, "income_account_id": sale_journal.default_account_id.id,
    }


def task_make_account(env, args):
    """A sales journal and an inFakt account with an FV series on it."""
    from odoo import Command

    setup = args["setup"]
    journal = env["account.journal"].create({
        "name": f"Sales {args['code']}", "code": args["code"], "type": "sale",
        "company_id": setup["company_id"], "default_account_id": setup["income_account_id"],
    })
    values = {
        "name": f"inFakt {args['code']}",
        "company_id": setup["company_id"],
        "environment": "custom",
        "api_url": args["api_url"],
        "api_key": args["api_key"],
        "auto_send": args.get("auto_send", True),
        "download_pdf": args.get("download_pdf", True),
        "rate_limit_write": args.get("rate_limit_write", 150),
        "rate_limit_read": args.get("rate_limit_read", 300),
        "rate_limit_window": args.get("rate_limit_window", 60),
        "series_ids": [Command.create({"journal_id": journal.id, "document_type": "invoice"})],
        "payment_mapping_ids": [Command.create({"infakt_payment_method": "cash"})],
    }
    if args.get("webhook_secret"):
        values["webhook_secret"] = args["webhook_secret"]
    if args.get("webhook_token"):
        values["webhook_token"] = args["webhook_token"]
    account = env["infakt.account"].create(values)
    env.cr.commit()
    return {"account_id": account.id, "journal_id": journal.id}


def task_posting(env, args):
    """Figure 1: post invoices of a series with automatic sending on and off, in interleaved
    batches (ABBA order), each batch ``action_post()`` + commit, timed."""
    setup = args["setup"]
    count, batch, warmup = args["count"], args["batch"], args["warmup"]
    moves_on = _create_invoices(env, setup, args["journal_on"], count + warmup)
    moves_off = _create_invoices(env, setup, args["journal_off"], count + warmup)
    # Warm-up (caches, sequences), not measured.
    for moves in (moves_on[:warmup], moves_off[:warmup]):
        moves.action_post()
        env.cr.commit()
    requests_before = _simulator_state(args["sim_root"])["counters"]["requests_total"]
    times = {"on": [], "off": []}
    queries = {"on": 0, "off": 0}
    thread = threading.current_thread()
    thread.query_time = 0.0
    pairs = zip(_chunks(moves_on[warmup:], batch), _chunks(moves_off[warmup:], batch),
                strict=True)
    for index, (batch_on, batch_off) in enumerate(pairs):
        order = [("on", batch_on), ("off", batch_off)]
        if index % 2:
            order.reverse()
        for side, moves in order:
            thread.query_count = 0
            started = time.perf_counter()
            moves.action_post()
            env.cr.commit()
            times[side].append(time.perf_counter() - started)
            queries[side] += thread.query_count
    requests_after = _simulator_state(args["sim_root"])["counters"]["requests_total"]
    env.cr.execute(
        """SELECT count(*) FROM infakt_document d JOIN account_move m ON m.id = d.move_id
           WHERE m.journal_id = %s""", (args["journal_on"],))
    documents_on = env.cr.fetchone()[0]
    env.cr.execute(
        """SELECT count(*) FROM infakt_document d JOIN account_move m ON m.id = d.move_id
           WHERE m.journal_id = %s""", (args["journal_off"],))
    documents_off = env.cr.fetchone()[0]
    posted = env["account.move"].search_count(
        [("id", "in", (moves_on | moves_off).ids), ("state", "=", "posted")])
    return {
        "time_on": sum(times["on"]), "time_off": sum(times["off"]),
        "queries_on": queries["on"] / max(1, count), "queries_off": queries["off"] / max(1, count),
        "batch_ratios": [a / b for a, b in zip(times["on"], times["off"], strict=True)],
        "posted": posted, "documents_on": documents_on, "documents_off": documents_off,
        "http_requests_during_posting": requests_after - requests_before,
    }


def task_queue(env, args):
    """Create ``count`` invoices and post them at once: ``count`` documents ``to_send``."""
    moves = _create_invoices(env, args["setup"], args["journal_id"], args["count"])
    for chunk in _chunks(moves, 100):
        chunk.action_post()
        env.cr.commit()
    return {"queued": _document_states(env, args["account_id"]).get("to_send", 0)}


def task_sender_loop(env, args):
    """The real sender, run in a loop like the cron runner would, until nothing is left to
    send (or the deadline)."""
    Document = env["infakt.document.cron"]
    _wait_until(args["start_at"])
    started = time.time()
    runs = 0
    with ResponseCounter() as counter:
        while time.time() < args["deadline"]:
            Document._cron_send(
                time_budget=min(45.0, max(1.0, args["deadline"] - time.time())))
            env.cr.commit()
            runs += 1
            states = _document_states(env, args["account_id"])
            env.cr.commit()
            if not states.get("to_send") and not states.get("sending"):
                break
            time.sleep(0.1)  # documents waiting for their next attempt (after a 429)
    return {"started": started, "ended": time.time(), "runs": runs,
            "responses": counter.counts, "last_create_at": counter.last_create_at}


def task_processor_loop(env, args):
    """The real processor (webhook events, task polls, PDFs) in a loop until every document
    of the account is ``done`` (or the deadline)."""
    Document = env["infakt.document.cron"]
    _wait_until(args["start_at"])
    started = time.time()
    runs = 0
    states = {}
    with ResponseCounter() as counter:
        while time.time() < args["deadline"]:
            Document._cron_process(
                time_budget=min(45.0, max(1.0, args["deadline"] - time.time())))
            env.cr.commit()
            runs += 1
            states = _document_states(env, args["account_id"])
            env.cr.commit()
            if states.get("done", 0) >= args["expected"]:
                break
            time.sleep(0.2)
    return {"started": started, "ended": time.time(), "runs": runs, "states": states,
            "responses": counter.counts}


def task_drain_report(env, args):
    """After the drain: states, documents done without the inFakt number read back."""
    env.cr.execute(
        """SELECT count(*) FILTER (WHERE state = 'done' AND infakt_number IS NULL),
                  count(*) FILTER (WHERE attempt_count > 1),
                  count(DISTINCT task_reference), count(*) FILTER (WHERE pdf_pending)
             FROM infakt_document WHERE account_id = %s""", (args["account_id"],))
    without_number, retried, task_references, pdf_pending = env.cr.fetchone()
    return {"states": _document_states(env, args["account_id"]),
            "done_without_number": without_number, "sent_more_than_once": retried,
            "distinct_task_references": task_references, "pdf_pending": pdf_pending}


def task_sender_cost(env, args):
    """Figure 4: SQL queries and wall time of the sender per document, for backlogs of the
    given sizes (each queued at once, then one ``_cron_send`` run sends it)."""
    Document = env["infakt.document.cron"]
    thread = threading.current_thread()
    results = []
    for size in args["sizes"]:
        moves = _create_invoices(env, args["setup"], args["journal_id"], size)
        moves.action_post()
        env.cr.commit()
        before = _document_states(env, args["account_id"])
        env.cr.commit()
        thread.query_count = 0
        thread.query_time = 0.0
        started = time.perf_counter()
        Document._cron_send(time_budget=args["time_budget"])
        env.cr.commit()
        elapsed = time.perf_counter() - started
        queries, query_time = thread.query_count, thread.query_time
        after = _document_states(env, args["account_id"])
        env.cr.commit()
        sent = after.get("processing", 0) + after.get("done", 0) - (
            before.get("processing", 0) + before.get("done", 0))
        results.append({
            "size": size, "sent": sent, "left": after.get("to_send", 0),
            "errors": after.get("error", 0) + after.get("in_doubt", 0),
            "seconds": elapsed, "queries": queries, "query_seconds": query_time,
        })
    return {"runs": results}


def task_latency(env, args):
    """Figure 3: post invoices one by one (each committed) and wait until each document is
    ``done``; the scheduled actions of the Odoo server send and complete them."""
    moves = _create_invoices(env, args["setup"], args["journal_id"],
                             args["count"] + args["warmup"])
    latencies, failures, polls = [], [], []
    for index, move in enumerate(moves):
        started = time.perf_counter()
        move.action_post()
        env.cr.commit()
        deadline = started + args["timeout_each"]
        state = None
        while True:
            env.cr.execute(
                "SELECT state, poll_count FROM infakt_document WHERE move_id = %s", (move.id,))
            row = env.cr.fetchone()
            env.cr.rollback()  # a new snapshot for the next read (REPEATABLE READ)
            state = row and row[0]
            if state in ("done", "error", "in_doubt", "cancelled"):
                break
            if time.perf_counter() >= deadline:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        if index < args["warmup"]:
            continue
        if state == "done":
            latencies.append(elapsed)
            polls.append(row[1])
        else:
            failures.append({"move_id": move.id, "state": state, "after": elapsed})
        time.sleep(args["pause"])
    return {"latencies": latencies, "failures": failures,
            "mean_polls": statistics.fmean(polls) if polls else None}


def task_stream(env, args):
    """Figure 3: post invoices at a steady rate, each ``action_post()`` + commit, like users
    do; returns when each was posted (epoch seconds, taken before ``action_post``). The first
    ``warmup`` are posted too but not returned."""
    rate, warmup = args["rate"], args["warmup"]
    count = int(args["seconds"] * rate)
    moves = _create_invoices(env, args["setup"], args["journal_id"], count + warmup)
    posted = {}
    start = time.time() + 1.0
    for index, move in enumerate(moves):
        _wait_until(start + index / rate)
        at = time.time()
        move.action_post()
        env.cr.commit()
        if index >= warmup:
            posted[move.id] = at
    return {"posted": posted}


def task_archive_account(env, args):
    """Archived accounts are left alone by the sender and the processor."""
    env["infakt.account"].browse(args["account_id"]).active = False
    env.cr.commit()
    return {"archived": args["account_id"]}


TASKS = {
    "setup": task_setup,
    "make_account": task_make_account,
    "posting": task_posting,
    "queue": task_queue,
    "sender_loop": task_sender_loop,
    "processor_loop": task_processor_loop,
    "drain_report": task_drain_report,
    "sender_cost": task_sender_cost,
    "latency": task_latency,
    "stream": task_stream,
    "archive_account": task_archive_account,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("args", nargs="?", default="{}")
    options = parser.parse_args(argv)
    task_args = json.loads(options.args)

    import odoo
    from odoo.tools import config

    config.parse_config(["-c", options.config, "-d", options.db])
    registry = odoo.modules.registry.Registry(options.db)
    with registry.cursor() as cr:
        context = {}
        company_id = (task_args.get("setup") or {}).get("company_id")
        if company_id:
            context["allowed_company_ids"] = [company_id]
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, context)
        result = TASKS[options.task](env, task_args)
        cr.commit()
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
