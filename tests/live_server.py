"""A real Odoo server (``odoo-bin`` in a subprocess) on a database of its own, for the
end-to-end tests (``test_production_shape``): find ``odoo-bin``, install the module into a new
database, prepare it with a short ``odoo-bin shell`` script, run the server, talk to it over
JSON-RPC, read its log, stop it and drop the database.

Nothing here touches the database of the running test suite: every command gets its own
configuration file (``db_name`` and ``dbfilter`` on the new database only, so the server's
scheduled actions never look at any other database) and its own data directory.
"""

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import odoo.sql_db
from odoo.tools import SQL, config

import odoo.addons

MODULE = "l10n_pl_infakt"
MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_DIR = os.path.join(MODULE_DIR, "tools")

# A line of the server log that fails the test: a record logged at ERROR or CRITICAL, or a
# Python traceback (also one printed to stderr outside the logging).
LOG_PROBLEM = re.compile(r"\b(?:ERROR|CRITICAL)\b|Traceback")
# The start of a log record: "2026-11-24 10:00:00,123 4242 INFO db logger: message".
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ ")
TRACEBACK_START = "Traceback (most recent call last)"


class LiveServerError(Exception):
    """A step of the live server failed; the message says which and shows its log."""


def find_odoo_command():
    """The command that runs ``odoo-bin``, found like ``tools/run_tests.sh`` does (beside the
    package that ``python3 -c 'import odoo'`` imports, else ``odoo-bin`` / ``odoo`` on the
    PATH); ``None`` when there is none."""
    code = "import os, odoo; print(os.path.dirname(os.path.dirname(odoo.__file__)))"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        root = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
            check=True,
        ).stdout.strip()
        odoo_bin = os.path.join(root, "odoo-bin")
        if root and os.path.isfile(odoo_bin):
            return [sys.executable, odoo_bin]
    for name in ("odoo-bin", "odoo"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def free_port(avoid=()):
    """A TCP port free on loopback right now (the kernel's pick)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


def addons_path():
    """Odoo's own addons, the addons path of the running suite, and the folder holding this
    module (its folder is named ``l10n_pl_infakt``; the suite may run from a copy)."""
    paths = [p for p in odoo.addons.__path__ if os.path.isdir(p)]
    paths += [p.strip() for p in (config["addons_path"] or "").split(",") if p.strip()]
    paths.append(os.path.dirname(MODULE_DIR))
    # Not the suite's data directory (the new server has its own).
    data_dir = os.path.realpath(config["data_dir"]) if config.get("data_dir") else None
    seen, result = set(), []
    for path in paths:
        real = os.path.realpath(path)
        if data_dir and (real + os.sep).startswith(data_dir + os.sep):
            continue
        if real not in seen and os.path.isdir(real):
            seen.add(real)
            result.append(path)
    return ",".join(result)


def tail(path, lines=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            content = handle.read().splitlines()[-lines:]
    except OSError:
        return ""
    return "\n  | " + "\n  | ".join(content) if content else ""


def log_problems(path, context_lines=25):
    """The blocks of the log at ``path`` that fail the test: each offending line with the
    lines that continue its record (a traceback), at most ``context_lines`` of them; the same
    block repeated (timestamps and process ids aside) is given once, with its count.
    Returns ``[(count, block)]`` in the order of first appearance."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        return [(1, f"(the server log {path} could not be read: {error})")]
    groups, index = {}, 0
    while index < len(lines):
        if not LOG_PROBLEM.search(lines[index]):
            index += 1
            continue
        block = [lines[index]]
        index += 1
        # A record goes on until the next record, or the next traceback printed outside the
        # logging (the crash of a process before its logging is set up).
        while index < len(lines) and not LOG_RECORD.match(lines[index]) \
                and not lines[index].startswith(TRACEBACK_START):
            if len(block) <= context_lines:
                block.append(lines[index])
            index += 1
        text = "\n".join(block)
        key = LOG_RECORD.sub("", text)
        count, first = groups.get(key, (0, text))
        groups[key] = (count + 1, first)
    return list(groups.values())


def count_in_log(path, pattern):
    """How many lines of the log at ``path`` match ``pattern`` (a compiled regex)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if pattern.search(line))
    except OSError:
        return 0


class LiveOdoo:
    """One database and one server process, in a work folder of their own."""

    def __init__(self, command, workdir, db, http_port, gevent_port):
        self.command = command
        self.workdir = workdir
        self.db = db
        self.http_port = http_port
        self.gevent_port = gevent_port
        self.url = f"http://127.0.0.1:{http_port}"
        self.conf = os.path.join(workdir, "odoo.conf")
        self.server_log = os.path.join(workdir, "server.log")
        self.process = None
        self.database_created = False

    # ------------------------------------------------------------------ configuration
    def write_config(self):
        """The configuration of every command on this database: the suite's PostgreSQL
        connection, the new database only, a data directory of its own."""
        lines = [
            "[options]",
            f"addons_path = {addons_path()}",
            f"data_dir = {os.path.join(self.workdir, 'data')}",
            f"db_name = {self.db}",
            f"dbfilter = ^{self.db}$",
            "list_db = False",
            "http_interface = 127.0.0.1",
            f"http_port = {self.http_port}",
            f"gevent_port = {self.gevent_port}",
            "without_demo = all",
            "proxy_mode = False",
        ]
        for key in ("db_host", "db_port", "db_user", "db_password", "db_sslmode"):
            value = config.get(key)
            if value not in (None, False, ""):
                lines.append(f"{key} = {value}")
        with open(self.conf, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(self.conf, 0o600)

    def _run(self, args, log_name, timeout, stdin=None):
        log_path = os.path.join(self.workdir, log_name)
        with open(log_path, "wb") as log:
            try:
                process = subprocess.run(  # noqa: S603 - our own interpreter and odoo-bin
                    self.command + args, stdout=subprocess.PIPE, stderr=log,
                    input=(stdin or "").encode(), timeout=timeout, cwd=self.workdir,
                    check=False,
                )
            except subprocess.TimeoutExpired as error:
                raise LiveServerError(
                    f"{' '.join(args[:2])} did not finish within {timeout} s{tail(log_path)}"
                ) from error
        stdout = process.stdout.decode("utf-8", errors="replace")
        if process.returncode:
            raise LiveServerError(
                f"odoo-bin {' '.join(args)} failed (exit code {process.returncode})"
                f"{tail(log_path)}\n  stdout: {stdout[-2000:]}"
            )
        return stdout

    # ------------------------------------------------------------------ steps
    def gevent_problem(self):
        """Whether this Odoo can start the gevent (websocket) process that every multi-worker
        server spawns: ``None`` when ``odoo-bin gevent --help`` works, else its error. A
        machine where it cannot (a broken gevent install) fills the server log with that
        process's crashes, restarted every second: the report says where they come from."""
        try:
            process = subprocess.run(  # noqa: S603 - our own interpreter and odoo-bin
                self.command + ["gevent", "--help"], capture_output=True, text=True,
                timeout=120, cwd=self.workdir, check=False,
            )
        except (OSError, subprocess.SubprocessError) as error:
            return str(error)
        if process.returncode == 0:
            return None
        lines = [line for line in process.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit code {process.returncode}"

    def install(self, timeout=900):
        """``odoo-bin -i l10n_pl_infakt --stop-after-init --without-demo=all`` on the new
        database (no workers, no scheduled actions, no HTTP)."""
        self.database_created = True  # from now on the cleanup drops it
        self._run(
            ["-c", self.conf, "-d", self.db, "-i", MODULE, "--stop-after-init",
             "--without-demo=all", "--workers=0", "--max-cron-threads=0", "--no-http",
             "--log-level=warn"],
            "install.log", timeout,
        )

    def shell(self, script, timeout=300):
        """Run ``script`` with ``odoo-bin shell`` (it gets ``env``, superuser; it commits
        itself); returns its standard output."""
        return self._run(
            ["shell", "-c", self.conf, "-d", self.db, "--no-http", "--max-cron-threads=0",
             "--log-level=warn"],
            "setup.log", timeout, stdin=script,
        )

    def start(self, workers=2, cron_workers=2):
        """The server as in production: prefork workers and cron workers; its standard
        output and error (the log) go to ``server.log``."""
        with open(self.server_log, "wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and odoo-bin
                self.command + [
                    "-c", self.conf, "-d", self.db, f"--workers={workers}",
                    f"--max-cron-threads={cron_workers}", "--log-level=info",
                    # One access line per request would drown the log; errors stay.
                    "--log-handler=werkzeug:WARNING",
                ],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, start_new_session=True,
            )

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout=180):
        """Wait until the server answers ``/web/health`` (fails early when it died)."""
        deadline = time.monotonic() + timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise LiveServerError(
                    f"the Odoo server stopped (exit code {self.process.returncode})"
                    f"{tail(self.server_log)}"
                )
            try:
                with opener.open(self.url + "/web/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                last = error
            time.sleep(0.25)
        raise LiveServerError(
            f"the Odoo server did not answer {self.url}/web/health within {timeout} s "
            f"({last}){tail(self.server_log)}"
        )

    def stop(self, timeout=20):
        """SIGTERM to the server's process group (a graceful stop), a second one (forced)
        after ``timeout``, then SIGKILL to whatever of the group is left."""
        process, self.process = self.process, None
        if process is None:
            return
        group = process.pid  # start_new_session: the server leads its own group
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGTERM, 5)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
        # The workers and the gevent process are in the same group: none may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def drop_database(self):
        """Drop the database (ending any session still on it); the filestore lives in the
        work folder, removed with it."""
        if not self.database_created:
            return
        odoo.sql_db.close_db(self.db)
        connection = odoo.sql_db.db_connect("postgres")
        with contextlib.closing(connection.cursor()) as cr:
            cr._cnx.autocommit = True
            cr.execute(
                SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid != pg_backend_pid()", self.db)
            )
            cr.execute(SQL("DROP DATABASE IF EXISTS %s", SQL.identifier(self.db)))
        self.database_created = False

    def log_problems(self):
        return log_problems(self.server_log)


class RpcError(Exception):
    pass


class JsonRpc:
    """A JSON-RPC client of ``/jsonrpc`` (``execute_kw``), one per thread: a user of the
    external API, nothing shared with the test's Odoo."""

    _ids = itertools.count(1)
    _ids_lock = threading.Lock()

    def __init__(self, url, db, login, password, timeout=120):
        self.url = url.rstrip("/") + "/jsonrpc"
        self.db = db
        self.password = password
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.uid = self.call("common", "login", db, login, password)
        if not self.uid:
            raise RpcError(f"could not log in to {db} as {login}")

    def call(self, service, method, *args):
        with self._ids_lock:
            request_id = next(self._ids)
        payload = json.dumps({
            "jsonrpc": "2.0", "method": "call", "id": request_id,
            "params": {"service": service, "method": method, "args": list(args)},
        }).encode()
        request = urllib.request.Request(
            self.url, data=payload, headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                answer = json.loads(response.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise RpcError(f"{service}.{method}: {error}") from error
        if answer.get("error"):
            error = answer["error"]
            data = error.get("data") or {}
            raise RpcError(
                f"{service}.{method}: {data.get('name', '')}: "
                f"{data.get('message') or error.get('message')}"
            )
        return answer.get("result")

    def execute(self, model, method, args, **kwargs):
        return self.call("object", "execute_kw", self.db, self.uid, self.password, model,
                         method, args, kwargs)


# The database's setup, run once by ``odoo-bin shell`` before the server starts. It reuses the
# benchmark's setup (tools/bench_worker.py: a Polish company with NIP and address, a chart of
# accounts, a 23 % tax, a customer, products; a sales journal with an FV series, a payment
# mapping and an inFakt account on the simulator) and adds what a user of the JSON-RPC API
# needs: the admin works in that company with a password of this run.
SETUP_SCRIPT = """
import importlib.util, json
from odoo import Command

params = json.loads(PARAMS)
spec = importlib.util.spec_from_file_location("l10n_pl_infakt_bench_worker",
                                              params["bench_worker"])
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

env["ir.config_parameter"].set_param("web.base.url", params["odoo_url"])
setup = bench.task_setup(env, {"name_suffix": params["name_suffix"]})
company_env = env(context={"allowed_company_ids": [setup["company_id"]]})
made = bench.task_make_account(company_env, {
    "setup": setup, "code": "E2E", "api_url": params["api_url"], "api_key": params["api_key"],
    "webhook_secret": params["webhook_secret"], "download_pdf": params["download_pdf"],
})
account = company_env["infakt.account"].browse(made["account_id"])
account.action_test_connection()
admin = env.ref("base.user_admin")
admin.write({"password": params["password"],
             "company_ids": [Command.link(setup["company_id"])],
             "company_id": setup["company_id"]})
result = dict(setup, **made, webhook_token=account.sudo().webhook_token,
              connection_state=account.connection_state,
              connection_message=account.connection_message or "")
env.cr.commit()
print("E2E-SETUP " + json.dumps(result), flush=True)
"""


def setup_database(server, **params):
    """Run :data:`SETUP_SCRIPT` on the server's database; returns its result."""
    params.setdefault("bench_worker", os.path.join(TOOLS_DIR, "bench_worker.py"))
    script = f"PARAMS = {json.dumps(params)!r}\n" + SETUP_SCRIPT
    stdout = server.shell(script)
    for line in stdout.splitlines():
        if line.startswith("E2E-SETUP "):
            return json.loads(line[len("E2E-SETUP "):])
    raise LiveServerError(
        f"the setup script printed no result{tail(os.path.join(server.workdir, 'setup.log'))}"
        f"\n  stdout: {stdout[-2000:]}"
    )
