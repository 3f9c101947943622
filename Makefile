# The two commands of the README: `make demo` and `make test`. Each sets up everything it needs.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
MELTANO := $(BIN)/meltano

.PHONY: setup demo test lint types pytest bench constraints clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# A locked environment with the three packages in editable mode, then Meltano's plugins.
$(VENV)/.synced: uv.lock pyproject.toml */pyproject.toml | $(UV)
	$(UV) sync --locked --all-packages
	touch $@

.meltano/.installed: meltano.yml constraints.txt $(VENV)/.synced
	$(MELTANO) install
	touch $@

setup: $(VENV)/.synced .meltano/.installed

# Third-party pins for the plugins Meltano installs, exported from uv.lock.
constraints:
	$(UV) export --frozen --no-emit-workspace --no-hashes --no-header --no-dev --quiet -o constraints.txt

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: setup
	$(UV) export --frozen --no-emit-workspace --no-hashes --no-header --no-dev 2>/dev/null | diff -q - constraints.txt >/dev/null \
		|| { echo "constraints.txt is stale: run 'make constraints'"; exit 1; }
	$(BIN)/check-jsonschema --builtin-schema vendor.meltano meltano.yml
	$(BIN)/python scripts/readme_settings.py --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

demo: setup
	$(BIN)/python scripts/demo.py $(ARGS)

# -n 0: benchmarks alone on the machine, one at a time (no xdist workers beside them).
bench: setup
	$(BIN)/pytest benchmarks/bench_*.py -n 0 -p no:cacheprovider -s --timeout=3600

clean:
	rm -rf $(VENV) .tools .meltano/.installed
