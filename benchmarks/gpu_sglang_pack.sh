#!/usr/bin/env bash
# Build the rig's checkpoints on this (CPU) machine and pack them, with the tiny model's amd-quark exports,
# into .rig/rig.pack.xz (about 6 MB: tensors deduplicated, xz): what benchmarks/gpu_sglang_run.sh unpacks on
# the GPU machine, which has no amd-quark. Run from the repository root with the project's venv.
set -euo pipefail
PY=${PY:-.venv/bin/python}
CACHE=${HARNESS_CACHE_DIR:-$HOME/.cache/harness/models}
"$PY" -m harness local prepare --variant mxfp4 --variant fp8 >/dev/null
"$PY" -c "from harness.local.models import ensure; ensure('local:tiny-qwen3/mxfp4-scale-defect')" >/dev/null
"$PY" -m harness.rig build "$CACHE/rig"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r "$CACHE/rig" "$stage/rig"
# The tiny models' exports (suites gpu-sglang, gpu-sglang-numerics, gpu-sglang-mxfp4): both models' MXFP4 (the
# MoE's routed experts quantized), the dense model's FP8 and its MXFP4 scale defect.
for checkpoint in tiny-qwen3/mxfp4 tiny-qwen3/fp8 tiny-qwen3/mxfp4-scale-defect tiny-qwen3-moe/mxfp4; do
  path=$("$PY" -c "from harness.local.models import resolve; print(resolve('local:$checkpoint'))")
  cp -r "$path" "$stage/"
done
mkdir -p .rig
"$PY" -m harness.rig pack "$stage" .rig/rig.pack.xz
