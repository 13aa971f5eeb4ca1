/** @odoo-module **/
/*
 * The reconciliation of a month with inFakt (run by tests/test_tours_reconciliation.py against
 * the inFakt simulator; the Python side runs the reconciliation job between the two tours).
 */

import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

const tours = registry.category("web_tour.tours");
// Shared with tests/test_tours_reconciliation.py.
const ONLY_IN_INFAKT = "R/1/TOUR";
const LINES = ".o_field_widget[name=line_ids]";

tours.add("l10n_pl_infakt_reconcile_start", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("account.menu_finance", "Open Invoicing"),
        {
            content: "Open the inFakt menu",
            trigger: '.o_menu_sections [data-menu-xmlid="l10n_pl_infakt.menu_infakt_root"]',
            run: "click",
        },
        {
            content: "Reconciliation",
            trigger:
                '.o-dropdown-item[data-menu-xmlid="l10n_pl_infakt.menu_infakt_reconciliation"]',
            run: "click",
        },
        {
            content: "Nothing reconciled yet: the help says what it is for",
            trigger: ".o_view_nocontent:contains(Reconcile a month with inFakt)",
        },
        // The same list is reachable from the inFakt account.
        {
            content: "Open the Configuration menu",
            trigger: '.o_menu_sections [data-menu-xmlid="account.menu_finance_configuration"]',
            run: "click",
        },
        {
            content: "inFakt Accounts",
            trigger: '.o-dropdown-item[data-menu-xmlid="l10n_pl_infakt.menu_infakt_accounts"]',
            run: "click",
        },
        {
            content: "Open the account",
            trigger: ".o_kanban_record:contains(inFakt test)",
            run: "click",
        },
        {
            content: "Reconcile a month, from the account",
            trigger: ".o_form_view .o_statusbar_buttons button:contains(Reconcile a month)",
            run: "click",
        },
        {
            content: "The reconciliations of this account",
            trigger: ".o_searchview .o_facet_value:contains(inFakt test)",
        },
        {
            content: "New reconciliation",
            trigger: ".o_control_panel_main_buttons .o_list_button_add",
            run: "click",
        },
        {
            content: "The account is proposed",
            trigger: ".o_field_widget[name=account_id] input:value(inFakt test)",
        },
        {
            content: "The last month is proposed",
            trigger: ".o_field_widget[name=date_from] input:not(:value(''))",
        },
        {
            content: "Start",
            trigger: ".o_form_view .o_statusbar_buttons button[name=action_start]",
            run: "click",
        },
        {
            content: "It runs in the background, with its progress",
            trigger: ".o_form_view .alert-info:contains(Reading inFakt's documents)",
        },
        {
            trigger: ".o_form_view .o_field_widget[name=progress] .o_progressbar",
        },
    ],
});

tours.add("l10n_pl_infakt_reconcile_fix", {
    steps: () => [
        {
            content: "One invoice is missing in inFakt",
            trigger:
                ".oe_stat_button:contains(Missing in inFakt) .o_stat_value:contains(1)",
        },
        {
            content: "Its row says what to do",
            trigger: `${LINES} .o_data_row:contains(Missing in inFakt):contains(send it)`,
        },
        {
            content: "Send it from its row",
            trigger: `${LINES} .o_data_row:contains(Missing in inFakt) button[name=action_send]`,
            run: "click",
        },
        {
            content: "The row is done: no Send button any more",
            trigger:
                `${LINES} .o_data_row:contains(Missing in inFakt):contains(Sent to inFakt):not(:has(button[name=action_send]))`,
        },
        {
            content: "The documents only inFakt holds",
            trigger: ".oe_stat_button:contains(Only in inFakt)",
            run: "click",
        },
        {
            content: "Filtered by kind, ready to export",
            trigger: `.o_searchview .o_facet_value:contains(Only in inFakt)`,
        },
        {
            content: "Select the rows to export them",
            trigger: `.o_list_view .o_data_row:contains(${ONLY_IN_INFAKT}) .o_list_record_selector input`,
            run: "click",
        },
        {
            content: "The Action menu",
            trigger: ".o_control_panel .o_cp_action_menus button",
            run: "click",
        },
        {
            content: "offers Export",
            trigger: ".o-dropdown--menu .o-dropdown-item:contains(Export)",
        },
    ],
});
