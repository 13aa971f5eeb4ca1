from odoo import api, models

# The bus notification type the web client listens to (static/src/live_status.js).
NOTIFICATION_TYPE = "l10n_pl_infakt/documents_changed"
# The sub-channel of a company on which its internal users hear about its documents
# (ir_websocket.py subscribes them).
SUBCHANNEL = "l10n_pl_infakt"
_PENDING = "l10n_pl_infakt.changed_documents"


class InfaktDocumentLive(models.AbstractModel):
    """Live status: the open invoice, sale order and Documents list follow their documents.

    Transitions only note which documents moved (no query); when the transaction is about to
    commit, one bus message per company goes to that company's channel, on which only its
    internal users listen (those the record rules let read its documents). Odoo's bus writes
    the message with the transaction and wakes the browsers after the commit, so a screen never
    reloads before the change is visible, and a rolled back change is never announced."""

    _name = "infakt.document.live"
    _description = "inFakt: live status of documents"

    @api.model
    def _queue(self, documents):
        data = self.env.cr.precommit.data
        pending = data.get(_PENDING)
        if pending is None:
            pending = data[_PENDING] = {}
            self.env.cr.precommit.add(self.sudo()._send_pending)
        pending.update(dict.fromkeys(documents.ids))

    def _send_pending(self):
        document_ids = list(self.env.cr.precommit.data.pop(_PENDING, {}))
        documents = self.env["infakt.document"].browse(document_ids).exists()
        by_company = {}
        for document in documents:
            by_company.setdefault(document.company_id, []).append(self._payload(document))
        for company, payload in by_company.items():
            self.env["bus.bus"]._sendone((company, SUBCHANNEL), NOTIFICATION_TYPE,
                                         {"documents": payload})

    @api.model
    def _payload(self, document):
        return {
            "id": document.id,
            "move_id": document.move_id.id,
            "sale_order_ids": document.move_id._infakt_sale_orders().ids,
            "state": document.state,
        }

    @api.model
    def _bus_channels(self, user):
        """The channels ``user`` listens to: those of its companies, for internal users."""
        if not user or not user._is_internal():
            return []
        return [(company, SUBCHANNEL) for company in user.company_ids]
