import json
import os
import subprocess
import sys
import textwrap
import time

from odoo import SUPERUSER_ID, api
from odoo.tests import TransactionCase, tagged
from odoo.tools import config

from .common import CommittedBacklogMixin, InfaktSimulatorMixin

SENDER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import odoo
    from odoo.tools import config
    db, addons_path, rcfile, start_at = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    args = ["--addons-path", addons_path, "-d", db, "--log-level", "warn"]
    if rcfile:
        args = ["-c", rcfile] + args
    config.parse_config(args)
    registry = odoo.modules.registry.Registry(db)
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    with registry.cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        env["infakt.document.cron"]._cron_send(time_budget=60)
    print(json.dumps({"started": started, "ended": time.time()}))
    """
)


@tagged("post_install", "-at_install")
class TestConcurrentSenders(CommittedBacklogMixin, InfaktSimulatorMixin, TransactionCase):
    """Two sender processes on one backlog, on committed data (real transactions)."""

    def test_two_sender_processes_send_each_document_once(self):
        self._start_simulator()
        count = 30
        # Each request takes a little while, so that both senders are busy at the same time.
        self.simulator.add_fault(latency=0.05)
        account_id, move_ids, _names = self._setup_committed_backlog(count, label="concurrency")
        self.addCleanup(self._cleanup, account_id)
        start_at = time.time() + 12
        env_vars = dict(os.environ)
        rcfile = config.rcfile if config.rcfile and os.path.isfile(config.rcfile) else ""
        args = [self.env.cr.dbname, config["addons_path"], rcfile, str(start_at)]
        processes = [
            subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [sys.executable, "-c", SENDER_SCRIPT, *args],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_vars, text=True,
            )
            for _index in range(2)
        ]
        outputs = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=180)
            self.assertEqual(process.returncode, 0, stderr[-3000:])
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
        # The two runs overlapped in time.
        self.assertLess(max(o["started"] for o in outputs), min(o["ended"] for o in outputs))
        state = self.simulator.state()
        creates = [r for r in state["requests"]
                   if r["method"] == "POST" and r["path"].endswith("/async/invoices.json")]
        self.assertEqual(len(creates), count, "each document is POSTed exactly once")
        numbers = [invoice["number"] for invoice in state["invoices"]]
        self.assertEqual(len(numbers), count)
        self.assertEqual(len(set(numbers)), count)
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            documents = env["account.move"].browse(move_ids).infakt_document_ids
            self.assertEqual(set(documents.mapped("state")), {"processing"})
            self.assertEqual(len(set(documents.mapped("task_reference"))), count)
            self.assertEqual(set(documents.mapped("attempt_count")), {1})
