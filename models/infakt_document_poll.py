import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api import errors as infakt_errors

_logger = logging.getLogger(__name__)


class InfaktDocumentPoll(models.AbstractModel):
    """Step 3a: the task of a create. inFakt creates documents asynchronously: its task is
    read (a little after the create, then spaced out) until it says created — then the
    document is read back once, and is ``done`` with its inFakt number — or refused. A webhook
    that named the created document makes the task read unnecessary. A task pending for days
    is left to a person ("check in inFakt"), never resent."""

    _name = "infakt.document.poll"
    _description = "inFakt: step 3a, task of a create"

    @api.model
    def _pick(self, run):
        return self.env["infakt.document.complete"]._pick(
            SQL("d.state = 'processing' AND d.next_poll_at <= %s", fields.Datetime.now()),
            SQL("d.next_poll_at, d.id"))

    @api.model
    def _process(self, document, run):
        client = run.client_for(document.account_id)
        if document.infakt_uuid and self._complete_from_uuid(document, client, run):
            return
        Runner = self.env["infakt.document.runner"]
        try:
            task = client.task_status(document.task_reference,
                                      kind=document._infakt_remote_kind())
        except infakt_errors.InfaktError as error:
            Runner._stop_for(document, error, "read", run)
            if isinstance(error, infakt_errors.InfaktNotFound):
                document._infakt_to_in_doubt(self.env._(
                    "inFakt does not know the task any more; the document is looked up by its "
                    "number."), delay=0)
            else:
                self._later(document, Runner._describe(error))
            return
        if task.done and task.invoice_uuid:
            if document._infakt_completes_from_task():
                # The task of the create we made: its uuid, our number; no read-back.
                document._infakt_to_done_from_task(task.invoice_uuid)
                return
            document.write({"infakt_uuid": task.invoice_uuid})
            self._complete_from_uuid(document, client, run)
        elif task.failed:
            document._infakt_refused(task.as_error())
        else:
            self._later(document)

    @api.model
    def _crashed(self, document, run, error):
        self._later(document, self.env._("Reading the task failed (%s): tried again later.",
                                         type(error).__name__))

    @api.model
    def _later(self, document, message=None):
        """Read the task again later; a task pending for days is left to a person."""
        started = document.sent_at or document.write_date
        if started and fields.Datetime.now() - started > timedelta(hours=const.POLL_MAX_HOURS):
            document.write({
                "check_manually": True, "next_poll_at": False,
                "error_message": self.env._(
                    "inFakt has not finished the document after %s hours: check it in inFakt, "
                    "then click Check in inFakt.", const.POLL_MAX_HOURS),
            })
            document._infakt_notify_change()
            return
        values = {
            "poll_count": document.poll_count + 1,
            "next_poll_at": fields.Datetime.now() + timedelta(
                seconds=document._infakt_schedule_delay(const.POLL_SCHEDULE,
                                                        document.poll_count)),
        }
        if message:
            values["error_message"] = message
        document.write(values)

    @api.model
    def _complete_from_uuid(self, document, client, run):
        """Read the created document (the proof and the read-back in one request); True when
        the document is done, or will be read again. A uuid that reads back with another
        number is not ours."""
        Complete = self.env["infakt.document.complete"]
        Runner = self.env["infakt.document.runner"]
        try:
            remote = Complete._fetch(document, client, document.infakt_uuid)
        except infakt_errors.InfaktError as error:
            Runner._stop_for(document, error, "read", run)
            if isinstance(error, infakt_errors.InfaktNotFound):
                document.write({"infakt_uuid": False})
                return False
            self._later(document, self.env._(
                "Created in inFakt, but reading it back failed (%s): tried again later.",
                Runner._describe(error)))
            return True
        if (remote.get("number") or "") != (document.number or ""):
            _logger.warning("inFakt: document %s named by uuid has another number", document.id)
            document.write({"infakt_uuid": False})
            return False
        document._infakt_to_done(document.infakt_uuid,
                                 Complete._values_from_remote(document, remote))
        return True
