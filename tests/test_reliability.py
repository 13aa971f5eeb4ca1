"""Reliability under faults: lost answers, a sender killed mid-request, storms.

Everything runs against the in-process inFakt simulator on loopback, with bounded time and
counts. The crash test uses committed data and real separate Odoo processes (like
``test_concurrency``); the other tests drive the scheduled actions themselves in a loop with a
deadline, moving the retry dates into the past between rounds instead of sleeping.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import timedelta

from odoo import SUPERUSER_ID, Command, api, fields
from odoo.tests import TransactionCase, tagged
from odoo.tools import config

from ..const import ADVISORY_LOCK_NAMESPACE, TASK_WINDOW_SECONDS
from .common import CommittedBacklogMixin, InfaktCommon, InfaktSimulatorMixin, wait_until

CREATE_PATH = "/async/invoices.json"


class _ReliabilityHelpers:
    """Helpers shared by the single-process reliability tests (InfaktCommon based)."""

    def post_invoices(self, count):
        """``count`` posted customer invoices in the FV series (queued for inFakt)."""
        moves = self.env["account.move"].create(
            [
                {
                    "move_type": "out_invoice",
                    "partner_id": self.partner.id,
                    "journal_id": self.journal.id,
                    "invoice_line_ids": [
                        Command.create(
                            {
                                "product_id": self.product.id,
                                "quantity": 1 + index % 3,
                                "price_unit": 100.0 + index,
                                "tax_ids": [Command.set(self.tax_23.ids)],
                            }
                        )
                    ],
                }
                for index in range(count)
            ]
        )
        moves.action_post()
        documents = moves.infakt_document_ids
        self.assertEqual(len(documents), count)
        self.assertEqual(set(documents.mapped("state")), {"to_send"})
        return moves, documents

    def create_posts(self):
        """Create requests received by the simulator (any outcome, dropped included)."""
        return [r for r in self.sim_state()["requests"]
                if r["method"] == "POST" and r["path"].endswith(CREATE_PATH)]

    def assert_exactly_once_in_infakt(self, moves):
        """Each move is in inFakt exactly once, under its own number, and linked."""
        invoices = self.sim_invoices()
        numbers = Counter(invoice["number"] for invoice in invoices)
        duplicates = {number: n for number, n in numbers.items() if n > 1}
        self.assertFalse(duplicates, "the same invoice was created twice in inFakt")
        self.assertEqual(sorted(numbers), sorted(moves.mapped("name")))
        by_number = {invoice["number"]: invoice for invoice in invoices}
        for move in moves:
            document = move.infakt_document_id
            self.assertEqual(document.state, "done", f"{move.name}: {document.error_message}")
            self.assertEqual(document.infakt_uuid, by_number[move.name]["uuid"], move.name)
            self.assertEqual(document.infakt_number, move.name,
                             f"{move.name}: done without the inFakt number")

    def advance_clock(self, documents, age_sending=False):
        """Pretend the waits asked for have passed: due dates into the past (and, with
        ``age_sending``, the task window of in-doubt documents over)."""
        now = fields.Datetime.now()
        past = now - timedelta(seconds=1)
        for document in documents:
            values = {}
            if document.state in ("to_send", "in_doubt") and document.next_attempt_at \
                    and document.next_attempt_at > past:
                values["next_attempt_at"] = past
            if document.state == "processing" and document.next_poll_at \
                    and document.next_poll_at > past:
                values["next_poll_at"] = past
            if age_sending and document.state == "in_doubt":
                values["sending_started_at"] = now - timedelta(seconds=TASK_WINDOW_SECONDS + 60)
            if values:
                document.sudo().write(values)


@tagged("post_install", "-at_install")
class TestLostAnswers(_ReliabilityHelpers, InfaktCommon):
    """6. The answer of inFakt is lost (connection dropped after or before the create)."""

    def test_dropped_answers_reconciled_without_duplicates(self):
        moves, documents = self.post_invoices(6)
        documents = documents.sorted("id")
        # First create: the connection is cut before inFakt processes it (nothing created).
        # The next three: inFakt creates the invoice, then the answer is lost (one as a TCP
        # reset, two as a plain close). The last two go through.
        self.simulator.add_fault(drop_before_processing=1)
        self.simulator.add_fault(drop_after_create=2)
        self.simulator.add_fault(drop_after_create=1, reset=True)
        self.run_sender()
        self.assertEqual(documents.mapped("state"),
                         ["in_doubt"] * 4 + ["processing"] * 2, documents.mapped("error_message"))
        for document in documents[:4]:
            self.assertTrue(document.error_message)
            self.assertTrue(document.next_attempt_at)
            self.assertTrue(
                document.move_id.message_ids.filtered(lambda m: "was lost" in (m.body or "")),
                "the lost answer is told in the chatter of the invoice",
            )
        posts = self.create_posts()
        self.assertEqual(len(posts), 6)
        self.assertEqual([p["status"] for p in posts], ["dropped"] * 4 + [201] * 2)
        self.simulator.flush(timeout=5)
        self.assertEqual(len(self.sim_invoices()), 5, "the three lost answers were created")

        # Reconciliation: the three created ones are found by number and linked, never sent
        # again; the one that never reached inFakt stays in doubt while its task window runs.
        for _round in range(3):
            self.advance_clock(documents)
            self.run_processor()
        self.assertEqual(documents.mapped("state"), ["in_doubt"] + ["done"] * 5)
        self.assertEqual(len(self.create_posts()), 6, "nothing was sent again blindly")
        self.assertEqual(set(documents[1:].mapped("attempt_count")), {1})

        # After the task window, the missing one is safe to send again.
        self.advance_clock(documents, age_sending=True)
        self.run_processor()
        self.assertEqual(documents[0].state, "to_send")
        self.send_and_complete(moves)
        self.assertEqual(documents[0].attempt_count, 2)
        self.assertEqual(len(self.create_posts()), 7)
        self.assertEqual(self.sim_state()["counters"]["creates"], 6)
        self.assert_exactly_once_in_infakt(moves)
        self.assertFalse(documents.filtered(lambda d: d.state == "sending"))

    def test_lost_answers_while_infakt_is_still_processing(self):
        """The task behind a lost answer is still queued in inFakt when Odoo looks: the
        document stays in doubt (not sent again) until inFakt has finished, then is linked."""
        self.simulator.configure(task_delay=3.0)
        moves, documents = self.post_invoices(4)
        self.simulator.add_fault(drop_after_create=3)
        self.run_sender()
        self.assertEqual(sorted(documents.mapped("state")),
                         ["in_doubt"] * 3 + ["processing"])
        doubtful = documents.filtered(lambda d: d.state == "in_doubt")
        # inFakt has not created them yet: looking them up finds nothing, and nothing is sent.
        self.assertFalse(self.sim_invoices())
        self.advance_clock(doubtful)
        self.run_processor(time_budget=0.5)
        self.assertEqual(set(doubtful.mapped("state")), {"in_doubt"})
        self.assertEqual(len(self.create_posts()), 4)
        self.assertTrue(self.simulator.flush(timeout=10))
        for _round in range(5):
            self.advance_clock(documents)
            self.run_processor()
            if set(documents.mapped("state")) == {"done"}:
                break
        self.assertEqual(len(self.create_posts()), 4, "nothing was sent again blindly")
        self.assert_exactly_once_in_infakt(moves)


@tagged("post_install", "-at_install")
class TestStorms(_ReliabilityHelpers, InfaktCommon):
    """9. Bursts of 429 and 503, latency spikes, inFakt down for a while, then recovery."""

    BACKLOG = 20
    DEADLINE = 150.0

    def _observe(self, documents, seen):
        self.env.flush_all()
        now = fields.Datetime.now()
        for document in documents:
            self.assertNotEqual(document.state, "sending", "left in sending after a run")
            self.assertNotEqual(document.state, "error",
                                f"a storm must not need a person: {document.error_message}")
            due = document.next_poll_at if document.state == "processing" else \
                document.next_attempt_at
            if document.state != "done" and due and due > now:
                seen["postponed"].add(document.id)
            if document.error_message:
                seen["messages"].add(document.error_message)
        seen["states"].update(documents.mapped("state"))

    def _round(self, documents, seen, budget=3):
        """One round of both scheduled actions, looking at the documents after each."""
        Document = self.env["infakt.document.cron"]
        Document._cron_send(time_budget=budget, with_commit=False)
        self._observe(documents, seen)
        self.simulator.flush(timeout=2)
        Document._cron_process(time_budget=budget, with_commit=False)
        self._observe(documents, seen)

    def _create_statuses(self):
        return Counter(r["status"] for r in self.create_posts())

    def test_storm_backlog_ends_done_exactly_once(self):
        started = time.monotonic()
        # A short rate-limit window: a 429 without Retry-After pauses the sender 1 s.
        self.infakt_account.rate_limit_window = 4
        # Part of the backlog is posted during the outage below.
        moves, documents = self.post_invoices(self.BACKLOG - 5)
        seen = {"postponed": set(), "messages": set(), "states": set()}
        sim = self.simulator

        # --- a burst while the backlog is sent: 429 (with and without Retry-After), 503,
        # 408 and 500 on the creates, latency spikes.
        sim.add_fault(fail_next=2, status=429, methods=["POST"], path_contains="/async/",
                      headers={"Retry-After": "0.2"})
        sim.add_fault(fail_next=2, status=408, methods=["POST"], path_contains="/async/")
        sim.add_fault(fail_next=1, status=500, methods=["POST"], path_contains="/async/")
        sim.add_fault(fail_next=1, status=429, methods=["POST"], path_contains="/async/")
        sim.add_fault(fail_next=1, status=503, methods=["POST"], path_contains="/async/")
        sim.add_fault(latency=0.3, count=4)
        # A 429 stops a run of the sender (it plans the next one after the pause): a few runs
        # meet the whole burst.
        for _run in range(10):
            self.run_sender(time_budget=10)
            self._observe(documents, seen)
            if not sim.state()["faults"] and "processing" in seen["states"]:
                break
            self.advance_clock(documents)
        self.assertEqual(sim.state()["faults"], [], "the whole burst was met")
        self.assertTrue(seen["postponed"], "backoff: documents wait for a later attempt")
        self.assertTrue(seen["messages"], "the failures are explained on the documents")
        self.assertIn("in_doubt", seen["states"], "a 500 on a create is in doubt")
        self.assertIn("processing", seen["states"])

        # --- inFakt is down for a while: every request fails (503 on writes, 500 on reads).
        sim.add_fault(fail_next=10_000, status=503, methods=["POST"])
        sim.add_fault(fail_next=10_000, status=500, methods=["GET", "HEAD"])
        late_moves, late_documents = self.post_invoices(5)
        moves, documents = moves | late_moves, documents | late_documents
        self.assertTrue(sim.flush(timeout=5))
        invoices_before = len(self.sim_invoices())
        refused_before = self._create_statuses()[503]
        seen["postponed"] = set()
        for _round in range(3):
            self.advance_clock(documents, age_sending=True)
            self._round(documents, seen, budget=2)
            self.assertEqual(len(self.sim_invoices()), invoices_before,
                             "nothing can be created while inFakt is down")
            self.assertNotIn("done", documents.mapped("state"),
                             "nothing can be confirmed while inFakt is down")
        self.assertGreater(self._create_statuses()[503], refused_before,
                           "the outage caught documents still to send")
        self.assertTrue(seen["postponed"],
                        "while inFakt is down the documents wait instead of hammering it")
        # Told apart: no connection, no answer in time (408), inFakt's own failure (5xx).
        self.assertTrue(any(words in m for m in seen["messages"] for words in (
            "could not be reached", "did not answer in time", "internal error")),
            seen["messages"])
        self.assertGreater(max(documents.mapped("poll_count")), 2,
                           "task polls went on, spaced out, during the outage")

        # --- recovery, with aftershocks: more 408 and 500 on creates, failed read-backs of
        # created invoices, latency spikes.
        sim.clear_faults()
        sim.add_fault(fail_next=2, status=408, methods=["POST"], path_contains="/async/")
        sim.add_fault(fail_next=2, status=500, methods=["POST"], path_contains="/async/")
        sim.add_fault(fail_next=3, status=503, methods=["GET"], path_contains="/api/v3/invoices/")
        sim.add_fault(latency=1.0, count=2)
        deadline = started + self.DEADLINE
        while time.monotonic() < deadline:
            self.advance_clock(documents, age_sending=True)
            self._round(documents, seen)
            if set(documents.mapped("state")) == {"done"} and not any(
                    documents.mapped("pdf_pending")) and not sim.state()["faults"]:
                break
        states = Counter(documents.mapped("state"))
        self.assertEqual(states, Counter({"done": self.BACKLOG}),
                         f"not all done before the deadline: {dict(states)}")
        self.assert_exactly_once_in_infakt(moves)

        # Backoff and counts are visible afterwards.
        statuses = self._create_statuses()
        self.assertEqual(statuses[429], 3)
        self.assertGreaterEqual(statuses[503], 2)
        self.assertGreater(Counter((r["method"], r["status"])
                                   for r in self.sim_state()["requests"])[("GET", 500)], 10)
        self.assertEqual(statuses[408], 4)
        self.assertEqual(statuses[500], 3)
        self.assertEqual(statuses[201], self.BACKLOG, "each invoice created by one request")
        # 429 and 503 are not failed attempts; a 408 is one, and a 500 (in doubt, not found,
        # sent again after the task window) costs one more attempt.
        self.assertEqual(sum(documents.mapped("attempt_count")),
                         self.BACKLOG + statuses[408] + statuses[500])
        self.assertGreaterEqual(max(documents.mapped("attempt_count")), 2)
        self.assertTrue(any("next attempt" in message for message in seen["messages"]),
                        seen["messages"])
        self.assertTrue(
            self.env["mail.message"].search_count(
                [("model", "=", "account.move"), ("res_id", "in", moves.ids),
                 ("body", "ilike", "in doubt")]),
            "the in-doubt documents are explained in the chatter",
        )
        self.assertFalse(documents.filtered(lambda d: d.state == "sending"))
        self.assertLess(time.monotonic() - started, self.DEADLINE + 30)

    def test_read_back_failure_does_not_lose_the_number(self):
        """inFakt finished the task but reading the invoice back fails once (503): the
        document must still end ``done`` with its inFakt number (read again later)."""
        moves, documents = self.post_invoices(2)
        self.run_sender()
        self.assertEqual(set(documents.mapped("state")), {"processing"})
        self.simulator.flush(timeout=5)
        # Reads of /invoices/<uuid>.json fail twice; task statuses and lists still answer.
        self.simulator.add_fault(fail_next=2, status=503, methods=["GET"],
                                 path_contains="/api/v3/invoices/")
        for _round in range(5):
            self.advance_clock(documents)
            self.run_processor()
            if all(d.state == "done" and d.infakt_number for d in documents):
                break
        self.assertEqual(self.sim_state()["faults"], [], "the read-back failures happened")
        self.assert_exactly_once_in_infakt(moves)


# -----------------------------------------------------------------------------------------
# 7. Crash: a real sender process killed between the POST and the commit of the reference
# -----------------------------------------------------------------------------------------

WORKER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import odoo
    from odoo.tools import config
    db, addons_path, rcfile, mode, account_id = sys.argv[1:6]
    args = ["--addons-path", addons_path, "-d", db, "--log-level", "warn"]
    if rcfile:
        args = ["-c", rcfile] + args
    config.parse_config(args)
    registry = odoo.modules.registry.Registry(db)
    with registry.cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        Cron = env["infakt.document.cron"]
        Document = env["infakt.document"]
        if mode == "send":
            Cron._cron_send(time_budget=60)
        else:
            # A restarted server: its scheduled actions run until the backlog is finished.
            documents = Document.search([("account_id", "=", int(account_id))])
            history = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                Cron._cron_process(time_budget=10)
                history.append(sorted(documents.mapped("state")))
                Cron._cron_send(time_budget=10)
                cr.commit()
                documents.invalidate_recordset()
                if all(d.state == "done" and not d.pdf_pending for d in documents):
                    break
                time.sleep(0.2)
            print(json.dumps({"history": history}), flush=True)
    """
)


@tagged("post_install", "-at_install")
class TestSenderKilled(CommittedBacklogMixin, InfaktSimulatorMixin, TransactionCase):
    """7. SIGKILL of the sender while inFakt holds the answer of a create, then a restart."""

    COUNT = 3

    def _worker(self, mode, account_id):
        rcfile = config.rcfile if config.rcfile and os.path.isfile(config.rcfile) else ""
        args = [self.env.cr.dbname, config["addons_path"], rcfile, mode, str(account_id)]
        return subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", WORKER_SCRIPT, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ), text=True,
        )

    def _read(self, move_ids):
        """The documents as committed (a fresh cursor, nothing kept)."""
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            documents = env["account.move"].browse(move_ids).infakt_document_ids.sorted("id")
            return [
                {"id": d.id, "state": d.state, "task_reference": d.task_reference,
                 "attempt_count": d.attempt_count, "infakt_number": d.infakt_number,
                 "infakt_uuid": d.infakt_uuid, "number": d.number,
                 "messages": d.move_id.message_ids.mapped("body")}
                for d in documents
            ]

    def _advisory_lock_held(self, document_id):
        with self.registry.cursor() as cr:
            cr.execute(
                """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND classid = %s AND objid = %s AND objsubid = 2""",
                (ADVISORY_LOCK_NAMESPACE, document_id),
            )
            return [row[0] for row in cr.fetchall()]

    def test_sender_killed_during_create_ends_done_exactly_once(self):
        self._start_simulator()
        # inFakt receives and processes the first create, then holds its answer for a minute.
        self.simulator.add_fault(timeout_next=1, seconds=60, methods=["POST"],
                                 path_contains="/async/invoices")
        account_id, move_ids, names = self._setup_committed_backlog(
            self.COUNT, label="crash", price_base=200
        )
        self.addCleanup(self._cleanup, account_id)

        sender = self._worker("send", account_id)
        self.addCleanup(lambda: sender.poll() is None and sender.kill())
        try:
            wait_until(lambda: self.simulator.state()["counters"]["creates"] >= 1
                       or sender.poll() is not None, timeout=90, interval=0.1)
        except AssertionError:
            sender.kill()
            _out, err = sender.communicate(timeout=30)
            raise AssertionError("the sender never reached inFakt: " + err[-3000:]) from None
        self.assertIsNone(sender.poll(), "the sender ended before the kill")
        # The create reached inFakt; its answer is not back: Odoo has only the intent.
        first = self._read(move_ids)[0]
        self.assertEqual(first["state"], "sending")
        self.assertFalse(first["task_reference"])
        self.assertEqual(self.simulator.state()["counters"]["creates"], 1)
        self.assertTrue(self._advisory_lock_held(first["id"]), "the live sender holds its lock")
        # The orphan detector leaves a document alone while its sender is alive.
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["infakt.document.complete"]._detect_orphans(
                env["infakt.document.runner"]._new_run(with_commit=False))
            self.assertEqual(env["infakt.document"].browse(first["id"]).state, "sending")
            cr.rollback()

        os.kill(sender.pid, signal.SIGKILL)
        sender.communicate(timeout=30)
        self.assertEqual(sender.returncode, -signal.SIGKILL)
        # PostgreSQL notices the dead client and frees the session lock.
        wait_until(lambda: not self._advisory_lock_held(first["id"]), timeout=20, interval=0.1)
        self.assertEqual([d["state"] for d in self._read(move_ids)],
                         ["sending", "to_send", "to_send"])

        # Restart: another process runs the scheduled actions.
        restarted = self._worker("recover", account_id)
        stdout, stderr = restarted.communicate(timeout=180)
        self.assertEqual(restarted.returncode, 0, stderr[-3000:])
        history = json.loads(stdout.strip().splitlines()[-1])["history"]

        documents = self._read(move_ids)
        self.assertEqual([d["state"] for d in documents], ["done"] * self.COUNT,
                         f"history: {history}")
        crashed = documents[0]
        self.assertEqual(crashed["infakt_number"], names[0])
        self.assertEqual(crashed["attempt_count"], 1, "found in inFakt, not sent again")
        self.assertTrue(any("sender stopped" in (body or "") for body in crashed["messages"]),
                        "the crash is told in the chatter")
        # The document has no chatter: its history (in doubt, then done) is the invoice's.
        self.assertTrue(any(names[0] in (body or "") and "inFakt" in (body or "")
                            for body in crashed["messages"]), "done is told in the chatter")
        state = self.simulator.state()
        numbers = Counter(invoice["number"] for invoice in state["invoices"])
        self.assertEqual(numbers, Counter({name: 1 for name in names}),
                         "each invoice exactly once in inFakt")
        self.assertEqual(state["counters"]["creates"], self.COUNT)
        self.assertEqual({d["infakt_uuid"] for d in documents},
                         {invoice["uuid"] for invoice in state["invoices"]})
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            self.assertFalse(env["infakt.document"].search_count(
                [("account_id", "=", account_id), ("state", "=", "sending")]))
