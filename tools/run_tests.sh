#!/usr/bin/env bash
# The test command of l10n_pl_infakt: lint, pure tests (client, webhook helpers, payloads,
# simulator conformance) and, whenever Odoo 18 is importable and PostgreSQL answers, the module
# installed into a fresh database and its Odoo tests run with pytest-odoo.
#
#   tools/run_tests.sh            # everything that can run here
#   INFAKT_SKIP_ODOO=1 tools/run_tests.sh   # pure tests only
#
# Environment: PYTHON (default python3), ODOO_ADDONS_PATH (extra addons paths, comma separated),
# PGHOST/PGPORT/PGUSER as for psql, INFAKT_KEEP_DB=1 to keep the test databases.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/l10n_pl_infakt_tests.XXXXXX")"
STATUS=0
cd "$ROOT"

say() { printf '\n== %s\n' "$*"; }

cleanup() {
    if [ -n "${DB_NAME:-}" ] && [ -z "${INFAKT_KEEP_DB:-}" ]; then
        dropdb --if-exists "$DB_NAME" >/dev/null 2>&1 || true
        dropdb --if-exists "${DB_NAME}_demo" >/dev/null 2>&1 || true
        rm -rf "$HOME/.local/share/Odoo/filestore/$DB_NAME" "$HOME/.local/share/Odoo/filestore/${DB_NAME}_demo"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say "Installing the test tools (requirements-test.txt)"
if ! "$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt; then
    echo "Could not install the test tools." >&2
    exit 1
fi

# A copy named like the module: Odoo, pylint-odoo and pytest-odoo derive the module name from
# the folder.
mkdir -p "$WORK/addons/l10n_pl_infakt"
tar -C "$ROOT" --exclude=.git --exclude=__pycache__ --exclude=.pytest_cache -cf - . \
    | tar -C "$WORK/addons/l10n_pl_infakt" -xf -

say "ruff"
if ! "$PYTHON" -m ruff check .; then STATUS=1; fi

say "pylint-odoo (.pylintrc)"
if (cd "$WORK/addons" && "$PYTHON" -m pylint --rcfile="$ROOT/.pylintrc" l10n_pl_infakt); then
    echo "pylint-odoo: no message."
else
    STATUS=1
fi

ODOO_OK=""
if [ -n "${INFAKT_SKIP_ODOO:-}" ]; then
    ODOO_WHY="INFAKT_SKIP_ODOO is set"
elif ! "$PYTHON" -c 'import odoo.release as r; assert r.version_info[0] == 18' >/dev/null 2>&1; then
    ODOO_WHY="Odoo 18 is not importable by $PYTHON"
elif ! pg_isready -q >/dev/null 2>&1; then
    ODOO_WHY="PostgreSQL does not answer (pg_isready)"
else
    ODOO_OK=1
fi

say "Pure tests (no Odoo)"
"$PYTHON" -m pytest -p no:odoo -p no:cacheprovider -q tests/pure --junitxml="$WORK/pure.xml"
rc=$?
if [ $rc -ne 0 ]; then STATUS=1; fi

if [ -n "$ODOO_OK" ]; then
    ODOO_ROOT="$("$PYTHON" -c 'import os, odoo; print(os.path.dirname(os.path.dirname(odoo.__file__)))')"
    ODOO_ADDONS="$("$PYTHON" -c 'import os, odoo.addons as a; print(",".join(p for p in a.__path__ if os.path.isdir(p)))')"
    ADDONS_PATH="$ODOO_ADDONS,$WORK/addons${ODOO_ADDONS_PATH:+,$ODOO_ADDONS_PATH}"
    DB_NAME="l10n_pl_infakt_test_$$"
    ODOO_BIN="$ODOO_ROOT/odoo-bin"
    [ -f "$ODOO_BIN" ] || ODOO_BIN="$(command -v odoo || command -v odoo-bin)"
    CONF="$WORK/odoo.conf"
    cat > "$CONF" <<CONF
[options]
addons_path = $ADDONS_PATH
data_dir = $WORK/data
db_name = $DB_NAME
dbfilter = ^${DB_NAME}\$
http_interface = 127.0.0.1
list_db = False
CONF

    # install DB LOG [odoo options...]: a fresh database with the module; fails on any warning
    # or error of the install log (the database names contain "infakt", so every line of the
    # log mentioning them counts).
    install() {
        local db="$1" log="$2"
        shift 2
        dropdb --if-exists "$db" >/dev/null 2>&1
        if "$PYTHON" "$ODOO_BIN" -c "$CONF" -d "$db" -i l10n_pl_infakt --stop-after-init \
                --http-port=0 --log-level=warn "$@" > "$log" 2>&1 \
            && ! grep -E "(WARNING|ERROR|CRITICAL).*(l10n_pl_infakt|infakt)" "$log"; then
            echo "Installed without warnings."
        else
            echo "Installation failed or logged warnings from the module:" >&2
            tail -n 40 "$log" >&2
            STATUS=1
        fi
    }

    say "Installing l10n_pl_infakt into a fresh database without demo data ($DB_NAME)"
    install "$DB_NAME" "$WORK/install.log" --without-demo=all

    if [ -z "${INFAKT_SKIP_DEMO_INSTALL:-}" ]; then
        say "Installing l10n_pl_infakt into a fresh database with demo data (${DB_NAME}_demo)"
        install "${DB_NAME}_demo" "$WORK/install_demo.log"
        dropdb --if-exists "${DB_NAME}_demo" >/dev/null 2>&1
    fi

    if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
        echo "Note: no Chromium on this machine: Odoo skips the browser tours (apt-get install chromium)."
    fi

    say "Odoo tests (pytest-odoo, database $DB_NAME)"
    (cd "$WORK/addons/l10n_pl_infakt" && "$PYTHON" -m pytest -p no:cacheprovider -q \
        --odoo-config="$CONF" --odoo-database="$DB_NAME" --odoo-http \
        --junitxml="$WORK/odoo.xml" tests --ignore=tests/pure)
    rc=$?
    if [ $rc -ne 0 ]; then STATUS=1; fi
else
    say "Odoo tests SKIPPED: $ODOO_WHY. Only the pure tests ran."
fi

say "Summary"
"$PYTHON" - "$WORK" "${ODOO_OK:+odoo}" <<'PY'
import sys, pathlib, xml.etree.ElementTree as ET
work = pathlib.Path(sys.argv[1])
totals = {"passed": 0, "failed": 0, "skipped": 0}
for name in ("pure.xml", "odoo.xml"):
    path = work / name
    if not path.exists():
        if name == "odoo.xml" and sys.argv[2]:
            totals["failed"] += 1  # the Odoo run did not produce a report
        continue
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        tests = int(suite.get("tests", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        totals["failed"] += failed
        totals["skipped"] += skipped
        totals["passed"] += tests - failed - skipped
        print(f"{name[:-4]}: {tests - failed - skipped} passed, {failed} failed, {skipped} skipped")
print(f"tests: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
PY
exit $STATUS
