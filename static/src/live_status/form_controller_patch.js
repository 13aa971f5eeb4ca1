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

/** Buttons that hand the document to inFakt's scheduled actions: what the user is told. */
const ACTIONS = {
    action_infakt_send: "sent",
    action_infakt_send_again: "sent",
    action_send_again: "sent",
    action_infakt_check: "check",
    action_check_in_infakt: "check",
};
const ACKNOWLEDGEMENTS = {
    sent: () => _t("On its way to inFakt: the result appears here in a few seconds."),
    check: () => _t("Checking in inFakt: the result appears here in a few seconds."),
};

patch(FormController.prototype, {
    setup() {
        super.setup(...arguments);
        // Not in environments without the service (e.g. other modules' unit tests).
        if (!MATCHERS[this.props.resModel] || !this.env.services.l10n_pl_infakt_live) {
            return;
        }
        this.infaktLive = useService("l10n_pl_infakt_live");
        this.infaktNotification = useService("notification");
        this.infaktTold = {};
        useBus(this.infaktLive.bus, "documents_changed", ({ detail }) =>
            this.infaktFollow(detail)
        );
    },

    async afterExecuteActionButton(clickParams) {
        const result = await super.afterExecuteActionButton(...arguments);
        const kind = this.infaktLive && ACTIONS[clickParams.name];
        if (kind) {
            const data = this.model.root.data;
            const state = "infakt_state" in data ? data.infakt_state : data.state;
            // An action that was refused left the document where it was (and said why).
            if (kind === "check" || ["to_send", "sending"].includes(state)) {
                this.infaktNotification.add(ACKNOWLEDGEMENTS[kind](), { type: "info" });
            }
        }
        return result;
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
