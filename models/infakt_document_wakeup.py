import logging
import threading
import time

import odoo
from odoo import api, fields, models
from odoo.tools import SQL, config

from odoo.addons.base.models.ir_cron import ODOO_NOTIFY_FUNCTION

_logger = logging.getLogger(__name__)

# How long the wake-up waits for the registry to be ready (a large database loads slowly).
READY_TIMEOUT = 600.0
READY_POLL = 0.2
# The NOTIFY again while documents wait for the sender (cron workers forked after it).
REPEAT_COUNT = 5
REPEAT_INTERVAL = 2.0


def notify_crons_when_ready(dbname, timeout=READY_TIMEOUT):
    """Wake Odoo's cron threads once the registry of ``dbname`` is ready; False if it never is.

    A cron thread of a threaded server first waits SLEEP_INTERVAL (60 s) for a NOTIFY on
    'cron_trigger' before its first look at the jobs, and ignores a registry that is not ready
    yet: a trigger made while the registry loads wakes it too early. So the NOTIFY waits for the
    registry (on Odoo's 'postgres' connection, where the cron threads LISTEN). A prefork server
    forks its cron workers after loading the registry: the NOTIFY is repeated, a few times at
    most, until the sender took the waiting documents."""
    deadline = time.monotonic() + timeout
    while True:
        registry = odoo.modules.registry.Registry.registries.get(dbname)
        if registry is not None and registry.ready:
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(READY_POLL)
    for _attempt in range(REPEAT_COUNT):
        with odoo.sql_db.db_connect("postgres").cursor() as cr:
            cr.execute(SQL("SELECT %s('cron_trigger', %s)",
                           SQL.identifier(ODOO_NOTIFY_FUNCTION), dbname))
        time.sleep(REPEAT_INTERVAL)
        if not _documents_waiting(dbname):
            break
    _logger.info("inFakt: documents were waiting at start, scheduled actions woken up")
    return True


def _documents_waiting(dbname):
    with odoo.sql_db.db_connect(dbname).cursor() as cr:
        cr.execute(SQL("SELECT EXISTS(SELECT 1 FROM infakt_document WHERE state = 'to_send' "
                       "AND (next_attempt_at IS NULL OR next_attempt_at <= %s))",
                       fields.Datetime.now()))
        return cr.fetchone()[0]


class InfaktDocumentWakeup(models.AbstractModel):
    """The sender runs within seconds of the server starting when documents wait (else the
    first run would come with the cron threads' first wake-up, a minute after the start)."""

    _name = "infakt.document.wakeup"
    _description = "inFakt: wake the scheduled actions when the server starts"

    def _register_hook(self):
        super()._register_hook()
        if not self._wakeup_wanted() or not self._trigger_waiting_work():
            return
        threading.Thread(
            target=notify_crons_when_ready, args=(self.env.cr.dbname,),
            name="l10n_pl_infakt.wakeup", daemon=True,
        ).start()

    @api.model
    def _wakeup_wanted(self):
        """Only in a server that runs cron threads (not in tests, not in -i/-u runs)."""
        return bool(odoo.service.server.server and config.get("max_cron_threads")
                    and not config.get("test_enable") and not config.get("stop_after_init"))

    @api.model
    def _trigger_waiting_work(self):
        """Due trigger rows for the scheduled actions that have work; True if any has."""
        self.env.cr.execute(SQL(
            "SELECT EXISTS(SELECT 1 FROM infakt_document WHERE state = 'to_send'), "
            "EXISTS(SELECT 1 FROM infakt_document WHERE state IN ('processing', 'in_doubt') "
            "OR pdf_pending OR refresh_pending OR ksef_state = 'pending' "
            "OR paid_sync_state IN ('to_send', 'processing'))"))
        to_send, to_follow = self.env.cr.fetchone()
        Document = self.env["infakt.document"]
        if to_send:
            Document._trigger_sender()
        if to_follow:
            Document._trigger_processor()
        return to_send or to_follow
