from odoo import api, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..infakt_api import errors as infakt_errors
from .infakt_reconciliation_match import KIND_SEQUENCE

# inFakt's web application, where a person finds a document by its number.
APP_URLS = {"production": "https://app.infakt.pl", "sandbox": "https://app.sandbox-infakt.pl"}


class InfaktReconciliationFix(models.AbstractModel):
    """The actions that fix a row of a reconciliation: send the invoice missing in inFakt,
    link inFakt's document to the Odoo invoice it is (identity checked against inFakt's
    document read again), look the document up in inFakt again. The caller checked the user's
    group (``infakt.reconciliation.line``)."""

    _name = "infakt.reconciliation.fix"
    _description = "inFakt: actions fixing the rows of a reconciliation"

    @api.model
    def _fix_send(self, line):
        Match = self.env["infakt.reconciliation.match"]
        move = line.move_id
        if not move or line.kind != "missing_in_infakt":
            raise UserError(self.env._("Only invoices missing in inFakt can be sent."))
        document = Match._active_document(move)
        if document.state == "error":
            document.action_send_again()
        elif not document:
            move.action_infakt_send()
        else:
            raise UserError(self.env._("%s is already on its way to inFakt.", move.name))
        line.sudo().write({"fixed": True, "note": self.env._("Sent to inFakt.")})

    @api.model
    def _fix_link(self, line):
        Match = self.env["infakt.reconciliation.match"]
        move = line.move_id
        if not move or not line.infakt_uuid:
            raise UserError(self.env._("This row has no inFakt document to link."))
        document = Match._active_document(move)
        if document.state in ("sending", "processing", "done"):
            raise UserError(self.env._(
                "%s already has a document in inFakt or on its way there.", move.name))
        account = line.reconciliation_id.account_id
        client = account._get_client()
        try:
            remote = client.get_document(line.infakt_uuid, kind=line.infakt_kind)
        except infakt_errors.InfaktError as error:
            raise UserError(account._describe_error(error)) from error
        Complete = self.env["infakt.document.complete"]
        if not Complete._identity_matches(document or Match._probe(move), remote):
            raise UserError(self.env._(
                "inFakt's %(number)s is not %(invoice)s: its number, buyer tax id, date, gross "
                "total or currency differ.", number=remote.get("number"), invoice=move.name))
        if not document:
            series = move._infakt_find_series()
            document = self.env["infakt.document"].sudo().with_context(
                mail_create_nolog=True, tracking_disable=True).create({
                    "move_id": move.id, "account_id": series.account_id.id,
                    "document_type": Match._probe(move).document_type,
                    "number": move.name, "state": "in_doubt", "check_manually": True})
            move.sudo().infakt_document_id = document
        document = document.sudo()
        self.env.cr.execute(SQL("SELECT id FROM infakt_document WHERE id = %s FOR UPDATE NOWAIT",
                                document.id))
        document._infakt_to_done(
            line.infakt_uuid, Complete._values_from_remote(document, remote),
            how=self.env._("Linked by the reconciliation with inFakt to"))
        document._trigger_processor()
        line.sudo().write({"fixed": True, "document_id": document.id,
                           "note": self.env._("Linked to inFakt's document.")})

    @api.model
    def _fix_look_up(self, line):
        Match = self.env["infakt.reconciliation.match"]
        document = line.document_id.sudo()
        if not document:
            raise UserError(self.env._("This row has no exchange with inFakt to look up."))
        if document.state != "done":
            document.with_user(self.env.user).action_check_in_infakt()
            line.sudo().write({"fixed": True, "note": self.env._("Looked up in inFakt.")})
            return
        client = document.account_id._get_client()
        try:
            remote = self.env["infakt.document.complete"]._fetch(document, client,
                                                                 document.infakt_uuid)
        except infakt_errors.InfaktNotFound:
            # Deleted in inFakt: the exchange ends, the invoice can be sent again.
            document._infakt_to_cancelled(self.env._("The document was deleted in inFakt."))
            line.sudo().write({"fix": "send", "note": self.env._(
                "Deleted in inFakt: send it again.")})
            return
        except infakt_errors.InfaktError as error:
            raise UserError(document.account_id._describe_error(error)) from error
        values = self.env["infakt.document.complete"]._values_from_remote(document, remote)
        document.write(values)
        document._infakt_log(self.env._("Read again from inFakt by the reconciliation."))
        document._infakt_notify_change()
        kind, fix, note = Match._compare(document.move_id, document, remote)
        line.sudo().write(dict(Match._move_side(document.move_id, document),
                               **Match._remote_side(dict(remote, kind=line.infakt_kind)),
                               kind=kind, kind_sequence=KIND_SEQUENCE[kind], fix=fix,
                               note=note, fixed=True))

    @api.model
    def _app_url(self, account):
        return APP_URLS.get(account.environment) or account._get_base_url()
