# rankfunnel: two commands for a newcomer, `make demo` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ISTAMP  := $(VENV)/.integration-installed
# Side venv for the clients that pin an older cohere SDK (tests/integration/requirements-cohere5.txt).
CLIENTS ?= .venv-clients
# torch is pinned so that pip takes the CPU build that lies on local disk instead of a multi-GB CUDA build.
TORCH   ?= torch==2.13.0
SHARED  ?= ../shared/datasets
export HF_HUB_DISABLE_TELEMETRY=1
export TOKENIZERS_PARALLELISM=false

.PHONY: setup demo test integration lint typecheck unit browser bench bench-rerank bench-scale results loadtest reranker clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[all]"
	touch $(STAMP)

demo: setup
	$(BIN)/python examples/demo.py

lint: setup
	$(BIN)/ruff check src tests bench examples
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest -q

test: lint unit

# Headless Chromium (Debian's chromium + chromium-driver) against `rankfunnel serve`: the playground and /docs.
browser: setup
	$(BIN)/python -m pytest -q -m browser tests/browser

# Real client SDKs (Cohere, ZeroEntropy, LangChain, LlamaIndex, Haystack) against a `rankfunnel serve` subprocess.
$(ISTAMP): $(STAMP) pyproject.toml tests/integration/requirements-cohere5.txt
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[all,integration]"
	test -x $(CLIENTS)/bin/python || $(PY) -m venv $(CLIENTS)
	$(CLIENTS)/bin/python -m pip install -q -r tests/integration/requirements-cohere5.txt
	touch $(ISTAMP)

integration: $(ISTAMP)
	RANKFUNNEL_COHERE5_PYTHON=$(CLIENTS)/bin/python HAYSTACK_TELEMETRY_ENABLED=False \
		$(BIN)/python -m pytest -q -m integration tests/integration

bench: bench-rerank

bench-rerank: setup
	$(BIN)/python bench/bench_rerank.py

bench-scale: setup
	$(BIN)/python bench/bench_scale.py

results: setup
	$(BIN)/python bench/results.py --datasets-dir $(SHARED)

loadtest: setup
	$(BIN)/python bench/loadtest.py

reranker: setup
	$(BIN)/rankfunnel train --dataset $(SHARED)/scifact --split train --base sentence-transformers/all-MiniLM-L6-v2 --out models/scifact-minilm-reranker --max-minutes 25

clean:
	rm -rf $(VENV) $(CLIENTS) .pytest_cache .mypy_cache .ruff_cache
