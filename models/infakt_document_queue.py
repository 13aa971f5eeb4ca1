import psycopg2

from odoo import api, models


class InfaktDocumentQueue(models.AbstractModel):
    """Step 1: queue. A posted invoice or credit note of an inFakt series gets one ``to_send``
    document, inside the posting transaction, without any HTTP call (posting never waits for
    inFakt, nor fails because inFakt is slow or down)."""

    _name = "infakt.document.queue"
    _description = "inFakt: step 1, queue"

    @api.model
    def _queue_moves(self, moves, force=False):
        """One ``to_send`` document per posted move of a series of an active account (accounts
        with automatic sending only, unless ``force``); moves that already have an active
        document are left alone. Returns the documents created."""
        posting_map = self.env["infakt.series"].sudo()._posting_map()
        vals_list = []
        for move in moves:
            if move.state != "posted":
                continue
            document_type = move._infakt_document_type()
            account_id, auto_send = posting_map.get((move.journal_id.id, document_type),
                                                    (False, False))
            if not account_id or (not force and not auto_send):
                continue
            # Posting starts from a draft, and a draft has no active document (resetting to
            # draft cancels or refuses them): only a forced send may meet one.
            if force and move.sudo().infakt_document_ids.filtered(
                    lambda d: d.state != "cancelled"):
                continue
            vals_list.append({
                "move_id": move.id,
                "account_id": account_id,
                "company_id": move.company_id.id,
                # Down payments of a sale order are advance and final invoices in inFakt.
                "document_type": self.env["infakt.payload"]._document_type(
                    move, document_type),
                "state": "to_send",
            })
        Document = self.env["infakt.document"].sudo()
        if not vals_list:
            return Document.browse()
        if not force:
            # Posting: the invoices were just posted in this transaction, which holds their
            # rows; nobody else can queue them meanwhile (no savepoint on every posting). A
            # document cancelled in this transaction (reset, then posted again) is flushed
            # before the database checks that one document is active per invoice.
            Document.flush_model(["state"])
            documents = Document.create(vals_list)
        else:
            documents = self._create_unique(Document, vals_list)
        if documents:
            Document._trigger_sender()
        return documents

    @api.model
    def _create_unique(self, Document, vals_list):
        """Create the documents; the database keeps one active document per invoice, also
        when two users send the same invoice at the same moment."""
        try:
            with self.env.cr.savepoint():
                return Document.create(vals_list)
        except psycopg2.errors.UniqueViolation:
            documents = Document.browse()
            for vals in vals_list:
                try:
                    with self.env.cr.savepoint():
                        documents |= Document.create(vals)
                except psycopg2.errors.UniqueViolation:
                    continue
            return documents
