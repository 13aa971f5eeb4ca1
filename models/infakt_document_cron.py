import time
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const

# The steps of the processor, in the order a document goes through them (service models).
PROCESS_STEPS = (
    "infakt.document.poll",
    "infakt.document.lookup",
    "infakt.document.attach",
    "infakt.document.ksef",
    "infakt.document.payment",
    "infakt.document.refresh",
)


class InfaktDocumentCron(models.AbstractModel):
    """The two scheduled actions. Each is a short orchestration of the steps (one service per
    file), run by the batch runner within a time budget taken from Odoo's limits, and each
    plans its next run itself (a trigger, never de-duplicated)."""

    _name = "infakt.document.cron"
    _description = "inFakt: scheduled actions"

    @api.model
    def _cron_send(self, time_budget=None, with_commit=True):
        """Send the due documents, accounts in turn, each POST paced for inFakt's limits."""
        Runner = self.env["infakt.document.runner"]
        run = Runner._new_run(time_budget, with_commit)
        try:
            Runner._run_step(run, "infakt.document.send")
        finally:
            run.close()
        self.env["infakt.document.send"]._nudge_processor(run, final=True)
        self._plan(run, self._next_send_due(), self.env["infakt.document"]._trigger_sender)

    @api.model
    def _cron_process(self, time_budget=None, with_commit=True):
        """Follow the documents sent: webhook events, senders that died, task status, look-ups
        of documents in doubt, PDFs, KSeF, payments. Every step gets a few records per pass, so
        that none waits for another; while the run has time, it waits for work due soon."""
        Runner = self.env["infakt.document.runner"]
        run = Runner._new_run(time_budget, with_commit)
        Event = self.env["infakt.webhook.event"]
        try:
            while not run.expired():
                Event._process_pending(run)
                self.env["infakt.document.complete"]._detect_orphans(run)
                worked = 0
                for step in PROCESS_STEPS:
                    if run.expired():
                        break
                    worked += Runner._run_step(run, step, limit=const.PROCESS_BATCH)
                if worked:
                    continue
                due = self._next_process_due()
                if due is None:
                    break
                wait = max(0.0, (due - fields.Datetime.now()).total_seconds())
                if run.retrigger_in is not None:
                    wait = max(wait, run.retrigger_in)
                    run.retrigger_in = None
                if wait >= run.remaining():
                    break
                self._wait(run, wait)
        finally:
            run.close()
        self._plan(run, self._next_process_due(), self.env["infakt.document"]._trigger_processor)

    # ------------------------------------------------------------------------------------
    # Planning the next run
    # ------------------------------------------------------------------------------------
    @api.model
    def _plan(self, run, due, trigger):
        """Trigger the next run when work is due (now, or later); ``run.retrigger_in`` is a
        pause asked for by inFakt or the pacer."""
        now = fields.Datetime.now()
        moments = []
        if due is not None:
            moments.append(max(due, now))
        if run.retrigger_in is not None:
            moments.append(now + timedelta(seconds=run.retrigger_in))
        if moments:
            at = max(moments) if run.retrigger_in is not None else min(moments)
            trigger(None if at <= now else at)
            run.commit()

    @api.model
    def _wait(self, run, seconds):
        """Wait inside the run, with no transaction open; webhook events that arrive end the
        wait (they make their documents due at once)."""
        end = time.monotonic() + seconds
        Event = self.env["infakt.webhook.event"]
        while time.monotonic() < end and not run.expired():
            run.commit()
            time.sleep(min(const.RUN_WAIT_SLICE, max(0.0, end - time.monotonic())))
            run.commit()
            if Event._has_pending():
                return

    @api.model
    def _next_send_due(self):
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT MIN(COALESCE(d.next_attempt_at, %(now)s)) FROM infakt_document d
                 JOIN account_move m ON m.id = d.move_id
                 JOIN infakt_account a ON a.id = d.account_id
                WHERE d.state = 'to_send' AND m.state = 'posted'
                  AND a.active AND a.connection_state != 'failed'""",
            now=fields.Datetime.now(),
        ))
        return self.env.cr.fetchone()[0]

    @api.model
    def _next_process_due(self):
        """The earliest moment any step of the processor has work (None: nothing to follow)."""
        now = fields.Datetime.now()
        lease = now + timedelta(seconds=5)
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT MIN(due) FROM (
                 SELECT CASE
                   WHEN d.state = 'processing' THEN d.next_poll_at
                   WHEN d.state = 'in_doubt' AND NOT COALESCE(d.check_manually, false)
                        THEN COALESCE(d.next_attempt_at, %(now)s)
                   WHEN d.state = 'sending' THEN %(lease)s
                 END AS due
                   FROM infakt_document d JOIN infakt_account a ON a.id = d.account_id
                  WHERE a.active AND a.connection_state != 'failed'
                    AND d.state IN ('processing', 'in_doubt', 'sending')
                 UNION ALL
                 SELECT LEAST(
                     CASE WHEN d.pdf_pending THEN COALESCE(d.pdf_next_at, %(now)s) END,
                     CASE WHEN d.ksef_state = 'pending' THEN d.ksef_next_check_at END,
                     CASE WHEN d.paid_sync_state IN ('to_send', 'processing')
                          THEN COALESCE(d.paid_next_at, %(now)s) END,
                     CASE WHEN d.refresh_pending THEN %(now)s END)
                   FROM infakt_document d JOIN infakt_account a ON a.id = d.account_id
                  WHERE a.active AND a.connection_state != 'failed' AND d.state = 'done'
                    AND (d.pdf_pending OR d.ksef_state = 'pending' OR d.refresh_pending
                         OR d.paid_sync_state IN ('to_send', 'processing'))
                 UNION ALL
                 SELECT COALESCE(e.retry_at, %(now)s) FROM infakt_webhook_event e
                  WHERE e.state = 'new'
               ) AS work""",
            now=now, lease=lease,
        ))
        return self.env.cr.fetchone()[0]
