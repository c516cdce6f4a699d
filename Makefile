# The two commands of the Quick start, `make up` and `make test`, work on a fresh machine
# that has Python 3.11+ and make: the first run creates .venv and installs everything.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test check lint fmt clean

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
	$(BIN)/mypy --strict edge origin ring skyrelay

test: check
	$(BIN)/pytest

fmt: $(STAMP)
	$(BIN)/ruff format edge origin ring skyrelay tests benchmarks
	$(BIN)/ruff check --fix edge origin ring skyrelay tests benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
