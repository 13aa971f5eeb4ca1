import json
import socket
import time
from datetime import timedelta
from urllib.parse import urlsplit

from odoo import fields
from odoo.tests import HttpCase, tagged

from ..controllers.main import MAX_BODY_BYTES
from ..infakt_api.webhook import compute_signature
from .common import WEBHOOK_SECRET, InfaktCommon, InfaktWebhookMixin, wait_until

# Far above the cap: a server that tried to read (or parse) such a body would wait for bytes
# that never come.
HUGE_LENGTH = 64 * 1024 * 1024


def _send(sock, data):
    """``sendall``; False when the server answered (and closed) before reading it all."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True


def _status(raw_response):
    """The status code of a raw HTTP response (bytes)."""
    return int(raw_response.split(b" ", 2)[1])


@tagged("post_install", "-at_install")
class TestWebhookController(InfaktWebhookMixin, InfaktCommon, HttpCase):
    def events(self):
        return self.env["infakt.webhook.event"].sudo().search(
            [("account_id", "=", self.infakt_account.id)]
        )

    def account_snapshot(self):
        self.env.invalidate_all()
        account = self.infakt_account.sudo().with_context(active_test=False)
        return {"verified_at": account.webhook_verified_at,
                "messages": len(account.message_ids), "active": account.active}

    def processor_triggers(self):
        cron = self.env.ref("l10n_pl_infakt.ir_cron_infakt_process")
        return self.env["ir.cron.trigger"].sudo().search_count([("cron_id", "=", cron.id)])

    def raw_request(self, head, body_parts=(), timeout=30):
        """Send ``head`` (the request line and headers, without the final blank line) and the
        body parts on a plain socket, then read the answer until the server closes; returns
        (raw response, seconds from the end of sending to the answer)."""
        url = urlsplit(self.base_url())
        with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
            for part in (head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n",
                         *body_parts):
                if not _send(sock, part):
                    break
            sent_at = time.monotonic()
            received = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:  # the server closed with our bytes unread
                    break
                if not chunk:
                    break
                received += chunk
        return received, time.monotonic() - sent_at

    def test_unknown_token_404(self):
        response = self.url_open("/infakt/webhook/not-a-token", data=b"{}",
                                 headers={"Content-Type": "application/json"})
        self.assertEqual(response.status_code, 404)
        response = self.url_open("/infakt/webhook/" + "x" * 500, data=b"{}")
        self.assertEqual(response.status_code, 404)

    def test_odd_tokens_404_never_500(self):
        """Tokens that cannot be ours are refused before they reach a query (a NUL in a
        query parameter is a server error in psycopg2); nothing is changed."""
        real = self.infakt_account.sudo().webhook_token
        before = self.account_snapshot()
        paths = [
            "/infakt/webhook/ab%00cd",
            "/infakt/webhook/%00",
            f"/infakt/webhook/{real}%00",
            f"/infakt/webhook/{real[:20]}%00{real[20:]}",
            "/infakt/webhook/%ED%A0%80",  # a UTF-16 surrogate, encoded in "UTF-8"
            "/infakt/webhook/%FF%FE%00",  # not UTF-8 at all
            "/infakt/webhook/" + "%C5%BC%C3%B3%C5%82w" * 10,
            "/infakt/webhook/" + "x" * 500,
            "/infakt/webhook/" + "A" * 43,  # well shaped, unknown: looked up, not found
            f"/infakt/webhook/{real}x",
            f"/infakt/webhook/{real[:-1]}",
            f"/infakt/webhook/{real}%20",
            "/infakt/webhook/a%00/b",  # matches no route: Odoo's fallback
            "/infakt/webhook/%00/%00",
            "/infakt/webhook/",
        ]
        body = json.dumps({"verification_code": "abc"}).encode()
        for path in paths:
            response = self.opener.post(self.base_url() + path, data=body, timeout=60,
                                        headers={"Content-Type": "application/json"},
                                        allow_redirects=False)
            self.assertEqual(response.status_code, 404, path)
            self.assertNotIn("Traceback", response.text, path)
        self.assertEqual(self.account_snapshot(), before)

    def test_odd_headers_never_500(self):
        """Odd header bytes (NUL, non-UTF-8, absurd lengths) are refused, never a 500."""
        path = self.webhook_url()
        event = json.dumps(self.event("invoice_paid", {"uuid": "u-h"}, uuid="evt-h")).encode()
        cases = [
            ("X-Infakt-Signature: ab\x00cd", event, 401),
            ("X-Infakt-Signature: \xff\xfe" + "0" * 62, event, 401),
            ("X-Infakt-Signature: sha256=\x00", event, 401),
            ("Content-Type: application/json\x00; charset=\xff", event, 401),
            ("Content-Type: multipart/form-data; boundary=\x00", event, 415),
            ("Content-Type: application/x-www-form-urlencoded; charset=\x00", event, 415),
        ]
        for header, body, expected in cases:
            raw, _elapsed = self.raw_request(
                f"POST {path} HTTP/1.1\r\nHost: localhost\r\n{header}\r\n"
                f"Content-Length: {len(body)}", [body])
            self.assertEqual(_status(raw), expected, header)
        for length in ("abc", "-1", "1e3", "9" * 40, str(MAX_BODY_BYTES + 1)):
            raw, _elapsed = self.raw_request(
                f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
                f"Content-Type: application/json\r\nContent-Length: {length}", [event])
            self.assertIn(_status(raw), (400, 413), length)
            self.assertNotIn(b"Traceback", raw)
        self.assertFalse(self.events())

    def test_odd_bodies_never_500(self):
        """Unsigned and signed bodies with NUL, lone surrogates, invalid UTF-8, huge numbers
        and deep nesting: 2xx, 400 or 401, never a server error."""
        before = self.account_snapshot()
        unsigned = [
            (b"\x00", 400),
            (b'{"verification_code": "\xed\xa0\x80"}', 400),  # invalid UTF-8
            (b'{"verification_code": "ab\x00"}', 400),  # raw control character
            (b'{"a": 1e999999}', 401),
            (b'{"a": ' + b"9" * 5000 + b"}", 400),  # longer than Python's int limit
            (b"[" * 140000 + b"]" * 140000, 413),
            (b"[" * 50000 + b"]" * 50000, 400),
            (b'{"a":' * 20000 + b"1" + b"}" * 20000, 400),
        ]
        for raw, expected in unsigned:
            response = self.post_webhook(raw, secret=None)
            self.assertEqual(response.status_code, expected, raw[:60])
        # Escaped NUL and lone surrogate: a valid JSON ping, echoed as sent (ASCII-escaped).
        for code in ("\x00", "\ud800", "\udfff\x00x"):
            response = self.post_webhook(json.dumps({"verification_code": code}).encode(),
                                         secret=None)
            self.assertEqual(response.status_code, 200)
            self.assertEqual(response.json(), {"verification_code": code})
        self.assertEqual(self.account_snapshot(), before)
        self.assertFalse(self.events())

        signed = [
            (b'{"event": {"uuid": "e-1", "name": "invoice_paid", "retry_counter": 1e999}}', 400),
            (b'{"event": {"uuid": "e-2", "name": "invoice_paid", "retry_counter": -1e999}}', 400),
            (json.dumps(self.event("invoice_paid", {}, uuid="e-\x00")).encode(), 400),
            (json.dumps(self.event("invoice_paid\ud800", {}, uuid="e-3")).encode(), 400),
            (b'{"event": {"uuid": "e-4", "name": "invoice_paid", "retry_counter": '
             + b"9" * 4000 + b"}}", 200),
        ]
        for depth in (100, 400, 700, 900, 990):
            nested = "[" * depth + "]" * depth
            signed.append((
                (f'{{"event": {{"uuid": "deep-{depth}", "name": "async_invoice_creation_error"}}, '
                 f'"resource": {{"invoice_errors": {nested}, "invoice_uuid": {nested}}}}}'
                 ).encode(),
                None,
            ))
        for raw, expected in signed:
            response = self.post_webhook(raw)
            self.assertLess(response.status_code, 500, raw[:80])
            self.assertNotIn("Traceback", response.text)
            if expected:
                self.assertEqual(response.status_code, expected, raw[:80])
            else:
                self.assertIn(response.status_code, (200, 400), raw[:80])

    def test_get_is_refused(self):
        """POST only: werkzeug answers 405 to the other methods, and the controller to
        OPTIONS (which Odoo adds to every route); a 404 would hide a real route."""
        response = self.url_open(self.webhook_url())
        self.assertEqual(response.status_code, 405)
        self.assertIn("POST", response.headers.get("Allow", ""))
        response = self.opener.options(self.base_url() + self.webhook_url(), timeout=60)
        self.assertEqual(response.status_code, 405)
        self.assertEqual(response.headers.get("Allow"), "POST")

    def test_unsigned_verification_echoed_changes_nothing(self):
        """Anyone with the URL can send the ping: it is answered (inFakt may not sign it),
        but changes nothing: no verified time, no line in the chatter."""
        before = self.account_snapshot()
        self.assertFalse(before["verified_at"])
        for kwargs in ({"secret": None}, {"secret": "wrong-secret"}, {"signature": "00" * 32}):
            response = self.post_webhook({"verification_code": "abc123"}, **kwargs)
            self.assertEqual(response.status_code, 200, kwargs)
            self.assertEqual(response.json(), {"verification_code": "abc123"})
        self.assertEqual(self.account_snapshot(), before)
        self.assertEqual(self.infakt_account.webhook_state, "not_verified")

    def test_signed_verification_marks_verified(self):
        before = self.account_snapshot()
        response = self.post_webhook({"verification_code": "abc123"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"verification_code": "abc123"})
        after = self.account_snapshot()
        self.assertTrue(after["verified_at"])
        self.assertEqual(after["messages"], before["messages"] + 1)
        self.assertEqual(self.infakt_account.webhook_state, "verified")
        self.assertFalse(self.events())

    def test_first_authentic_event_marks_verified(self):
        """The ping may be unsigned (or come before the secret is entered): the first
        delivery signed with the secret proves the webhook works; an unsigned one does not."""
        response = self.post_webhook(self.event("invoice_paid", {"uuid": "u-v"}, uuid="evt-v"),
                                     secret=None)
        self.assertEqual(response.status_code, 401)
        self.assertFalse(self.account_snapshot()["verified_at"])
        response = self.post_webhook(self.event("invoice_paid", {"uuid": "u-v"}, uuid="evt-v"))
        self.assertEqual(response.json()["status"], "accepted")
        verified = self.account_snapshot()
        self.assertTrue(verified["verified_at"])
        response = self.post_webhook(self.event("invoice_paid", {"uuid": "u-w"}, uuid="evt-w"))
        self.assertEqual(response.json()["status"], "accepted")
        self.assertEqual(self.account_snapshot(), verified, "marked once")

    def test_simulator_verification_flow(self):
        """inFakt's Verify button: the simulator POSTs the code to the account's URL, signed
        with the webhook's secret, and gets it back; Odoo marks the webhook verified. With the
        secret not in Odoo yet the code is still echoed, and the first signed event verifies
        the webhook."""
        url = self.base_url() + self.webhook_url()
        secret = self.infakt_account.sudo().webhook_secret
        self.infakt_account.sudo().webhook_secret = False
        self.env.flush_all()  # the server thread reads the database
        self.simulator.configure(webhook_url=url, webhook_secret=WEBHOOK_SECRET)
        result = self.simulator.verify_webhook()
        self.assertTrue(result["verified"], result)
        self.assertEqual(self.sim_state()["webhook"]["status"], "active")
        self.assertFalse(self.account_snapshot()["verified_at"])
        self.infakt_account.sudo().webhook_secret = secret
        self.env.flush_all()
        self.assertTrue(self.simulator.verify_webhook()["verified"])
        self.assertTrue(self.account_snapshot()["verified_at"])

    def test_missing_or_bad_signature_401_changes_nothing(self):
        body = self.event("invoice_paid", {"uuid": "u-1"})
        for kwargs in ({"secret": None}, {"secret": "wrong-secret"}, {"signature": "zz" * 32},
                       {"signature": "deadbeef"}):
            response = self.post_webhook(body, **kwargs)
            self.assertEqual(response.status_code, 401, kwargs)
        self.assertFalse(self.events())

    def test_no_secret_configured_401(self):
        self.infakt_account.webhook_secret = False
        response = self.post_webhook(self.event("invoice_paid", {"uuid": "u-1"}))
        self.assertEqual(response.status_code, 401)
        self.assertFalse(self.events())

    def test_malformed_bodies_400(self):
        for raw in (b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'"text"', b" ",
                    json.dumps({"event": {"name": "x"}}).encode(),
                    json.dumps({"event": {"uuid": "u", "name": "x"}, "resource": []}).encode()):
            response = self.post_webhook(raw)
            self.assertEqual(response.status_code, 400, raw)
            self.assertNotIn("Traceback", response.text)
        self.assertFalse(self.events())

    def test_oversized_body_413(self):
        raw = b'{"a": "' + b"x" * (300 * 1024) + b'"}'
        response = self.post_webhook(raw)
        self.assertEqual(response.status_code, 413)
        self.assertFalse(self.events())
        raw = json.dumps(self.event("invoice_paid", {"pad": "x" * MAX_BODY_BYTES})).encode()
        response = self.post_webhook(raw)
        self.assertEqual(response.status_code, 413)
        self.assertFalse(self.events())

    def test_form_bodies_over_cap_413_unread(self):
        """Form-encoded and multipart bodies over the cap are refused before Odoo parses
        them (it would, up to 128 MiB, before any controller): only 1 KiB of a declared
        64 MiB is sent, and the 413 comes at once, without waiting for the rest."""
        path = self.webhook_url()
        for content_type in ("application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=zz"):
            raw, elapsed = self.raw_request(
                f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {HUGE_LENGTH}", [b"--zz\r\n" + b"a=" + b"x" * 1024])
            self.assertEqual(_status(raw), 413, content_type)
            self.assertIn(b"Payload too large", raw)
            # Odoo's HTTP server gives up reading after 5 s in tests: a server that waited for
            # the body would not answer 413, and not this fast.
            self.assertLess(elapsed, 5, content_type)
        # Whole bodies, sent for real.
        form = {"verification_code": "abc", "pad": "x" * (MAX_BODY_BYTES + 1)}
        response = self.opener.post(self.base_url() + path, data=form, timeout=60)
        self.assertEqual(response.status_code, 413)
        response = self.opener.post(self.base_url() + path, files={"f": ("f.json", b"x" * (
            MAX_BODY_BYTES + 1))}, data={"verification_code": "abc"}, timeout=60)
        self.assertEqual(response.status_code, 413)
        self.assertFalse(self.events())
        self.assertFalse(self.account_snapshot()["verified_at"])

    def test_small_form_bodies_415(self):
        """inFakt sends JSON: form bodies are refused (read raw, never parsed)."""
        before = self.account_snapshot()
        body = self.event("invoice_paid", {"uuid": "u-f"}, uuid="evt-f")
        signature = compute_signature(WEBHOOK_SECRET, "x")
        url = self.base_url() + self.webhook_url()
        for response in (
            self.opener.post(url, data={"verification_code": "abc"}, timeout=60),
            self.opener.post(url, data={"event": json.dumps(body)}, timeout=60,
                             headers={"X-Infakt-Signature": signature}),
            self.opener.post(url, files={"f": ("f.json", json.dumps(body))}, timeout=60),
        ):
            self.assertEqual(response.status_code, 415)
            self.assertEqual(response.json(), {"error": "Send the webhook as application/json."})
        self.assertEqual(self.account_snapshot(), before)
        self.assertFalse(self.events())

    def test_chunked_bodies_capped(self):
        """Without a Content-Length (chunked), the body is read up to the cap and no further:
        a small signed event is accepted, an oversized one refused, and an endless stream is
        answered 413 while it is still being sent."""
        url = self.base_url() + self.webhook_url()
        raw = json.dumps(self.event("invoice_paid", {"uuid": "u-c"}, uuid="evt-c")).encode()
        headers = {"Content-Type": "application/json",
                   "X-Infakt-Signature": compute_signature(WEBHOOK_SECRET, raw)}
        response = self.opener.post(url, data=iter([raw[:10], raw[10:]]), headers=headers,
                                    timeout=60)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json()["status"], "accepted")
        self.assertEqual(len(self.events()), 1)

        raw = json.dumps(self.event("invoice_paid", {"pad": "x" * MAX_BODY_BYTES},
                                    uuid="evt-big")).encode()
        headers["X-Infakt-Signature"] = compute_signature(WEBHOOK_SECRET, raw)
        parts = [raw[index:index + 16384] for index in range(0, len(raw), 16384)]
        response = self.opener.post(url, data=iter(parts), headers=headers, timeout=60)
        self.assertEqual(response.status_code, 413)

        chunk = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
        raw_response, elapsed = self.raw_request(
            f"POST {self.webhook_url()} HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked",
            [b"10\r\n" + b'{"pad": "xxxxxx"' + b"\r\n"] + [chunk] * (MAX_BODY_BYTES // 16384 + 2),
        )  # never terminated
        self.assertEqual(_status(raw_response), 413)
        self.assertLess(elapsed, 5)
        self.assertEqual(len(self.events()), 1)

    def test_event_recorded_once_and_replay_answered_200(self):
        body = self.event(
            "async_invoice_creation_success",
            {"invoice_task_reference_number": "ref-1", "invoice_uuid": "uuid-1",
             "processing_code": 201, "processing_description": "Faktura stworzona",
             "invoice_kind": "invoice", "client_company_name": "Personal data"},
            uuid="evt-42",
        )
        response = self.post_webhook(body)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["status"], "accepted")
        response = self.post_webhook(body)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["status"], "duplicate")
        events = self.events()
        self.assertEqual(len(events), 1)
        self.assertEqual(events.task_reference, "ref-1")
        self.assertEqual(events.invoice_uuid, "uuid-1")
        self.assertNotIn("client_company_name", events.resource, "buyer data is not stored")
        cron = self.env.ref("l10n_pl_infakt.ir_cron_infakt_process")
        self.assertTrue(self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)]))

    def test_ignored_event_still_200(self):
        response = self.post_webhook(self.event("draft_invoice_created", {"uuid": "u-9"},
                                                uuid="evt-9"))
        self.assertEqual(response.status_code, 200)
        Event = self.env["infakt.webhook.event"]
        run = self.env["infakt.document.runner"]._new_run(with_commit=False)
        Event._process_pending(run)
        # No document matches it (yet: a task reference is committed a moment after the
        # create): kept for a while, then ignored.
        event = self.events()
        self.assertEqual(event.state, "new")
        self.assertTrue(event.retry_at)
        event.write({"received_at": fields.Datetime.now() - timedelta(hours=1),
                     "retry_at": False})
        Event._process_pending(run)
        self.assertEqual(event.state, "ignored")

    def test_uppercase_signature_accepted(self):
        from ..infakt_api.webhook import compute_signature

        raw = json.dumps(self.event("invoice_paid", {"uuid": "u-2"}, uuid="evt-up")).encode()
        response = self.post_webhook(raw, signature=compute_signature(WEBHOOK_SECRET, raw).upper())
        self.assertEqual(response.status_code, 200)

    def test_archived_account_acknowledges_and_ignores(self):
        """inFakt disables a webhook after 10 failed deliveries: an archived account answers
        200 to authentic deliveries (and stores nothing), 401 to the others."""
        self.infakt_account.active = False
        triggers = self.processor_triggers()
        before = self.account_snapshot()
        body = self.event("invoice_paid", {"uuid": "u-3"}, uuid="evt-archived")
        for _attempt in range(2):
            response = self.post_webhook(body)
            self.assertEqual(response.status_code, 200)
            self.assertEqual(response.json(), {"status": "ignored"})
        for kwargs in ({"secret": None}, {"secret": "wrong-secret"}, {"signature": "zz"}):
            response = self.post_webhook(body, **kwargs)
            self.assertEqual(response.status_code, 401, kwargs)
        # The ping is echoed (signed or not), and changes nothing either.
        for kwargs in ({}, {"secret": None}):
            response = self.post_webhook({"verification_code": "abc"}, **kwargs)
            self.assertEqual(response.json(), {"verification_code": "abc"})
        self.assertFalse(self.events())
        self.assertEqual(self.processor_triggers(), triggers)
        self.assertEqual(self.account_snapshot(), before)
        self.infakt_account.webhook_secret = False
        self.assertEqual(self.post_webhook(body).status_code, 401)

    def test_archived_account_note_on_form(self):
        arch = self.env["infakt.account"].get_view(
            self.env.ref("l10n_pl_infakt.infakt_account_view_form").id)["arch"]
        self.assertIn("archived, inFakt's signed deliveries are acknowledged and ignored", arch)

    def test_end_to_end_completed_by_webhook(self):
        """Sale order -> invoice -> sent; inFakt's webhook (real delivery by the simulator to
        this Odoo server) completes it before any poll would."""
        url = self.base_url() + self.webhook_url()
        self.simulator.configure(webhook_url=url, webhook_secret=WEBHOOK_SECRET, task_delay=0.3)
        self.assertTrue(self.simulator.verify_webhook()["verified"])
        order = self.create_order()
        invoice = self.invoice_order(order)
        self.run_sender()
        document = invoice.infakt_document_ids
        self.assertEqual(document.state, "processing")
        # Push the first poll far away: only the webhook can bring the document forward.
        document.sudo().next_poll_at = "2099-01-01 00:00:00"
        wait_until(lambda: any(d.get("success") for d in self.sim_state()["webhook_deliveries"]))
        # No further delivery (draft_invoice_created, retries...) may reach Odoo while this
        # test uses the database: the HTTP server works in the test's own transaction, and
        # two threads on one cursor corrupt it (and the tests after this one).
        self.simulator.configure(webhook_url=None)
        wait_until(lambda: not self.sim_state()["webhook"]["pending"], timeout=30)
        self.env.invalidate_all()
        event = self.events().filtered(lambda e: e.name == "async_invoice_creation_success")
        self.assertEqual(len(event), 1)
        self.assertEqual(event.task_reference, document.task_reference)
        self.run_processor()
        self.assertEqual(event.state, "done")
        self.assertEqual(document.state, "done")
        self.assertEqual(document.infakt_number, invoice.name)
        self.assertTrue(order.infakt_invoice_attachment_ids)
