/** @odoo-module **/
/*
 * Browser tests of the live status and of Send & Print with inFakt's PDF (run by
 * tests/test_tours_live.py against the inFakt simulator).
 *
 * Odoo refuses websockets in test mode: the Python test moves the document (sender, processor)
 * while the tour waits on the screen, then the tour reads the bus messages of this user the way
 * the bus does without a websocket (/websocket/peek_notifications: the user's channels, built by
 * the server) and gives them to the live status service as the bus would. Only the transport is
 * replaced: the open view reads its record(s) again, without a page reload.
 */

import { rpc } from "@web/core/network/rpc";
import { registry } from "@web/core/registry";

const tours = registry.category("web_tour.tours");

// Shared with tests/test_tours_live.py.
const LIVE_DONE_PARAM = "l10n_pl_infakt.tour_live_done";
const NOTIFICATION_TYPE = "l10n_pl_infakt/documents_changed";
const LIVE_GO_PARAM = "l10n_pl_infakt.tour_live_go";

function getParam(key) {
    return rpc("/web/dataset/call_kw/ir.config_parameter/get_param", {
        model: "ir.config_parameter",
        method: "get_param",
        args: [key],
        kwargs: {},
    });
}

async function waitForParam(key, timeout = 60000) {
    const end = Date.now() + timeout;
    while (Date.now() < end) {
        const value = await getParam(key);
        if (value) {
            return value;
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
    }
    throw new Error(`Tour: ${key} never came`);
}

/**
 * Once ``trigger`` shows the document waiting: let the Python test move it (sender, processor),
 * then give the bus messages the server wrote to the live status service, as the bus would.
 */
function inFaktAnswersStep(trigger) {
    return {
        content: "inFakt answers meanwhile (the Python test); the server's bus messages arrive",
        trigger,
        async run() {
            await rpc("/web/dataset/call_kw/ir.config_parameter/set_param", {
                model: "ir.config_parameter",
                method: "set_param",
                args: [LIVE_GO_PARAM, "1"],
                kwargs: {},
            });
            const last = parseInt(await waitForParam(LIVE_DONE_PARAM));
            const { notifications } = await rpc("/websocket/peek_notifications", {
                channels: [],
                last,
                is_first_poll: true,
            });
            const messages = notifications
                .filter(({ message }) => message.type === NOTIFICATION_TYPE)
                .map(({ message }) => message.payload);
            if (!messages.length) {
                throw new Error("Tour: no bus message for this user");
            }
            const live = odoo.__WOWL_DEBUG__.root.env.services.l10n_pl_infakt_live;
            for (const payload of messages) {
                live.deliver(payload);
            }
        },
    };
}

function markNoReload() {
    return {
        content: "Mark the page (lost on a reload)",
        trigger: "body",
        run() {
            window.infaktTourNoReload = true;
        },
    };
}

function checkNoReload() {
    return {
        content: "The page was not reloaded",
        trigger: "body",
        run() {
            if (!window.infaktTourNoReload) {
                throw new Error("Tour: the page was reloaded");
            }
        },
    };
}

// -------------------------------------------------------------------------------------------
// a. Confirm an invoice: "on its way", then Done without a reload
// -------------------------------------------------------------------------------------------
tours.add("l10n_pl_infakt_live_after_confirm", {
    steps: () => [
        {
            content: "A draft invoice",
            trigger: ".o_form_view .o_statusbar_status .o_arrow_button_current:contains(Draft)",
        },
        {
            content: "Mark the page",
            trigger: ".o_form_view .o_form_sheet",
            run() {
                // Lost on a page reload: checked at the end.
                window.infaktTourNoReload = true;
            },
        },
        {
            content: "Confirm the invoice",
            trigger: ".o_statusbar_buttons button[name=action_post]",
            run: "click",
        },
        {
            content: "Posting queued it for inFakt",
            trigger: ".o_form_view .alert-info:contains(on its way to inFakt)",
        },
        inFaktAnswersStep(".o_form_view .alert-info:contains(on its way to inFakt)"),
        {
            content: "The invoice shows Done by itself",
            trigger:
                ".o_form_view:not(:has(.alert-info)) button[name=action_infakt_view_documents]:contains(Done)",
        },
        {
            content: "and says so",
            trigger: ".o_notification:contains(The document is in inFakt)",
        },
        {
            content: "inFakt's PDF is on the invoice (inFakt tab)",
            trigger: ".o_notebook .nav-link:contains(inFakt)",
            run: "click",
        },
        {
            trigger: ".o_field_widget[name=infakt_pdf] :contains(inFakt)",
            run() {
                if (!window.infaktTourNoReload) {
                    throw new Error("Tour: the page was reloaded");
                }
            },
        },
    ],
});

// -------------------------------------------------------------------------------------------
// b. Send & Print: the customer receives inFakt's PDF, and the wizard says so
// -------------------------------------------------------------------------------------------
tours.add("l10n_pl_infakt_send_print_pdf", {
    steps: () => [
        {
            content: "A done invoice: Send",
            trigger: ".o_form_view .o_statusbar_buttons button[name=action_invoice_sent]",
            run: "click",
        },
        {
            content: "The wizard says the customer receives inFakt's PDF",
            trigger: ".modal .alert:contains(receives the PDF of inFakt)",
        },
        {
            content: "inFakt's PDF is the attachment, not Odoo's",
            trigger: ".modal .o_field_widget[name=mail_attachments_widget]:contains(inFakt )",
            run() {
                const names = this.anchor.textContent;
                if (names.includes("_20")) {
                    throw new Error(`Tour: Odoo's PDF is attached too: ${names}`);
                }
            },
        },
        {
            content: "Send",
            trigger: ".modal .modal-footer button[name=action_send_and_print]",
            run: "click",
        },
        {
            content: "The e-mail with inFakt's PDF is in the history",
            trigger: "body:not(:has(.modal)) .o-mail-Message .o-mail-AttachmentCard:contains(inFakt)",
        },
    ],
});

// -------------------------------------------------------------------------------------------
// c. The sale order and the Documents list follow the document too
// -------------------------------------------------------------------------------------------
tours.add("l10n_pl_infakt_live_order", {
    steps: () => [
        markNoReload(),
        {
            content: "The order's inFakt tab",
            trigger: ".o_notebook .nav-link:contains(inFakt)",
            run: "click",
        },
        {
            content: "Nothing in inFakt yet",
            trigger: ".o_form_view .o_field_widget[name=infakt_state]:not(:contains(Sent)):not(:visible)",
        },
        inFaktAnswersStep(".o_form_view .o_notebook .nav-link.active:contains(inFakt)"),
        {
            content: "The order shows its invoice sent, with inFakt's PDF, by itself",
            trigger: ".o_form_view .o_field_widget[name=infakt_state]:contains(Sent to inFakt)",
        },
        {
            trigger: ".o_form_view .o_field_widget[name=infakt_invoice_attachment_ids]:contains(inFakt)",
        },
        checkNoReload(),
    ],
});

tours.add("l10n_pl_infakt_live_documents", {
    steps: () => [
        markNoReload(),
        inFaktAnswersStep(".o_list_view .o_data_row .o_field_widget[name=state]:contains(To send)"),
        {
            content: "The Documents list shows it done by itself",
            trigger: ".o_list_view .o_data_row .o_field_widget[name=state]:contains(Done)",
        },
        checkNoReload(),
    ],
});
