/** @odoo-module **/
/*
 * Browser tests of l10n_pl_infakt (run by tests/test_tours.py against the inFakt simulator).
 *
 * The Python test prepares the data, starts each tour, and runs the scheduled actions and the
 * simulator (webhook verification) between the tours: no cron thread runs during tests.
 */

import { rpc } from "@web/core/network/rpc";
import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

const tours = registry.category("web_tour.tours");

// Names shared with tests/test_tours.py.
const ACCOUNT_NAME = "inFakt - Moja Firma";
const API_KEY = "test-key";
const WEBHOOK_SECRET = "test-webhook-secret";
const SIMULATOR_URL_PARAM = "l10n_pl_infakt.tour_simulator_url";
const NEW_BANK_NAME = "mBank";

function assert(condition, message) {
    if (!condition) {
        throw new Error(`Tour assertion failed: ${message}`);
    }
}

/** Invoicing → Configuration → inFakt → inFakt Accounts, from anywhere. */
function openInfaktAccountsSteps() {
    return [
        ...stepUtils.goToAppSteps("account.menu_finance", "Open Invoicing"),
        {
            content: "Open the Configuration menu",
            trigger: '.o_menu_sections [data-menu-xmlid="account.menu_finance_configuration"]',
            run: "click",
        },
        {
            content: "inFakt Accounts (in the inFakt section of Configuration)",
            trigger: '.o-dropdown-item[data-menu-xmlid="l10n_pl_infakt.menu_infakt_accounts"]',
            run: "click",
        },
        {
            content: "The accounts are shown as cards",
            trigger: ".o_breadcrumb:contains(inFakt Accounts)",
        },
        {
            trigger: ".o_kanban_view",
        },
    ];
}

/**
 * Buttons that answer with a notification reload the form ("soft_reload"): mark the form
 * before such a button, and wait for a form without the mark after it.
 */
function markFormStale() {
    return {
        trigger: ".o_form_view",
        run() {
            this.anchor.dataset.infaktTourStale = "1";
        },
    };
}

function waitFormReloaded() {
    return {
        content: "The form is read again",
        trigger: ".o_form_view:not([data-infakt-tour-stale]) .o_form_sheet",
    };
}

function openNotebookPage(name) {
    return {
        content: `Open the ${name} tab`,
        trigger: `.o_notebook .nav-link:contains(${name})`,
        run: "click",
    };
}

// -------------------------------------------------------------------------------------------
// a. Configure an account against the simulator
// -------------------------------------------------------------------------------------------
tours.add("l10n_pl_infakt_configure_account", {
    url: "/odoo",
    steps: () => [
        ...openInfaktAccountsSteps(),
        {
            content: "No account yet: the help says how to start",
            trigger: ".o_view_nocontent:contains(Connect Odoo to inFakt)",
        },
        {
            content: "New inFakt account",
            trigger: ".o_control_panel_main_buttons .o-kanban-button-new",
            run: "click",
        },
        {
            content: "A new account has configuration problems before anything is entered",
            trigger: ".o_form_view .alert-warning:contains(Fix these before sending)",
        },
        {
            content: "Account name",
            trigger: ".o_field_widget[name=name] input",
            run: `edit ${ACCOUNT_NAME}`,
        },
        // Document series: FV on the sales journal.
        {
            content: "Add a document series",
            trigger: ".o_field_widget[name=series_ids] .o_field_x2many_list_row_add a",
            run: "click",
        },
        {
            content: "The new series is an invoice series (FV)",
            trigger:
                ".o_field_widget[name=series_ids] .o_selected_row .o_field_widget[name=document_type] select",
            run() {
                const label = this.anchor.selectedOptions[0]?.textContent || "";
                assert(label.includes("FV"), `series type is "${label}", expected FV`);
            },
        },
        {
            content: "Choose the sales journal",
            trigger:
                ".o_field_widget[name=series_ids] .o_selected_row .o_field_widget[name=journal_id] input",
            run: "edit Customer Invoices",
        },
        {
            trigger: ".o-autocomplete--dropdown-menu .dropdown-item:contains(Customer Invoices)",
            run: "click",
        },
        {
            content: "The journal is set on the series line",
            trigger:
                ".o_field_widget[name=series_ids] .o_selected_row .o_field_widget[name=journal_id] input:value(Customer Invoices)",
        },
        // Connection: custom environment pointing at the simulator.
        {
            content: "Environment: custom URL",
            trigger: ".o_field_widget[name=environment] select",
            run: 'select "custom"',
        },
        {
            content: "API URL of the inFakt simulator",
            trigger: ".o_field_widget[name=api_url] input",
            async run(helpers) {
                const url = await rpc("/web/dataset/call_kw/ir.config_parameter/get_param", {
                    model: "ir.config_parameter",
                    method: "get_param",
                    args: [SIMULATOR_URL_PARAM],
                    kwargs: {},
                });
                assert(url, `the test did not set ${SIMULATOR_URL_PARAM}`);
                await helpers.edit(url);
            },
        },
        {
            content: "Paste the API key made in inFakt",
            trigger: ".o_field_widget[name=api_key_new] input",
            run: `edit ${API_KEY}`,
        },
        {
            content: "Webhook HMAC secret (from inFakt's webhook details)",
            trigger: ".o_field_widget[name=webhook_secret_new] input",
            run: `edit ${WEBHOOK_SECRET}`,
        },
        // Payment method mapping: a default line (transfer).
        openNotebookPage("Payment Method Mapping"),
        {
            content: "Add a payment method mapping line",
            trigger: ".o_field_widget[name=payment_mapping_ids] .o_field_x2many_list_row_add a",
            run: "click",
        },
        {
            content: "Default: transfer",
            trigger:
                ".o_field_widget[name=payment_mapping_ids] .o_selected_row .o_field_widget[name=infakt_payment_method] select",
            run: 'select "transfer"',
        },
        ...stepUtils.saveForm(),
        {
            content: "The key is stored and never shown again",
            trigger: ".o_form_view div:contains(An API key is stored)",
        },
        {
            content: "The webhook URL is generated once saved, with a copy button",
            trigger: ".o_field_widget[name=webhook_url]:contains(/infakt/webhook/)",
        },
        {
            trigger: ".o_field_widget[name=webhook_url] .o_clipboard_button",
        },
        {
            content: "Not tested yet",
            trigger: ".o_field_widget[name=connection_state]:contains(Not tested)",
        },
        markFormStale(),
        {
            content: "Test connection",
            trigger: ".o_form_statusbar button[name=action_test_connection]",
            run: "click",
        },
        {
            content: "inFakt answers",
            trigger: ".o_notification:contains(Connected to inFakt)",
        },
        waitFormReloaded(),
        {
            content: "The account shows Connected",
            trigger: ".o_field_widget[name=connection_state]:contains(Connected)",
        },
        {
            content: "The bank account was read from inFakt",
            trigger: ".o_field_widget[name=connection_message]:contains(Connected to inFakt)",
        },
        {
            content: "Once the form is read again, the key is not in the page",
            trigger: ".o_field_widget[name=api_key_new] input",
            run() {
                assert(this.anchor.value === "", "the API key is shown after saving");
                assert(this.anchor.type === "password", "the API key input is not masked");
            },
        },
        {
            content: "Only the webhook verification is left to do",
            trigger: ".o_form_view .alert-warning:contains(never been verified)",
            run() {
                const text = this.anchor.textContent;
                for (const solved of ["API Key", "Payment Method Mapping", "Bank Account"]) {
                    assert(!text.includes(solved), `"${solved}" is still listed: ${text}`);
                }
            },
        },
        {
            content: "Webhook: not verified",
            trigger: ".o_field_widget[name=webhook_state]:contains(Not verified)",
        },
    ],
});

tours.add("l10n_pl_infakt_account_verified", {
    steps: () => [
        {
            content: "After inFakt's Verify, the account shows the webhook as verified",
            trigger: ".o_field_widget[name=webhook_state]:contains(Verified)",
        },
        {
            trigger: ".o_field_widget[name=webhook_verified_at]",
        },
        {
            content: "Connected",
            trigger: ".o_field_widget[name=connection_state]:contains(Connected)",
        },
        {
            content: "Nothing is left to fix",
            trigger: ".o_form_view .o_form_sheet:not(:has(.alert-warning))",
        },
        {
            content: "Back to the accounts",
            trigger: ".o_breadcrumb a:contains(inFakt Accounts)",
            run: "click",
        },
        {
            content: "The card shows the account connected and verified",
            trigger: `.o_kanban_record:contains(${ACCOUNT_NAME}):contains(Connected):contains(Verified)`,
        },
        {
            content: "… without the configuration warning",
            trigger: `.o_kanban_record:contains(${ACCOUNT_NAME}):not(:has(.fa-exclamation-triangle))`,
        },
    ],
});

// -------------------------------------------------------------------------------------------
// b. Sale order -> invoice -> posted (the Python test then runs the sender and processor)
// -------------------------------------------------------------------------------------------
tours.add("l10n_pl_infakt_order_invoice", {
    steps: () => [
        {
            content: "A quotation",
            trigger: ".o_statusbar_status .o_arrow_button_current:contains(Quotation)",
        },
        {
            content: "Confirm the order",
            trigger: ".o_statusbar_buttons button[name=action_confirm]",
            run: "click",
        },
        {
            trigger: ".o_statusbar_status .o_arrow_button_current:contains(Sales Order)",
        },
        {
            content: "Create Invoice",
            trigger: ".o_statusbar_buttons button:contains(Create Invoice)",
            run: "click",
        },
        {
            content: "Create the draft invoice",
            trigger: ".modal .modal-footer button:contains(Create Draft)",
            run: "click",
        },
        {
            content: "The draft invoice is open",
            trigger: "body:not(:has(.modal)) .o_form_view .o_statusbar_status .o_arrow_button_current:contains(Draft)",
        },
        {
            content: "Confirm (post) the invoice",
            trigger: ".o_statusbar_buttons button[name=action_post]",
            run: "click",
        },
        {
            trigger: ".o_statusbar_status .o_arrow_button_current:contains(Posted)",
        },
        {
            content: "Posting queued it for inFakt",
            trigger: ".o_form_view .alert-info:contains(on its way to inFakt)",
        },
        {
            trigger: ".o_form_view button[name=action_infakt_view_documents]:contains(To send)",
        },
    ],
});

/** Checks on a sale order whose invoice reached inFakt, then on the invoice itself. */
tours.add("l10n_pl_infakt_order_done", {
    steps: () => [
        {
            content: "The order has no inFakt error",
            trigger: ".o_form_view:not(:has(.alert-danger)) .o_form_sheet",
        },
        {
            content: "inFakt smart button",
            trigger: ".o_form_view button[name=action_view_infakt_documents]:contains(inFakt)",
        },
        openNotebookPage("inFakt"),
        {
            content: "inFakt status of the order",
            trigger: ".o_field_widget[name=infakt_state]:contains(Sent to inFakt)",
        },
        {
            content: "The invoice PDF from inFakt is on the order",
            trigger: ".o_field_widget[name=infakt_invoice_attachment_ids] .o_attachment[title*='inFakt ']",
        },
        openNotebookPage("Other Info"),
        {
            content: "The error tag is not on the order",
            trigger: ".o_field_widget[name=tag_ids]:not(:has(.o_tag:contains(inFakt error)))",
        },
        {
            content: "Open the invoice",
            trigger: ".o_form_view button[name=action_view_invoice]",
            run: "click",
        },
        {
            content: "The invoice is done in inFakt",
            trigger: ".o_form_view button[name=action_infakt_view_documents] .o_stat_value:contains(Done)",
        },
        {
            trigger: ".o_form_view:not(:has(.alert-danger)):not(:has(.alert-info)) .o_form_sheet",
        },
        openNotebookPage("inFakt"),
        {
            content: "The inFakt number is the Odoo number",
            trigger: ".o_field_widget[name=infakt_number] span",
            run() {
                const number = this.anchor.textContent.trim();
                const name = document.querySelector(".o_field_widget[name=name]").textContent.trim();
                assert(number && number === name, `inFakt number "${number}" != "${name}"`);
            },
        },
        {
            content: "The PDF from inFakt",
            trigger: ".o_field_widget[name=infakt_pdf]:contains(inFakt )",
        },
        {
            content: "The exchange in the documents list",
            trigger: ".o_form_view button[name=action_infakt_view_documents]",
            run: "click",
        },
        {
            trigger: ".o_list_view .o_data_row .o_field_widget[name=state]:contains(Done)",
        },
    ],
});

// -------------------------------------------------------------------------------------------
// c. inFakt refused the invoice: see the error, fix it, send again
// -------------------------------------------------------------------------------------------
tours.add("l10n_pl_infakt_fix_error", {
    steps: () => [
        {
            content: "The invoice shows what to fix",
            trigger:
                ".o_form_view .alert-danger:contains(Not in inFakt yet):contains(bank account for transfers)",
        },
        {
            trigger: ".o_form_view button[name=action_infakt_view_documents] .o_stat_value:contains(Error)",
        },
        {
            trigger: ".o_statusbar_buttons button[name=action_infakt_send_again]",
        },
        {
            content: "Open the sale order of the invoice",
            trigger: ".o_form_view button[name=action_view_source_sale_orders]",
            run: "click",
        },
        {
            content: "The order says its invoice could not be sent",
            trigger: ".o_form_view .alert-danger:contains(inFakt refused these invoices of the order)",
        },
        openNotebookPage("inFakt"),
        {
            content: "Error status of the order",
            trigger: ".o_field_widget[name=infakt_state]:contains(inFakt error)",
        },
        openNotebookPage("Other Info"),
        {
            content: "The account's error tag is on the order",
            trigger: ".o_field_widget[name=tag_ids] .o_tag:contains(inFakt error)",
        },
        // Fix: the bank account changed in inFakt; read it again and choose it.
        ...openInfaktAccountsSteps(),
        {
            content: "The card counts the document in error",
            trigger: ".o_kanban_record:contains(inFakt test) a:contains(1 in error)",
        },
        {
            content: "Open the account",
            trigger: ".o_kanban_record:contains(inFakt test) .fw-bold",
            run: "click",
        },
        markFormStale(),
        {
            content: "Refresh bank accounts",
            trigger: ".o_form_statusbar button[name=action_refresh_bank_accounts]",
            run: "click",
        },
        {
            trigger: ".o_notification:contains(read from inFakt)",
        },
        waitFormReloaded(),
        openNotebookPage("Basic Configuration"),
        {
            // Opened without typing: the list holds the accounts read from inFakt.
            content: "Choose the new bank account",
            trigger: ".o_field_widget[name=bank_account_id] input",
            run: "click",
        },
        {
            trigger: `.o-autocomplete--dropdown-menu .dropdown-item:contains(${NEW_BANK_NAME})`,
            run: "click",
        },
        {
            trigger: `.o_field_widget[name=bank_account_id] input:value(/${NEW_BANK_NAME}/)`,
        },
        ...stepUtils.saveForm(),
        // Back to the invoice: Invoicing → Customers → Invoices, filter "inFakt: in error".
        {
            content: "Open the customer invoices",
            trigger: '.o_menu_sections [data-menu-xmlid="account.menu_finance_receivables"]',
            run: "click",
        },
        {
            trigger: '.o-dropdown-item[data-menu-xmlid="account.menu_action_move_out_invoice_type"]',
            run: "click",
        },
        {
            trigger: ".o_list_view .o_data_row",
        },
        {
            content: "Open the filters",
            trigger: ".o_searchview_dropdown_toggler",
            run: "click",
        },
        {
            content: "Filter the invoices in error",
            trigger: ".o_filter_menu .o-dropdown-item:contains(inFakt: in error)",
            run: "click",
        },
        {
            content: "Exactly the invoice in error is listed",
            trigger: ".o_list_view .o_data_row .o_field_widget[name=infakt_state]:contains(Error)",
            run() {
                const rows = document.querySelectorAll(".o_list_view .o_data_row");
                assert(rows.length === 1, `${rows.length} invoices in error, expected 1`);
            },
        },
        {
            trigger: ".o_list_view .o_data_row .o_data_cell[name=name]",
            run: "click",
        },
        {
            content: "Send again to inFakt",
            trigger: ".o_statusbar_buttons button[name=action_infakt_send_again]",
            run: "click",
        },
        {
            content: "The error is gone; the invoice is on its way again",
            trigger: ".o_form_view:not(:has(.alert-danger)) .alert-info:contains(on its way to inFakt)",
        },
        {
            trigger: ".o_form_view:not(:has(button[name=action_infakt_send_again])) button[name=action_infakt_view_documents]:contains(To send)",
        },
    ],
});
