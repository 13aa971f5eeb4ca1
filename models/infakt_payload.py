import re
from decimal import Decimal

from odoo import models
from odoo.exceptions import UserError
from odoo.tools import float_round, html2plaintext

from .. import const
from ..infakt_api import payload as infakt_payload
from ..infakt_api.money import round_to_int, to_grosze


def _decimal(value):
    return Decimal(str(value))


def _tax_id_key(value):
    """A buyer tax id as inFakt keeps it, for comparisons: letters and digits, upper case,
    without the PL prefix of a Polish NIP."""
    text = re.sub(r"[^0-9A-Za-z]", "", str(value or "")).upper()
    if text.startswith("PL") and text[2:].isdigit():
        text = text[2:]
    return text


class _LegalContent:
    """What the lines of one document say about its legal content (JPK_V7, KSeF), gathered
    while the lines are mapped: exemption bases of the ``zw`` lines, markings and words the
    taxes bring, whether goods or services are sold, Annex 15 products."""

    def __init__(self, account):
        self.account = account
        self.exemptions = set()  # inFakt ids of the bases of 'zw' lines (None: the tax has none)
        self.markings = []       # inFakt marking codes, in order, once each
        self.notes = []          # words the law requires on the invoice, once each
        self.kinds = set()       # "goods", "services"
        self.annex_15 = False    # a product of Annex 15 (split payment)
        self.templates = {}      # tax id -> chart template id (cache)

    def add(self, items, item):
        if item and item not in items:
            items.append(item)


class InfaktPayload(models.AbstractModel):
    """The Odoo -> inFakt mapping of an invoice or credit note: plain values for the builders
    of ``infakt_api.payload`` (which know inFakt's format), and what identifies a document sent
    to inFakt. Everything that cannot be sent raises a :class:`UserError` that names what to
    fix; nothing here talks to inFakt."""

    _name = "infakt.payload"
    _description = "inFakt: invoice and credit note payloads"

    # ------------------------------------------------------------------------------------
    # Parts
    # ------------------------------------------------------------------------------------
    def _payment_method(self, move, account):
        """The inFakt payment method: from the provider / method of the payment transactions,
        else the payment terms, else the account default."""
        transactions = move.sudo().transaction_ids | move._infakt_sale_orders().transaction_ids
        transactions = transactions.filtered(lambda t: t.state in ("authorized", "done")) or \
            transactions
        providers = transactions.provider_id
        methods = transactions.payment_method_id
        best = None
        for mapping in account.payment_mapping_ids:
            score = mapping._match_score(providers, methods, move.invoice_payment_term_id)
            if score is not None and (best is None or score > best[0]):
                best = (score, mapping)
        if best is None:
            raise const.fixable(UserError(self.env._(
                "No payment method mapping of the inFakt account %(account)s fits the invoice "
                "%(invoice)s: add a default line (no provider, method or payment term) to the "
                "Payment Method Mapping.", account=account.name, invoice=move.name)), "payment")
        return best[1].infakt_payment_method

    def _buyer_values(self, move):
        partner = move.partner_id
        commercial = partner.commercial_partner_id
        street = " ".join(filter(None, [partner.street, partner.street2]))
        is_company = bool(commercial.is_company or commercial.vat)
        name = commercial.name or partner.name or ""
        if not name.strip():
            raise const.fixable(
                UserError(self.env._("The customer of %s has no name.", move.name)),
                "customer", commercial)
        return {
            "is_company": is_company,
            "company_name": name if is_company else None,
            "name": name,
            "nip": commercial.vat or None,
            "street": street or None,
            "city": partner.city or None,
            "post_code": partner.zip or None,
            "country": (partner.country_id or commercial.country_id).code or "PL",
            "email": partner.email or None,
        }

    def _line_tax(self, move, line):
        taxes = line.tax_ids.filtered(lambda t: t.amount_type != "group") | line.tax_ids.filtered(
            lambda t: t.amount_type == "group").children_tax_ids
        if len(taxes) != 1:
            raise UserError(self.env._(
                "The line \"%(line)s\" of %(invoice)s must have exactly one tax: inFakt takes one "
                "tax rate per line.", line=self._line_label(move, line), invoice=move.name))
        return taxes

    def _line_label(self, move, line):
        return (line.name or line.product_id.display_name or "").strip() or "-"

    def _tax_profile(self, tax, legal):
        """What ``tax`` is in inFakt (see ``account.tax._infakt_profile``), the chart's
        template ids read once per document."""
        if tax.id not in legal.templates:
            legal.templates.update(tax._infakt_template_ids())
            legal.templates.setdefault(tax.id, None)
        return tax._infakt_profile(legal.templates)

    def _line_values(self, move, line, legal):
        """Plain values of one invoice line (see ``infakt_api.payload.build_service``)."""
        return self._priced_line(
            move, legal, label=self._line_label(move, line), product=line.product_id,
            uom=line.product_uom_id, quantity=line.quantity, price_unit=line.price_unit,
            discount=line.discount, tax=self._line_tax(move, line),
            subtotal=line.price_subtotal, total=line.price_total)

    def _order_line_values(self, move, line, legal):
        """Plain values of one sale order line (the lines of an advance invoice)."""
        taxes = line.tax_id.filtered(lambda t: t.amount_type != "group") | line.tax_id.filtered(
            lambda t: t.amount_type == "group").children_tax_ids
        label = (line.name or line.product_id.display_name or "").strip() or "-"
        if len(taxes) != 1:
            raise UserError(self.env._(
                "The line \"%(line)s\" of the order %(order)s must have exactly one tax: inFakt "
                "takes one tax rate per line.", line=label, order=line.order_id.name))
        return self._priced_line(
            move, legal, label=label, product=line.product_id, uom=line.product_uom,
            quantity=line.product_uom_qty, price_unit=line.price_unit, discount=line.discount,
            tax=taxes, subtotal=line.price_subtotal, total=line.price_total)

    def _priced_line(self, move, legal, *, label, product, uom, quantity, price_unit, discount,
                     tax, subtotal, total):
        profile = self._tax_profile(tax, legal)
        symbol = profile["symbol"]
        if not symbol:
            raise const.fixable(UserError(self.env._(
                "The tax %(tax)s cannot be sent to inFakt: set its inFakt Tax Symbol (Invoicing > "
                "Configuration > Taxes).", tax=tax.display_name)), "tax", tax)
        if symbol == "zw":
            legal.exemptions.add(tax._infakt_exemption_id())
        for code in profile["markings"]:
            legal.add(legal.markings, code)
        legal.add(legal.notes, profile["note"])
        if product.type == "service" or (not product and tax.tax_scope == "service"):
            legal.kinds.add("services")
        elif product or tax.tax_scope == "consu":
            legal.kinds.add("goods")
        legal.annex_15 = legal.annex_15 or bool(product.infakt_split_payment)
        if discount and not 0 < discount <= 100:
            raise UserError(self.env._(
                "The line \"%(line)s\" of %(invoice)s has a discount of %(discount)s %%: inFakt "
                "takes discounts between 0 and 100 %%. Put a negative discount into the price "
                "instead.", line=label, invoice=move.name, discount=discount))
        quantity = _decimal(quantity)
        if quantity <= 0:
            raise UserError(self.env._(
                "The line \"%(line)s\" of %(invoice)s has a quantity of %(quantity)s: inFakt takes "
                "positive quantities (issue a credit note to take something back).",
                line=label, invoice=move.name, quantity=quantity))
        values = {
            "name": label,
            "quantity": quantity,
            "unit": uom.name or "szt.",
            "tax_symbol": symbol,
            "gtu_id": self._gtu_id(legal.account, product),
            # What identifies the line for corrections (not sent).
            "_key": (product.id, _decimal(price_unit), _decimal(discount), tax.id),
            "_price_unit": price_unit,
        }
        subtotal = _decimal(subtotal)
        # The net Odoo computed: sent on every line (a corrective row is priced from net only;
        # an invoice row of a tax-included line is priced from its gross, the net left out).
        values.update({"unit_net_price": subtotal / quantity, "net_price": subtotal})
        if tax.price_include:
            values.update({"price_mode": "gross", "gross_price": _decimal(total)})
        else:
            values["price_mode"] = "net"
            if discount:
                values.update({"discount": _decimal(discount),
                               "unit_net_price_before_discount": _decimal(price_unit)})
        return values

    def _gtu_id(self, account, product):
        """inFakt's id of the product's GTU code (l10n_pl's GTU Codes), None without one."""
        code = product.l10n_pl_vat_gtu if product else False
        if not code:
            return None
        gtu_id = account._infakt_list_id("gtu_ids_by_code", code)
        if not gtu_id:
            raise UserError(self.env._(
                "The product %(product)s has the GTU code %(code)s, which the inFakt account "
                "%(account)s does not know: click Refresh inFakt lists on the account.",
                product=product.display_name, code=code, account=account.name))
        return gtu_id

    def _lines(self, move):
        return move.invoice_line_ids.filtered(lambda line: line.display_type == "product")

    def _common_values(self, move, account):
        payment_method = self._payment_method(move, account)
        values = {
            "buyer": infakt_payload.build_buyer(self._buyer_values(move)),
            "invoice_date": move.invoice_date,
            "sale_date": getattr(move, "delivery_date", False) or move.invoice_date,
            "payment_date": move.invoice_date_due or move.invoice_date,
            "number": move.name,
            "check_duplicate_number": True,
            "currency": move.currency_id.name,
            "payment_method": payment_method,
            "notes": (html2plaintext(move.narration or "") or "")[:3500] or None,
        }
        if move.currency_id.name != "PLN":
            values["vat_exchange_date_kind"] = "vat"
        if payment_method == "transfer":
            bank = account.bank_account_id
            if not bank:
                raise const.fixable(UserError(self.env._(
                    "The invoice is paid by transfer but the inFakt account %s has no Bank Account "
                    "for Transfers: open the account, click Refresh bank accounts and choose one.",
                    account.name)), "bank")
            values["bank_account"] = bank.account_number
        return values

    def _exemption_reason(self, move, account, exemption_reasons):
        if not exemption_reasons:
            return None
        reasons = {r for r in exemption_reasons if r}
        if len(reasons) > 1:
            raise UserError(self.env._(
                "The lines of %s use different VAT exemption bases; inFakt takes one per "
                "invoice.", move.name))
        reason = next(iter(reasons), None) or account.vat_exemption_id.infakt_id
        legacy = (account.vat_exemption_reason or "").strip()
        if not reason and legacy.isdigit():
            reason = int(legacy)
        if not reason:
            raise const.fixable(UserError(self.env._(
                "Lines taxed 'zw' need a VAT exemption basis: choose it on the tax (VAT Exemption "
                "Basis), or a Default VAT Exemption Basis on the inFakt account %s.",
                account.name)), "tax")
        return reason

    # ------------------------------------------------------------------------------------
    # Legal content: exemption basis, GTU (per line), markings, split payment, sale type
    # ------------------------------------------------------------------------------------
    def _legal_values(self, move, account, legal, split_payment_type=None):
        """The document fields of the legal content gathered from the lines."""
        markings = list(legal.markings)
        partner = move.partner_id.commercial_partner_id
        if partner.l10n_pl_links_with_customer:
            legal.add(markings, const.TP_MARKING_CODE)
        for field, code in const.L10N_PL_MOVE_MARKINGS.items():
            if move[field]:
                legal.add(markings, code)
        marking_ids = []
        for code in markings:
            marking_id = account._infakt_list_id("marking_ids_by_code", code)
            if not marking_id:
                raise UserError(self.env._(
                    "The invoice %(invoice)s needs the document marking %(code)s, which the "
                    "inFakt account %(account)s does not know: click Refresh inFakt lists on "
                    "the account.", invoice=move.name, code=code, account=account.name))
            marking_ids.append(marking_id)
        country = (move.partner_id.country_id or partner.country_id).code or "PL"
        sale_type = None
        if country != "PL" and legal.kinds:
            sale_type = "merchandise" if "goods" in legal.kinds else "service"
        return {
            "vat_exemption_reason": self._exemption_reason(move, account, legal.exemptions),
            "document_markings_ids": marking_ids or None,
            "sale_type": sale_type,
            "split_payment_type": split_payment_type,
        }

    def _split_payment_type(self, move, legal, gross):
        """``required`` where the law requires split payment (art. 108a ust. 1a: a total above
        15 000 PLN for Annex 15 goods or services, between Polish taxable persons) or the
        invoice says so, ``optional`` when the invoice says so, else None. ``gross``: the total
        the threshold is read on, in the invoice's currency (decimal)."""
        if move.infakt_split_payment == "required" or self._split_payment_required(
                move, legal, gross):
            return "required"
        return move.infakt_split_payment or None

    def _split_payment_required(self, move, legal, gross):
        partner = move.partner_id.commercial_partner_id
        country = (move.partner_id.country_id or partner.country_id).code or "PL"
        if not legal.annex_15 or country != "PL" or not partner.vat:
            return False
        company_currency = move.company_id.currency_id
        amount = _decimal(gross)
        if move.currency_id != company_currency and move.amount_total:
            amount = amount * _decimal(abs(move.amount_total_signed)) / _decimal(
                move.amount_total)
        if company_currency.name != "PLN":
            amount = _decimal(company_currency._convert(
                float(amount), self.env.ref("base.PLN"), move.company_id,
                move.invoice_date or move.date))
        return amount > const.SPLIT_PAYMENT_THRESHOLD_PLN

    def _with_notes(self, values, legal):
        """The invoice notes followed by the words the law requires."""
        notes = [values.get("notes") or ""] + [n for n in legal.notes
                                               if n not in (values.get("notes") or "")]
        values["notes"] = "\n".join(n for n in notes if n)[:3500] or None
        return values

    def _check_unit_prices(self, move, lines):
        """inFakt keeps unit prices in grosze: a unit price with more than two decimals would be
        printed rounded, and its line would not add up (e.g. 33.333 x 3 = 100.00 printed as
        33.33 x 3)."""
        for line in lines:
            if line.get("price_mode") != "net" or "_price_unit" not in line:
                continue
            price_unit = line["_price_unit"]
            if float_round(price_unit, precision_digits=2) == price_unit:
                continue
            unit = to_grosze(line["unit_net_price"])
            if round_to_int(_decimal(unit) * line["quantity"]) != to_grosze(line["net_price"]):
                raise UserError(self.env._(
                    "Not sent to inFakt: the unit price %(price)s of the line \"%(line)s\" of "
                    "%(invoice)s has more than two decimals. inFakt keeps prices in grosze, so "
                    "the line would not add up on the legal invoice. Round the unit price to two "
                    "decimals (reset the invoice to draft, change it, post it again).",
                    price=price_unit, line=line["name"], invoice=move.name))

    @staticmethod
    def _plain_lines(lines):
        """The line values without the keys that are not sent."""
        return [{k: v for k, v in line.items() if not k.startswith("_")} for line in lines]

    # ------------------------------------------------------------------------------------
    # Invoices
    # ------------------------------------------------------------------------------------
    def _invoice(self, move, account):
        kind = self._document_type(move)
        if kind != "invoice":
            raise UserError(self._not_a_plain_invoice(move, kind))
        legal = _LegalContent(account)
        lines = [self._line_values(move, line, legal) for line in self._lines(move)]
        if not lines:
            raise UserError(self.env._("The invoice %s has no lines to send.", move.name))
        self._check_unit_prices(move, lines)
        values = self._with_notes(self._common_values(move, account), legal)
        buyer = values.pop("buyer")
        split = self._split_payment_type(move, legal, move.amount_total)
        return infakt_payload.build_invoice(
            lines=self._plain_lines(lines), buyer=buyer,
            **self._legal_values(move, account, legal, split), **values)

    def _not_a_plain_invoice(self, move, kind):
        if kind == "advance":
            return self.env._(
                "%s is a down payment invoice: it is an advance invoice (faktura zaliczkowa) in "
                "Polish law and is sent to inFakt as one, never as a plain invoice.", move.name)
        return self.env._(
            "%s deducts down payments: it is a final invoice (faktura końcowa) in Polish law "
            "and is sent to inFakt as one, never as a plain invoice.", move.name)

    # ------------------------------------------------------------------------------------
    # Down payments: advance invoices (faktura zaliczkowa) and final invoices (końcowa)
    # ------------------------------------------------------------------------------------
    def _document_type(self, move, default="invoice"):
        """What a customer invoice is in inFakt: ``advance`` (a down payment invoice of a sale
        order), ``final`` (an invoice that deducts down payments) or ``default``."""
        if default != "invoice" or move.move_type != "out_invoice":
            return default
        # Odoo marks the lines of down payments themselves (is_downpayment, copied from the
        # order line): without any, the invoice is neither (and posting reads no order lines).
        if not self._deduction_lines(move):
            return default
        if move._is_downpayment():
            return "advance"
        return "final"

    def _deduction_lines(self, move):
        return move.invoice_line_ids.filtered(
            lambda line: line.display_type == "product" and line.is_downpayment)

    def _down_payment_order(self, move):
        orders = move.sudo().line_ids.sale_line_ids.order_id
        if len(orders) != 1:
            raise UserError(self.env._(
                "%(invoice)s settles down payments of %(count)s sale orders: inFakt chains the "
                "advance invoices of one order, so invoice each order on its own.",
                invoice=move.name, count=len(orders)))
        return orders

    def _order_advances(self, order):
        """The posted down payment invoices of ``order``, in the order they were made."""
        return order.sudo().invoice_ids.filtered(
            lambda m: m.move_type == "out_invoice" and m.state == "posted"
            and m._is_downpayment()).sorted("id")

    def _advances_needed(self, move, document_type):
        """The down payment invoices that must be in inFakt before ``move`` is sent: for an
        advance, the earlier advances of its order (inFakt chains them); for a final invoice,
        the advances it deducts."""
        if document_type == "advance":
            orders = move.sudo().line_ids.sale_line_ids.order_id
            if len(orders) != 1:
                return move.browse()
            return self._order_advances(orders).filtered(lambda m: m.id < move.id)
        if document_type == "final":
            return self._deduction_lines(move).sale_line_ids.invoice_lines.move_id.filtered(
                lambda m: m != move and m.move_type == "out_invoice" and m.state == "posted"
                and m._is_downpayment()).sorted("id")
        return move.browse()

    def _advance_documents(self, move, advances):
        """The inFakt documents of ``advances``; refused unless every one is in inFakt."""
        documents = self.env["infakt.document"]
        for advance in advances:
            document = advance.sudo().infakt_document_id
            if not document or document.state != "done" or not document.infakt_id:
                raise UserError(self.env._(
                    "%(invoice)s needs the down payment invoice %(advance)s in inFakt first "
                    "(inFakt links the advance and final invoices of an order): send "
                    "%(advance)s to inFakt, then send %(invoice)s again.",
                    invoice=move.name, advance=advance.name))
            documents |= document
        return documents

    def _advance_invoice(self, move, document):
        """A down payment invoice -> inFakt advance invoice: the whole order as its lines, the
        down payment as ``advance_price``, the previous advance of the order linked."""
        account = document.account_id
        order = self._down_payment_order(move)
        previous = self._advance_documents(move, self._advances_needed(move, "advance"))
        legal = _LegalContent(account)
        order_lines = order.order_line.filtered(
            lambda line: not line.display_type and not line.is_downpayment
            and line.product_uom_qty > 0)
        lines = [self._order_line_values(move, line, legal) for line in order_lines]
        if not lines:
            raise UserError(self.env._(
                "The order %(order)s of the down payment invoice %(invoice)s has no lines to "
                "send.", order=order.name, invoice=move.name))
        self._check_unit_prices(move, lines)
        # inFakt states the VAT of the advance by the rates of the order's lines: the down
        # payment must be taxed as the order is.
        order_symbols = {line["tax_symbol"] for line in lines}
        for line in self._lines(move):
            symbol = self._line_values(move, line, _LegalContent(account))["tax_symbol"]
            if symbol not in order_symbols:
                raise UserError(self.env._(
                    "The down payment invoice %(invoice)s is taxed %(symbol)s, which no line of "
                    "the order %(order)s is: inFakt states the VAT of an advance by the rates of "
                    "the order. Use the taxes of the order on the down payment.",
                    invoice=move.name, symbol=symbol, order=order.name))
        values = self._with_notes(self._common_values(move, account), legal)
        buyer = values.pop("buyer")
        sale_date = values.pop("sale_date")
        split = self._split_payment_type(move, legal, order.amount_total)
        return infakt_payload.build_advance_invoice(
            lines=self._plain_lines(lines), buyer=buyer, advance_price=move.amount_total,
            advance_date=sale_date, previous_advance_id=previous[-1:].infakt_id or None,
            **self._legal_values(move, account, legal, split), **values)

    def _final_invoice(self, move, document):
        """An invoice that deducts down payments -> inFakt final invoice: its other lines as the
        lines, the last advance of the order linked (inFakt deducts the whole chain)."""
        account = document.account_id
        self._down_payment_order(move)
        deductions = self._deduction_lines(move)
        if any(line.price_total >= 0 for line in deductions):
            raise UserError(self.env._(
                "%s has a down payment line that deducts nothing: a final invoice only deducts "
                "down payments (remove that line).", move.name))
        advances = self._advances_needed(move, "final")
        order_advances = self._order_advances(self._down_payment_order(move))
        missing = order_advances - advances
        if missing:
            raise UserError(self.env._(
                "%(invoice)s does not deduct the down payment invoice(s) %(missing)s of its "
                "order: inFakt's final invoice deducts every advance invoice of the order. "
                "Deduct them all (reset to draft and add the down payment lines).",
                invoice=move.name, missing=", ".join(missing.mapped("name"))))
        documents = self._advance_documents(move, advances)
        deducted = -sum(to_grosze(line.price_total) for line in deductions)
        paid = sum(to_grosze(advance.amount_total) for advance in advances)
        if deducted != paid:
            raise UserError(self.env._(
                "%(invoice)s deducts %(deducted)s but its down payment invoices total %(paid)s: "
                "inFakt deducts the advance invoices as they are. Deduct each down payment in "
                "full.", invoice=move.name, deducted=deducted / 100, paid=paid / 100))
        legal = _LegalContent(account)
        lines = [self._line_values(move, line, legal)
                 for line in self._lines(move) - deductions]
        if not lines:
            raise UserError(self.env._(
                "%s only deducts down payments: a final invoice needs the lines it settles.",
                move.name))
        self._check_unit_prices(move, lines)
        values = self._with_notes(self._common_values(move, account), legal)
        buyer = values.pop("buyer")
        gross = move.amount_total + sum(advance.amount_total for advance in advances)
        split = self._split_payment_type(move, legal, gross)
        return infakt_payload.build_final_invoice(
            lines=self._plain_lines(lines), buyer=buyer,
            previous_advance_id=documents[-1:].infakt_id,
            **self._legal_values(move, account, legal, split), **values)

    # ------------------------------------------------------------------------------------
    # Totals: what inFakt will compute, checked against Odoo before anything is sent
    # ------------------------------------------------------------------------------------
    def _expected_totals(self, move, document_type):
        """The totals (grosze) the payload must add up to, as inFakt adds them up."""
        if document_type == "advance":
            order = self._down_payment_order(move)
            return {"net": to_grosze(order.amount_untaxed), "tax": to_grosze(order.amount_tax),
                    "gross": to_grosze(order.amount_total)}
        net = to_grosze(move.amount_untaxed)
        gross = to_grosze(move.amount_total)
        if document_type == "final":
            deductions = self._deduction_lines(move)
            net -= sum(to_grosze(line.price_subtotal) for line in deductions)
            gross -= sum(to_grosze(line.price_total) for line in deductions)
        if document_type == "correction":
            net, gross = -net, -gross
        return {"net": net, "tax": gross - net, "gross": gross}

    def _check_totals(self, move, document_type, payload):
        """Refuse (before anything legal exists) a payload whose totals, as inFakt computes
        them line by line, differ from the invoice's."""
        differences = infakt_payload.totals_differences(
            payload, self._expected_totals(move, document_type))
        if not differences:
            return
        labels = {"net": self.env._("net"), "tax": self.env._("VAT"),
                  "gross": self.env._("gross")}
        # Amounts formatted outside the _() calls: Odoo's term extractor cannot read f-strings
        # inside them (it would skip every term of this file).
        amounts = {key: ("%.2f" % (value["infakt"] / 100), "%.2f" % (value["expected"] / 100))
                   for key, value in differences.items()}
        found = "; ".join(
            self.env._("%(total)s %(infakt)s in inFakt, %(odoo)s in Odoo",
                       total=labels[key], infakt=infakt_amount, odoo=odoo_amount)
            for key, (infakt_amount, odoo_amount) in amounts.items())
        fixes = []
        company = move.company_id
        if company.tax_calculation_rounding_method == "round_globally":
            fixes.append(self.env._(
                "%s computes taxes with Round globally, inFakt rounds the VAT of each line: choose "
                "Round per line (Invoicing > Configuration > Settings > Taxes).", company.name))
        if move.invoice_cash_rounding_id or move.line_ids.filtered(
                lambda line: line.display_type == "rounding"):
            fixes.append(self.env._(
                "The invoice uses a cash rounding, which inFakt does not know: remove it from "
                "the invoice."))
        if move.line_ids.filtered(lambda line: line.display_type == "epd"):
            fixes.append(self.env._(
                "The payment terms give an early payment discount on the taxes, which inFakt "
                "does not know: use payment terms without it."))
        if not fixes:
            fixes.append(self.env._("Check the prices, discounts and taxes of the lines."))
        fix_lines = "\n".join("- " + fix for fix in fixes)
        raise UserError(self.env._(
            "Not sent to inFakt: the totals inFakt would compute differ from the invoice "
            "(%(differences)s). Nothing was created in inFakt. Fix, then send again "
            "(reset the invoice to draft if needed):\n%(fixes)s",
            differences=found, fixes=fix_lines))

    def _remote_amounts(self, document, remote):
        """``{key: (Odoo, inFakt)}`` grosze of what inFakt read back, to tell whether its
        document has the invoice's totals; and the total to show (major units, None unknown)."""

        def number(value):
            try:
                return int(value) if value is not None else None
            except (TypeError, ValueError):
                return None

        move = document.move_id
        if document.document_type == "advance":
            actual = number(remote.get("advance_price"))
            pairs = {"advance_price": (to_grosze(move.amount_total), actual)}
            return pairs, (actual / 100 if actual is not None else None)
        if document.document_type == "final":
            gross = number(remote.get("gross_price"))
            advances = remote.get("previous_advances") or []
            try:
                paid = sum(int(a.get("advance_price") or 0) for a in advances)
            except (TypeError, ValueError, AttributeError):
                paid = None
            actual = gross - paid if gross is not None and paid is not None else None
            pairs = {"left_to_pay": (to_grosze(move.amount_total), actual)}
            return pairs, (actual / 100 if actual is not None else None)
        sign = -1 if document.document_type == "correction" else 1
        pairs = {
            "net_price": (sign * to_grosze(move.amount_untaxed), number(remote.get("net_price"))),
            "tax_price": (sign * to_grosze(move.amount_tax), number(remote.get("tax_price"))),
            "gross_price": (sign * to_grosze(move.amount_total),
                            number(remote.get("gross_price"))),
        }
        gross = number(remote.get("gross_price"))
        return pairs, (sign * gross / 100 if gross is not None else None)

    # ------------------------------------------------------------------------------------
    # Credit notes -> corrective invoices
    # ------------------------------------------------------------------------------------
    def _corrective_invoice(self, move, document):
        """Credit note -> inFakt corrective invoice: before/after pairs per line."""
        account = document.account_id
        origin = move.reversed_entry_id
        origin_document = origin.sudo().infakt_document_id if origin else origin
        if not origin_document or origin_document.state != "done":
            raise UserError(self.env._(
                "The credit note %(name)s corrects %(origin)s, which is not in inFakt: send the "
                "original invoice to inFakt first.", name=move.name,
                origin=origin.name or self.env._("an invoice unknown to Odoo")))
        legal = _LegalContent(account)
        pairs = self._correction_pairs(origin, move, legal)
        values = self._with_notes(self._common_values(move, account), legal)
        buyer = values.pop("buyer")
        values.pop("sale_date", None)
        # A correction of a split payment invoice is marked as its invoice was.
        split = self._split_payment_type(origin, legal, origin.amount_total)
        return infakt_payload.build_corrective_invoice(
            pairs=pairs, buyer=buyer,
            corrected_invoice_number=origin_document.infakt_number or origin_document.number,
            corrected_invoice_uuid=origin_document.infakt_uuid,
            corrected_invoice_date=origin.invoice_date,
            correction_reason="other",
            **self._legal_values(move, account, legal, split),
            **values,
        )

    def _correction_pairs(self, move, credit_note, legal):
        """Before/after line pairs: the original lines, each reduced by what the credit note
        takes back. "Before" already counts the earlier credit notes that reached inFakt."""
        earlier = move.reversal_move_ids.filtered(
            lambda m: m.state == "posted" and m.id < credit_note.id
            and m.sudo().infakt_document_id.state == "done")
        before_lines = [self._line_values(move, line, legal) for line in self._lines(move)]
        self._check_unit_prices(move, before_lines)
        before = self._apply_refunds(move, before_lines, earlier, legal)
        after = self._apply_refunds(move, before, credit_note, legal)
        pairs = [(old, new) for old, new in zip(self._plain_lines(before),
                                                self._plain_lines(after), strict=True)
                 if old != new]
        if not pairs:
            raise UserError(self.env._("The credit note %s changes nothing on the invoice.",
                                       credit_note.name))
        return pairs

    def _apply_refunds(self, move, lines, refunds, legal):
        """``lines`` less the lines of ``refunds``. A refund line takes back from the invoice
        line with the same product, unit price, discount and tax (a quantity returned); failing
        that, from the only line of the same product and tax (a value corrected, e.g. a
        discount granted later). Each invoice line is matched at most once per refund."""
        result = [dict(line) for line in lines]
        for refund in refunds:
            used = set()
            for refund_line in self._lines(refund):
                values = self._line_values(refund, refund_line, legal)
                key = values["_key"]
                index = next((i for i, line in enumerate(result)
                              if i not in used and line["_key"] == key), None)
                same_quantity = False
                if index is None:
                    candidates = [i for i, line in enumerate(result) if i not in used
                                  and (line["_key"][0], line["_key"][3]) == (key[0], key[3])]
                    if len(candidates) == 1:
                        index, same_quantity = candidates[0], True
                if index is None:
                    raise UserError(self.env._(
                        "The line \"%(line)s\" of the credit note %(name)s does not match a line "
                        "of the invoice %(invoice)s (same product and tax, and the same price "
                        "and discount when the product is on several lines): inFakt corrections "
                        "change existing lines.",
                        line=values["name"], name=refund.name, invoice=move.name))
                used.add(index)
                self._subtract(result[index], values, same_quantity)
        return result

    @staticmethod
    def _subtract(target, values, same_quantity=False):
        """Take ``values`` (a refund line) back from ``target`` (an invoice line): a quantity,
        or (``same_quantity``) a value. The net Odoo computed follows for tax-included lines
        too (corrective rows are priced from net)."""
        main = "gross_price" if target["price_mode"] == "gross" else "net_price"
        amounts = {key: target[key] - values[key] for key in ("gross_price", "net_price")
                   if key in target and key in values}
        quantity = target["quantity"] if same_quantity else target["quantity"] - values["quantity"]
        if quantity <= 0 or amounts[main] <= 0:
            quantity = Decimal(0)
            amounts = dict.fromkeys(amounts, Decimal(0))
        target["quantity"] = quantity
        target.update(amounts)
        target["unit_net_price"] = amounts["net_price"] / quantity if quantity else Decimal(0)
        if same_quantity:
            # The price changed: the discount shown on the invoice no longer applies.
            target.pop("discount", None)
            target.pop("unit_net_price_before_discount", None)

    # ------------------------------------------------------------------------------------
    # Identity: how a document found in inFakt is recognised as this one
    # ------------------------------------------------------------------------------------
    def _identity_of_payload(self, move, payload, document_type):
        services = payload.get("services") or []
        if document_type == "correction":
            gross = infakt_payload.correction_totals(services)["gross"]
        else:
            gross = infakt_payload.totals(services)["gross"]
        return {
            "number": payload.get("number") or move.name,
            "tax_id": _tax_id_key(payload.get("client_tax_code")),
            "invoice_date": payload.get("invoice_date"),
            "gross": int(gross),
            "currency": (payload.get("currency") or "PLN").upper(),
        }

    def _identity_of_move(self, move, document):
        """For documents sent before their identity was recorded: from the invoice."""
        sign = -1 if document.document_type == "correction" else 1
        return {
            "number": document.number or move.name,
            "tax_id": _tax_id_key(move.partner_id.commercial_partner_id.vat),
            "invoice_date": move.invoice_date and move.invoice_date.isoformat(),
            "gross": sign * round(move.amount_total * 100),
            "currency": move.currency_id.name,
        }

    @staticmethod
    def _identity_of_remote(remote):
        try:
            gross = int(remote.get("gross_price"))
        except (TypeError, ValueError):
            gross = None
        return {
            "number": remote.get("number"),
            "tax_id": _tax_id_key(remote.get("client_tax_code")),
            "invoice_date": str(remote.get("invoice_date") or "")[:10] or None,
            "gross": gross,
            "currency": str(remote.get("currency") or "PLN").upper(),
        }
