"""Error classification of inFakt answers (no network)."""

import email.utils
import time

import pytest

from infakt_api.client import parse_task
from infakt_api.errors import (
    InfaktAuthError,
    InfaktError,
    InfaktInDoubt,
    InfaktLocked,
    InfaktNotFound,
    InfaktPermissionError,
    InfaktPlanError,
    InfaktRateLimited,
    InfaktServerError,
    InfaktTimeout,
    InfaktTransientError,
    InfaktUnexpectedResponse,
    InfaktValidationError,
    classify_http_error,
    normalize_errors,
    parse_retry_after,
    task_error,
)


@pytest.mark.parametrize(
    ("status", "method", "cls", "retryable"),
    [
        (400, "GET", InfaktValidationError, False),
        (401, "GET", InfaktAuthError, False),
        (401, "POST", InfaktAuthError, False),
        (402, "POST", InfaktPlanError, False),
        (403, "GET", InfaktPermissionError, False),
        (404, "GET", InfaktNotFound, False),
        (406, "GET", InfaktValidationError, False),
        (408, "POST", InfaktTimeout, True),
        (409, "POST", InfaktError, False),
        (422, "POST", InfaktValidationError, False),
        (423, "POST", InfaktLocked, True),
        (429, "GET", InfaktRateLimited, True),
        (429, "POST", InfaktRateLimited, True),
        (503, "GET", InfaktRateLimited, True),
        (503, "POST", InfaktRateLimited, True),
        (500, "GET", InfaktServerError, True),
        (502, "GET", InfaktServerError, True),
        (504, "HEAD", InfaktServerError, True),
        (500, "POST", InfaktInDoubt, False),
        (502, "POST", InfaktInDoubt, False),
        (504, "post", InfaktInDoubt, False),
        (500, "PUT", InfaktInDoubt, False),
        (302, "GET", InfaktUnexpectedResponse, False),
    ],
)
def test_classify_status(status, method, cls, retryable):
    error = classify_http_error(status, None, {}, method)
    assert type(error) is cls
    assert isinstance(error, InfaktError)
    assert error.status == status
    assert error.retryable is retryable
    assert str(error)
    assert f"HTTP {status}" in str(error)


def test_sync_validation_errors_shape():
    body = {"errors": {"payment_method": ["Proszę wybrać odpowiedni sposób płatności."],
                       "client_company_name": "nie może być puste"}}
    error = classify_http_error(422, body, {}, "POST")
    assert isinstance(error, InfaktValidationError)
    assert error.field_errors == {
        "payment_method": ["Proszę wybrać odpowiedni sposób płatności."],
        "client_company_name": ["nie może być puste"],
    }
    assert "payment_method: Proszę wybrać" in str(error)
    assert error.payload == body


def test_error_string_body_bytes():
    body = '{"error":"Zasób którego szukasz nie został znaleziony."}'.encode()
    error = classify_http_error(404, body, {}, "GET")
    assert isinstance(error, InfaktNotFound)
    assert error.message == "Zasób którego szukasz nie został znaleziony."
    assert error.field_errors == {"base": ["Zasób którego szukasz nie został znaleziony."]}
    assert error.payload == {"error": "Zasób którego szukasz nie został znaleziony."}


def test_ksef_error_422():
    error = classify_http_error(422, {"error": "Użytkownik nie jest zintegrowany z KSeF."},
                                None, "POST")
    assert isinstance(error, InfaktValidationError)
    assert str(error) == "Użytkownik nie jest zintegrowany z KSeF. (HTTP 422)"


def test_html_and_junk_bodies():
    error = classify_http_error(502, b"<html><body>Bad gateway</body></html>", {}, "GET")
    assert isinstance(error, InfaktTransientError)
    assert "<html>" not in error.message
    error = classify_http_error(500, b"\xff\xfe\x00", {}, "POST")
    assert isinstance(error, InfaktInDoubt)
    assert "may have been processed" in str(error)
    error = classify_http_error(400, b"{broken", {}, "GET")
    assert isinstance(error, InfaktValidationError)
    assert error.field_errors == {}
    error = classify_http_error(401, "Unauthorized", {}, "GET")
    assert error.message == "Unauthorized"
    error = classify_http_error(403, "", {}, "GET")
    assert "scope" in error.message


def test_message_is_truncated():
    error = classify_http_error(400, {"error": "x" * 5000}, {}, "GET")
    assert len(error.message) <= 1000


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"RETRY-AFTER": " 0 "}, 0.0),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_retry_after(headers, expected):
    error = classify_http_error(429, None, headers, "POST")
    assert isinstance(error, InfaktRateLimited)
    assert error.retry_after == expected


def test_retry_after_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    error = classify_http_error(503, None, {"Retry-After": when}, "GET")
    assert 25 <= error.retry_after <= 31
    assert parse_retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"errors": {"a": ["x", "y"], "b": "z"}}, {"a": ["x", "y"], "b": ["z"]}),
        ({"invoice_errors": {"payment_method": "zły"}}, {"payment_method": ["zły"]}),
        ({"invoice_errors": {"base": ["Błąd ogólny"]}}, {"base": ["Błąd ogólny"]}),
        ({"invoice_errors": {"status": ["Faktura już została oznaczona jako zapłacona."]}},
         {"status": ["Faktura już została oznaczona jako zapłacona."]}),
        ({"base": ["a", "b"]}, {"base": ["a", "b"]}),
        ({"error": "msg"}, {"base": ["msg"]}),
        ({"errors": ["one", "two"]}, {"base": ["one", "two"]}),
        ({"errors": {"services": [{"gross": ["zła"]}, {}]}}, {"services[0].gross": ["zła"]}),
        ({"errors": {"value": {"tax_values": ["bad"], "base": "b"}}},
         {"value.tax_values": ["bad"], "value": ["b"]}),
        ({"errors": {"a": [None, "", "x", "x", 5]}}, {"a": ["x", "5"]}),
        ({"invoice_errors": None}, {}),
        ({"metainfo": {}}, {}),
        ("plain text", {"base": ["plain text"]}),
        (None, {}),
        (42, {}),
    ],
)
def test_normalize_errors(body, expected):
    assert normalize_errors(body) == expected


def test_task_error_from_failed_envelope():
    envelope = {"invoice_task_reference_number": "r1", "processing_code": 422,
                "processing_description": "Nie udało się stworzyć faktury",
                "invoice_errors": {"payment_method": ["Proszę wybrać odpowiedni sposób "
                                                      "płatności."]}}
    error = task_error(envelope)
    assert isinstance(error, InfaktValidationError)
    assert error.status == 422
    assert error.field_errors == {
        "payment_method": ["Proszę wybrać odpowiedni sposób płatności."]}
    assert str(error).startswith("Nie udało się stworzyć faktury: payment_method:")
    status = parse_task(envelope)
    assert status.failed and not status.done and not status.pending
    assert status.errors == error.field_errors
    assert isinstance(status.as_error(), InfaktValidationError)


@pytest.mark.parametrize(
    ("code", "done", "failed", "pending"),
    [(100, False, False, True), (120, False, False, True), (140, False, False, True),
     (201, True, False, False), (200, True, False, False), (422, False, True, False),
     ("201", True, False, False), (110, False, False, True), (500, False, True, False)],
)
def test_parse_task_codes(code, done, failed, pending):
    status = parse_task({"invoice_task_reference_number": "ref", "processing_code": code,
                         "processing_description": "d", "invoice_uuid": "u" if done else None,
                         "invoice_kind": "invoice", "action": "create_invoice"})
    assert (status.done, status.failed, status.pending) == (done, failed, pending)
    assert status.reference == "ref"
    assert status.code == int(code)
    assert status.invoice_kind == "invoice"
    assert status.action == "create_invoice"
    assert status.invoice_uuid == ("u" if done else None)
    assert (status.as_error() is not None) is failed


@pytest.mark.parametrize("envelope", [None, [], {}, {"processing_code": "x"},
                                      {"processing_code": True}])
def test_parse_task_rejects_junk(envelope):
    with pytest.raises(InfaktUnexpectedResponse):
        parse_task(envelope)


def test_repr_and_attributes():
    error = InfaktRateLimited("slow down", status=429, retry_after=2.0)
    assert repr(error) == "InfaktRateLimited(status=429, message='slow down')"
    assert error.retry_after == 2.0
    plain = InfaktInDoubt()
    assert plain.status is None
    assert plain.field_errors == {}
    assert plain.payload is None
    assert "may have been processed" in str(plain)
    assert not InfaktInDoubt.retryable
    assert InfaktTransientError.retryable and InfaktLocked.retryable
