from odoo import models
from odoo.http import request

from ..controllers.main import (
    WEBHOOK_PATH_PREFIX,
    WEBHOOK_ROUTE,
    webhook_fallback_response,
    webhook_pre_dispatch,
)


class IrHttp(models.AbstractModel):
    _inherit = "ir.http"

    @classmethod
    def _pre_dispatch(cls, rule, args):
        # Odoo's HTTP dispatcher parses form-encoded and multipart bodies (up to 128 MiB) in
        # ``get_http_params()`` right after this method, before any controller runs: the
        # webhook's method, token shape, size cap and content type are checked here first.
        if rule.rule == WEBHOOK_ROUTE:
            webhook_pre_dispatch(args)
        return super()._pre_dispatch(rule, args)

    @classmethod
    def _serve_fallback(cls):
        if request.httprequest.path.startswith(WEBHOOK_PATH_PREFIX):
            return webhook_fallback_response()
        return super()._serve_fallback()
