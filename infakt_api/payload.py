"""Build inFakt API v3 payloads from plain values (no Odoo here).

Inputs are plain dicts with ``Decimal`` / ``str`` / ``int`` numbers in major units and
``datetime.date`` or ISO ``YYYY-MM-DD`` dates. Outputs are JSON-ready dicts with money in
integer grosze, exactly as inFakt's async endpoints expect them.
"""

import datetime
import re

from .money import format_quantity, round_to_int, to_decimal, to_grosze

SERVICE_NAME_MAX = 256
NOTES_MAX = 3500

PAYMENT_METHODS = (
    "transfer", "cash", "card", "barter", "check", "bill_of_sale", "delivery",
    "compensation", "accredited", "paypal", "instalment_sale", "payu", "tpay",
    "przelewy24", "dotpay", "other",
)
ZERO_TAX_SYMBOLS = frozenset({"zw", "np", "oo", "0"})
NON_NUMERIC_TAX_SYMBOLS = frozenset({"zw", "np", "oo"})
CORRECTION_REASONS = ("mistake", "other")
VAT_EXCHANGE_DATE_KINDS = ("vat", "pit")
INVOICE_KINDS = ("vat", "proforma")
INVOICE_STATUSES = ("draft", "sent", "printed", "paid")
SALE_TYPES = ("service", "merchandise")
SPLIT_PAYMENT_TYPES = ("required", "optional")

# The related-party marker of JPK_V7 / KSeF ("TP", transakcja powiązana) is an income-document
# marking: GET /documents_markings/incomes.json lists {id: 3, code: "TP", short_description:
# "Transakcja powiązana"} (PM "Oznaczenia dokumentów przychodowych › Listuj wszystkie"), and an
# invoice carries the ids in document_markings_ids[] (PM invoice definition: "Tablica ID
# oznaczeń dokumentów przychodowych"). Look the id up by code at run time
# (InfaktClient.find_document_marking_id("TP")); TP_MARKING_ID is the id PM shows.
TP_MARKING_CODE = "TP"
TP_MARKING_ID = 3

_EMPTY = (None, "", [], {})


def _drop_empty(data):
    return {key: value for key, value in data.items() if value not in _EMPTY}


def _none(value):
    """``None`` for Odoo's ``False`` (an empty field), the value otherwise."""
    return None if value is False else value


def _text(value):
    if value is None or value is False:
        return None
    text = " ".join(str(value).split())
    return text or None


def format_date(value):
    """``YYYY-MM-DD`` of a ``date``/``datetime`` or an ISO date string; None stays None."""
    if value in (None, "", False):
        return None
    if isinstance(value, datetime.datetime):
        return value.date().isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            return datetime.date.fromisoformat(text[:10]).isoformat()
        except ValueError:
            raise ValueError(f"not an ISO date (YYYY-MM-DD): {value!r}") from None
    raise TypeError(f"not a date: {type(value).__name__}")


# ---------------------------------------------------------------------------------------
# buyer

_FLAT_MARKERS = r"(?:m\.?|lok\.?|lokal|mieszk\.?|apt\.?|ap\.?)"
_STREET_RE = re.compile(
    r"""^(?P<street>.*?\S)\s*,?\s+
        (?P<number>\d+[^\W\d_]?(?:\s*[-–]\s*\d+[^\W\d_]?)?)
        (?:
            \s*/\s*(?P<flat1>[0-9A-Za-z]+)
          | \s*,?\s+""" + _FLAT_MARKERS + r"""\s*(?P<flat2>[0-9A-Za-z]+)
        )?
        \s*$""",
    re.VERBOSE | re.IGNORECASE,
)


def split_street(street):
    """Split a Polish street line into ``(street, number, flat)``.

    ``"ul. Długa 5/3"`` -> ``("ul. Długa", "5", "3")``,
    ``"Marszałkowska 10 m. 4"`` -> ``("Marszałkowska", "10", "4")``,
    ``"Aleje Jerozolimskie 123A"`` -> ``("Aleje Jerozolimskie", "123A", None)``.
    A line without a trailing number is returned whole, with ``None`` number and flat.
    """
    text = _text(street)
    if not text:
        return (None, None, None)
    match = _STREET_RE.match(text)
    if not match:
        return (text, None, None)
    name = match.group("street").rstrip(" ,")
    number = re.sub(r"\s+", "", match.group("number"))
    flat = match.group("flat1") or match.group("flat2")
    if not re.search(r"[^\W\d_]", name):
        # "12 5" or "5/3" alone: not a street name followed by a number
        return (text, None, None)
    return (name, number, flat or None)


def clean_tax_code(value, country="PL"):
    """Normalise a NIP / VAT id: no spaces, dashes or dots, upper case.

    A leading ``PL`` is dropped for Polish buyers (inFakt wants the bare 10-digit NIP);
    foreign VAT ids keep their country prefix.
    """
    if value in (None, False):
        return None
    text = re.sub(r"[\s\-./]", "", str(value)).upper()
    if (country or "PL").upper() == "PL" and text.startswith("PL") and text[2:].isdigit():
        text = text[2:]
    return text or None


def split_name(full_name):
    """``"Jan Maria Kowalski"`` -> ``("Jan Maria", "Kowalski")``; one word -> ``(None, w)``."""
    text = _text(full_name)
    if not text:
        return (None, None)
    parts = text.rsplit(" ", 1)
    if len(parts) == 1:
        return (None, parts[0])
    return (parts[0], parts[1])


def build_buyer(partner):
    """Inline ``client_*`` invoice fields from a plain partner dict.

    Keys: ``company_name``, ``first_name``, ``last_name``, ``name`` (full name of a
    person or company name fallback), ``is_company``, ``nip``, ``street``,
    ``street_number``, ``flat_number``, ``city``, ``post_code``, ``country`` (alpha-2,
    default ``PL``), ``email`` (not sent: inFakt has no inline buyer e-mail field).
    A ``client_id`` (existing inFakt client) is passed through.
    """
    partner = dict(partner or {})
    country = (_text(partner.get("country")) or "PL").upper()
    company_name = _text(partner.get("company_name"))
    first_name = _text(partner.get("first_name"))
    last_name = _text(partner.get("last_name"))
    name = _text(partner.get("name"))
    is_company = partner.get("is_company")
    if is_company is None:
        is_company = bool(company_name) or (bool(name) and not (first_name or last_name))

    result = {}
    if is_company:
        result["client_business_activity_kind"] = "other_business"
        result["client_company_name"] = company_name or name
        result["client_first_name"] = first_name
        result["client_last_name"] = last_name
    else:
        result["client_business_activity_kind"] = "private_person"
        if not (first_name or last_name):
            first_name, last_name = split_name(name or company_name)
        result["client_first_name"] = first_name
        result["client_last_name"] = last_name

    result["client_tax_code"] = clean_tax_code(partner.get("nip"), country)

    street = _text(partner.get("street"))
    number = _text(partner.get("street_number"))
    flat = _text(partner.get("flat_number"))
    if street and not number:
        street, number, split_flat = split_street(street)
        flat = flat or split_flat
    result["client_street"] = street
    result["client_street_number"] = number
    result["client_flat_number"] = flat
    result["client_city"] = _text(partner.get("city"))
    result["client_post_code"] = _text(partner.get("post_code"))
    result["client_country"] = country
    if partner.get("client_id") not in (None, False, ""):
        result["client_id"] = partner["client_id"]
    return _drop_empty(result)


# ---------------------------------------------------------------------------------------
# lines


def normalize_tax_symbol(value):
    """inFakt ``tax_symbol``: ``"23"``, ``"8"``, ``"0"``, ``"zw"``, ``"np"``, ``"oo"``…"""
    if value in (None, False) or isinstance(value, bool):
        raise ValueError("tax_symbol is required")
    text = str(value).strip().lower().rstrip("%").strip()
    if not text:
        raise ValueError("tax_symbol is required")
    if text in NON_NUMERIC_TAX_SYMBOLS:
        return text
    try:
        number = to_decimal(text)
    except (TypeError, ValueError):
        raise ValueError(f"invalid tax_symbol: {value!r}") from None
    if number < 0 or number >= 100:
        raise ValueError(f"invalid tax_symbol: {value!r}")
    return format_quantity(number)


def tax_rate(tax_symbol):
    """Rate in percent (``Decimal``) of a tax symbol; 0 for zw/np/oo."""
    symbol = normalize_tax_symbol(tax_symbol)
    if symbol in NON_NUMERIC_TAX_SYMBOLS:
        return to_decimal(0)
    return to_decimal(symbol)


def _label(line, position=None, where="line"):
    """How an error names a line: ``line 2 ('Konsultacje')``."""
    name = _text((line or {}).get("name")) if isinstance(line, dict) else None
    text = where if position is None else f"{where} {position}"
    return f"{text} ({name[:60]!r})" if name else text


def _int_id(value, what, where=None):
    """A positive integer id (int or digit string); ``None``/``False``/``""`` give None."""
    if value in (None, False, ""):
        return None
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool):
        raise ValueError(f"{prefix}{what} must be an inFakt id (a whole number), not {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        try:
            decimal = to_decimal(value)
        except (TypeError, ValueError):
            decimal = None
        if decimal is None or decimal != decimal.to_integral_value():
            raise ValueError(f"{prefix}{what} must be an inFakt id (a whole number), "
                             f"not {value!r}")
        number = int(decimal)
    if number <= 0:
        raise ValueError(f"{prefix}{what} must be a positive inFakt id, not {value!r}")
    return number


def _id_list(values, what):
    if values in (None, False, "", [], ()):
        return None
    if isinstance(values, (str, int)):
        values = [values]
    ids = []
    for value in values:
        number = _int_id(value, what)
        if number is not None and number not in ids:
            ids.append(number)
    return ids or None


def _number(line, key, label, default=None):
    value = line.get(key)
    if value is None or value is False or (isinstance(value, str) and not value.strip()):
        return default
    try:
        return to_decimal(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label}: {key} is not a number ({value!r})") from None


def _discount_value(discount):
    """Discount percent as a JSON number: an int when whole (PM: integer), else a Decimal."""
    discount = discount.normalize()
    return int(discount) if discount == discount.to_integral_value() else discount


def _check_sign(label, quantity, amount, what):
    """A negative quantity needs a negative (or zero) total and the other way round."""
    if quantity is None or amount is None or quantity == 0 or amount == 0:
        return
    if (quantity < 0) != (amount < 0):
        raise ValueError(
            f"{label}: the quantity ({format_quantity(quantity)}) and the {what} "
            f"({amount}) have opposite signs; a negative line needs a negative quantity "
            f"and a negative {what}")


def _gross_split(gross_grosze, rate):
    """``(net, tax)`` grosze of a gross amount, as inFakt splits it (tax half up)."""
    tax = round_to_int(gross_grosze * rate / (100 + rate))
    return gross_grosze - tax, tax


def build_service(line, position=None, corrective=False):
    """One ``services[]`` row from a plain line dict.

    Keys: ``name`` (required, cut to 256 characters), ``quantity`` (default 1), ``unit``,
    ``tax_symbol`` (required), ``price_mode`` (``"net"`` default or ``"gross"``),
    ``unit_net_price`` (major units, after discount), ``net_price`` (line net total,
    optional), ``gross_price`` (line gross total, gross mode), ``pkwiu``, ``gtu_id`` (the
    integer id of a GTU code from ``/gtus.json``; ``"7"`` is accepted), ``discount``
    (percent, 0–100) with ``unit_net_price_before_discount`` (major units), net mode.

    Net mode sends ``unit_net_price`` (and ``net_price`` when given) in grosze. With a
    discount it also sends ``discount`` (a number) and, when ``net_price`` was not given,
    ``net_price`` = unit_net_price × quantity, so the line total never depends on how inFakt
    applies the percentage. Gross mode sends only ``gross_price`` (inFakt prices from gross
    only when no net field is sent).

    ``corrective=True`` builds a row of a corrective invoice. inFakt's corrective rows take
    their price from ``unit_net_price`` only: ``gross_price`` is read-only there (PM
    corrective definition: "Tylko do odczytu") and would be ignored. So a corrective row is
    always sent with ``unit_net_price`` and ``net_price`` and never with ``gross_price``. For
    a tax-included (gross) Odoo line pass the net Odoo computed — ``unit_net_price`` =
    ``price_subtotal / quantity`` (unrounded) and ``net_price`` = ``price_subtotal`` — next to
    ``gross_price``; when only ``gross_price`` is given, the net is derived the way inFakt
    splits a gross amount (tax = gross × rate / (100 + rate), half up; net = gross − tax),
    which can differ by a grosz from Odoo's own rounding.

    ``position`` (1-based) names the line in error messages. Errors are ``ValueError`` with
    a message naming the line, e.g. ``line 2 ('Konsultacje'): discount must be …``.
    """
    line = dict(line or {})
    label = _label(line, position)
    name = _text(line.get("name"))
    if not name:
        raise ValueError(f"{label}: the line has no name (description)")
    try:
        tax_symbol = normalize_tax_symbol(line.get("tax_symbol"))
    except ValueError as error:
        raise ValueError(f"{label}: {error} (the VAT rate of the line)") from None
    rate = tax_rate(tax_symbol)
    quantity = _number(line, "quantity", label, default=to_decimal(1))
    service = {
        "name": name[:SERVICE_NAME_MAX],
        "tax_symbol": tax_symbol,
        "quantity": format_quantity(quantity),
        "unit": _text(line.get("unit")),
    }
    mode = (line.get("price_mode") or "net").lower()
    if mode not in ("net", "gross"):
        raise ValueError(f"{label}: price_mode must be 'net' or 'gross', not {mode!r}")
    unit_net = _number(line, "unit_net_price", label)
    net_total = _number(line, "net_price", label)
    gross_total = _number(line, "gross_price", label)
    discount = _number(line, "discount", label)
    if discount is not None and not 0 <= discount <= 100:
        raise ValueError(f"{label}: discount must be a percentage between 0 and 100, "
                         f"not {format_quantity(discount)}")
    if corrective and mode == "gross" and unit_net is None:
        # derive the net from the gross the way inFakt splits it (see the docstring)
        if gross_total is None:
            raise ValueError(f"{label}: gross_price is required in gross mode")
        _check_sign(label, quantity, gross_total, "gross total")
        net_grosze, _tax = _gross_split(to_grosze(gross_total), rate)
        net_total = to_decimal(net_grosze) / 100
        unit_net = net_total / quantity if quantity else net_total
        mode = "net"
    elif corrective:
        mode = "net"
    if mode == "net":
        if unit_net is None:
            raise ValueError(f"{label}: unit_net_price (the net unit price) is required")
        _check_sign(label, quantity, unit_net * quantity if net_total is None else net_total,
                    "net total")
        service["unit_net_price"] = to_grosze(unit_net)
        if net_total is not None:
            service["net_price"] = to_grosze(net_total)
        if discount:
            service["discount"] = _discount_value(discount)
            before = _number(line, "unit_net_price_before_discount", label)
            if before is not None:
                service["unit_net_price_before_discount"] = to_grosze(before)
            if net_total is None:
                service["net_price"] = round_to_int(to_decimal(service["unit_net_price"])
                                                    * quantity)
        elif corrective and net_total is None:
            service["net_price"] = round_to_int(to_decimal(service["unit_net_price"])
                                                * quantity)
    else:
        if gross_total is None:
            raise ValueError(f"{label}: gross_price is required in gross mode")
        _check_sign(label, quantity, gross_total, "gross total")
        service["gross_price"] = to_grosze(gross_total)
    service["pkwiu"] = _text(line.get("pkwiu"))
    service["gtu_id"] = _int_id(line.get("gtu_id"), "gtu_id (GTU code id)", label)
    return _drop_empty(service)


def _zeroed(service):
    """The row that removes (or has not yet) a line: quantity "0", zero totals, the unit
    price kept (as in PM's corrective example)."""
    zero = dict(service)
    zero["quantity"] = "0"
    zero.pop("gross_price", None)
    zero.pop("tax_price", None)
    zero["net_price"] = 0
    return zero


def build_correction_services(pairs):
    """Before/after ``services[]`` rows of a corrective invoice.

    ``pairs`` is a list of ``(before, after)`` plain line dicts (as for
    :func:`build_service`). Each pair shares one ``group`` (``"1"``, ``"2"``, …); the
    before row has ``correction: False``, the after row ``correction: True``.
    ``before=None`` adds a line (before row with quantity ``"0"``); ``after=None`` (or an
    after line with quantity 0) removes it (after row with quantity ``"0"``).

    Every row is priced with ``unit_net_price`` and ``net_price`` (grosze), also for
    tax-included lines: inFakt ignores ``gross_price`` on corrective rows (see
    :func:`build_service` with ``corrective=True`` for what to pass for a gross line). The
    before row should be the line as it stands on the corrected invoice in inFakt.
    """
    services = []
    for index, pair in enumerate(pairs or (), start=1):
        try:
            before, after = pair
        except (TypeError, ValueError):
            raise ValueError(f"correction pair {index} must be (before, after)") from None
        if before is None and after is None:
            raise ValueError(f"correction pair {index} has neither a before nor an after line")
        before_row = after_row = None
        if before is not None:
            before_row = _correction_row(before, index, "before")
        if after is not None:
            after_row = _correction_row(after, index, "after")
        if before_row is None:
            before_row = _zeroed(after_row)
        if after_row is None:
            after_row = _zeroed(before_row)
        elif to_decimal(after_row["quantity"]) == 0:
            after_row = _zeroed(after_row)
        group = str(index)
        services.append({**before_row, "group": group, "correction": False})
        services.append({**after_row, "group": group, "correction": True})
    if not services:
        raise ValueError("a corrective invoice needs at least one line pair")
    return services


def _correction_row(line, index, side):
    try:
        return build_service(line, corrective=True)
    except ValueError as error:
        # name the pair and the side: "correction pair 2, after line ('X'): …"
        text = str(error)
        prefix = _label(line, None)
        if text.startswith(prefix + ":"):
            text = text[len(prefix) + 1:].strip()
        raise ValueError(f"correction pair {index}, {side} {_label(line)}: {text}") from None


# ---------------------------------------------------------------------------------------
# documents


def _buyer_fields(buyer):
    buyer = dict(buyer or {})
    if any(str(key).startswith("client_") for key in buyer):
        return _drop_empty(buyer)  # already built
    return build_buyer(buyer)


def _payment_method(value):
    method = _text(value)
    if not method:
        raise ValueError("payment_method is required")
    if method not in PAYMENT_METHODS:
        raise ValueError(
            f"unknown inFakt payment method {method!r} (expected one of "
            f"{', '.join(PAYMENT_METHODS)})"
        )
    return method


def _currency_fields(currency, vat_exchange_date_kind):
    currency = (_text(currency) or "PLN").upper()
    vat_exchange_date_kind = _none(vat_exchange_date_kind) or None
    if vat_exchange_date_kind is not None and vat_exchange_date_kind not in (
        VAT_EXCHANGE_DATE_KINDS
    ):
        raise ValueError(f"vat_exchange_date_kind must be 'vat' or 'pit', "
                         f"not {vat_exchange_date_kind!r}")
    if currency != "PLN" and not vat_exchange_date_kind:
        vat_exchange_date_kind = "vat"
    return {"currency": currency, "vat_exchange_date_kind": vat_exchange_date_kind}


def _notes(value):
    if value in (None, False):
        return None
    text = str(value).strip()
    return text[:NOTES_MAX] or None


def _number_fields(number, check_duplicate_number):
    number = _text(number)
    return {"number": number, "check_duplicate_number": bool(check_duplicate_number)}


def _split_payment_type(split_payment=None, split_payment_type=None):
    """``split_payment_type``: ``required`` (MPP, marked in JPK_V7 and on the print) or
    ``optional`` (print only). ``split_payment=True`` means ``required``."""
    value = _none(split_payment_type)
    if value in (None, ""):
        value = _none(split_payment)
        if value in (None, "", False):
            return None
        if value is True:
            return "required"
    value = str(value).strip().lower()
    if value not in SPLIT_PAYMENT_TYPES:
        raise ValueError("split_payment must be True, 'required' or 'optional' "
                         f"(got {value!r})")
    return value


def _sale_type(value):
    value = _none(value)
    if value in (None, ""):
        return None
    if value not in SALE_TYPES:
        raise ValueError(f"sale_type must be one of {SALE_TYPES} (for foreign buyers: "
                         f"'service' or 'merchandise'), not {value!r}")
    return value


def _legal_fields(*, vat_exemption_reason=None, sale_type=None, split_payment=None,
                  split_payment_type=None, document_markings_ids=None,
                  transaction_kind_id=None):
    """The JPK_V7 / KSeF fields shared by every income document (PM definitions)."""
    return {
        # integer id from /vat_exemptions.json (PM: "vat_exemption_reason – integer")
        "vat_exemption_reason": _int_id(vat_exemption_reason, "vat_exemption_reason"),
        "sale_type": _sale_type(sale_type),
        "split_payment_type": _split_payment_type(split_payment, split_payment_type),
        # ids from /documents_markings/incomes.json, e.g. the TP (related parties) marking
        "document_markings_ids": _id_list(document_markings_ids, "document_markings_ids"),
        "transaction_kind_id": _int_id(transaction_kind_id, "transaction_kind_id"),
    }


def _services(lines):
    return [build_service(line, position) for position, line in enumerate(lines or (), 1)]


def build_invoice(*, lines, buyer, invoice_date, sale_date=None, payment_date=None,
                  number=None, check_duplicate_number=True, currency="PLN",
                  payment_method, bank_account=None, bank_name=None, swift=None,
                  notes=None, vat_exchange_date_kind=None, vat_exemption_reason=None,
                  sale_type=None, status=None, paid_date=None, kind="vat",
                  split_payment=None, split_payment_type=None, document_markings_ids=None,
                  transaction_kind_id=None):
    """The body inside the ``invoice`` wrapper of ``POST /async/invoices.json``.

    ``lines`` are plain line dicts (see :func:`build_service`), ``buyer`` a plain partner
    dict (see :func:`build_buyer`) or already built ``client_*`` fields. ``None`` values
    are left out. A non-PLN invoice gets ``vat_exchange_date_kind = "vat"`` by default.

    Legal content (JPK_V7 / KSeF): ``vat_exemption_reason`` (integer id from
    ``/vat_exemptions.json``; needed with ``zw`` lines unless the inFakt account has a
    default), per-line ``gtu_id``, ``split_payment`` (``True``/``"required"``/``"optional"``)
    or ``split_payment_type``, ``sale_type`` (``service``/``merchandise``, for foreign
    buyers), ``document_markings_ids`` (ids from ``/documents_markings/incomes.json``; the
    related-party marker TP is the marking with code ``"TP"``, see :data:`TP_MARKING_CODE`)
    and ``transaction_kind_id``.
    """
    kind = _none(kind) or "vat"
    status = _none(status)
    if kind not in INVOICE_KINDS:
        raise ValueError(f"kind must be one of {INVOICE_KINDS}, not {kind!r}")
    if status is not None and status not in INVOICE_STATUSES:
        raise ValueError(f"status must be one of {INVOICE_STATUSES}, not {status!r}")
    services = _services(lines)
    if not services:
        raise ValueError("an invoice needs at least one line")
    invoice_date = format_date(invoice_date)
    if not invoice_date:
        raise ValueError("invoice_date is required")

    body = {"kind": kind}
    body.update(_number_fields(number, check_duplicate_number))
    body.update({
        "invoice_date": invoice_date,
        "sale_date": format_date(sale_date),
        "payment_date": format_date(payment_date),
        "payment_method": _payment_method(payment_method),
        "bank_account": _text(bank_account),
        "bank_name": _text(bank_name),
        "swift": _text(swift),
        "notes": _notes(notes),
        "status": _none(status),
        "paid_date": format_date(paid_date),
    })
    body.update(_currency_fields(currency, vat_exchange_date_kind))
    body.update(_legal_fields(
        vat_exemption_reason=vat_exemption_reason, sale_type=sale_type,
        split_payment=split_payment, split_payment_type=split_payment_type,
        document_markings_ids=document_markings_ids, transaction_kind_id=transaction_kind_id))
    body.update(_buyer_fields(buyer))
    body["services"] = services
    return _drop_empty(body)


def build_corrective_invoice(*, pairs, buyer, invoice_date, corrected_invoice_number,
                             corrected_invoice_uuid=None, corrected_invoice_date=None,
                             correction_reason="other", sale_date=None, payment_date=None,
                             number=None, check_duplicate_number=True, currency="PLN",
                             payment_method, bank_account=None, notes=None,
                             vat_exchange_date_kind=None, vat_exemption_reason=None,
                             sale_type=None, split_payment=None, split_payment_type=None,
                             document_markings_ids=None):
    """The body inside the ``corrective_invoice`` wrapper of
    ``POST /async/corrective_invoices.json`` (lines as before/after pairs, always priced
    from net; see :func:`build_correction_services`).

    ``vat_exemption_reason`` is optional here: PM's corrective definition does not list it
    and no source says whether a correction inherits the original's; pass the original's id
    when it has ``zw`` lines to be safe (it is an integer id as on invoices).
    """
    corrected_number = _text(corrected_invoice_number)
    if not corrected_number:
        raise ValueError("corrected_invoice_number is required")
    correction_reason = _none(correction_reason) or "other"
    if correction_reason not in CORRECTION_REASONS:
        raise ValueError(f"correction_reason must be one of {CORRECTION_REASONS}, "
                         f"not {correction_reason!r}")
    invoice_date = format_date(invoice_date)
    if not invoice_date:
        raise ValueError("invoice_date is required")
    services = build_correction_services(pairs)

    body = _number_fields(number, check_duplicate_number)
    body.update({
        "invoice_date": invoice_date,
        "sale_date": format_date(sale_date),
        "payment_date": format_date(payment_date),
        "corrected_invoice_number": corrected_number,
        "corrected_invoice_uuid": _text(corrected_invoice_uuid),
        "corrected_invoice_date": format_date(corrected_invoice_date),
        "correction_reason": correction_reason,
        "payment_method": _payment_method(payment_method),
        "bank_account": _text(bank_account),
        "notes": _notes(notes),
    })
    body.update(_currency_fields(currency, vat_exchange_date_kind))
    body.update(_legal_fields(
        vat_exemption_reason=vat_exemption_reason, sale_type=sale_type,
        split_payment=split_payment, split_payment_type=split_payment_type,
        document_markings_ids=document_markings_ids))
    body.update(_buyer_fields(buyer))
    body["services"] = services
    return _drop_empty(body)


def build_advance_invoice(*, buyer, advance_price, payment_method, lines=None,
                          advance_date=None, invoice_date=None, previous_advance_id=None,
                          payment_date=None, number=None, check_duplicate_number=True,
                          currency="PLN", bank_account=None, bank_name=None, swift=None,
                          notes=None, vat_exchange_date_kind=None, vat_exemption_reason=None,
                          sale_type=None, split_payment=None, split_payment_type=None,
                          document_markings_ids=None, transaction_kind_id=None,
                          not_income=None):
    """The body inside the ``advance_invoice`` wrapper of ``POST /async/advance_invoices.json``
    (a *faktura zaliczkowa* for a down payment).

    Shape (PM "Faktury zaliczkowe › Stwórz", example "Tworzenie faktury zaliczkowej"):
    ``{"advance_invoice": {"advance_date": "2023-05-09", "advance_price": 40000,
    "payment_method": "cash", "client_company_name": …, "services": [{"name", "net_price",
    "pkwiu", "unit_net_price", "tax_symbol"}]}, "send_to_ksef": false}``.

    * ``lines``: the whole order (what the advance is paid for), as for an invoice; inFakt
      reads back net/tax/gross of these lines.
    * ``advance_price``: the down payment received, gross, major units (sent in grosze).
    * ``advance_date``: the day the down payment was received.
    * ``previous_advance_id``: the inFakt **numeric id** (``id``, not the uuid) of the
      previous advance invoice of the same order, for a second or later advance; PM: "omit
      ``services`` when the next advance concerns exactly the same items" — so ``lines``
      may then be left out.
    * ``not_income``: PM lists it as required for advances ("Tak, w przypadku … zaliczki");
      its example omits it and reads back ``true``: sent only when given.
    """
    if lines in (None, [], ()) and previous_advance_id in (None, False, ""):
        raise ValueError("an advance invoice needs its lines (only a later advance, with "
                         "previous_advance_id, may omit them)")
    price = _number({"advance_price": advance_price}, "advance_price", "advance invoice")
    if price is None or price <= 0:
        raise ValueError("advance_price (the down payment received, gross) must be a "
                         f"positive amount, not {advance_price!r}")
    services = _services(lines)
    body = _number_fields(number, check_duplicate_number)
    body.update({
        "invoice_date": format_date(invoice_date),
        "advance_date": format_date(advance_date),
        "advance_price": to_grosze(price),
        "previous_advance_id": _int_id(previous_advance_id, "previous_advance_id"),
        "payment_date": format_date(payment_date),
        "payment_method": _payment_method(payment_method),
        "bank_account": _text(bank_account),
        "bank_name": _text(bank_name),
        "swift": _text(swift),
        "notes": _notes(notes),
    })
    if not_income is not None:
        body["not_income"] = bool(not_income)
    body.update(_currency_fields(currency, vat_exchange_date_kind))
    body.update(_legal_fields(
        vat_exemption_reason=vat_exemption_reason, sale_type=sale_type,
        split_payment=split_payment, split_payment_type=split_payment_type,
        document_markings_ids=document_markings_ids, transaction_kind_id=transaction_kind_id))
    body.update(_buyer_fields(buyer))
    if services:
        body["services"] = services
    return _drop_empty(body)


def build_final_invoice(*, lines, buyer, previous_advance_id, payment_method,
                        invoice_date=None, sale_date=None, payment_date=None, paid_date=None,
                        number=None, check_duplicate_number=True, currency="PLN",
                        bank_account=None, bank_name=None, swift=None, notes=None,
                        vat_exchange_date_kind=None, vat_exemption_reason=None,
                        sale_type=None, split_payment=None, split_payment_type=None,
                        document_markings_ids=None, transaction_kind_id=None):
    """The body inside the ``final_invoice`` wrapper of ``POST /async/final_invoices.json``
    (a *faktura końcowa* settling the advances of an order).

    Shape (PM "Faktury końcowe › Stwórz"): ``{"final_invoice": {"paid_date": "2023-05-09",
    "payment_method": "cash", "previous_advance_id": 73, "client_company_name": …,
    "services": [...]}, "send_to_ksef": false}``.

    * ``previous_advance_id`` (required, PM: "ID ostatniej faktury zaliczkowej"): the inFakt
      **numeric id** of the *last* advance invoice of the order; inFakt follows the chain
      of ``previous_advance_id`` links from there (read back as ``previous_advances``), so
      only the last one is sent.
    * ``lines``: the whole order, as on an invoice.
    """
    advance_id = _int_id(previous_advance_id, "previous_advance_id")
    if advance_id is None:
        raise ValueError("a final invoice needs previous_advance_id: the inFakt id of the "
                         "last advance invoice it settles")
    services = _services(lines)
    if not services:
        raise ValueError("a final invoice needs at least one line")
    body = _number_fields(number, check_duplicate_number)
    body.update({
        "invoice_date": format_date(invoice_date),
        "sale_date": format_date(sale_date),
        "payment_date": format_date(payment_date),
        "paid_date": format_date(paid_date),
        "previous_advance_id": advance_id,
        "payment_method": _payment_method(payment_method),
        "bank_account": _text(bank_account),
        "bank_name": _text(bank_name),
        "swift": _text(swift),
        "notes": _notes(notes),
    })
    body.update(_currency_fields(currency, vat_exchange_date_kind))
    body.update(_legal_fields(
        vat_exemption_reason=vat_exemption_reason, sale_type=sale_type,
        split_payment=split_payment, split_payment_type=split_payment_type,
        document_markings_ids=document_markings_ids, transaction_kind_id=transaction_kind_id))
    body.update(_buyer_fields(buyer))
    body["services"] = services
    return _drop_empty(body)


# ---------------------------------------------------------------------------------------
# totals (as inFakt computes them)


def service_totals(service):
    """``{"net", "tax", "gross"}`` in grosze of one built ``services[]`` row.

    Net mode (any net field present): net = ``net_price`` if given, else
    round_half_up(``unit_net_price`` × quantity); tax = round_half_up(net × rate / 100).
    Gross mode: tax = round_half_up(gross × rate / (100 + rate)); net = gross − tax.
    A corrective row is always net mode (inFakt ignores its ``gross_price``).
    """
    rate = tax_rate(service.get("tax_symbol"))
    quantity = to_decimal(service.get("quantity", 1))
    net_mode = "unit_net_price" in service or "net_price" in service
    if net_mode or "correction" in service:
        if service.get("net_price") is not None:
            net = int(to_decimal(service["net_price"]))
        else:
            net = round_to_int(to_decimal(service.get("unit_net_price", 0)) * quantity)
        tax = round_to_int(net * rate / 100)
        gross = net + tax
    else:
        gross = int(to_decimal(service.get("gross_price", 0)))
        net, tax = _gross_split(gross, rate)
    return {"net": net, "tax": tax, "gross": gross}


def totals(services):
    """Document totals ``{"net", "tax", "gross"}`` in grosze: the sum of line totals,
    each line rounded on its own (half up), as inFakt adds them up."""
    result = {"net": 0, "tax": 0, "gross": 0}
    for service in services or ():
        line = service_totals(service)
        for key in result:
            result[key] += line[key]
    return result


def correction_totals(services):
    """Totals of a corrective invoice: Σ after rows − Σ before rows (may be negative)."""
    after = totals([s for s in services or () if s.get("correction")])
    before = totals([s for s in services or () if not s.get("correction")])
    return {key: after[key] - before[key] for key in after}


def payload_totals(payload):
    """Totals inFakt will compute for a built body (or its ``services`` list): corrective
    bodies (rows with ``correction``) as after − before, the others as a plain sum."""
    services = payload.get("services", ()) if isinstance(payload, dict) else payload
    services = list(services or ())
    if any(isinstance(s, dict) and "correction" in s for s in services):
        return correction_totals(services)
    return totals(services)


def totals_differences(payload, expected):
    """Compare the totals inFakt will compute for ``payload`` with ``expected``.

    ``payload``: a built body (``build_invoice`` …) or a ``services`` list; ``expected``:
    ``{"net", "tax", "gross"}`` in integer grosze (e.g. Odoo's ``amount_untaxed``,
    ``amount_tax``, ``amount_total`` through ``to_grosze``; negative for a credit note's
    correction). Keys missing from ``expected`` are not compared.

    Returns ``{key: {"infakt": computed, "expected": value, "difference": computed - value}}``
    for each total that differs, so ``{}`` means the document adds up. Call it *before* the
    POST: a legal document that does not match Odoo should never be created.
    """
    computed = payload_totals(payload)
    differences = {}
    for key in ("net", "tax", "gross"):
        if key not in (expected or {}) or expected[key] is None:
            continue
        value = int(to_decimal(expected[key]))
        if computed[key] != value:
            differences[key] = {"infakt": computed[key], "expected": value,
                                "difference": computed[key] - value}
    return differences
