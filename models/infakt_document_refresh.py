from odoo import api, models
from odoo.tools import SQL

from ..infakt_api import errors as infakt_errors


class InfaktDocumentRefresh(models.AbstractModel):
    """Step 5c: inFakt -> Odoo. When inFakt says a done document changed (paid, deleted), the
    document is read again: the webhook only nudges, the truth is read from the API (a
    deleted document is one inFakt no longer has)."""

    _name = "infakt.document.refresh"
    _description = "inFakt: step 5c, read a document again"

    @api.model
    def _pick(self, run):
        return self.env["infakt.document.complete"]._pick(
            SQL("d.state = 'done' AND d.refresh_pending"), SQL("d.id"))

    @api.model
    def _process(self, document, run):
        client = run.client_for(document.account_id)
        Runner = self.env["infakt.document.runner"]
        try:
            remote = self.env["infakt.document.complete"]._fetch(document, client,
                                                                 document.infakt_uuid)
        except infakt_errors.InfaktError as error:
            Runner._stop_for(document, error, "read", run)
            if isinstance(error, infakt_errors.InfaktNotFound):
                document.write({"refresh_pending": False})
                document._infakt_to_cancelled(self.env._("The document was deleted in inFakt."))
            elif not error.retryable:
                document.write({"refresh_pending": False})
            return
        values = {"refresh_pending": False}
        if remote.get("paid_date") and remote["paid_date"] != str(
                document.infakt_paid_date or ""):
            values["infakt_paid_date"] = remote["paid_date"]
            document._infakt_log(self.env._("inFakt recorded the payment on %s.",
                                            remote["paid_date"]))
        ksef_number = remote.get("ksef_number") or (remote.get("ksef_data") or {}).get(
            "ksef_number")
        if ksef_number and not document.ksef_number:
            values.update({"ksef_number": ksef_number, "ksef_state": "success",
                           "ksef_next_check_at": False})
        document.write(values)
        document._infakt_notify_change()

    @api.model
    def _crashed(self, document, run, error):
        document.write({"refresh_pending": False})
