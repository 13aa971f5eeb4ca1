/** @odoo-module **/
import { _t } from "@web/core/l10n/translation";
import { useBus, useService } from "@web/core/utils/hooks";
import { patch } from "@web/core/utils/patch";
import { FormController } from "@web/views/form/form_controller";
import { MATCHERS } from "./live_status_service";

const OUTCOMES = {
    done: () => ({ message: _t("The document is in inFakt."), type: "success" }),
    error: () => ({
        message: _t("inFakt did not accept the document: see the message at the top."),
        type: "danger",
    }),
};

patch(FormController.prototype, {
    setup() {
        super.setup(...arguments);
        if (!MATCHERS[this.props.resModel]) {
            return;
        }
        this.infaktLive = useService("l10n_pl_infakt_live");
        this.infaktNotification = useService("notification");
        this.infaktTold = {};
        useBus(this.infaktLive.bus, "documents_changed", ({ detail }) =>
            this.infaktFollow(detail)
        );
    },

    /** Read the record again when its document moved, unless the user is changing it. */
    async infaktFollow(payload) {
        const root = this.model.root;
        if (!root || root.isNew || !root.resId) {
            return;
        }
        const documents = this.infaktLive.concerned(payload, this.props.resModel, root.resId);
        if (!documents.length || root.dirty) {
            return;
        }
        await root.load();
        for (const doc of documents) {
            const outcome = OUTCOMES[doc.state];
            if (outcome && this.infaktTold[doc.id] !== doc.state) {
                this.infaktTold[doc.id] = doc.state;
                const { message, type } = outcome();
                this.infaktNotification.add(message, { type, title: _t("inFakt") });
            }
        }
    },
});
