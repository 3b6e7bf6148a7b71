# harness: the accuracy and memory regression gate for SGLang quantized MoE serving.
# `make local` (the main job) and `make test` set everything up on a fresh machine (Python 3.10+ and pip).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= test,lint
SUITES := kimi glm5 qwen3-next online-mxfp4

.PHONY: install local test lint validate nightly demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalled only when the project's metadata changes.
$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS)

# The main job: the tiny model in BF16, MXFP4 and FP8 on a real `transformers serve`, gated against
# baselines/local.yaml. The Quark exports are made on first use and cached (~/.cache/harness/models).
local: install
	$(BIN)/harness run --suite local

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check harness tests benchmarks

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
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
