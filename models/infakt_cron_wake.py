"""Waking Odoo's cron workers for the engine's scheduled actions, cheaply: posting an invoice
and every step that hands work to another step call :func:`trigger`.

Odoo's ``ir.cron._trigger`` reads the cron, creates its trigger record through the ORM and opens
a new PostgreSQL connection to the ``postgres`` database for its NOTIFY — more than the whole
posting of an invoice costs. Here: one INSERT of the trigger row in the caller's transaction, and
after its commit one NOTIFY per transaction on a connection kept per process.
"""

import contextlib
import logging
import os
import threading

import psycopg2
import psycopg2.sql

import odoo.sql_db
from odoo import fields
from odoo.tools import SQL

from odoo.addons.base.models.ir_cron import ODOO_NOTIFY_FUNCTION

_logger = logging.getLogger(__name__)


class _CronNotifier:
    """What ``ir.cron._notifydb`` does (NOTIFY 'cron_trigger' on the ``postgres`` database,
    where the cron workers listen), on one connection kept per process: Odoo never pools
    connections to ``postgres``, so each ``_notifydb`` starts a new PostgreSQL backend, which
    costs more than the whole posting of an invoice."""

    def __init__(self):
        self._lock = threading.Lock()
        self._connection = None
        self._pid = None

    def notify(self, dbname):
        with self._lock:
            for attempt in range(2):
                try:
                    self._connected().cursor().execute(
                        psycopg2.sql.SQL("SELECT {}('cron_trigger', %s)").format(
                            psycopg2.sql.Identifier(ODOO_NOTIFY_FUNCTION)), (dbname,))
                    return
                except psycopg2.Error:
                    self._close()
                    if attempt:
                        _logger.warning("inFakt: the cron workers could not be woken (they "
                                        "find the trigger within their interval)",
                                        exc_info=True)

    def _connected(self):
        if self._connection is None or self._connection.closed or self._pid != os.getpid():
            _dbname, info = odoo.sql_db.connection_info_for("postgres")
            self._connection = psycopg2.connect(**info)
            self._connection.autocommit = True
            self._pid = os.getpid()
        return self._connection

    def _close(self):
        if self._connection is not None and self._pid == os.getpid():
            with contextlib.suppress(psycopg2.Error):
                self._connection.close()
        self._connection = None


_cron_notifier = _CronNotifier()


def trigger(env, xmlid, at=None):
    """A trigger row for the scheduled action ``xmlid`` (one INSERT, no ORM create) and, after
    the commit, one NOTIFY of the cron workers per transaction (what ``ir.cron._trigger`` does,
    without its reads, its record and its new connection). Never de-duplicated: a trigger row is
    one cheap INSERT, and one left out while a run is ending would leave work waiting for the
    interval."""
    cron_id = env["ir.model.data"]._xmlid_to_res_id(xmlid, raise_if_not_found=False)
    if not cron_id:
        return
    now = fields.Datetime.now()
    at = at or now
    env.cr.execute(SQL(
        """INSERT INTO ir_cron_trigger (cron_id, call_at, create_uid, write_uid,
                                        create_date, write_date)
           SELECT id, %(at)s, %(uid)s, %(uid)s, %(now)s, %(now)s FROM ir_cron
            WHERE id = %(cron)s AND (active OR %(at)s > %(now)s)""",
        at=at, now=now, uid=env.uid, cron=cron_id,
    ))
    if at <= now and not env.cr.postcommit.data.get("l10n_pl_infakt.notify"):
        env.cr.postcommit.data["l10n_pl_infakt.notify"] = True
        dbname = env.cr.dbname
        env.cr.postcommit.add(lambda: _cron_notifier.notify(dbname))
