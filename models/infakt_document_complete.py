import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .. import const
from ..infakt_api.webhook import event_category

_logger = logging.getLogger(__name__)


class InfaktDocumentComplete(models.AbstractModel):
    """Step 3: complete — what the two completion steps (``poll``: the task of a create,
    ``lookup``: a document in doubt) share: reading a document back from inFakt, recognising
    it as the one sent (identity), the values kept from it; and, with no HTTP, the documents
    whose sender died and the nudges of webhook events."""

    _name = "infakt.document.complete"
    _description = "inFakt: step 3, complete"

    # ------------------------------------------------------------------------------------
    # Reading back
    # ------------------------------------------------------------------------------------
    @api.model
    def _fetch(self, document, client, uuid):
        """The inFakt document ``uuid`` of this document's kind (one read)."""
        return client.get_document(uuid, kind=document._infakt_remote_kind())

    @api.model
    def _find_by_number(self, document, client, number):
        """inFakt's documents of this document's kind numbered exactly ``number``."""
        return client.find_documents_by_number(number, kind=document._infakt_remote_kind())

    @api.model
    def _identity_matches(self, document, remote):
        """True when the inFakt document ``remote`` is the one ``document`` sent: number,
        buyer tax id, issue date, gross total and currency."""
        Payload = self.env["infakt.payload"]
        expected = document.sent_identity or Payload._identity_of_move(document.move_id,
                                                                        document)
        actual = Payload._identity_of_remote(remote)
        return all(actual.get(key) == value for key, value in expected.items())

    @api.model
    def _values_from_remote(self, document, remote):
        """What is kept of inFakt's document: number, id, totals (and whether they differ from
        Odoo's), KSeF number, paid date."""
        values = {"infakt_number": remote.get("number") or document.number or False}
        if remote.get("id"):
            values["infakt_id"] = remote["id"]
        # Per kind (an advance holds its down payment, a final invoice what is left to pay).
        pairs, total = self.env["infakt.payload"]._remote_amounts(document, remote)
        if total is not None:
            mismatch = {key: pair for key, pair in pairs.items()
                        if pair[1] is not None and pair[1] != pair[0]}
            values["infakt_amount_total"] = total
            values["amount_mismatch"] = bool(mismatch)
            values["amount_mismatch_message"] = self.env._(
                "Totals differ from Odoo: %s",
                ", ".join(f"{key} {exp / 100:.2f} / {act / 100:.2f}"
                          for key, (exp, act) in mismatch.items()),
            ) if mismatch else False
        ksef_number = remote.get("ksef_number") or (remote.get("ksef_data") or {}).get(
            "ksef_number")
        if ksef_number:
            values.update({"ksef_number": ksef_number, "ksef_state": "success"})
        if remote.get("paid_date"):
            values["infakt_paid_date"] = remote["paid_date"]
        return values

    # ------------------------------------------------------------------------------------
    # Senders that died while sending (no HTTP)
    # ------------------------------------------------------------------------------------
    @api.model
    def _detect_orphans(self, run):
        """A document left in ``sending`` whose sender is gone (its session lock is free) or
        whose lease ran out is in doubt: looked up, never resent blindly."""
        lease_end = fields.Datetime.now() - timedelta(seconds=const.SENDING_LEASE_SECONDS)
        Send = self.env["infakt.document.send"]
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT id, sending_started_at < %s FROM infakt_document
                WHERE state = 'sending' FOR UPDATE SKIP LOCKED""",
            lease_end,
        ))
        for document_id, lease_over in self.env.cr.fetchall():
            document = self.env["infakt.document"].sudo().browse(document_id)
            document = document.with_context(lang=document._infakt_reader_lang())
            if not lease_over:
                if not Send._advisory_lock(document):
                    continue  # its sender is alive and holds it
                Send._advisory_unlock(document)
            document._infakt_to_in_doubt(
                self.env._("The sender stopped while sending; the document is looked up in "
                           "inFakt."),
                log=self.env._("The sender stopped while sending this document: it is in doubt "
                               "and is looked up in inFakt by its number."),
                delay=0,
            )
        run.commit()

    # ------------------------------------------------------------------------------------
    # Webhook nudges (no HTTP: the steps read the truth from inFakt)
    # ------------------------------------------------------------------------------------
    @api.model
    def _on_event(self, document, event):
        """Make ``document`` due for what the event says; False when the event is ignored."""
        category = event_category(event.name)
        now = fields.Datetime.now()
        if category == "creation":
            uuid = event.invoice_uuid if event.name == "async_invoice_creation_success" else None
            found = {"infakt_uuid": uuid} if uuid else {}
            if document.state == "processing":
                if (uuid and event.task_reference
                        and event.task_reference == document.task_reference
                        and document._infakt_completes_from_task()):
                    # Signed, and naming the task of the create we made: done, no read.
                    document._infakt_to_done_from_task(uuid)
                    return True
                document.write({"next_poll_at": now, **found})
                return True
            if document.state == "in_doubt":
                document.write({"next_attempt_at": now, **found})
                return True
            return False
        if document.state != "done":
            return False
        if category == "ksef":
            values = {"ksef_next_check_at": now, "ksef_check_count": 0}
            if document.ksef_state in ("none", "manual"):
                values["ksef_state"] = "pending"
            document.write(values)
            return True
        if category in ("paid", "mark_paid_async", "deleted"):
            document.write({"refresh_pending": True})
            return True
        return False

    # ------------------------------------------------------------------------------------
    # Shared by the picks of the processor's steps
    # ------------------------------------------------------------------------------------
    @api.model
    def _pick(self, where, order):
        """Lock the first document matching ``where`` in ``order`` (SQL on alias ``d``) of an
        active account that is not stopped; ``SKIP LOCKED``: two processes never take the same
        one."""
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT d.id FROM infakt_document d
                 JOIN infakt_account a ON a.id = d.account_id
                WHERE a.active AND a.connection_state != 'failed' AND %s
                ORDER BY %s
                LIMIT 1 FOR UPDATE OF d SKIP LOCKED""",
            where, order,
        ))
        row = self.env.cr.fetchone()
        document = self.env["infakt.document"].sudo().browse(row[0] if row else [])
        document.invalidate_recordset()
        return document
