import logging
import time

from odoo import api, models
from odoo.tools import config

from .. import const
from ..infakt_api import errors as infakt_errors
from .infakt_run import CONCURRENCY_ERRORS, InfaktAccountBlocked, InfaktRun, InfaktStop

_logger = logging.getLogger(__name__)

class InfaktDocument(models.Model):
    _inherit = "infakt.document"

    # ------------------------------------------------------------------------------------
    # The run
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_time_budget(self):
        """Seconds a run may start new work: Odoo's real-time limit of cron jobs, less the idle
        wait a prefork cron worker spends under the same watchdog, less one full HTTP exchange,
        less a margin (bounded to a few seconds .. half a minute)."""
        limit = config.get("limit_time_real_cron")
        if limit is None or limit == -1:
            limit = config.get("limit_time_real")
        if not limit or limit <= 0:
            return const.RUN_MAX_SECONDS
        idle = const.CRON_IDLE_SECONDS if config.get("workers") else 0
        http = const.HTTP_CONNECT_TIMEOUT + const.HTTP_READ_TIMEOUT
        budget = limit - idle - http - const.RUN_MARGIN_SECONDS
        return max(const.RUN_MIN_SECONDS, min(const.RUN_MAX_SECONDS, budget))

    @api.model
    def _infakt_new_run(self, time_budget=None, with_commit=True):
        budget = self._infakt_time_budget() if time_budget is None else time_budget
        return InfaktRun(env=self.env, deadline=time.monotonic() + budget,
                         with_commit=with_commit)

    # ------------------------------------------------------------------------------------
    # The batch runner: every loop of both scheduled actions
    # ------------------------------------------------------------------------------------
    @api.model
    def _infakt_run_step(self, run, pick, step, crashed, limit=None):
        """Run the method ``step`` on the records the method ``pick`` hands out, one at a time,
        until none is due, the run's time is up or inFakt asks to slow down.

        - ``self.<pick>(run)`` returns one record, locked for this transaction (``SKIP
          LOCKED``: two processes never take the same record), or an empty recordset.
        - ``record.<step>(run)`` does the work in a savepoint. Its exceptions are the record's
          alone: the savepoint is rolled back and ``record.<crashed>(run, error)`` turns the
          failure into a readable error or a later attempt; the run goes on. A step may return
          a callable, run after the record's transaction is committed (the send step's POST,
          which must happen after its intent is committed and outside any transaction).
        - :class:`InfaktStop` stops the step (429, account blocked: handled once, here).
        - Each record is committed on its own; no snapshot is held across records or waits.

        Returns the number of records processed.
        """
        count = 0
        conflicts = 0
        while not run.expired() and (limit is None or count < limit):
            run.commit()
            try:
                record = getattr(self, pick)(run)
            except CONCURRENCY_ERRORS:
                run.rollback()
                conflicts += 1
                if conflicts > 3:
                    break
                continue
            if not record:
                break
            record = record.with_context(lang=record._infakt_reader_lang())
            follow_up = None
            stop = None
            try:
                with self.env.cr.savepoint():
                    follow_up = getattr(record, step)(run)
            except InfaktStop as error:
                stop = error
            except CONCURRENCY_ERRORS:
                # Another transaction changed the record meanwhile: next time.
                _logger.info("inFakt: %s %s skipped by %s (changed by another transaction)",
                             record._name, record.id, step)
            except Exception as error:  # noqa: BLE001 - one record never stops the others
                _logger.exception("inFakt: %s failed on %s %s", step, record._name, record.id)
                try:
                    with self.env.cr.savepoint():
                        getattr(record, crashed)(run, error)
                except Exception:  # noqa: BLE001
                    _logger.exception("inFakt: could not record the failure of %s %s",
                                      record._name, record.id)
            run.commit()
            if callable(follow_up):
                try:
                    follow_up(run)
                except InfaktStop as error:
                    stop = error
                except Exception:  # noqa: BLE001 - the follow-up records its own outcome
                    _logger.exception("inFakt: %s follow-up failed on %s %s", step,
                                      record._name, record.id)
                    run.rollback()
            count += 1
            run.processed += 1
            if stop is not None:
                self._infakt_handle_stop(run, stop)
                if not isinstance(stop, InfaktAccountBlocked):
                    break
        run.commit()
        return count

    @api.model
    def _infakt_handle_stop(self, run, stop):
        if isinstance(stop, InfaktAccountBlocked):
            run.blocked_accounts.add(stop.account.id)
            with self.env.cr.savepoint():
                stop.account.sudo()._infakt_block(stop.message)
            run.commit()
        elif stop.wait is not None:
            run.plan(stop.wait)

    # ------------------------------------------------------------------------------------
    # Failures of requests, shared by the steps
    # ------------------------------------------------------------------------------------
    def _infakt_describe(self, error):
        """Words a person understands for an error of inFakt (in the reader's language)."""
        for error_class, text in const.ERROR_MESSAGES:
            if isinstance(error, error_class):
                message = self.env._(text)
                if "%(message)s" in message:
                    message = message % {"message": error.message or str(error)}
                return message
        return str(error)

    def _infakt_stop_for(self, error, kind, run):
        """Raise the :class:`InfaktStop` an error calls for (block the account, pause the
        pacer); return quietly for the errors the step handles itself."""
        self.ensure_one()
        account = self.account_id
        if isinstance(error, (infakt_errors.InfaktAuthError, infakt_errors.InfaktPlanError,
                              infakt_errors.InfaktPermissionError)):
            raise InfaktAccountBlocked(account, self._infakt_describe(error))
        if isinstance(error, infakt_errors.InfaktRateLimited):
            if getattr(error, "from_pacer", False):
                raise InfaktStop(account=account, wait=error.retry_after or 1.0)
            wait = error.retry_after or max(1.0, min(30.0, account.rate_limit_window / 4))
            account._infakt_pause(kind, wait)
            raise InfaktStop(account=account, wait=wait)
