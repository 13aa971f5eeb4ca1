import logging
import time

from odoo import api, models
from odoo.tools import config

from .. import const
from ..infakt_api import errors as infakt_errors
from .infakt_run import CONCURRENCY_ERRORS, InfaktAccountBlocked, InfaktRun, InfaktStop

_logger = logging.getLogger(__name__)


class InfaktDocumentRunner(models.AbstractModel):
    """The batch runner every loop of both scheduled actions runs in.

    A step is a service model (``infakt.document.<step>``) with three methods:
    ``_pick(run)`` hands out one due document, locked for this transaction (``SKIP LOCKED``:
    two processes never take the same one); ``_process(document, run)`` does the work;
    ``_crashed(document, run, error)`` turns an unexpected failure into a readable error or a
    later attempt. The runner gives each document its own transaction and savepoint: one
    document's failure is its own, the run goes on; no snapshot is held across documents or
    waits; a run stops starting new work in time for Odoo's limits."""

    _name = "infakt.document.runner"
    _description = "inFakt: batch runner of the steps"

    # ------------------------------------------------------------------------------------
    # The run
    # ------------------------------------------------------------------------------------
    @api.model
    def _time_budget(self):
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
    def _new_run(self, time_budget=None, with_commit=True):
        budget = self._time_budget() if time_budget is None else time_budget
        return InfaktRun(env=self.env, deadline=time.monotonic() + budget,
                         with_commit=with_commit)

    # ------------------------------------------------------------------------------------
    # The batch runner
    # ------------------------------------------------------------------------------------
    @api.model
    def _run_step(self, run, step, limit=None):
        """Run the step service ``step`` on its due documents, one at a time, until none is
        due, the run's time is up, ``limit`` documents were done or inFakt asks to slow down.
        ``_process`` may return a callable, run after the document's transaction is committed
        (the send step's POST, which must go out after its intent is committed and outside any
        transaction). :class:`InfaktStop` stops the step (429, account stopped: handled once,
        here). Returns the number of documents processed."""
        service = self.env[step]
        count = 0
        conflicts = 0
        while not run.expired() and (limit is None or count < limit):
            run.commit()
            try:
                document = service._pick(run)
            except CONCURRENCY_ERRORS:
                run.rollback()
                conflicts += 1
                if conflicts > 3:
                    break
                continue
            if not document:
                break
            # What the step writes (errors on the invoice banner, chatter, activities) is read
            # by the invoice's salesperson: in their language, not the cron's (none, English).
            lang = document._infakt_reader_lang()
            document = document.with_context(lang=lang)
            step_service = service.with_context(lang=lang)
            follow_up = None
            stop = None
            try:
                with self.env.cr.savepoint():
                    follow_up = step_service._process(document, run)
            except InfaktStop as error:
                stop = error
            except CONCURRENCY_ERRORS:
                # Another transaction changed the document meanwhile: next time.
                _logger.info("inFakt: document %s skipped by %s (changed by another "
                             "transaction)", document.id, step)
            except Exception as error:  # noqa: BLE001 - one document never stops the others
                _logger.exception("inFakt: %s failed on document %s", step, document.id)
                try:
                    with self.env.cr.savepoint():
                        step_service._crashed(document, run, error)
                except Exception:  # noqa: BLE001
                    _logger.exception("inFakt: could not record the failure of document %s",
                                      document.id)
            run.commit()
            if callable(follow_up):
                try:
                    follow_up(run)
                except InfaktStop as error:
                    stop = error
                except Exception:  # noqa: BLE001 - the follow-up records its own outcome
                    _logger.exception("inFakt: %s follow-up failed on document %s", step,
                                      document.id)
                    run.rollback()
            count += 1
            run.processed += 1
            if stop is not None:
                self._handle_stop(run, stop)
                if not isinstance(stop, InfaktAccountBlocked):
                    break
        run.commit()
        return count

    @api.model
    def _handle_stop(self, run, stop):
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
    @api.model
    def _describe(self, error):
        """Words a person understands for an error of inFakt (in the reader's language)."""
        for error_class, text in const.ERROR_MESSAGES:
            if isinstance(error, error_class):
                message = self.env._(text)
                if "%(" in message:
                    message = message % {"message": error.message or str(error),
                                         "status": error.status or "?"}
                return message
        return str(error)

    @api.model
    def _stop_for(self, document, error, kind, run):
        """Raise the :class:`InfaktStop` an error calls for (stop the account, pause the
        pacer); return quietly for the errors the step handles itself."""
        account = document.account_id
        if isinstance(error, (infakt_errors.InfaktAuthError, infakt_errors.InfaktPlanError,
                              infakt_errors.InfaktPermissionError)):
            raise InfaktAccountBlocked(account, self._describe(error))
        if isinstance(error, infakt_errors.InfaktRateLimited):
            if getattr(error, "from_pacer", False):
                raise InfaktStop(account=account, wait=error.retry_after or 1.0)
            wait = error.retry_after or max(1.0, min(30.0, account.rate_limit_window / 4))
            account._infakt_pause(kind, wait)
            raise InfaktStop(account=account, wait=wait)
