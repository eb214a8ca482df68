# Two commands on a fresh machine: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test validate bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/engine serve --demo

test: $(INSTALLED)
	$(BIN)/ruff check engine plugins server.py bench tests
	$(BIN)/engine validate
	$(BIN)/pytest

validate: $(INSTALLED)
	$(BIN)/engine validate

bench: $(INSTALLED)
	$(BIN)/python -m bench.engine

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
