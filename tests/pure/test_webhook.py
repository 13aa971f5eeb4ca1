"""Webhook helpers: HMAC signature, verification ping, event parsing."""

import hashlib
import hmac
import json

import pytest

from infakt_api.webhook import (
    ASYNC_MARK_PAID_EVENTS,
    DOCUMENTED_EVENTS,
    EVENT_CATEGORIES,
    EVENT_CATEGORY_NAMES,
    KNOWN_EVENTS,
    SIGNATURE_HEADER,
    WebhookEvent,
    WebhookPayloadError,
    compute_signature,
    event_category,
    is_verification_request,
    parse_event,
    parse_json_body,
    verification_response,
    verify_signature,
)

SECRET = "s3cr3t-hmac-key"

SUCCESS = {
    "event": {"name": "async_invoice_creation_success", "uuid": "74ee2a1c",
              "created_at": "2023-10-02T11:19:40.140+02:00", "retry_counter": 0},
    "resource": {"timestamps": {"task_created_at": "2023-10-02 11:19:39 +0200"},
                 "invoice_kind": "invoice", "invoice_uuid": "e83f0001",
                 "processing_code": 201, "processing_description": "Faktura stworzona",
                 "invoice_task_reference_number": "6562abcd"},
}
ERROR = {
    "event": {"name": "async_invoice_creation_error", "uuid": "e2", "retry_counter": 3,
              "created_at": "2023-10-02T11:19:40+02:00"},
    "resource": {"invoice_kind": "invoice", "invoice_uuid": None, "processing_code": 422,
                 "processing_description": "Nie udało się stworzyć faktury",
                 "invoice_task_reference_number": "77aa",
                 "invoice_errors": {"payment_method": ["Proszę wybrać odpowiedni sposób "
                                                       "płatności."],
                                    "base": "Błąd"}},
}
KSEF = {
    "event": {"name": "send_to_ksef_success", "uuid": "k1", "retry_counter": 0,
              "created_at": "2026-02-03T10:00:00+01:00"},
    "resource": {"status": "success", "ksef_number": "7343521162-20231004-47A70D8BD670-57",
                 "invoice_uuid": "e83f0001", "invoice_kind": "vat", "request_uuid": "r1",
                 "status_description": "OK", "timestamps": {}},
}


def raw(data):
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- signature


def test_signature_header_name():
    assert SIGNATURE_HEADER == "X-Infakt-Signature"


def test_compute_signature_is_hex_hmac_sha256():
    body = raw(SUCCESS)
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, body) == expected
    assert len(expected) == 64


def test_verify_good_signature():
    body = raw(SUCCESS)
    assert verify_signature(SECRET, body, compute_signature(SECRET, body))


def test_verify_uppercase_and_whitespace():
    body = raw(SUCCESS)
    signature = compute_signature(SECRET, body)
    assert verify_signature(SECRET, body, signature.upper())
    assert verify_signature(SECRET, body, f"  {signature}\n")
    assert verify_signature(SECRET, body, f"sha256={signature}")
    assert verify_signature(SECRET, body, signature.encode())


def test_verify_bad_signature():
    body = raw(SUCCESS)
    signature = compute_signature(SECRET, body)
    assert not verify_signature("other-secret", body, signature)
    assert not verify_signature(SECRET, body + b" ", signature)  # raw body matters
    assert not verify_signature(SECRET, raw(ERROR), signature)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert not verify_signature(SECRET, body, flipped)
    assert not verify_signature(SECRET, body, signature[:-1])


@pytest.mark.parametrize("secret", ["", None])
def test_verify_empty_secret(secret):
    body = raw(SUCCESS)
    # even a signature computed with an empty key must not pass
    assert not verify_signature(secret, body, compute_signature("", body))


@pytest.mark.parametrize(
    "header", ["", None, "   ", "zzzz", "ąęść" * 16, "\x00" * 64, b"\xff\xfe", 12345, ["x"]])
def test_verify_junk_header_never_raises(header):
    assert verify_signature(SECRET, raw(SUCCESS), header) is False


@pytest.mark.parametrize("body", [None, 12, object()])
def test_verify_junk_body_never_raises(body):
    assert verify_signature(SECRET, body, "ab" * 32) is False


def test_verify_non_ascii_secret_and_body():
    body = "{\"name\": \"Łódź — żółw\"}".encode()
    secret = "klucz-żółty"
    assert verify_signature(secret, body, compute_signature(secret, body))


# --------------------------------------------------------------------------- body


def test_parse_json_body():
    assert parse_json_body(raw(SUCCESS)) == SUCCESS
    assert parse_json_body(b"\xef\xbb\xbf{\"a\": 1}") == {"a": 1}  # BOM


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
        (b"\"text\"", "object"),
        (b"null", "object"),
        (b"{\"a\": NaN}", "JSON"),
        (b"[" * 100000 + b"]" * 100000, ""),
        (None, "bytes"),
    ],
)
def test_parse_json_body_errors(body, fragment):
    with pytest.raises(WebhookPayloadError) as info:
        parse_json_body(body)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- verification


def test_verification_request():
    ping = {"verification_code": "abc123"}
    assert is_verification_request(ping)
    assert verification_response(ping) == {"verification_code": "abc123"}


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"verification_code": ""},
        {"verification_code": "   "},
        {"verification_code": 123},
        {"verification_code": None},
        {"verification_code": "abc", "event": {"name": "invoice_paid"}},
        SUCCESS,
        ["verification_code"],
        None,
    ],
)
def test_not_verification_request(data):
    assert not is_verification_request(data)
    with pytest.raises(WebhookPayloadError):
        verification_response(data)


# --------------------------------------------------------------------------- events


def test_known_events():
    documented = {"draft_invoice_created", "invoice_paid", "invoice_deleted",
                  "send_to_ksef_success", "send_to_ksef_error",
                  "async_invoice_creation_success", "async_invoice_creation_error"}
    assert documented == set(DOCUMENTED_EVENTS)
    # the form's nine events: the seven documented plus the two async mark-paid ones (OL's
    # guessed names), and OL's spelling of the paid event
    assert documented | ASYNC_MARK_PAID_EVENTS | {"invoice_marked_as_paid"} <= set(KNOWN_EVENTS)
    assert len(documented | ASYNC_MARK_PAID_EVENTS) == 9


@pytest.mark.parametrize("name, category", [
    ("async_invoice_creation_success", "creation"),
    ("async_invoice_creation_error", "creation"),
    ("send_to_ksef_success", "ksef"),
    ("send_to_ksef_error", "ksef"),
    ("invoice_paid", "paid"),
    ("invoice_marked_as_paid", "paid"),
    ("invoice_deleted", "deleted"),
    ("draft_invoice_created", "draft"),
    ("invoice_marked_as_paid_via_async_api", "mark_paid_async"),
    ("invoice_marking_as_paid_error_via_async_api", "mark_paid_async"),
    ("something_new_from_infakt", None),
    (None, None),
])
def test_event_categories(name, category):
    assert event_category(name) == category
    if category is not None:
        assert EVENT_CATEGORIES[name] == category
        assert category in EVENT_CATEGORY_NAMES


def test_unknown_event_is_parsed_and_uncategorised():
    event = parse_event({"event": {"uuid": "e-1", "name": "brand_new_event"},
                         "resource": {"uuid": "u"}})
    assert not event.known and event.category is None and not event.is_error


def test_event_error_flag():
    assert parse_event({"event": {"uuid": "e", "name": "send_to_ksef_error"}}).is_error
    assert parse_event({"event": {"uuid": "e", "name": "invoice_marking_as_paid_error_via_"
                                                        "async_api"}}).is_error
    assert parse_event({"event": {"uuid": "e", "name": "unknown"},
                        "resource": {"processing_code": 422}}).is_error
    assert not parse_event({"event": {"uuid": "e", "name": "invoice_paid"}}).is_error


def test_parse_success_event():
    event = parse_event(SUCCESS)
    assert isinstance(event, WebhookEvent)
    assert event.uuid == "74ee2a1c"
    assert event.name == "async_invoice_creation_success"
    assert event.retry_counter == 0
    assert event.created_at == "2023-10-02T11:19:40.140+02:00"
    assert event.known
    assert event.invoice_uuid == "e83f0001"
    assert event.task_reference == "6562abcd"
    assert event.processing_code == 201
    assert event.invoice_kind == "invoice"
    assert event.errors == {}
    assert event.ksef_number is None


def test_parse_error_event():
    event = parse_event(ERROR)
    assert event.retry_counter == 3
    assert event.invoice_uuid is None
    assert event.task_reference == "77aa"
    assert event.processing_code == 422
    assert event.errors == {
        "payment_method": ["Proszę wybrać odpowiedni sposób płatności."],
        "base": ["Błąd"],
    }


def test_parse_ksef_event():
    event = parse_event(KSEF)
    assert event.ksef_status == "success"
    assert event.ksef_number == "7343521162-20231004-47A70D8BD670-57"
    assert event.invoice_uuid == "e83f0001"
    assert event.invoice_kind == "vat"


def test_parse_minimal_and_full_invoice_resource():
    minimal = parse_event({"event": {"name": "invoice_paid", "uuid": "p1"},
                           "resource": {"uuid": "inv-1"}})
    assert minimal.invoice_uuid == "inv-1"
    assert minimal.retry_counter == 0
    assert minimal.created_at == ""
    full = parse_event({
        "event": {"name": "draft_invoice_created", "uuid": "d1", "retry_counter": "2"},
        "resource": {"uuid": "inv-2", "status": "draft", "number": "1/03/2026",
                     "ksef_data": {"status": "success", "ksef_number": "K-1"}},
    })
    assert full.retry_counter == 2
    assert full.ksef_status == "success"  # from ksef_data, not the invoice status
    assert full.ksef_number == "K-1"
    unknown = parse_event({"event": {"name": "something_new", "uuid": "u"}})
    assert not unknown.known
    assert unknown.resource == {}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (None, "object"),
        ([], "object"),
        ({}, "event"),
        ({"event": "invoice_paid"}, "event"),
        ({"event": {"uuid": "u"}}, "event.name"),
        ({"event": {"name": "", "uuid": "u"}}, "event.name"),
        ({"event": {"name": 5, "uuid": "u"}}, "event.name"),
        ({"event": {"name": "x" * 256, "uuid": "u"}}, "255"),
        ({"event": {"name": "invoice_paid"}}, "event.uuid"),
        ({"event": {"name": "invoice_paid", "uuid": None}}, "event.uuid"),
        ({"event": {"name": "invoice_paid", "uuid": "   "}}, "event.uuid"),
        ({"event": {"name": "invoice_paid", "uuid": "u", "retry_counter": "x"}},
         "retry_counter"),
        ({"event": {"name": "invoice_paid", "uuid": "u", "retry_counter": True}},
         "retry_counter"),
        ({"event": {"name": "invoice_paid", "uuid": "u"}, "resource": []}, "resource"),
        ({"event": {"name": "invoice_paid", "uuid": "u"}, "resource": "x"}, "resource"),
        ({"event": {"name": "invoice_paid", "uuid": "u"}, "resource": None}, "resource"),
    ],
)
def test_parse_event_errors(data, fragment):
    with pytest.raises(WebhookPayloadError) as info:
        parse_event(data)
    assert fragment in str(info.value)


def test_round_trip_raw_body():
    body = raw(ERROR)
    signature = compute_signature(SECRET, body)
    assert verify_signature(SECRET, body, signature)
    event = parse_event(parse_json_body(body))
    assert event.name == "async_invoice_creation_error"


@pytest.mark.parametrize("field", ["uuid", "name"])
@pytest.mark.parametrize("value", ["a\x00b", "a\ud800b"])
def test_event_ids_must_be_text(field, value):
    event = {"uuid": "u-1", "name": "invoice_paid", field: value}
    with pytest.raises(WebhookPayloadError):
        parse_event({"event": event, "resource": {}})


def test_event_odd_values_are_tamed():
    parsed = parse_event({
        "event": {"uuid": "u-1", "name": "invoice_paid", "retry_counter": 10**20,
                  "created_at": "2026\x00-11\ud800"},
        "resource": {},
    })
    assert parsed.retry_counter == 2**31 - 1
    assert "\x00" not in parsed.created_at
    parsed.created_at.encode("utf-8")
