import re
from decimal import Decimal

from odoo import models
from odoo.exceptions import UserError
from odoo.tools import html2plaintext

from ..infakt_api import payload as infakt_payload


def _decimal(value):
    return Decimal(str(value))


def _tax_id_key(value):
    """A buyer tax id as inFakt keeps it, for comparisons: letters and digits, upper case,
    without the PL prefix of a Polish NIP."""
    text = re.sub(r"[^0-9A-Za-z]", "", str(value or "")).upper()
    if text.startswith("PL") and text[2:].isdigit():
        text = text[2:]
    return text


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
            raise UserError(self.env._(
                "No payment method mapping of the inFakt account %(account)s fits the invoice "
                "%(invoice)s: add a default line (no provider, method or payment term) to the "
                "Payment Method Mapping.", account=account.name, invoice=move.name))
        return best[1].infakt_payment_method

    def _buyer_values(self, move):
        partner = move.partner_id
        commercial = partner.commercial_partner_id
        street = " ".join(filter(None, [partner.street, partner.street2]))
        is_company = bool(commercial.is_company or commercial.vat)
        name = commercial.name or partner.name or ""
        if not name.strip():
            raise UserError(self.env._("The customer of %s has no name.", move.name))
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

    def _line_values(self, move, line, exemption_reasons):
        """Plain values of one invoice line (see ``infakt_api.payload.build_service``)."""
        tax = self._line_tax(move, line)
        symbol = tax._get_infakt_tax_symbol()
        if not symbol:
            raise UserError(self.env._(
                "The tax %(tax)s cannot be sent to inFakt: set its inFakt Tax Symbol (Invoicing > "
                "Configuration > Taxes).", tax=tax.display_name))
        if symbol == "zw":
            exemption_reasons.add(tax.infakt_vat_exemption_reason or None)
        if line.discount and not 0 < line.discount <= 100:
            raise UserError(self.env._(
                "The line \"%(line)s\" of %(invoice)s has a discount of %(discount)s %%: inFakt "
                "takes discounts between 0 and 100 %%. Put a negative discount into the price "
                "instead.", line=self._line_label(move, line), invoice=move.name,
                discount=line.discount))
        quantity = _decimal(line.quantity)
        if quantity <= 0:
            raise UserError(self.env._(
                "The line \"%(line)s\" of %(invoice)s has a quantity of %(quantity)s: inFakt takes "
                "positive quantities (issue a credit note to take something back).",
                line=self._line_label(move, line), invoice=move.name, quantity=line.quantity))
        values = {
            "name": self._line_label(move, line),
            "quantity": quantity,
            "unit": line.product_uom_id.name or "szt.",
            "tax_symbol": symbol,
            # What identifies the line for corrections (not sent).
            "_key": (line.product_id.id, _decimal(line.price_unit), _decimal(line.discount),
                     tax.id),
        }
        if tax.price_include:
            values.update({"price_mode": "gross", "gross_price": _decimal(line.price_total)})
        else:
            subtotal = _decimal(line.price_subtotal)
            values.update({"price_mode": "net", "unit_net_price": subtotal / quantity,
                           "net_price": subtotal})
            if line.discount:
                values.update({"discount": _decimal(line.discount),
                               "unit_net_price_before_discount": _decimal(line.price_unit)})
        return values

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
                raise UserError(self.env._(
                    "The invoice is paid by transfer but the inFakt account %s has no Bank Account "
                    "for Transfers: open the account, click Refresh bank accounts and choose one.",
                    account.name))
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
        reason = next(iter(reasons), None) or account.vat_exemption_reason
        if not reason:
            raise UserError(self.env._(
                "Lines taxed 'zw' need a VAT exemption basis: set it on the tax, or the default "
                "on the inFakt account %s.", account.name))
        return reason

    @staticmethod
    def _plain_lines(lines):
        """The line values without the keys that are not sent."""
        return [{k: v for k, v in line.items() if not k.startswith("_")} for line in lines]

    # ------------------------------------------------------------------------------------
    # Invoices
    # ------------------------------------------------------------------------------------
    def _invoice(self, move, account):
        exemption_reasons = set()
        lines = [self._line_values(move, line, exemption_reasons) for line in self._lines(move)]
        if not lines:
            raise UserError(self.env._("The invoice %s has no lines to send.", move.name))
        values = self._common_values(move, account)
        buyer = values.pop("buyer")
        reason = self._exemption_reason(move, account, exemption_reasons)
        return infakt_payload.build_invoice(
            lines=self._plain_lines(lines), buyer=buyer, vat_exemption_reason=reason,
            **values)

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
        exemption_reasons = set()
        pairs = self._correction_pairs(origin, move, exemption_reasons)
        values = self._common_values(move, account)
        buyer = values.pop("buyer")
        values.pop("sale_date", None)
        return infakt_payload.build_corrective_invoice(
            pairs=pairs, buyer=buyer,
            corrected_invoice_number=origin_document.infakt_number or origin_document.number,
            corrected_invoice_uuid=origin_document.infakt_uuid,
            corrected_invoice_date=origin.invoice_date,
            correction_reason="other",
            **values,
        )

    def _correction_pairs(self, move, credit_note, exemption_reasons):
        """Before/after line pairs: the original lines, each reduced by what the credit note
        takes back. "Before" already counts the earlier credit notes that reached inFakt."""
        earlier = move.reversal_move_ids.filtered(
            lambda m: m.state == "posted" and m.id < credit_note.id
            and m.sudo().infakt_document_id.state == "done")
        before_lines = [self._line_values(move, line, exemption_reasons)
                        for line in self._lines(move)]
        before = self._apply_refunds(move, before_lines, earlier, exemption_reasons)
        after = self._apply_refunds(move, before, credit_note, exemption_reasons)
        pairs = [(old, new) for old, new in zip(self._plain_lines(before),
                                                self._plain_lines(after), strict=True)
                 if old != new]
        if not pairs:
            raise UserError(self.env._("The credit note %s changes nothing on the invoice.",
                                       credit_note.name))
        return pairs

    def _apply_refunds(self, move, lines, refunds, exemption_reasons):
        """``lines`` less the lines of ``refunds``. A refund line takes back from the invoice
        line with the same product, unit price, discount and tax (a quantity returned); failing
        that, from the only line of the same product and tax (a value corrected, e.g. a
        discount granted later). Each invoice line is matched at most once per refund."""
        result = [dict(line) for line in lines]
        for refund in refunds:
            used = set()
            for refund_line in self._lines(refund):
                values = self._line_values(refund, refund_line, exemption_reasons)
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
        or (``same_quantity``) a value."""
        amount_key = "gross_price" if target["price_mode"] == "gross" else "net_price"
        amount = target[amount_key] - values[amount_key]
        quantity = target["quantity"] if same_quantity else target["quantity"] - values["quantity"]
        if quantity <= 0 or amount <= 0:
            quantity, amount = Decimal(0), Decimal(0)
        target["quantity"] = quantity
        target[amount_key] = amount
        if amount_key == "net_price":
            target["unit_net_price"] = amount / quantity if quantity else Decimal(0)
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
