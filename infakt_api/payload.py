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


def build_service(line):
    """One ``services[]`` row from a plain line dict.

    Keys: ``name`` (required, cut to 256 characters), ``quantity`` (default 1), ``unit``,
    ``tax_symbol`` (required), ``price_mode`` (``"net"`` default or ``"gross"``),
    ``unit_net_price`` (major units, after discount), ``net_price`` (line net total,
    optional), ``gross_price`` (line gross total, gross mode), ``pkwiu``, ``gtu_id``,
    ``discount`` (percent) with ``unit_net_price_before_discount`` (major units), net mode.

    Net mode sends ``unit_net_price`` (and ``net_price`` when given) in grosze, and the
    discount for the document to show it; gross mode sends only ``gross_price`` (inFakt
    prices from gross only when no net field is sent).
    """
    line = dict(line or {})
    name = _text(line.get("name"))
    if not name:
        raise ValueError("line name is required")
    quantity = line.get("quantity")
    service = {
        "name": name[:SERVICE_NAME_MAX],
        "tax_symbol": normalize_tax_symbol(line.get("tax_symbol")),
        "quantity": format_quantity(1 if quantity in (None, "") else quantity),
        "unit": _text(line.get("unit")),
    }
    mode = (line.get("price_mode") or "net").lower()
    if mode == "net":
        if line.get("unit_net_price") in (None, ""):
            raise ValueError(f"unit_net_price is required in net mode (line {name!r})")
        service["unit_net_price"] = to_grosze(line["unit_net_price"])
        if line.get("net_price") not in (None, ""):
            service["net_price"] = to_grosze(line["net_price"])
        discount = line.get("discount")
        if discount not in (None, "", False) and to_decimal(discount) != 0:
            if not 0 < to_decimal(discount) <= 100:
                raise ValueError(f"discount must be a percentage (line {name!r})")
            service["discount"] = format_quantity(discount)
            if line.get("unit_net_price_before_discount") not in (None, "", False):
                service["unit_net_price_before_discount"] = to_grosze(
                    line["unit_net_price_before_discount"]
                )
    elif mode == "gross":
        if line.get("gross_price") in (None, ""):
            raise ValueError(f"gross_price is required in gross mode (line {name!r})")
        service["gross_price"] = to_grosze(line["gross_price"])
    else:
        raise ValueError(f"price_mode must be 'net' or 'gross', not {mode!r}")
    service["pkwiu"] = _text(line.get("pkwiu"))
    gtu_id = line.get("gtu_id")
    service["gtu_id"] = gtu_id if gtu_id not in (None, "", False) else None
    return _drop_empty(service)


def _zeroed(service):
    zero = dict(service)
    zero["quantity"] = "0"
    for key in ("net_price", "gross_price", "tax_price"):
        if key in zero:
            zero[key] = 0
    return zero


def build_correction_services(pairs):
    """Before/after ``services[]`` rows of a corrective invoice.

    ``pairs`` is a list of ``(before, after)`` plain line dicts (as for
    :func:`build_service`). Each pair shares one ``group`` (``"1"``, ``"2"``, …); the
    before row has ``correction: False``, the after row ``correction: True``.
    ``before=None`` adds a line (before row with quantity ``"0"``); ``after=None`` (or an
    after line with quantity 0) removes it (after row with quantity ``"0"``).
    """
    services = []
    for index, pair in enumerate(pairs or (), start=1):
        try:
            before, after = pair
        except (TypeError, ValueError):
            raise ValueError("each correction pair must be (before, after)") from None
        if before is None and after is None:
            raise ValueError(f"correction pair {index} has neither a before nor an after line")
        before_row = build_service(before) if before is not None else None
        after_row = build_service(after) if after is not None else None
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


def build_invoice(*, lines, buyer, invoice_date, sale_date=None, payment_date=None,
                  number=None, check_duplicate_number=True, currency="PLN",
                  payment_method, bank_account=None, bank_name=None, swift=None,
                  notes=None, vat_exchange_date_kind=None, vat_exemption_reason=None,
                  sale_type=None, status=None, paid_date=None, kind="vat",
                  split_payment=None):
    """The body inside the ``invoice`` wrapper of ``POST /async/invoices.json``.

    ``lines`` are plain line dicts (see :func:`build_service`), ``buyer`` a plain partner
    dict (see :func:`build_buyer`) or already built ``client_*`` fields. ``None`` values
    are left out. A non-PLN invoice gets ``vat_exchange_date_kind = "vat"`` by default.
    ``split_payment``: ``True``/``"required"`` or ``"optional"`` sets
    ``split_payment_type``.
    """
    kind = _none(kind) or "vat"
    status = _none(status)
    sale_type = _none(sale_type)
    if kind not in INVOICE_KINDS:
        raise ValueError(f"kind must be one of {INVOICE_KINDS}, not {kind!r}")
    if status is not None and status not in INVOICE_STATUSES:
        raise ValueError(f"status must be one of {INVOICE_STATUSES}, not {status!r}")
    if sale_type is not None and sale_type not in SALE_TYPES:
        raise ValueError(f"sale_type must be one of {SALE_TYPES}, not {sale_type!r}")
    services = [build_service(line) for line in (lines or ())]
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
        "vat_exemption_reason": _none(vat_exemption_reason),
        "sale_type": _none(sale_type),
        "status": _none(status),
        "paid_date": format_date(paid_date),
    })
    body.update(_currency_fields(currency, vat_exchange_date_kind))
    if split_payment:
        split_type = "required" if split_payment is True else str(split_payment)
        if split_type not in ("required", "optional"):
            raise ValueError("split_payment must be True, 'required' or 'optional'")
        body["split_payment_type"] = split_type
    body.update(_buyer_fields(buyer))
    body["services"] = services
    return _drop_empty(body)


def build_corrective_invoice(*, pairs, buyer, invoice_date, corrected_invoice_number,
                             corrected_invoice_uuid=None, corrected_invoice_date=None,
                             correction_reason="other", sale_date=None, payment_date=None,
                             number=None, check_duplicate_number=True, currency="PLN",
                             payment_method, bank_account=None, notes=None,
                             vat_exchange_date_kind=None):
    """The body inside the ``corrective_invoice`` wrapper of
    ``POST /async/corrective_invoices.json`` (lines as before/after pairs)."""
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
    """
    rate = tax_rate(service.get("tax_symbol"))
    quantity = to_decimal(service.get("quantity", 1))
    if "unit_net_price" in service or "net_price" in service:
        if service.get("net_price") is not None:
            net = int(to_decimal(service["net_price"]))
        else:
            net = round_to_int(to_decimal(service["unit_net_price"]) * quantity)
        tax = round_to_int(net * rate / 100)
        gross = net + tax
    else:
        gross = int(to_decimal(service.get("gross_price", 0)))
        tax = round_to_int(gross * rate / (100 + rate))
        net = gross - tax
    return {"net": net, "tax": tax, "gross": gross}


def totals(services):
    """Document totals ``{"net", "tax", "gross"}`` in grosze: the sum of line totals."""
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
