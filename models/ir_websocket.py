from odoo import models


class IrWebsocket(models.AbstractModel):
    _inherit = "ir.websocket"

    def _build_bus_channel_list(self, channels):
        # EXTENDS 'bus': the internal users hear about the inFakt documents of their companies.
        channels = list(channels)
        channels.extend(self.env["infakt.document.live"]._bus_channels(self.env.user))
        return super()._build_bus_channel_list(channels)
