/** @odoo-module **/
/*
 * Live status of inFakt documents. The server sends one bus message per company and transaction
 * ("l10n_pl_infakt/documents_changed", see models/infakt_document_live.py) to the company's
 * internal users; this service passes it on to the open form and list views, which read their
 * record(s) again when one of them is concerned (form_controller_patch.js, list_controller_patch.js).
 */
import { EventBus } from "@odoo/owl";
import { registry } from "@web/core/registry";

export const NOTIFICATION_TYPE = "l10n_pl_infakt/documents_changed";

/** For each model: does the changed document ``doc`` concern the record ``resId``? */
export const MATCHERS = {
    "account.move": (doc, resId) => doc.move_id === resId,
    "sale.order": (doc, resId) => (doc.sale_order_ids || []).includes(resId),
    "infakt.document": (doc, resId) => doc.id === resId,
};

export const infaktLiveService = {
    dependencies: ["bus_service"],
    start(env, { bus_service }) {
        const bus = new EventBus();
        /** Pass a message of the server on to the open views. */
        const deliver = (payload) => bus.trigger("documents_changed", payload);
        bus_service.subscribe(NOTIFICATION_TYPE, deliver);
        return {
            bus,
            deliver,
            /** The changed documents of ``payload`` that concern ``resId`` of ``resModel``. */
            concerned(payload, resModel, resId) {
                const match = MATCHERS[resModel];
                return match ? (payload.documents || []).filter((doc) => match(doc, resId)) : [];
            },
        };
    },
};

registry.category("services").add("l10n_pl_infakt_live", infaktLiveService);
