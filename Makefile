# The two commands that set up everything on a fresh machine: `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test browser screenshots bench schemas clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

run: install
	$(BIN)/snapshotctl up

test: install browser
	$(BIN)/python -m pytest -q

# The console's tests drive Debian's headless Chromium (Playwright's own download cannot work here).
browser:
	command -v chromium >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

# The README's screenshots of the console (docs/console/*.png), taken by its browser tests.
screenshots: install browser
	CONSOLE_SCREENSHOTS=docs/console $(BIN)/python -m pytest -q tests/e2e/console

schemas: install
	$(BIN)/python -m events.schema_generator

bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .snapshot-data
