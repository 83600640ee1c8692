VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/maillab $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check lab tests
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/analysis.py
	$(PY) bench/tui_list.py
	$(PY) bench/tui_load.py
	$(PY) bench/serve_rss.py
	$(PY) bench/latency.py
	$(PY) bench/cold_start.py

lint: $(STAMP)
	$(VENV)/bin/ruff check lab tests
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache
