from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api import errors as infakt_errors


class InfaktDocument(models.Model):
    """Step 5a: KSeF. inFakt files the document with KSeF (when the account says so); its KSeF
    state and number are read back from inFakt's KSeF 2.0 status, after a webhook or on a
    schedule. Pending for hours is waiting, not failure; after days without an answer the
    document says "check in inFakt" and is no longer read."""

    _inherit = "infakt.document"

    @api.model
    def _infakt_pick_ksef(self, run):
        return self._infakt_pick(
            SQL("d.state = 'done' AND d.ksef_state = 'pending' "
                "AND d.ksef_next_check_at <= %s", fields.Datetime.now()),
            SQL("d.ksef_next_check_at, d.id"))

    def _infakt_ksef_one(self, run):
        self.ensure_one()
        client = run.client_for(self.account_id)
        try:
            status = client.get_ksef_status(self.infakt_uuid)
        except infakt_errors.InfaktError as error:
            self._infakt_stop_for(error, "read", run)
            outcome = const.outcome_of(error, const.READ_OUTCOMES)
            if outcome == "gone":
                self._infakt_ksef_manual(self._infakt_describe(error))
            elif isinstance(error, infakt_errors.InfaktValidationError):
                # 422 "Użytkownik nie jest zintegrowany z KSeF": KSeF is not set up in inFakt.
                self._infakt_ksef_error(self.env._(
                    "inFakt cannot file with KSeF: %s (connect KSeF in inFakt, or untick Send to "
                    "KSeF on the inFakt account).", error.message))
            else:
                # Not known yet (404) or temporary: read again later.
                self._infakt_ksef_later()
            return
        state = (status or {}).get("status")
        if state == "success":
            self.write({"ksef_state": "success", "ksef_next_check_at": False,
                        "ksef_number": status.get("ksef_number") or False})
            self._infakt_log(self.env._("Accepted by KSeF with number %s.",
                                        status.get("ksef_number") or "?"))
            self._infakt_notify_change()
        elif state in ("error", "rejected"):
            self._infakt_ksef_error(status.get("status_description") or state)
        else:
            self._infakt_ksef_later()

    def _infakt_ksef_later(self):
        started = self.done_at or self.write_date
        if started and fields.Datetime.now() - started > timedelta(days=const.KSEF_MAX_DAYS):
            self._infakt_ksef_manual(self.env._(
                "KSeF has not answered within %s days.", const.KSEF_MAX_DAYS))
            return
        self.write({
            "ksef_check_count": self.ksef_check_count + 1,
            "ksef_next_check_at": fields.Datetime.now() + timedelta(
                seconds=self._infakt_schedule_delay(const.KSEF_SCHEDULE, self.ksef_check_count)),
        })

    def _infakt_ksef_error(self, description):
        self.write({"ksef_state": "error", "ksef_next_check_at": False})
        self._infakt_log(self.env._("KSeF refused the document: %s", description))
        self._infakt_notify_change()

    def _infakt_ksef_manual(self, reason):
        self.write({"ksef_state": "manual", "ksef_next_check_at": False})
        self._infakt_log(self.env._(
            "The KSeF state of this document is not followed any more: %s Check it in inFakt, "
            "then click Check in inFakt.", reason))
        self._infakt_notify_change()

    def _infakt_ksef_crashed(self, run, error):
        self._infakt_ksef_later()
