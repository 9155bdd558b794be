# The README's two commands. Each installs what is missing first (scripts/setup.sh).
.PHONY: run test lint bench

# The suite runs in parallel processes (pytest-xdist), one per core; tests of one file stay
# in one process. `make test PYTEST_PARALLEL=` runs it serially. A plain `pytest` is serial.
PYTEST_PARALLEL ?= -n auto --dist loadfile

run:
	@scripts/setup.sh run
	@.venv/bin/acp serve

test:
	@scripts/setup.sh test
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/python -m pytest -q $(PYTEST_PARALLEL)

bench:
	@scripts/setup.sh test
	@.venv/bin/python bench/audit_rate.py
	@.venv/bin/python bench/workspace_ready.py
	@.venv/bin/python bench/cli_startup.py
	@.venv/bin/python bench/slack_ack.py
	@.venv/bin/python bench/model_overhead.py
	@.venv/bin/python bench/sql_overhead.py
	@.venv/bin/python bench/browser_job.py
	@.venv/bin/python bench/doc_diff.py
	@.venv/bin/python bench/doc_render.py
	@.venv/bin/python bench/routine_firing.py
