# Two commands a newcomer needs: `make run` (service with demo data) and `make test` (whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The browser tests (tests/browser) drive Debian's chromium through Playwright; Playwright's own
# browser download (`playwright install`) needs the internet, so it is never used.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600

.PHONY: run test lint bench clean browser-deps

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need Python 3.11 on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Debian's chromium, when missing (a fresh machine: no package lists yet, so `update` and retry).
$(CHROMIUM):
	@command -v apt-get >/dev/null 2>&1 || { echo "need $(CHROMIUM): install Debian's chromium package"; exit 1; }
	$(APT_GET) install -y -q chromium || { $(APT_GET) update -q && $(APT_GET) install -y -q chromium; }
	@test -x $(CHROMIUM) || { echo "apt-get installed chromium but $(CHROMIUM) is missing"; exit 1; }

browser-deps: $(CHROMIUM)

run: $(STAMP)
	$(BIN)/qianxing run

test: $(STAMP) browser-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/qianxing bench flash-sale

clean:
	rm -rf var .pytest_cache .ruff_cache
