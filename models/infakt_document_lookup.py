from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api import errors as infakt_errors


class InfaktDocumentLookup(models.AbstractModel):
    """Step 3b: a document in doubt (its create's answer was lost, its sender died, inFakt
    refused its number). It is looked up in inFakt, with backoff and never given up: by its
    task or the uuid a webhook named when known, else by its number. A document found there is
    linked only when its identity (buyer, date, total, currency) is the one sent; a number used
    by another document is an error (this invoice is not in inFakt under it); not found after
    the task window, it is safe to send again."""

    _name = "infakt.document.lookup"
    _description = "inFakt: step 3b, look-up of a document in doubt"

    @api.model
    def _pick(self, run):
        return self.env["infakt.document.complete"]._pick(
            SQL("d.state = 'in_doubt' AND NOT COALESCE(d.check_manually, false) "
                "AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %s)",
                fields.Datetime.now()),
            SQL("d.next_attempt_at NULLS FIRST, d.id"))

    @api.model
    def _process(self, document, run):
        client = run.client_for(document.account_id)
        Complete = self.env["infakt.document.complete"]
        Runner = self.env["infakt.document.runner"]
        if document.task_reference and not document.infakt_uuid:
            # The task is known (its answer came late): its status is the surest proof.
            try:
                task = client.task_status(document.task_reference,
                                          kind=document._infakt_remote_kind())
            except infakt_errors.InfaktError as error:
                Runner._stop_for(document, error, "read", run)
                task = None
            if task is not None and task.done and task.invoice_uuid:
                document.write({"infakt_uuid": task.invoice_uuid})
            elif task is not None and task.failed:
                document._infakt_refused(task.as_error())
                return
        if document.infakt_uuid:
            try:
                remote = Complete._fetch(document, client, document.infakt_uuid)
            except infakt_errors.InfaktError as error:
                Runner._stop_for(document, error, "read", run)
                remote = None
            if remote and Complete._identity_matches(document, remote):
                document._infakt_to_done(
                    document.infakt_uuid, Complete._values_from_remote(document, remote),
                    how=self.env._("Found in inFakt (not sent again) as"))
                return
            document.write({"infakt_uuid": False})
        self._by_number(document, client, run)

    @api.model
    def _by_number(self, document, client, run):
        Complete = self.env["infakt.document.complete"]
        Runner = self.env["infakt.document.runner"]
        number = document.number or document.move_id.name
        try:
            found = Complete._find_by_number(document, client, number)
        except infakt_errors.InfaktError as error:
            Runner._stop_for(document, error, "read", run)
            self._later(document, Runner._describe(error))
            return
        matching = [entity for entity in found if Complete._identity_matches(document, entity)]
        if len(matching) == 1:
            entity = matching[0]
            document._infakt_to_done(
                entity.get("uuid"), Complete._values_from_remote(document, entity),
                how=self.env._("Found in inFakt by its number (not sent again) as"))
        elif len(matching) > 1:
            document.write({"check_manually": True, "error_message": self.env._(
                "inFakt holds %(count)s documents numbered %(number)s that look like this one: "
                "check them in inFakt (one is a duplicate), then click Check in inFakt.",
                count=len(matching), number=number)})
            document._infakt_notify_change()
        elif found:
            document._infakt_to_error(self.env._(
                "The number %(number)s is already used in inFakt by another document (its "
                "buyer, date, total or currency differ from this invoice). Check that document "
                "in inFakt; this invoice was not created there.", number=number))
        else:
            self._not_found(document, number)

    @api.model
    def _not_found(self, document, number):
        started = document.sending_started_at or document.write_date
        if started and fields.Datetime.now() - started >= timedelta(
                seconds=const.TASK_WINDOW_SECONDS):
            document._infakt_transition(
                "to_send",
                {"next_attempt_at": False, "error_message": False, "lookup_count": 0,
                 "task_reference": False},
                log=self.env._("Not found in inFakt after the task window: it is safe to send it "
                               "again."),
            )
            document._trigger_sender()
        else:
            self._later(document, self.env._(
                "%s is not in inFakt (yet): looked up again in a moment.", number))

    @api.model
    def _later(self, document, message):
        document.write({
            "lookup_count": document.lookup_count + 1,
            "next_attempt_at": fields.Datetime.now() + timedelta(
                seconds=document._infakt_schedule_delay(const.LOOKUP_SCHEDULE,
                                                        document.lookup_count + 1)),
            "error_message": message,
        })

    @api.model
    def _crashed(self, document, run, error):
        self._later(document, self.env._(
            "Looking the document up failed (%s): tried again later.", type(error).__name__))
