.PHONY: test demo demo-stop simulator bench lint

test:  ## lint + pure tests + Odoo tests (when Odoo 18 is importable)
	tools/run_tests.sh

demo:  ## simulator + Odoo on 127.0.0.1 with a configured demo database (Ctrl+C stops)
	python3 tools/demo.py

demo-stop:  ## stop a demo started with `python3 tools/demo.py --detach`
	python3 tools/demo.py --stop

bench:  ## the six performance figures of the README, on real Odoo 18 servers + the simulator (~30 min)
	python3 tools/bench.py

lint:
	python3 -m ruff check .

simulator:  ## the local inFakt simulator on http://127.0.0.1:8070/api/v3
	python3 tools/infakt_simulator.py --port 8070
