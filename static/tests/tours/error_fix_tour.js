/** @odoo-module **/
/*
 * The whole error -> fix -> send again path, with the user in Polish (run by
 * tests/test_tours_errors.py against the inFakt simulator): inFakt refused the invoice because
 * the company changed banks; the banner says it in Polish and links to the inFakt account,
 * where the user reads the bank accounts again; back on the invoice, Send again.
 */

import { registry } from "@web/core/registry";

const tours = registry.category("web_tour.tours");

tours.add("l10n_pl_infakt_error_fix_pl", {
    steps: () => [
        {
            content: "The banner says in Polish that the invoice is not in inFakt, and why",
            trigger:
                ".o_form_view .alert-danger:contains(Tego dokumentu nie ma jeszcze w inFakt):contains(konto bankowe do przelewów)",
        },
        {
            content: "The chatter tells the failure in Polish",
            trigger: ".o-mail-Chatter .o-mail-Message:contains(Wysyłanie do inFakt nie powiodło się)",
        },
        {
            content: "The activity asks, in Polish, to fix and send again",
            trigger: ".o-mail-Chatter .o-mail-Activity:contains(inFakt: popraw i wyślij ponownie)",
        },
        {
            content: "The banner links to the inFakt account (bank accounts)",
            trigger:
                ".o_form_view .alert-danger button[name=action_infakt_open_fix]:contains(Otwórz konto inFakt (Odśwież konta bankowe))",
            run: "click",
        },
        {
            content: "The inFakt account is open",
            trigger: ".o_form_view .o_form_statusbar button[name=action_refresh_bank_accounts]",
        },
        {
            content: "Read the bank accounts from inFakt again",
            trigger: ".o_form_statusbar button[name=action_refresh_bank_accounts]",
            run: "click",
        },
        {
            trigger: ".o_notification:contains(Odczytano konta bankowe z inFakt)",
        },
        {
            content: "Back to the invoice (the breadcrumb before the account)",
            trigger: ".o_breadcrumb .breadcrumb-item:last-of-type a",
            run: "click",
        },
        {
            content: "Send again to inFakt (in Polish)",
            trigger:
                ".o_statusbar_buttons button[name=action_infakt_send_again]:contains(Wyślij ponownie do inFakt)",
            run: "click",
        },
        {
            content: "The invoice is on its way again (no error banner)",
            trigger: ".o_form_view:not(:has(.alert-danger:visible)) .alert-info:visible",
        },
    ],
});
