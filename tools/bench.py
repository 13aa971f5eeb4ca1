#!/usr/bin/env python3
"""Benchmark of l10n_pl_infakt on real Odoo 18 and PostgreSQL, against the inFakt simulator.

    python3 tools/bench.py            # full sizes (about 30 minutes on 2 cores)
    python3 tools/bench.py --quick    # small sizes, a smoke check (CI)
    python3 tools/bench.py --keep-db  # keep the database (its name is printed)
    python3 tools/bench.py --only 2,6 --rate-window 20 --drain-count 200 --task-delay 2.5

It creates a fresh database (random name) with the module installed from a temporary copy
of this repository named ``l10n_pl_infakt``, starts the simulator (``tools/infakt_simulator.py``)
as a subprocess on a free loopback port for each part and, where the scheduled actions or HTTP
are measured, real Odoo servers (``odoo-bin --workers 2 --max-cron-threads 2``: prefork
workers and cron workers woken by NOTIFY, as in production). Odoo-side work of users runs in
worker processes (``tools/bench_worker.py``) that commit like real users do. Each figure is a
ratio or a distribution measured within one run, printed with its target:

1. posting overhead: invoices of a series with automatic sending on / off, ABBA-interleaved
   batches of 10 invoices per transaction and of 1; the median of the paired on/off ratios;
   the simulator must see no request while posting;
2. drain to PDF: 500 invoices queued at once on a held account (its connection marked failed
   while queueing), released with a trigger and a NOTIFY; one Odoo server drains them against
   the simulator with inFakt's real limits (150 writes, 300 reads per 60 s per source
   address); the time until every document is ``done`` with its PDF stored, as a fraction of
   what the limits allow for the design's reads per document (webhooks: the PDF; polling
   only: one task poll and the PDF) — with webhooks (the recommended events, signed) and
   with polling only; duplicates, 429 answers and the busiest window counted by the simulator;
3. steady stream: one invoice posted per second for two minutes; p50 / p95 from
   ``action_post`` to the PDF stored, with webhooks and polling only;
4. SQL queries (Odoo's per-thread query counter) and wall time per document of one
   ``_cron_send()`` run on a backlog of 50, then 500, then 50 again (ABA), no rate limit;
5. webhook endpoint: authentic signed deliveries (a new event each) per second as a fraction
   of what the same server (2 HTTP workers) answers on a trivial ``auth='none'`` route
   (``/web/health``), interleaved rounds, 4 keep-alive clients; p99 of the deliveries;
6. scale-out: two Odoo servers (separate processes, 2 workers and 2 cron workers each, one
   database) drain one backlog as in 2 (webhooks): duplicates, write 429s, reads and writes
   of every window within the limits, drain fraction within 5 % of figure 2.

Every request count and wait is bounded; subprocesses are killed and the database dropped on
exit, failure or Ctrl-C. Exit status: 0 all targets met (with --quick: every part ran), 1 some
target missed, 2 error, 130 interrupted.
"""

import argparse
import contextlib
import hashlib
import hmac
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = "l10n_pl_infakt"
RESULT_MARK = "BENCH-RESULT "
PARTS = ("1", "2", "3", "4", "5", "6")

FULL = {
    "posting_count": 200, "posting_batch": 10, "posting_warmup": 5,
    "drain_count": 500, "drain_limit": 150, "drain_read_limit": 300, "drain_window": 60,
    "drain_task_delay": 0.5,
    "cost_sizes": [50, 500, 50], "cost_warmup": 5,
    "stream_seconds": 120, "stream_rate": 1.0,
    "webhook_requests": 250, "webhook_rounds": 4, "webhook_clients": 4,
}
QUICK = {
    "posting_count": 20, "posting_batch": 5, "posting_warmup": 2,
    "drain_count": 40, "drain_limit": 12, "drain_read_limit": 24, "drain_window": 6,
    "drain_task_delay": 0.5,
    "cost_sizes": [10, 40, 10], "cost_warmup": 3,
    "stream_seconds": 15, "stream_rate": 1.0,
    "webhook_requests": 50, "webhook_rounds": 2, "webhook_clients": 4,
}
# What inFakt recommends subscribing to (README, "Webhook"): no draft_invoice_created.
WEBHOOK_EVENTS = ["async_invoice_creation_success", "async_invoice_creation_error",
                  "send_to_ksef_success", "send_to_ksef_error", "invoice_paid"]
# Reads per document of the design: with webhooks the PDF only; polling only, one task poll
# (the first poll comes after the task time) and the PDF.
READS_PER_DOC = {"webhooks": 1, "polling": 2}
# Targets (issue 13).
POSTING_MAX_RATIO = 1.03
DRAIN_MIN_FRACTION = 0.95
STREAM_MAX_EXTRA = 3.0  # p95 post -> PDF <= task time + 3 s
COST_MAX_QUERY_RATIO = 1.05  # queries per document must not grow with the backlog
COST_MAX_TIME_RATIO = 1.25  # wall time per document: same, with room for machine noise
WEBHOOK_MIN_RATIO = 0.7
WEBHOOK_MAX_P99 = 0.050
SCALE_MAX_DEVIATION = 0.05


class BenchError(Exception):
    """A step of the benchmark could not be carried out."""


class Interrupted(BaseException):  # noqa: N818 - raised by SIGTERM like KeyboardInterrupt
    """SIGTERM: stop and clean up."""


def _log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(url, data=None, timeout=30.0):
    """JSON over loopback (control endpoints of the simulator, Odoo's health check)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = None if data is None else json.dumps(data).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8") or "null")


def _percentile(values, fraction):
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _tail(path, lines=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------
# Subprocesses
# ------------------------------------------------------------------------------------------


class Simulator:
    """The inFakt simulator as a subprocess (its CLI), on a free loopback port."""

    def __init__(self, bench, name, args, env=None):
        self.log_path = os.path.join(bench.work, f"simulator-{name}.log")
        command = [sys.executable, os.path.join(ROOT, "tools", "infakt_simulator.py"),
                   "--port", "0", "--quiet", "--api-key", bench.api_key, *args]
        self.log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop
        self.process = bench.spawn(command, stdout=subprocess.PIPE, stderr=self.log,
                                   env=dict(os.environ, **(env or {})))
        line = self._read_line(timeout=30)
        if "listening on " not in line:
            raise BenchError(f"the simulator did not start: {line!r} {_tail(self.log_path)}")
        self.base_url = line.split("listening on ", 1)[1].strip()
        self.root_url = self.base_url.rsplit("/api/v3", 1)[0]
        self.bench = bench

    def _read_line(self, timeout):
        result = []
        reader = threading.Thread(
            target=lambda: result.append(self.process.stdout.readline().decode()), daemon=True)
        reader.start()
        reader.join(timeout)
        return result[0] if result else ""

    def state(self):
        return _http(self.root_url + "/_simulator/state", timeout=60)

    def configure(self, **config):
        return _http(self.root_url + "/_simulator/config", data=config)

    def stop(self):
        self.bench.stop_process(self.process)
        self.log.close()


class OdooServer:
    """``odoo-bin`` serving the benchmark database on a loopback port: prefork workers and cron
    workers as in production (``--workers 0``: the threaded server)."""

    def __init__(self, bench, name, port, cron_threads, workers=0):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(bench.work, f"odoo-{name}.log")
        command = [sys.executable, bench.odoo_bin, "-c", bench.config_path, "-d", bench.db,
                   "--http-port", str(port), "--http-interface", "127.0.0.1",
                   "--gevent-port", str(_free_port()),
                   "--workers", str(workers), "--max-cron-threads", str(cron_threads),
                   "--logfile", self.log_path]
        self.bench = bench
        self.process = bench.spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"the Odoo server stopped: {_tail(self.log_path)}")
            try:
                _http(self.url + "/web/health", timeout=5)
                break
            except (OSError, ValueError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise BenchError("the Odoo server did not answer /web/health") from None
                time.sleep(0.5)

    def warm_up(self, requests=6):
        """Load the registry in the HTTP workers (a page that reads the database) and in the
        cron workers (woken by a NOTIFY), so that the first figure does not pay for it."""
        for _index in range(requests):
            with contextlib.suppress(OSError, http.client.HTTPException):
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(self.url + "/web/login", timeout=60) as response:
                    response.read()
        self.bench.notify_cron()
        time.sleep(5)

    def stop(self):
        self.bench.stop_process(self.process, grace=20.0)


# ------------------------------------------------------------------------------------------
# The benchmark
# ------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, options):
        self.options = options
        self.sizes = dict(QUICK if options.quick else FULL)
        if options.rate_window:
            self.sizes["drain_window"] = options.rate_window
        if options.drain_count:
            self.sizes["drain_count"] = options.drain_count
        self.processes = []
        self.work = tempfile.mkdtemp(prefix="l10n_pl_infakt_bench.")
        self.db = options.db or f"l10n_pl_infakt_bench_{secrets.token_hex(4)}"
        self.drop_db = not options.db and not options.keep_db
        self.db_created = False
        self.api_key = "bench-" + secrets.token_hex(8)
        self.webhook_secret = secrets.token_hex(16)
        self.webhook_token = secrets.token_urlsafe(32)
        self.setup = None
        self.results = {}
        self.worker_count = 0

    # -- processes ------------------------------------------------------------------------

    def spawn(self, command, **kwargs):
        # A session of its own: Ctrl-C reaches only this script, which stops its children.
        process = subprocess.Popen(command, start_new_session=True, **kwargs)  # noqa: S603
        self.processes.append(process)
        return process

    def stop_process(self, process, grace=10.0):
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if process.stdout:
            process.stdout.close()

    def start_worker(self, task, args):
        self.worker_count += 1
        log_path = os.path.join(self.work, f"worker-{self.worker_count:02d}-{task}.log")
        log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish_worker
        command = [sys.executable, os.path.join(ROOT, "tools", "bench_worker.py"),
                   "--config", self.config_path, "--db", self.db, task, json.dumps(args)]
        process = self.spawn(command, stdout=subprocess.PIPE, stderr=log)
        return process, log, log_path

    def finish_worker(self, handle, timeout):
        process, log, log_path = handle
        try:
            stdout, _stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_process(process)
            raise BenchError(f"{log_path}: no result after {timeout:.0f} s") from None
        finally:
            log.close()
        lines = [line for line in stdout.decode().splitlines() if line.startswith(RESULT_MARK)]
        if process.returncode or not lines:
            raise BenchError(f"{log_path} failed ({process.returncode}):\n{_tail(log_path)}")
        return json.loads(lines[-1][len(RESULT_MARK):])

    def worker(self, task, args, timeout=600):
        return self.finish_worker(self.start_worker(task, args), timeout)

    def cleanup(self):
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                self.stop_process(process, grace=5.0)
        if self.db_created and self.drop_db:
            subprocess.run(["dropdb", "--if-exists", "--force", self.db],  # noqa: S603,S607
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        elif self.db_created:
            _log(f"database kept: {self.db}")
        shutil.rmtree(self.work, ignore_errors=True)

    # -- database -------------------------------------------------------------------------

    def prepare(self):
        odoo_root = subprocess.run(  # noqa: S603
            [sys.executable, "-c",
             "import os, odoo, odoo.addons as a; print(os.path.dirname(os.path.dirname("
             "odoo.__file__))); print(','.join(p for p in a.__path__ if os.path.isdir(p)))"],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()
        self.odoo_bin = os.path.join(odoo_root[0], "odoo-bin")
        addons = os.path.join(self.work, "addons")
        shutil.copytree(ROOT, os.path.join(addons, MODULE), ignore=shutil.ignore_patterns(
            ".git", "__pycache__", ".pytest_cache", ".ruff_cache"))
        self.config_path = os.path.join(self.work, "odoo.conf")
        with open(self.config_path, "w", encoding="utf-8") as handle:
            handle.write(
                "[options]\n"
                f"addons_path = {odoo_root[1]},{addons}\n"
                f"data_dir = {os.path.join(self.work, 'data')}\n"
                f"db_name = {self.db}\n"
                f"dbfilter = ^{self.db}$\n"
                "http_interface = 127.0.0.1\n"
                "list_db = False\n"
                "log_level = warn\n"
            )
        if self.options.db:
            self.db_created = True
            return
        _log(f"installing {MODULE} into a fresh database {self.db} (takes a few minutes)")
        log_path = os.path.join(self.work, "install.log")
        started = time.monotonic()
        self.db_created = True  # from here on, drop it on exit
        with open(log_path, "w", encoding="utf-8") as log:
            process = self.spawn(
                [sys.executable, self.odoo_bin, "-c", self.config_path, "-d", self.db,
                 "-i", MODULE, "--without-demo=all", "--stop-after-init", "--http-port", "0"],
                stdout=log, stderr=subprocess.STDOUT)
            try:
                process.wait(1500)
            except subprocess.TimeoutExpired:
                raise BenchError("the installation took more than 25 minutes") from None
        if process.returncode:
            raise BenchError(f"the installation failed:\n{_tail(log_path)}")
        _log(f"installed in {time.monotonic() - started:.0f} s")

    def sql(self, query, params=None):
        """One query on the benchmark database (psycopg2 comes with Odoo)."""
        import psycopg2

        with contextlib.closing(psycopg2.connect(dbname=self.db)) as connection:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                rows = cursor.fetchall() if cursor.description else None
            connection.commit()
        return rows

    def make_account(self, code, simulator, **values):
        return self.worker("make_account", dict(
            setup=self.setup, code=code, api_url=simulator.base_url, api_key=self.api_key,
            **values))

    # -- parts ----------------------------------------------------------------------------

    def run(self):
        self.prepare()
        started = time.monotonic()
        _log("setting up a company, its chart of accounts, a customer and products")
        self.setup = self.worker("setup", {"name_suffix": secrets.token_hex(3)})
        parts = set((self.options.only or ",".join(PARTS)).split(","))
        # Parts 1 and 4 run the steps in worker processes: no Odoo server (and no scheduled
        # action) may run meanwhile.
        if "1" in parts:
            self.part_posting()
        if "4" in parts:
            self.part_sender_cost()
        if parts & {"2", "3", "6"}:
            self.part_live(parts)
        if "5" in parts:
            server = OdooServer(self, "http", _free_port(), cron_threads=0, workers=2)
            server.warm_up()
            try:
                self.part_webhook_endpoint(server)
            finally:
                server.stop()
        self.results["duration"] = time.monotonic() - started

    # -- 1 posting ------------------------------------------------------------------------

    def part_posting(self):
        size = self.sizes
        simulator = Simulator(self, "posting", [])
        try:
            on = self.make_account("BPON", simulator, auto_send=True)
            off = self.make_account("BPOFF", simulator, auto_send=False)
            for key, batch in (("posting", size["posting_batch"]), ("posting_single", 1)):
                _log(f"1. posting {size['posting_count']} invoices with automatic sending on "
                     f"and {size['posting_count']} off, interleaved (ABBA) batches of {batch}, "
                     f"one transaction per batch")
                result = self.worker("posting", {
                    "setup": self.setup, "journal_on": on["journal_id"],
                    "journal_off": off["journal_id"], "count": size["posting_count"],
                    "batch": batch, "warmup": size["posting_warmup"],
                    "sim_root": simulator.root_url,
                }, timeout=900)
                expected_on = (size["posting_count"] + size["posting_warmup"]) * (
                    2 if key == "posting_single" else 1)
                result["batch"] = batch
                # Each on batch against the off batch next to it (ABBA: the order alternates),
                # the median of these pairs: a drift or a hiccup of the machine cancels out.
                result["ratio"] = statistics.median(result["batch_ratios"])
                result["total_ratio"] = result["time_on"] / result["time_off"]
                result["ok"] = (result["ratio"] <= POSTING_MAX_RATIO
                                and result["http_requests_during_posting"] == 0
                                and result["documents_on"] == expected_on
                                and result["documents_off"] == 0)
                result.pop("batch_ratios")
                self.results[key] = result
                _log(f"   median of paired ratios {result['ratio']:.3f} (totals on "
                     f"{result['time_on']:.2f} s, off {result['time_off']:.2f} s; queries per "
                     f"invoice {result['queries_on']:.1f} / {result['queries_off']:.1f}); "
                     f"{result['documents_on']} documents queued in all, "
                     f"{result['http_requests_during_posting']} HTTP requests while posting")
        finally:
            simulator.stop()
        for account in (on, off):
            self.worker("archive_account", {"account_id": account["account_id"]})

    # -- 4 sender cost --------------------------------------------------------------------

    def part_sender_cost(self):
        size = self.sizes
        _log(f"4. sender cost per document, backlogs of {size['cost_sizes']}")
        simulator = Simulator(self, "cost", ["--task-delay", "0.2",
                                             "--rate-limit-write", "1000000",
                                             "--rate-limit-get", "1000000"])
        try:
            account = self.make_account("BCOST", simulator, rate_limit_write=1000000,
                                        download_pdf=False)
            common = {"setup": self.setup, "journal_id": account["journal_id"],
                      "account_id": account["account_id"], "time_budget": 900}
            self.worker("sender_cost", dict(common, sizes=[size["cost_warmup"]]))
            result = self.worker("sender_cost", dict(common, sizes=size["cost_sizes"]),
                                 timeout=1200)
            state = simulator.state()
        finally:
            simulator.stop()
        self.worker("archive_account", {"account_id": account["account_id"]})
        runs = result["runs"]
        for run in runs:
            run["queries_per_doc"] = run["queries"] / max(1, run["sent"])
            run["ms_per_doc"] = 1000 * run["seconds"] / max(1, run["sent"])
            run["query_ms_per_doc"] = 1000 * run["query_seconds"] / max(1, run["sent"])
        # Small, large, small again (ABA): the large backlog is compared with the mean of the
        # small runs around it, which cancels a drift of the machine.
        small = {key: statistics.fmean(run[key] for run in runs if run is not runs[1])
                 for key in ("queries_per_doc", "ms_per_doc", "query_ms_per_doc")}
        small["size"] = runs[0]["size"]
        large = runs[1]
        result["small"], result["large"] = small, large
        result["query_ratio"] = large["queries_per_doc"] / small["queries_per_doc"]
        result["time_ratio"] = large["ms_per_doc"] / small["ms_per_doc"]
        result["creates"] = state["counters"]["creates"]
        result["ok"] = (result["query_ratio"] <= COST_MAX_QUERY_RATIO
                        and result["time_ratio"] <= COST_MAX_TIME_RATIO
                        and all(run["sent"] == run["size"] for run in runs))
        self.results["cost"] = result
        for run in runs:
            _log(f"   {run['size']:>4} documents: sent {run['sent']}, "
                 f"{run['queries_per_doc']:.1f} queries and {run['ms_per_doc']:.1f} ms per "
                 f"document ({run['query_ms_per_doc']:.1f} ms in SQL)")

    # -- 2, 3, 6 on real Odoo servers -----------------------------------------------------

    def part_live(self, parts):
        server = OdooServer(self, "live", _free_port(), cron_threads=2, workers=2)
        server.warm_up()
        try:
            if "2" in parts:
                for mode in ("webhooks", "polling"):
                    self.results[f"drain_{mode}"] = self.drain(mode, [server], "2")
            if "3" in parts:
                for mode in ("webhooks", "polling"):
                    self.results[f"stream_{mode}"] = self.stream(mode, server)
            if "6" in parts:
                second = OdooServer(self, "live2", _free_port(), cron_threads=2, workers=2)
                second.warm_up()
                try:
                    self.results["scale"] = self.drain("webhooks", [server, second], "6")
                finally:
                    second.stop()
        finally:
            server.stop()
        scale, single = self.results.get("scale"), self.results.get("drain_webhooks")
        if scale and single:
            scale["deviation"] = abs(scale["fraction"] / single["fraction"] - 1)
            scale["ok"] = scale["ok"] and scale["deviation"] <= SCALE_MAX_DEVIATION

    def live_simulator(self, name, mode, server, task_delay, extra=()):
        """A simulator for a live part; with webhooks, it delivers the recommended events
        signed to ``server``'s endpoint under a new token."""
        token = secrets.token_urlsafe(32)
        args = ["--task-delay", str(task_delay), *extra]
        if mode == "webhooks":
            args += ["--webhook-url", f"{server.url}/infakt/webhook/{token}",
                     "--webhook-active"]
        simulator = Simulator(self, name, args,
                              env={"INFAKT_SIMULATOR_WEBHOOK_SECRET": self.webhook_secret})
        if mode == "webhooks":
            simulator.configure(webhook_events=WEBHOOK_EVENTS)
        return simulator, token

    def drain(self, mode, servers, label):
        size = self.sizes
        count, limit, window = size["drain_count"], size["drain_limit"], size["drain_window"]
        read_limit = size["drain_read_limit"]
        ideal_writes = count / limit * window
        ideal_reads = count * READS_PER_DOC[mode] / read_limit * window
        ideal = max(ideal_writes, ideal_reads)
        _log(f"{label}. drain to PDF, {mode}, {len(servers)} Odoo server(s) (2 workers, 2 cron "
             f"workers each): {count} documents, {limit} writes and {read_limit} reads per "
             f"{window:g} s (ideal {ideal:.1f} s)")
        simulator, token = self.live_simulator(
            f"drain-{label}-{mode}", mode, servers[0], size["drain_task_delay"],
            ["--rate-window", str(window), "--rate-limit-write", str(limit),
             "--rate-limit-get", str(read_limit)])
        watcher = None
        try:
            account = self.make_account(
                f"BD{label}{mode[0].upper()}", simulator, rate_limit_write=limit,
                rate_limit_read=read_limit, rate_limit_window=window,
                webhook_secret=self.webhook_secret, webhook_token=token)
            account_id = account["account_id"]
            # Held while queueing (the sender leaves a failed connection alone), released at
            # once with a trigger and a NOTIFY: the drain starts with the whole backlog.
            self.sql("UPDATE infakt_account SET connection_state = 'failed' WHERE id = %s",
                     (account_id,))
            queued = self.worker("queue", {"setup": self.setup, "count": count,
                                           "journal_id": account["journal_id"],
                                           "account_id": account_id}, timeout=900)
            if queued["queued"] != count:
                raise BenchError(f"{queued['queued']} documents queued instead of {count}")
            watcher = DrainWatcher(self, account_id, count)
            started = time.time()
            self.release(account_id)
            watcher.start()
            watcher.join(max(120.0, 4 * ideal))
            watcher.stop()
            elapsed = (watcher.all_done_at or time.time()) - started
            state = simulator.state()
            report = self.worker("drain_report", {"account_id": account_id})
        finally:
            if watcher:
                watcher.stop()
            simulator.stop()
        self.worker("archive_account", {"account_id": account_id})
        traffic = _traffic(state, window, started)
        numbers = [invoice["number"] for invoice in state["invoices"]]
        result = {
            "mode": mode, "servers": len(servers), "count": count, "limit": limit,
            "read_limit": read_limit, "window": window, "ideal": ideal, "elapsed": elapsed,
            "all_done": watcher.all_done_at is not None,
            "invoices": len(numbers), "duplicates": len(numbers) - len(set(numbers)),
            "reads_per_doc": traffic["reads_ok"] / count,
            "design_reads_per_doc": READS_PER_DOC[mode],
            "webhook_deliveries": state["counters"].get("webhook_successes", 0),
            **traffic, **report,
        }
        result["fraction"] = ideal / elapsed
        result["ok"] = (result["all_done"] and result["fraction"] >= DRAIN_MIN_FRACTION
                        and result["duplicates"] == 0 and result["invoices"] == count
                        and result["writes_429"] == 0
                        and result["max_writes_per_window"] <= limit
                        and result["max_reads_per_window"] <= read_limit)
        _log(f"   all done with PDF after {elapsed:.1f} s: {result['fraction']:.3f} of the "
             f"limit; {result['invoices']} invoices, {result['duplicates']} duplicates, "
             f"429 answers: {result['writes_429']} writes / {result['reads_429']} reads; "
             f"reads per document {result['reads_per_doc']:.2f} {traffic['reads_by_kind']}; "
             f"busiest window {result['max_writes_per_window']} writes, "
             f"{result['max_reads_per_window']} reads; {result['pdf_pending']} PDFs pending;"
             f" first write at {traffic['first_write'] or 0:.1f} s, last write at "
             f"{traffic['last_write'] or 0:.1f} s, last read at {traffic['last_read'] or 0:.1f} s")
        return result

    def release(self, account_id):
        """Release a held account: its sender is triggered and the cron workers woken."""
        self.sql(
            """UPDATE infakt_account SET connection_state = 'ok' WHERE id = %s;
               INSERT INTO ir_cron_trigger (cron_id, call_at, create_date, write_date)
               SELECT res_id, now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC',
                      now() AT TIME ZONE 'UTC'
                 FROM ir_model_data
                WHERE module = 'l10n_pl_infakt' AND name = 'ir_cron_infakt_send'""",
            (account_id,))
        self.notify_cron()

    def notify_cron(self):
        """Wake the cron workers: they listen on the 'postgres' database (ir.cron._notifydb)."""
        import psycopg2

        with contextlib.closing(psycopg2.connect(dbname="postgres")) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify('cron_trigger', %s)", (self.db,))

    def stream(self, mode, server):
        size = self.sizes
        task_delay = self.options.task_delay
        seconds, rate = size["stream_seconds"], size["stream_rate"]
        _log(f"3. steady stream, {mode}: {rate:g} invoice/s for {seconds} s, action_post -> "
             f"PDF stored (tasks take {task_delay:g} s)")
        simulator, token = self.live_simulator(f"stream-{mode}", mode, server, task_delay)
        watcher = None
        try:
            account = self.make_account(
                f"BS{mode[0].upper()}", simulator, webhook_secret=self.webhook_secret,
                webhook_token=token)
            account_id = account["account_id"]
            watcher = PdfWatcher(self, account_id)
            watcher.start()
            posted = self.worker("stream", {
                "setup": self.setup, "journal_id": account["journal_id"],
                "seconds": seconds, "rate": rate, "warmup": 3,
            }, timeout=seconds * 3 + 300)["posted"]
            watcher.wait_for({int(move_id) for move_id in posted}, timeout=120)
            watcher.stop()
            state = simulator.state()
        finally:
            if watcher:
                watcher.stop()
            simulator.stop()
        self.worker("archive_account", {"account_id": account_id})
        latencies = [watcher.seen[int(move_id)] - at for move_id, at in posted.items()
                     if int(move_id) in watcher.seen]
        traffic = _traffic(state, 60)
        result = {
            "mode": mode, "task_delay": task_delay, "posted": len(posted),
            "completed": len(latencies),
            "p50": statistics.median(latencies) if latencies else None,
            "p95": _percentile(latencies, 0.95) if latencies else None,
            "max": max(latencies) if latencies else None,
            "reads_per_doc": traffic["reads_ok"] / max(1, len(watcher.seen)),
            "reads_by_kind": traffic["reads_by_kind"],
            "webhook_deliveries": state["counters"].get("webhook_successes", 0),
        }
        result["ok"] = (result["completed"] == len(posted) and latencies
                        and result["p95"] <= task_delay + STREAM_MAX_EXTRA)
        result["ok"] = bool(result["ok"])
        _log(f"   p50 {result['p50'] or 0:.2f} s, p95 {result['p95'] or 0:.2f} s, max "
             f"{result['max'] or 0:.2f} s; {result['completed']}/{len(posted)} with PDF; "
             f"reads per document {result['reads_per_doc']:.2f} {result['reads_by_kind']}; "
             f"{result['webhook_deliveries']} webhook deliveries")
        return result

    # -- 5 webhook endpoint -------------------------------------------------------------

    def part_webhook_endpoint(self, server):
        size = self.sizes
        count, rounds, clients = (size["webhook_requests"], size["webhook_rounds"],
                                  size["webhook_clients"])
        token = secrets.token_urlsafe(32)
        account = self.worker("make_account", dict(
            setup=self.setup, code="BWH", api_url="http://127.0.0.1:9/api/v3",
            api_key=self.api_key, webhook_secret=self.webhook_secret, webhook_token=token))
        path = f"/infakt/webhook/{token}"
        _log(f"5. webhook endpoint: {rounds} interleaved rounds of {count} authentic signed "
             f"deliveries and {count} requests of a trivial auth='none' route (/web/health), "
             f"{clients} keep-alive clients, Odoo with 2 HTTP workers")
        run_webhook_load(server.port, path, self.webhook_secret, 40, clients, "authentic")
        run_webhook_load(server.port, path, self.webhook_secret, 40, clients, "trivial")
        totals = {kind: {"requests": 0, "seconds": 0.0, "latencies": [], "statuses": {},
                         "errors": 0} for kind in ("authentic", "trivial")}
        for index in range(rounds):
            kinds = ["authentic", "trivial"] if index % 2 == 0 else ["trivial", "authentic"]
            for kind in kinds:
                result = run_webhook_load(server.port, path, self.webhook_secret, count,
                                          clients, kind)
                total = totals[kind]
                total["requests"] += result["requests"]
                total["seconds"] += result["seconds"]
                total["latencies"].extend(result["latencies"])
                total["errors"] += result["errors"]
                for status, number in result["statuses"].items():
                    total["statuses"][status] = total["statuses"].get(status, 0) + number
        for total in totals.values():
            latencies = total.pop("latencies")
            total["rps"] = total["requests"] / max(total["seconds"], 1e-9)
            total["p50"] = _percentile(latencies, 0.50) if latencies else 0.0
            total["p99"] = _percentile(latencies, 0.99) if latencies else 0.0
        rows = self.sql("SELECT count(*) FROM infakt_webhook_event WHERE account_id = %s",
                        (account["account_id"],))
        authentic, trivial = totals["authentic"], totals["trivial"]
        result = {"authentic": authentic, "trivial": trivial,
                  "ratio": authentic["rps"] / max(trivial["rps"], 1e-9),
                  "events_recorded": rows[0][0]}
        result["ok"] = (result["ratio"] >= WEBHOOK_MIN_RATIO
                        and authentic["p99"] <= WEBHOOK_MAX_P99
                        and authentic["statuses"].get("200", 0) == count * rounds
                        and not authentic["errors"] and not trivial["errors"]
                        and result["events_recorded"] >= count * rounds)
        self.results["webhook"] = result
        _log(f"   authentic {authentic['rps']:.0f}/s (p50 {authentic['p50'] * 1000:.1f} ms, "
             f"p99 {authentic['p99'] * 1000:.1f} ms), trivial route {trivial['rps']:.0f}/s "
             f"(p99 {trivial['p99'] * 1000:.1f} ms): ratio {result['ratio']:.3f}; statuses "
             f"{authentic['statuses']} / {trivial['statuses']}")


def _traffic(state, window, started=None):
    """What inFakt (the simulator) saw: reads and writes answered, 429s, reads per kind, the
    busiest sliding window of accepted reads and of accepted writes, and (seconds after
    ``started``) the first and last accepted write and the last accepted read."""
    import datetime

    accepted = {"read": [], "write": []}
    result = {"reads_ok": 0, "writes_ok": 0, "reads_429": 0, "writes_429": 0,
              "reads_by_kind": {}}
    for request in state["requests"]:
        if str(request.get("path", "")).startswith("/_simulator"):
            continue
        bucket = "read" if request["method"] in ("GET", "HEAD") else "write"
        status = request["status"]
        if status == 429:
            result[f"{bucket}s_429"] += 1
            continue
        at = datetime.datetime.fromisoformat(request["at"]).timestamp()
        accepted[bucket].append(at)
        if isinstance(status, int) and 200 <= status < 300:
            result[f"{bucket}s_ok"] += 1
            if bucket == "read":
                kind = ("pdf" if request["path"].endswith("/pdf.json") else
                        "task" if "/status/" in request["path"] else "other")
                result["reads_by_kind"][kind] = result["reads_by_kind"].get(kind, 0) + 1
    for bucket, moments in accepted.items():
        moments.sort()
        busiest, first = 0, 0
        for last, moment in enumerate(moments):
            while moments[first] <= moment - window:
                first += 1
            busiest = max(busiest, last - first + 1)
        result[f"max_{bucket}s_per_window"] = busiest
        offset = started if started is not None else (moments[0] if moments else 0.0)
        if bucket == "write":
            result["first_write"] = moments[0] - offset if moments else None
        result[f"last_{bucket}"] = moments[-1] - offset if moments else None
    return result


class DrainWatcher(threading.Thread):
    """Reads the documents every 50 ms: when is every one done with its PDF stored."""

    def __init__(self, bench, account_id, count):
        super().__init__(daemon=True)
        self.bench, self.account_id, self.count = bench, account_id, count
        self.all_done_at = None
        self._stop_event = threading.Event()

    def run(self):
        import psycopg2

        with contextlib.closing(psycopg2.connect(dbname=self.bench.db)) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                while not self._stop_event.is_set():
                    cursor.execute(
                        """SELECT count(*) FROM infakt_document
                            WHERE account_id = %s AND state = 'done'
                              AND pdf_attachment_id IS NOT NULL""",
                        (self.account_id,))
                    if cursor.fetchone()[0] >= self.count:
                        self.all_done_at = time.time()
                        return
                    self._stop_event.wait(0.05)

    def stop(self):
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(10)


class PdfWatcher(threading.Thread):
    """Reads the documents every 20 ms: when was each invoice's PDF first seen stored."""

    def __init__(self, bench, account_id):
        super().__init__(daemon=True)
        self.bench, self.account_id = bench, account_id
        self.seen = {}
        self._stop_event = threading.Event()

    def run(self):
        import psycopg2

        with contextlib.closing(psycopg2.connect(dbname=self.bench.db)) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                while not self._stop_event.is_set():
                    cursor.execute(
                        """SELECT move_id FROM infakt_document
                            WHERE account_id = %s AND pdf_attachment_id IS NOT NULL""",
                        (self.account_id,))
                    now = time.time()
                    for (move_id,) in cursor.fetchall():
                        self.seen.setdefault(move_id, now)
                    self._stop_event.wait(0.02)

    def wait_for(self, move_ids, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not move_ids <= set(self.seen):
            time.sleep(0.1)

    def stop(self):
        self._stop_event.set()
        if self.is_alive():
            self.join(10)


def run_webhook_load(port, path, secret, count, clients, kind, time_limit=300.0):
    """``count`` requests from ``clients`` threads, each on a keep-alive connection: signed
    inFakt deliveries (a new event each) for ``authentic``, ``GET /web/health`` (Odoo's
    trivial ``auth='none'`` route) for ``trivial``; returns throughput, latencies, statuses."""
    latencies, statuses, errors = [], {}, []
    lock = threading.Lock()
    counter = iter(range(count))
    deadline = time.monotonic() + time_limit
    key = secret.encode()

    def request_of():
        if kind == "trivial":
            return "GET", "/web/health", None, {}
        event_uuid = f"bench-{uuid.uuid4()}"
        body = json.dumps({
            "event": {"uuid": event_uuid, "name": "async_invoice_creation_success",
                      "retry_counter": 0, "created_at": "2026-11-24T10:00:00.000+01:00"},
            "resource": {"invoice_task_reference_number": event_uuid,
                         "invoice_uuid": str(uuid.uuid4()), "processing_code": 201,
                         "processing_description": "Faktura stworzona",
                         "invoice_kind": "invoice"},
        }).encode()
        return "POST", path, body, {
            "Content-Type": "application/json", "User-Agent": "Infakt-Webhooks/2",
            "X-Infakt-Signature": hmac.new(key, body, hashlib.sha256).hexdigest()}

    def client():
        connection = None
        while time.monotonic() < deadline:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            method, url, body, headers = request_of()
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request(method, url, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    errors.append(type(error).__name__)
                if connection is not None:
                    connection.close()
                connection = None
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(time_limit + 30)
    wall = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": wall, "latencies": latencies,
            "statuses": statuses, "errors": len(errors)}


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def _yes(flag):
    return "yes" if flag else "NO"


def report(results, sizes):
    rows = []
    for key in ("posting", "posting_single"):
        posting = results.get(key)
        if not posting:
            continue
        rows.append((
            f"1 posting overhead, {posting['batch']} per transaction",
            f"{posting['ratio']:.3f} (median of paired ABBA batches, on/off; totals "
            f"{posting['time_on']:.2f} s / {posting['time_off']:.2f} s = "
            f"{posting['total_ratio']:.3f}; queries per invoice {posting['queries_on']:.1f} / "
            f"{posting['queries_off']:.1f}; {sizes['posting_count']} invoices each); "
            f"{posting['http_requests_during_posting']} HTTP requests while posting",
            f"<= {POSTING_MAX_RATIO}, no HTTP", _yes(posting["ok"]),
        ))
    for key, label in (("drain_webhooks", "2 drain to PDF, webhooks"),
                       ("drain_polling", "2 drain to PDF, polling only"),
                       ("scale", "6 scale-out, 2 servers, webhooks")):
        drain = results.get(key)
        if not drain:
            continue
        bound = ("write" if drain["ideal"] <= drain["count"] / drain["limit"] * drain["window"]
                 + 1e-9 else "read")
        extra = ""
        if key == "scale" and "deviation" in drain:
            extra = f"; {drain['deviation'] * 100:.1f} % from figure 2"
        rows.append((
            label,
            f"{drain['fraction']:.3f} of the {bound} limit ({drain['count']} done with PDF in "
            f"{drain['elapsed']:.1f} s, ideal {drain['ideal']:.1f} s; {drain['limit']} writes /"
            f" {drain['read_limit']} reads per {drain['window']:g} s); reads/doc "
            f"{drain['reads_per_doc']:.2f} (design {drain['design_reads_per_doc']}) "
            f"{drain['reads_by_kind']}; {drain['duplicates']} duplicates; 429: "
            f"{drain['writes_429']} writes, {drain['reads_429']} reads; busiest window "
            f"{drain['max_writes_per_window']} writes, {drain['max_reads_per_window']} reads"
            f"{extra}",
            f">= {DRAIN_MIN_FRACTION}, 0 dup, 0 write 429" + (
                f", within {SCALE_MAX_DEVIATION:.0%} of 2" if key == "scale" else ""),
            _yes(drain["ok"]),
        ))
    for mode in ("webhooks", "polling"):
        entry = results.get(f"stream_{mode}")
        if not entry:
            continue
        rows.append((
            f"3 steady stream, {'webhooks' if mode == 'webhooks' else 'polling only'}",
            f"p50 {entry['p50'] or 0:.2f} s, p95 {entry['p95'] or 0:.2f} s, max "
            f"{entry['max'] or 0:.2f} s post->PDF ({entry['completed']}/{entry['posted']} "
            f"invoices, tasks {entry['task_delay']:g} s); reads/doc "
            f"{entry['reads_per_doc']:.2f} {entry['reads_by_kind']}",
            f"p95 <= {entry['task_delay'] + STREAM_MAX_EXTRA:g} s", _yes(entry["ok"]),
        ))
    cost = results.get("cost")
    if cost:
        small, large = cost["small"], cost["large"]
        rows.append((
            "4 sender cost per document",
            f"{large['size']} vs {small['size']}: queries {large['queries_per_doc']:.1f} / "
            f"{small['queries_per_doc']:.1f} = {cost['query_ratio']:.3f}; time "
            f"{large['ms_per_doc']:.1f} / {small['ms_per_doc']:.1f} ms = "
            f"{cost['time_ratio']:.3f}",
            f"queries <= {COST_MAX_QUERY_RATIO}, time <= {COST_MAX_TIME_RATIO}",
            _yes(cost["ok"]),
        ))
    webhook = results.get("webhook")
    if webhook:
        authentic, trivial = webhook["authentic"], webhook["trivial"]
        rows.append((
            "5 webhook endpoint vs trivial route",
            f"{webhook['ratio']:.3f} ({authentic['rps']:.0f} authentic deliveries/s vs "
            f"{trivial['rps']:.0f}/s on /web/health, interleaved); authentic p99 "
            f"{authentic['p99'] * 1000:.1f} ms, p50 {authentic['p50'] * 1000:.1f} ms; "
            f"statuses {authentic['statuses']}",
            f">= {WEBHOOK_MIN_RATIO}, p99 <= {WEBHOOK_MAX_P99 * 1000:.0f} ms",
            _yes(webhook["ok"]),
        ))
    headers = ("figure", "measured", "target", "met")
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i])
              for i in range(4)]
    widths[1] = min(widths[1], 90)
    line = "+".join("-" * (width + 2) for width in widths)
    print("\n" + line)
    print("|".join(f" {headers[i]:<{widths[i]}} " for i in range(4)))
    print(line)
    for row in rows:
        wrapped = _wrap(row[1], widths[1])
        for index, part in enumerate(wrapped):
            shown = [row[0] if index == 0 else "", part, row[2] if index == 0 else "",
                     row[3] if index == 0 else ""]
            print("|".join(f" {shown[i]:<{widths[i]}} " for i in range(4)))
    print(line)
    return all(row[3] == "yes" for row in rows)


def _wrap(text, width):
    lines, current = [], ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Benchmark l10n_pl_infakt on real Odoo 18 + PostgreSQL with the simulator.")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke check)")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--db", help="use this existing database (module installed); kept")
    parser.add_argument("--only", help="comma separated parts to run (1-6; default all)")
    parser.add_argument("--rate-window", type=float,
                        help="inFakt's rate window of the drains in seconds (default 60, the "
                        "real one; quick 6)")
    parser.add_argument("--drain-count", type=int,
                        help="documents of the drains (default 500, quick 40)")
    parser.add_argument("--task-delay", type=float, default=2.5,
                        help="seconds inFakt (the simulator) takes per task in the steady "
                        "stream (default 2.5)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    options = parser.parse_args(argv)

    def _on_sigterm(signum, frame):
        raise Interrupted()

    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C also when started where SIGINT was ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bench = Bench(options)
    status = 2
    try:
        bench.run()
        met = report(bench.results, bench.sizes)
        _log(f"measured in {bench.results['duration']:.0f} s (after the installation)")
        if options.quick:
            _log("--quick: the sizes are too small for the targets; the exit status only "
                 "tells that every part ran")
        status = 0 if met or options.quick else 1
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
    except (KeyboardInterrupt, Interrupted):
        print("benchmark interrupted", file=sys.stderr)
        status = 130
    finally:
        if options.json:
            with open(options.json, "w", encoding="utf-8") as handle:
                json.dump({"sizes": bench.sizes, "results": bench.results}, handle, indent=1)
        _log("cleaning up (subprocesses, database, temporary files)")
        bench.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
