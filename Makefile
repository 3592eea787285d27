# Entry points. A fresh machine needs only python3 and make: uv is installed with pip when missing.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --locked
DEMO_CONFIG := examples/demo.toml

.PHONY: help uv install install-test demo test test-fast lint format golden bench clean

help:
	@echo "make demo    - install, then run today's edition on the demo configuration"
	@echo "make test    - install, then run the whole test suite (PostgreSQL tests included)"
	@echo "make lint    - ruff, mypy and the import-linter contracts (the layers)"
	@echo "make golden  - regenerate the golden files of the rendered edition"
	@echo "make bench   - run the benchmarks"

uv:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv \
		|| python3 -m pip install --quiet --user --break-system-packages uv

install: uv
	$(UV) sync --locked

# The tests also lint the rendered email against caniemail data (an npm package, pinned in package-lock.json).
install-test: install
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --silent; \
	else echo "npm not found: the caniemail check will be skipped (CI installs nodejs and npm)"; fi

demo: install
	NEWSLETTER_CONFIG=$(DEMO_CONFIG) $(RUN) newsletter demo

test: install-test
	$(RUN) pytest

test-fast: install-test
	$(RUN) pytest -m "not slow and not postgres"

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports

format: install
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

golden: install
	$(RUN) pytest tests/test_golden.py --update-golden

bench: install
	$(RUN) python benchmarks/digest.py
	$(RUN) python benchmarks/personalise.py
	$(RUN) python benchmarks/signing.py
	$(RUN) python benchmarks/web.py
	$(RUN) python benchmarks/metrics.py
	$(RUN) python benchmarks/ledger.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
