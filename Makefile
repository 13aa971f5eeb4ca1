.PHONY: test demo simulator bench lint

test:  ## lint + pure tests + Odoo tests (when Odoo 18 is importable)
	tools/run_tests.sh

lint:
	python3 -m ruff check .

simulator:  ## the local inFakt simulator on http://127.0.0.1:8070/api/v3
	python3 tools/infakt_simulator.py --port 8070
