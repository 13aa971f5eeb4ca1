"""One page of a period listing at a time (``InfaktClient.read_period_page``), as the
reconciliation job reads a large month over several runs: paging by ``total_count`` and the
rows returned, the date filter checked again here, against the simulator."""

import pytest

from infakt_api import payload as P
from infakt_api.client import InfaktClient

ACCOUNT = "61109010140000071219812874"
BUYER = {"company_name": "ACME Sp. z o.o.", "nip": "5260001246", "city": "Gdańsk",
         "street": "ul. Długa 5/3", "post_code": "80-001"}
LINE = {"name": "Konsultacje", "quantity": 1, "tax_symbol": "23", "unit_net_price": "100.00"}


@pytest.fixture
def client(simulator):
    simulator.configure(task_delay=0, ksef_delay=0)
    infakt = InfaktClient(simulator.api_key, environment="custom", base_url=simulator.base_url,
                          timeout=(5, 10))
    infakt.session.trust_env = False
    yield infakt
    infakt.close()


def test_period_pages_resume_at_their_offset(client, simulator):
    days = ("2026-02-28", "2026-03-01", "2026-03-10", "2026-03-20", "2026-03-31", "2026-04-01")
    for index, day in enumerate(days):
        client.create_invoice(P.build_invoice(
            lines=[LINE], buyer=BUYER, invoice_date=day, number=f"P/{index}",
            payment_method="transfer", bank_account=ACCOUNT))
    simulator.wait_idle()
    seen, offset, pages = [], 0, 0
    while True:
        rows, offset, last, total = client.read_period_page(
            "invoice", "2026-03-01", "2026-03-31", offset=offset, limit=3)
        pages += 1
        seen += [row["number"] for row in rows]
        assert total == 4
        if last:
            break
    assert pages == 2 and offset == 4
    assert sorted(seen) == ["P/1", "P/2", "P/3", "P/4"]
    query = simulator.state()["requests"][-1]["query"]
    assert "q%5Binvoice_date_lteq%5D=2026-03-31" in query and "offset=3" in query
    rows, _offset, last, total = client.read_period_page("corrective", "2026-03-01",
                                                         "2026-03-31")
    assert (rows, last, total) == ([], True, 0)
