import logging
import time
from urllib.parse import urlsplit

import psycopg2

from odoo import api, fields, models
from odoo.tools import SQL

_logger = logging.getLogger(__name__)

# A reservation that cannot be made (serialization conflicts with other processes) is tried
# again this many times.
_RESERVE_TRIES = 8


class InfaktPacer(models.Model):
    """When the next request to inFakt may leave, per egress (inFakt's API host) and kind.

    inFakt limits requests per source address: 150 writes and 300 reads per 60 s. Every request
    of every account and of every Odoo process (workers, cron threads, several servers on one
    database) reserves its moment here, in a transaction of its own, and waits for it. Requests
    of one kind are spaced ``window / (limit - 1)`` apart, so that no window of inFakt's ever
    holds more than the limit, whatever the jitter of one request. The clock is PostgreSQL's,
    shared by every process. A 429 from inFakt pauses the kind for everybody.
    """

    _name = "infakt.pacer"
    _description = "inFakt Request Pacer"
    _log_access = False

    egress = fields.Char(required=True, readonly=True)
    kind = fields.Selection([("read", "Reads"), ("write", "Writes")], required=True,
                            readonly=True)
    # Epoch seconds of the database clock.
    next_at = fields.Float(readonly=True)
    paused_until = fields.Float(readonly=True)

    _sql_constraints = [
        ("egress_kind_uniq", "unique(egress, kind)", "One pacer per egress and kind."),
    ]

    @api.model
    def _egress_of(self, base_url):
        """The egress key of an API URL: its host (and port), lower case."""
        parts = urlsplit(base_url or "")
        return (parts.netloc or base_url or "").lower()

    @api.model
    def _reserve(self, egress, kind, spacing, max_wait):
        """Reserve the next moment for one request and return the seconds to wait for it.

        When that moment is more than ``max_wait`` seconds away, nothing is reserved and the
        wait is returned as a negative number (the caller gives up for now).
        """
        for attempt in range(_RESERVE_TRIES):
            try:
                with self.env.registry.cursor() as cr:
                    return self._reserve_in(cr, egress, kind, spacing, max_wait)
            except (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected):
                time.sleep(0.005 * (attempt + 1))
        _logger.info("inFakt pacer: no reservation after %s tries, waiting one spacing",
                     _RESERVE_TRIES)
        return spacing

    @api.model
    def _reserve_in(self, cr, egress, kind, spacing, max_wait):
        # UPDATE first: the row exists but for the very first request of an egress and kind.
        row = self._reserve_update(cr, egress, kind, spacing, max_wait)
        if row is None:
            cr.execute(SQL(
                """SELECT GREATEST(next_at, paused_until) - EXTRACT(EPOCH FROM clock_timestamp())
                     FROM infakt_pacer WHERE egress = %s AND kind = %s""",
                egress, kind,
            ))
            waiting = cr.fetchone()
            if waiting is not None:
                return -max(waiting[0], 0.001)
            cr.execute(SQL(
                """INSERT INTO infakt_pacer (egress, kind, next_at, paused_until)
                   VALUES (%s, %s, 0, 0) ON CONFLICT (egress, kind) DO NOTHING""",
                egress, kind,
            ))
            row = self._reserve_update(cr, egress, kind, spacing, max_wait)
            if row is None:
                return -max(spacing, 0.001)
        return max(0.0, row[0])

    @api.model
    def _reserve_update(self, cr, egress, kind, spacing, max_wait):
        cr.execute(SQL(
            """WITH clock AS (SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now)
               UPDATE infakt_pacer p
                  SET next_at = GREATEST(p.next_at, p.paused_until, clock.now) + %(spacing)s
                 FROM clock
                WHERE p.egress = %(egress)s AND p.kind = %(kind)s
                  AND GREATEST(p.next_at, p.paused_until, clock.now) <= clock.now + %(max_wait)s
            RETURNING p.next_at - %(spacing)s - clock.now""",
            spacing=spacing, egress=egress, kind=kind, max_wait=max(0.0, max_wait),
        ))
        return cr.fetchone()

    @api.model
    def _pause(self, egress, kind, seconds):
        """inFakt answered 429: no request of this kind leaves for ``seconds``."""
        for attempt in range(_RESERVE_TRIES):
            try:
                with self.env.registry.cursor() as cr:
                    cr.execute(SQL(
                        """INSERT INTO infakt_pacer (egress, kind, next_at, paused_until)
                           VALUES (%s, %s, 0, 0) ON CONFLICT (egress, kind) DO NOTHING""",
                        egress, kind,
                    ))
                    cr.execute(SQL(
                        """UPDATE infakt_pacer
                              SET paused_until = GREATEST(
                                  paused_until,
                                  EXTRACT(EPOCH FROM clock_timestamp())::float8 + %s)
                            WHERE egress = %s AND kind = %s""",
                        seconds, egress, kind,
                    ))
                return
            except (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected):
                time.sleep(0.005 * (attempt + 1))
