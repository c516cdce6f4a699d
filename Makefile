# The two commands of the Quick start, `make up` and `make test`, work on a fresh machine
# that has Python 3.11+ and make: the first run creates .venv and installs everything.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

JS_STAMP := tests/js/node_modules/.installed

.PHONY: up test check lint fmt clean js fuzz chaos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/skyrelay up

check: $(STAMP)
	$(BIN)/ruff check edge origin ring skyrelay tests benchmarks
	$(BIN)/ruff format --check edge origin ring skyrelay tests benchmarks
	$(BIN)/mypy --strict skyrelay  # edge, origin and ring are skyrelay.edge, .origin, .ring

# The centrifuge-js compatibility tests need Node.js; without it they skip (in CI they fail).
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	if command -v npm >/dev/null; then cd tests/js && npm ci --no-audit --no-fund --ignore-scripts && touch node_modules/.installed; fi

js: $(JS_STAMP)

test: check js
	$(BIN)/pytest

# `make test` runs the property-based fuzz tests (tests/fuzz) with a few dozen inputs each. This
# runs thousands per property (several minutes); the failures it finds are kept in .hypothesis/
# and tried first on the next run.
fuzz: $(STAMP)
	SKYRELAY_FUZZ_PROFILE=fuzz $(BIN)/pytest tests/fuzz --timeout=3600

# `make test` runs a 20-second randomized fault schedule against a durable cluster. This runs
# a 5-minute one (SKYRELAY_CHAOS_SECONDS); a failure prints its seed, and
# `SKYRELAY_CHAOS_SEED=N make chaos` replays the same schedule.
chaos: $(STAMP)
	SKYRELAY_CHAOS_SECONDS=$${SKYRELAY_CHAOS_SECONDS:-300} $(BIN)/pytest -s tests/integration/test_chaos.py

fmt: $(STAMP)
	$(BIN)/ruff format edge origin ring skyrelay tests benchmarks
	$(BIN)/ruff check --fix edge origin ring skyrelay tests benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis tests/js/node_modules
