/** @odoo-module **/
import { useBus, useService } from "@web/core/utils/hooks";
import { patch } from "@web/core/utils/patch";
import { ListController } from "@web/views/list/list_controller";
import { MATCHERS } from "./live_status_service";

patch(ListController.prototype, {
    setup() {
        super.setup(...arguments);
        // Not in environments without the service (e.g. other modules' unit tests).
        if (!MATCHERS[this.props.resModel] || !this.env.services.l10n_pl_infakt_live) {
            return;
        }
        this.infaktLive = useService("l10n_pl_infakt_live");
        this.infaktLoading = null;
        useBus(this.infaktLive.bus, "documents_changed", ({ detail }) =>
            this.infaktFollow(detail)
        );
    },

    /** The list of documents follows any change; lists of invoices and orders, their rows. */
    infaktFollow(payload) {
        const root = this.model.root;
        if (!root || root.editedRecord || root.selection?.length) {
            return;
        }
        const concerned =
            this.props.resModel === "infakt.document" ||
            (!root.isGrouped &&
                root.records.some(
                    (record) =>
                        this.infaktLive.concerned(payload, this.props.resModel, record.resId).length
                ));
        if (!concerned) {
            return;
        }
        // One read at a time: changes that come meanwhile are read by the next one.
        const previous = this.infaktLoading || Promise.resolve();
        this.infaktLoading = previous.then(() => root.load()).finally(() => {
            this.infaktLoading = null;
        });
    },
});
