from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api import errors as infakt_errors


class InfaktDocumentKsef(models.AbstractModel):
    """Step 5a: KSeF. inFakt files the document with KSeF (when the account says so); its KSeF
    state and number are read back from inFakt's KSeF 2.0 status, after a webhook or on a
    schedule. Pending for hours is waiting, not failure; after days without an answer the
    document says "check in inFakt" and is no longer read."""

    _name = "infakt.document.ksef"
    _description = "inFakt: step 5a, KSeF"

    @api.model
    def _pick(self, run):
        return self.env["infakt.document.complete"]._pick(
            SQL("d.state = 'done' AND d.ksef_state = 'pending' "
                "AND d.ksef_next_check_at <= %s", fields.Datetime.now()),
            SQL("d.ksef_next_check_at, d.id"))

    @api.model
    def _process(self, document, run):
        client = run.client_for(document.account_id)
        Runner = self.env["infakt.document.runner"]
        try:
            status = client.get_ksef_status(document.infakt_uuid)
        except infakt_errors.InfaktError as error:
            Runner._stop_for(document, error, "read", run)
            outcome = const.outcome_of(error, const.READ_OUTCOMES)
            if outcome == "gone":
                self._manual(document, Runner._describe(error))
            elif isinstance(error, infakt_errors.InfaktValidationError):
                # 422 "Użytkownik nie jest zintegrowany z KSeF": KSeF is not set up in inFakt.
                self._error(document, self.env._(
                    "inFakt cannot file with KSeF: %s (connect KSeF in inFakt, or untick Send to "
                    "KSeF on the inFakt account).", error.message))
            else:
                # Not known yet (404) or temporary: read again later.
                self._later(document)
            return
        state = (status or {}).get("status")
        if state == "success":
            document.write({"ksef_state": "success", "ksef_next_check_at": False,
                            "ksef_number": status.get("ksef_number") or False})
            document._infakt_log(self.env._("Accepted by KSeF with number %s.",
                                            status.get("ksef_number") or "?"))
            document._infakt_notify_change()
        elif state in ("error", "rejected"):
            self._error(document, status.get("status_description") or state)
        else:
            self._later(document)

    @api.model
    def _crashed(self, document, run, error):
        self._later(document)

    @api.model
    def _later(self, document):
        started = document.done_at or document.write_date
        if started and fields.Datetime.now() - started > timedelta(days=const.KSEF_MAX_DAYS):
            self._manual(document, self.env._(
                "KSeF has not answered within %s days.", const.KSEF_MAX_DAYS))
            return
        document.write({
            "ksef_check_count": document.ksef_check_count + 1,
            "ksef_next_check_at": fields.Datetime.now() + timedelta(
                seconds=document._infakt_schedule_delay(const.KSEF_SCHEDULE,
                                                        document.ksef_check_count)),
        })

    @api.model
    def _error(self, document, description):
        document.write({"ksef_state": "error", "ksef_next_check_at": False})
        document._infakt_log(self.env._("KSeF refused the document: %s", description))
        document._infakt_notify_change()

    @api.model
    def _manual(self, document, reason):
        document.write({"ksef_state": "manual", "ksef_next_check_at": False})
        document._infakt_log(self.env._(
            "The KSeF state of this document is not followed any more: %s Check it in inFakt, "
            "then click Check in inFakt.", reason))
        document._infakt_notify_change()
