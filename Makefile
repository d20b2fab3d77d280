# The two commands of the README: `make demo` and `make test` do all the set-up themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup keystone check demo test test-min docs charts bench bench-quick serve clean

$(STAMP): pyproject.toml scripts/find_python.sh scripts/setup_system.sh
	@bash scripts/setup_system.sh
	@python=$$(bash scripts/find_python.sh) || exit 1; \
	  echo "using $$python"; \
	  [ -x $(PY) ] || $$python -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[xarray,test,docs]'
	$(PY) -m swiftzarr_batch.testing.swift_server install
	@touch $(STAMP)

setup: $(STAMP)

# Keystone (for the Keystone tests only) lives in its own cached venv; the demo does not need it.
keystone: setup
	$(PY) -m swiftzarr_batch.testing.keystone_server install

demo: setup
	$(PY) -m swiftzarr_batch.testing.swift_server run -- $(PY) examples/seed_walkthrough.py

# The fast checks (seconds), before the suite: lint, format, types, and the one-way imports.
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: setup keystone check docs test-min
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)  # -rs: every skip says why in the log

# The declared lower bounds (pyproject.toml's >= versions, pinned) installed together in
# .venv-min, running the seed walkthrough and a dask write against a local Swift.
test-min: setup
	@bash scripts/test_min.sh

# The documentation site into site/ (strict: a warning is an error), with the committed charts:
# `make charts` (run by `make bench`) redraws them from the results files, and
# tests/test_docs_charts.py fails if the committed ones differ from what those files give.
# tests/test_docs*.py also check the pages and run the code in them.
charts: setup
	$(PY) -m benchmarks.charts

docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q

# Benchmarks: their own venv (benchmarks/.venv: the project plus the peers, never project
# dependencies), a fresh local Swift per run; results in benchmarks/results/full.json
# (a complete full run only; quick and partial runs write files of their own).
bench: setup
	@bash benchmarks/setup_venv.sh
	benchmarks/.venv/bin/python -m benchmarks.run $(BENCH_ARGS)
	$(PY) -m benchmarks.charts  # the performance page's charts, from the new results

bench-quick: setup
	@bash benchmarks/setup_venv.sh
	benchmarks/.venv/bin/python -m benchmarks.run --quick $(BENCH_ARGS)
	$(PY) -m benchmarks.charts

serve: setup
	$(PY) -m swiftzarr_batch.cli serve

clean:
	rm -rf $(VENV) .venv-min site build *.egg-info .pytest_cache
