/** @odoo-module **/
/*
 * The progress bar of a reconciliation with inFakt: while the background job reads the period
 * (state "running"), the form reads the record again every few seconds, so the accountant sees
 * the progress, then the differences, without reloading the page.
 */

import { onWillUnmount } from "@odoo/owl";
import { registry } from "@web/core/registry";
import {
    ProgressBarField,
    progressBarField,
} from "@web/views/fields/progress_bar/progress_bar_field";

const POLL_MS = 2000;

export class InfaktReconciliationProgress extends ProgressBarField {
    setup() {
        super.setup();
        const interval = setInterval(() => this.poll(), POLL_MS);
        onWillUnmount(() => clearInterval(interval));
    }

    async poll() {
        const record = this.props.record;
        if (this.polling || record.isNew || record.data.state !== "running") {
            return;
        }
        this.polling = true;
        try {
            if (!(await record.isDirty())) {
                await record.load();
            }
        } finally {
            this.polling = false;
        }
    }
}

registry.category("fields").add("infakt_reconciliation_progress", {
    ...progressBarField,
    component: InfaktReconciliationProgress,
});
