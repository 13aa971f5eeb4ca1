"""Shared fixtures for the pure (Odoo-free) tests.

* the repository root goes on ``sys.path`` so tests can ``import infakt_api``;
* ``simulator_process`` (session): ``tools/infakt_simulator.py`` as a real subprocess;
* ``simulator`` (function): resets it to its start-up configuration and returns a helper;
* ``webhook_receiver`` (function): a loopback HTTP server recording the POSTs it gets.

Everything here talks HTTP with ``urllib`` (never ``requests``) so these fixtures do not depend
on the client under test.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SIMULATOR_SCRIPT = REPO_ROOT / "tools" / "infakt_simulator.py"
API_KEY = "test-key"
READY_PREFIX = "inFakt simulator listening on "

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _skip_addon_package_setup():
    """Stand-in for ``Package.setup`` of the addon packages above ``tests/pure``."""


def pytest_collection_modifyitems(config, items):
    """Keep the pure tests free of Odoo.

    The repository root is the addon itself (``__init__.py`` importing Odoo models) and
    ``tests/`` is its Odoo test package, so pytest would import both as plain packages
    (``main``, ``main.tests``) while setting up the tests below — which fails outside Odoo.
    Without pytest-odoo (``-p no:odoo``) these package setups are skipped for the pure tests.
    """
    if config.pluginmanager.has_plugin("odoo"):
        return
    here = Path(__file__).resolve().parent
    addon_packages = {REPO_ROOT, REPO_ROOT / "tests"}
    for item in items:
        if here not in Path(str(item.path)).resolve().parents:
            continue
        for node in item.listchain():
            if isinstance(node, pytest.Package) and Path(node.path).resolve() in addon_packages:
                node.setup = _skip_addon_package_setup


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_json(method, url, payload=None, timeout=10.0):
    """(status, parsed JSON or None) of one request; HTTP errors are returned, not raised."""
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, (json.loads(body.decode("utf-8")) if body else None)


class SimulatorProcess:
    """The running simulator subprocess."""

    def __init__(self, process, base_url, stderr_path):
        self.process = process
        self.base_url = base_url
        self.root_url = base_url[: -len("/api/v3")]
        self.port = int(self.root_url.rsplit(":", 1)[1])
        self.stderr_path = stderr_path

    def stderr(self):
        return Path(self.stderr_path).read_text(encoding="utf-8", errors="replace")


def start_simulator_process(*extra_args, timeout=15.0):
    """Start ``tools/infakt_simulator.py`` and wait for its readiness line."""
    port = _free_port()
    stderr_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the process life
        prefix="infakt-sim-", suffix=".log", delete=False)
    args = [sys.executable, str(SIMULATOR_SCRIPT), "--port", str(port), *extra_args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=stderr_file, stdin=subprocess.DEVNULL,
        text=True, cwd=str(REPO_ROOT), env=env)
    lines = []

    def _reader():
        for line in process.stdout:
            lines.append(line)
            if line.startswith(READY_PREFIX):
                return

    reader = threading.Thread(target=_reader, daemon=True)
    reader.start()
    reader.join(timeout)
    stderr_file.close()
    ready = [line for line in lines if line.startswith(READY_PREFIX)]
    if not ready:
        process.kill()
        process.wait(5)
        log = Path(stderr_file.name).read_text(errors="replace")
        raise RuntimeError(f"simulator did not start: {lines!r}\n{log}")
    return SimulatorProcess(process, ready[0][len(READY_PREFIX):].strip(), stderr_file.name)


def stop_simulator_process(handle, timeout=10.0):
    process = handle.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process.stdout:
        process.stdout.close()
    try:
        os.unlink(handle.stderr_path)
    except OSError:
        pass
    return process.returncode


def _clock_args():
    """Extra simulator arguments from the environment, to run the suite at a chosen hour:
    ``INFAKT_SIMULATOR_NOW=2026-11-24T23:30:00Z`` (the simulator's clock starts there) and
    ``INFAKT_SIMULATOR_TIMEZONE=UTC``."""
    args = []
    if os.environ.get("INFAKT_SIMULATOR_NOW"):
        args += ["--now", os.environ["INFAKT_SIMULATOR_NOW"]]
    if os.environ.get("INFAKT_SIMULATOR_TIMEZONE"):
        args += ["--timezone", os.environ["INFAKT_SIMULATOR_TIMEZONE"]]
    return args


@pytest.fixture(scope="session")
def simulator_process():
    handle = start_simulator_process("--api-key", API_KEY, "--task-delay", "0.2", "--quiet",
                                     *_clock_args())
    try:
        yield handle
    finally:
        stop_simulator_process(handle)


@pytest.fixture
def simulator_launcher():
    """``launch(*cli_args)`` starts an extra simulator process, stopped after the test."""
    handles = []

    def launch(*args):
        handle = start_simulator_process(*args)
        handles.append(handle)
        return handle

    launch.stop = stop_simulator_process
    launch.script = SIMULATOR_SCRIPT
    yield launch
    for handle in handles:
        stop_simulator_process(handle)


class SimulatorClient:
    """Test-side helper around the simulator's control API (``/_simulator/*``)."""

    def __init__(self, handle):
        self.handle = handle
        self.root_url = handle.root_url
        self.base_url = handle.base_url
        self.api_key = API_KEY

    def _control(self, method, action, payload=None):
        status, body = http_json(method, self.root_url + "/_simulator/" + action, payload)
        if status >= 400:
            raise AssertionError(f"simulator control {method} {action} -> {status} {body!r}")
        return body

    def reset(self, config=True):
        return self._control("POST", "reset", {"config": bool(config)})

    def state(self):
        return self._control("GET", "state")

    def configure(self, **cfg):
        return self._control("POST", "config", cfg)["config"]

    def fault(self, **spec):
        return self._control("POST", "faults", spec)["faults"]

    def clear_faults(self):
        return self._control("DELETE", "faults")

    def verify_webhook(self):
        return self._control("POST", "webhooks/verify")

    def clock(self):
        """``{"now", "today", "timezone"}`` as the simulator sees them."""
        return self._control("GET", "clock")

    def today(self):
        """The simulator's date. It follows Polish time (as inFakt does), which between 23:00
        and 24:00 UTC (22:00 in summer) is already tomorrow: tests compare dates with this,
        never with the machine's ``date.today()``."""
        return datetime.date.fromisoformat(self.clock()["today"])

    def wait_idle(self, timeout=5.0):
        """Wait until no task, KSeF request or webhook delivery is pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            busy = any(t["code"] in (100, 120, 140) for t in state["tasks"])
            busy = busy or state["webhook"]["pending"] > 0
            busy = busy or any(j["status"] in ("pending", "sent") and j["outcome"] in (
                "success", "error") for j in state["ksef_requests"])
            if not busy:
                return state
            time.sleep(0.02)
        raise AssertionError(f"simulator still busy after {timeout:.1f}s")


@pytest.fixture
def simulator(simulator_process):
    if simulator_process.process.poll() is not None:
        pytest.fail("simulator process died:\n" + simulator_process.stderr())
    client = SimulatorClient(simulator_process)
    client.reset(config=True)
    return client


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        return

    def do_POST(self):
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw.decode("utf-8"))
        except ValueError:
            parsed = None
        record = {"path": self.path, "headers": {k: v for k, v in self.headers.items()},
                  "body": raw, "json": parsed, "at": time.monotonic()}
        with receiver.cond:
            receiver.requests.append(record)
            status = receiver.status
            echo = receiver.echo
            receiver.cond.notify_all()
        payload = {}
        if echo and isinstance(parsed, dict) and "verification_code" in parsed:
            payload = {"verification_code": parsed["verification_code"]}
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class WebhookReceiver:
    """Records raw POSTs; answers ``status`` (default 200), echoing ``verification_code``."""

    def __init__(self):
        self.requests = []
        self.status = 200
        self.echo = True
        self.cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _ReceiverHandler)
        self.server.daemon_threads = True
        self.server.receiver = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/infakt/webhook"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def set_status(self, code):
        with self.cond:
            self.status = int(code)

    def set_echo(self, echo):
        with self.cond:
            self.echo = bool(echo)

    def events(self, name=None):
        """Received event deliveries (verification pings excluded), optionally by name."""
        with self.cond:
            found = [r for r in self.requests if isinstance(r["json"], dict)
                     and "event" in r["json"]]
        return [r for r in found if name is None or r["json"]["event"]["name"] == name]

    def wait_for(self, count, timeout=5.0, name=None):
        """Wait until ``count`` event deliveries (of ``name`` if given) arrived; return them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [r for r in self.requests if name is None or (
                    isinstance(r["json"], dict) and "event" in r["json"]
                    and r["json"]["event"]["name"] == name)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [r["json"] for r in self.requests]
                    raise AssertionError(
                        f"expected {count} webhook request(s), got {len(found)}: {seen!r}")
                self.cond.wait(remaining)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
