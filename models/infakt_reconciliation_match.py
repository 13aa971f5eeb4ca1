import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from ..infakt_api import errors as infakt_errors
from .infakt_reconciliation import LINE_KINDS
from .infakt_run import InfaktStop

_logger = logging.getLogger(__name__)

# inFakt's income documents of a period, one list after the other.
KINDS = ("invoice", "corrective", "advance", "final")
# What is kept of a listed document (enough to compare and to link).
KEPT_KEYS = ("uuid", "id", "number", "invoice_date", "currency", "net_price", "tax_price",
             "gross_price", "advance_price", "previous_advances", "client_tax_code",
             "client_company_name", "client_first_name", "client_last_name", "ksef_number",
             "ksef_data", "status")
# Temporary failures (inFakt unreachable) tolerated before a reconciliation fails.
MAX_FAILURES = 5
RETRY_SECONDS = 30
# Share of the progress bar taken by the list calls (the rest: documents read one by one).
LIST_SHARE = 80.0
DETAILS_PER_COMMIT = 20
KIND_SEQUENCE = {kind: index for index, (kind, _label) in enumerate(LINE_KINDS)}


class InfaktReconciliationMatch(models.AbstractModel):
    """The reconciliation job: reads inFakt's documents of the period page by page (the
    account's client, every request paced by ``infakt.pacer`` within inFakt's read limit),
    keeps where it stopped on the record (resumable by the next run), then puts Odoo's
    posted invoices and credit notes of the period side by side with them."""

    _name = "infakt.reconciliation.match"
    _description = "inFakt: reconciliation of a period (job and matching)"

    # ------------------------------------------------------------------------------------
    # The scheduled action
    # ------------------------------------------------------------------------------------
    @api.model
    def _trigger(self, at=None):
        cron = self.env.ref("l10n_pl_infakt.ir_cron_infakt_reconcile", raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger(at)

    @api.model
    def _cron_reconcile(self, time_budget=None, with_commit=True):
        """Read and match the running reconciliations within the run's time budget; a
        reconciliation not finished (time up, read limit reached) goes on in the next run."""
        run = self.env["infakt.document.runner"]._new_run(time_budget, with_commit)
        try:
            while not run.expired():
                record = self._pick()
                if not record:
                    break
                # The rows are written in the language of who made the reconciliation.
                service = self.with_context(lang=record.create_uid.lang
                                            or record.company_id.partner_id.lang
                                            or self.env.lang)
                try:
                    service._advance(record.with_env(service.env), run)  # commits per page
                except Exception as error:  # noqa: BLE001 - said on the record, not a crash loop
                    _logger.exception("inFakt: reconciliation %s failed", record.id)
                    run.rollback()
                    service._fail(record, service.env._(
                        "The reconciliation stopped on an error: %s", error))
                run.commit()
                if record.state == "running":
                    break
        finally:
            run.close()
        if self._pick_ids():
            self._trigger(fields.Datetime.now() + timedelta(seconds=run.retrigger_in or 0))

    @api.model
    def _pick_ids(self):
        self.env.flush_all()
        self.env.cr.execute(SQL("SELECT id FROM infakt_reconciliation WHERE state = 'running' "
                                "ORDER BY id"))
        return [row[0] for row in self.env.cr.fetchall()]

    @api.model
    def _pick(self):
        self.env.flush_all()
        self.env.cr.execute(SQL(
            "SELECT id FROM infakt_reconciliation WHERE state = 'running' ORDER BY id "
            "LIMIT 1 FOR UPDATE SKIP LOCKED"))
        row = self.env.cr.fetchone()
        return self.env["infakt.reconciliation"].sudo().browse(row[0] if row else [])

    # ------------------------------------------------------------------------------------
    # Reading inFakt's documents of the period, page by page
    # ------------------------------------------------------------------------------------
    @api.model
    def _advance(self, record, run):
        try:
            client = run.client_for(record.account_id)
        except InfaktStop as stop:
            return self._fail(record, str(stop) or record.account_id.connection_message)
        cursor = dict(record.cursor or {"kind": 0, "offset": 0})
        while cursor["kind"] < len(KINDS):
            if run.expired():
                return None
            kind = KINDS[cursor["kind"]]
            try:
                rows, next_offset, last, total = client.read_period_page(
                    kind, record.date_from, record.date_to, cursor["offset"], record.page_size)
            except infakt_errors.InfaktError as error:
                if isinstance(error, infakt_errors.InfaktNotFound) and kind in ("advance",
                                                                               "final"):
                    rows, next_offset, last, total = [], 0, True, 0
                else:
                    self._read_failed(record, cursor, error, run)
                    return None
            self._keep_page(record, cursor, kind, rows, next_offset, last, total)
            run.commit()
            cursor = dict(record.cursor)
        if self._read_details(record, client, run):
            self._match(record)
        return None

    @api.model
    def _keep_page(self, record, cursor, kind, rows, next_offset, last, total):
        known = {row.get("uuid") for row in record.remote_rows or []}
        kept = list(record.remote_rows or [])
        for row in rows:
            if row.get("uuid") in known:
                continue  # rows shifting between pages are kept once
            known.add(row.get("uuid"))
            kept.append(dict({key: row.get(key) for key in KEPT_KEYS}, kind=kind,
                             ksef_known="ksef_data" in row or "ksef_number" in row))
        index = cursor["kind"]
        fraction = 1.0 if last else (next_offset / total if total else 0.0)
        new_cursor = {"kind": index + 1, "offset": 0} if last else {
            "kind": index, "offset": next_offset}
        record.write({
            "cursor": dict(new_cursor, failures=0),
            "remote_rows": kept,
            "pages_read": record.pages_read + 1,
            "infakt_read_count": len(kept),
            "progress": LIST_SHARE * (index + min(1.0, fraction)) / len(KINDS),
        })

    @api.model
    def _details_needed(self, record):
        """The listed documents linked in Odoo whose KSeF state the list did not give, where
        KSeF goes through inFakt: inFakt's lists leave ``ksef_data`` out (recorded list
        examples), so each is read on its own."""
        rows = [row for row in record.remote_rows or [] if not row.get("ksef_known")]
        documents = self.env["infakt.document"].sudo().search(
            [("infakt_uuid", "in", [row.get("uuid") for row in rows]),
             ("state", "!=", "cancelled")])
        relevant = {document.infakt_uuid for document in documents
                    if document.account_id.send_to_ksef or document.ksef_state != "none"}
        return [row["uuid"] for row in rows if row.get("uuid") in relevant]

    @api.model
    def _read_details(self, record, client, run):
        """Read the documents of :meth:`_details_needed` one by one (resumable); True when
        all are read."""
        cursor = dict(record.cursor)
        if "details" not in cursor:
            cursor.update(details=self._details_needed(record), detail=0)
        rows = {row.get("uuid"): row for row in record.remote_rows or []}
        todo = cursor["details"]
        while cursor["detail"] < len(todo) and not run.expired():
            row = rows[todo[cursor["detail"]]]
            try:
                remote = client.get_document(row["uuid"], kind=row["kind"])
            except infakt_errors.InfaktNotFound:
                remote = None  # deleted meanwhile: compared as listed
            except infakt_errors.InfaktError as error:
                record.write({"remote_rows": list(rows.values()), "cursor": cursor})
                self._read_failed(record, cursor, error, run)  # keeps the cursor
                return False
            if remote is not None:
                row.update(ksef_data=remote.get("ksef_data"),
                           ksef_number=remote.get("ksef_number"), ksef_known=True)
            cursor["detail"] += 1
            if cursor["detail"] % DETAILS_PER_COMMIT == 0:
                self._save_details(record, rows, cursor)
                run.commit()
        self._save_details(record, rows, cursor)
        run.commit()
        return cursor["detail"] >= len(todo)

    @api.model
    def _save_details(self, record, rows, cursor):
        share = (cursor["detail"] / len(cursor["details"])) if cursor["details"] else 1.0
        record.write({"cursor": dict(cursor, failures=0), "remote_rows": list(rows.values()),
                      "progress": min(99.0, LIST_SHARE + (99.0 - LIST_SHARE) * share)})

    @api.model
    def _read_failed(self, record, cursor, error, run):
        """A list call failed: this run stops reading; the job goes on later (read limit,
        inFakt unreachable for a while) or the reconciliation failed (with the reason)."""
        account = record.account_id
        if isinstance(error, infakt_errors.InfaktRateLimited):
            if getattr(error, "from_pacer", False):
                run.plan(error.retry_after or 1.0)
            else:
                wait = error.retry_after or max(1.0, min(30.0, account.rate_limit_window / 4))
                account._infakt_pause("read", wait)
                run.plan(wait)
            return
        message = self.env["infakt.document.runner"]._describe(error)
        if error.retryable and (cursor.get("failures") or 0) + 1 < MAX_FAILURES:
            record.write({"cursor": dict(cursor, failures=(cursor.get("failures") or 0) + 1),
                          "message": message})
            run.plan(RETRY_SECONDS)
            return
        self._fail(record, message)

    @api.model
    def _fail(self, record, message):
        record.write({"state": "failed", "message": message,
                      "finished_at": fields.Datetime.now()})

    # ------------------------------------------------------------------------------------
    # Matching
    # ------------------------------------------------------------------------------------
    @api.model
    def _period_moves(self, record):
        """Posted invoices and credit notes of the period in the account's series (a journal
        may send its invoices and its credit notes through different accounts)."""
        series = record.account_id.sudo().series_ids
        types = {"invoice": "out_invoice", "correction": "out_refund"}
        pairs = {(line.journal_id.id, types[line.document_type]) for line in series
                 if line.document_type in types}
        moves = self.env["account.move"].sudo().search([
            ("company_id", "=", record.company_id.id),
            ("journal_id", "in", series.journal_id.ids),
            ("move_type", "in", ("out_invoice", "out_refund")), ("state", "=", "posted"),
            ("invoice_date", ">=", record.date_from), ("invoice_date", "<=", record.date_to),
        ], order="invoice_date, name, id")
        return moves.filtered(lambda move: (move.journal_id.id, move.move_type) in pairs)

    @api.model
    def _match(self, record):
        rows = list(record.remote_rows or [])
        by_uuid = {row.get("uuid"): row for row in rows}
        by_number = {}
        for row in rows:
            by_number.setdefault((row["kind"], row.get("number")), []).append(row)
        used = set()
        values = []
        for move in self._period_moves(record):
            document = self._active_document(move)
            remote = by_uuid.get(document.infakt_uuid) if document.infakt_uuid else None
            if remote is None and not document.infakt_uuid:
                key = (self._remote_kind(move, document), move.name)
                remote = next((row for row in by_number.get(key, ())
                               if row.get("uuid") not in used), None)
            if remote is not None:
                used.add(remote.get("uuid"))
            values.append(self._line_values(move, document, remote))
        leftover = [row for row in rows if row.get("uuid") not in used]
        linked = self.env["infakt.document"].sudo().search(
            [("infakt_uuid", "in", [row.get("uuid") for row in leftover]),
             ("state", "!=", "cancelled")])
        linked = {document.infakt_uuid: document for document in linked}
        for row in leftover:
            values.append(self._only_in_infakt(row, linked.get(row.get("uuid"))))
        Line = self.env["infakt.reconciliation.line"].sudo()
        Line.create([dict(vals, reconciliation_id=record.id) for vals in values])
        record.write({"state": "done", "progress": 100.0, "message": False,
                      "finished_at": fields.Datetime.now(), "remote_rows": rows})

    @api.model
    def _active_document(self, move):
        return move.sudo().infakt_document_ids.filtered(lambda d: d.state != "cancelled")[:1]

    @api.model
    def _remote_kind(self, move, document=None):
        document_type = document.document_type if document else None
        if not document_type:
            series = move._infakt_find_series()
            document_type = self.env["infakt.payload"]._document_type(
                move, series.document_type or "invoice")
        return {"correction": "corrective"}.get(document_type, document_type)

    @api.model
    def _move_side(self, move, document):
        sign = -1 if move.move_type == "out_refund" else 1
        ksef = ""
        if document:
            ksef = document.ksef_number or ""
        return {
            "move_id": move.id, "document_id": document.id or False,
            "odoo_number": move.name, "invoice_date": move.invoice_date,
            "currency": move.currency_id.name, "odoo_total": sign * move.amount_total,
            "odoo_ksef": ksef,
        }

    @api.model
    def _remote_side(self, row):
        ksef = row.get("ksef_number") or (row.get("ksef_data") or {}).get("ksef_number") or ""
        gross = row.get("advance_price") if row.get("kind") == "advance" else row.get(
            "gross_price")
        buyer = row.get("client_company_name") or " ".join(
            part for part in (row.get("client_first_name"), row.get("client_last_name"))
            if part)
        return {
            "infakt_uuid": row.get("uuid"), "infakt_number": row.get("number"),
            "infakt_kind": row.get("kind"), "infakt_date": row.get("invoice_date") or False,
            "infakt_total": (gross or 0) / 100, "infakt_ksef": ksef,
            "infakt_buyer": " ".join(filter(None, (buyer, row.get("client_tax_code")))),
        }

    @api.model
    def _line_values(self, move, document, remote):
        values = self._move_side(move, document)
        if remote is None:
            return dict(values, **self._missing(move, document))
        values.update(self._remote_side(remote))
        if document:
            # Per kind: an advance holds its down payment, a final invoice what is left to pay.
            _pairs, total = self.env["infakt.payload"]._remote_amounts(document, remote)
            if total is not None:
                values["infakt_total"] = total
        kind, fix, note = self._compare(move, document, remote)
        return dict(values, kind=kind, kind_sequence=KIND_SEQUENCE[kind], fix=fix, note=note)

    @api.model
    def _missing(self, move, document):
        if document.state in ("to_send", "sending", "processing"):
            fix, note = "open", self.env._("On its way to inFakt: wait a moment and start again.")
        elif document.state == "in_doubt":
            fix, note = "look_up", self.env._("In doubt: look it up in inFakt.")
        elif document.infakt_uuid:
            fix, note = "look_up", self.env._(
                "Linked to an inFakt document that inFakt does not list in this period "
                "(deleted there, or its date differs): look it up.")
        else:
            fix, note = "send", self.env._("Not in inFakt: send it.")
        return {"kind": "missing_in_infakt", "fix": fix, "note": note,
                "kind_sequence": KIND_SEQUENCE["missing_in_infakt"]}

    @api.model
    def _compare(self, move, document, remote):
        """``(kind, fix, note)`` of an Odoo invoice and the inFakt document it is paired
        with (by its link, or by its number)."""
        Complete = self.env["infakt.document.complete"]
        probe = document or self._probe(move)
        if not document.infakt_uuid:
            if Complete._identity_matches(probe, remote):
                return "only_in_infakt", "link", self.env._(
                    "inFakt holds this invoice (same number, buyer, date and total) but Odoo "
                    "does not know it: link it.")
            return "wrong_number", "open", self.env._(
                "inFakt uses this number for another document (its buyer, date, total or "
                "currency differ): check it in inFakt.")
        if remote.get("number") != (document.number or move.name):
            return "wrong_number", "open", self.env._(
                "Linked to inFakt's %(number)s: inFakt's number differs from Odoo's.",
                number=remote.get("number"))
        pairs, _total = self.env["infakt.payload"]._remote_amounts(document, remote)
        if any(actual is not None and actual != expected
               for expected, actual in pairs.values()):
            return "total_differs", "open", self.env._(
                "The totals differ: correct the invoice with a credit note, or check the "
                "document in inFakt.")
        remote_ksef = self._remote_side(remote)["infakt_ksef"]
        if remote.get("ksef_known", True) and (document.ksef_number or "") != remote_ksef:
            return "ksef_differs", "look_up", self.env._(
                "The KSeF state differs: look it up to read inFakt's.")
        return "matched", False, False

    @api.model
    def _probe(self, move):
        """An unsaved exchange of ``move``: what its identity would be in inFakt."""
        series = move._infakt_find_series()
        return self.env["infakt.document"].new({
            "move_id": move.id, "account_id": series.account_id.id,
            "document_type": self.env["infakt.payload"]._document_type(
                move, series.document_type or "invoice"),
            "number": move.name,
        })

    @api.model
    def _only_in_infakt(self, row, document):
        values = dict(self._remote_side(row), kind="only_in_infakt", fix="open",
                      kind_sequence=KIND_SEQUENCE["only_in_infakt"],
                      invoice_date=row.get("invoice_date") or False,
                      note=self.env._("Not in Odoo for this period: check it in inFakt."))
        if document:
            values.update(move_id=document.move_id.id, document_id=document.id,
                          odoo_number=document.move_id.name,
                          note=self.env._("Linked to %(invoice)s dated %(date)s in Odoo: the "
                                          "dates differ.", invoice=document.move_id.name,
                                          date=document.move_id.invoice_date))
        return values
