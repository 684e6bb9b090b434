# mailforum: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= mailforum.toml

.PHONY: install run test lint bench clean

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

# Set up and run the tests (SQLite, and PostgreSQL when it is reachable;
# MAILFORUM_TEST_DB=sqlite or =postgresql picks one).
test: install
	$(BIN)/ruff check mailforum tests bench
	$(BIN)/ruff format --check mailforum tests bench
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/web.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
