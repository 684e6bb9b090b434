# mailforum: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= mailforum.toml

.PHONY: install run test test-fast lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,postgres]'
	touch $@

install: $(BIN)/.installed

# A local config on first run: the example, with a fresh secret key.
$(CONFIG):
	sed "s/^secret_key = .*/secret_key = \"$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(32))')\"/" \
		config.example.toml > $(CONFIG)
	@echo "wrote $(CONFIG) (edit [site] domain before real use)"

# Set up and run the server on the embedded SQLite default.
run: install $(CONFIG)
	$(BIN)/mailforum --config $(CONFIG) init
	$(BIN)/mailforum --config $(CONFIG) serve

# The static checks: ruff (lint and format) and mypy (types of mailforum/).
lint: install
	$(BIN)/ruff check mailforum tests bench
	$(BIN)/ruff format --check mailforum tests bench
	$(BIN)/mypy mailforum

# Set up and run the checks, then the tests (SQLite, and PostgreSQL when it is reachable;
# MAILFORUM_TEST_DB=sqlite or =postgresql picks one). CI runs this.
test: lint
	$(BIN)/pytest

# The same without the tests marked slow (crash and load tests), for iterating.
test-fast: lint
	$(BIN)/pytest -m 'not slow'

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/web.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
