#!/usr/bin/env bash
# The local suite on a CUDA GPU (the lent H100), as issue 5 asks: run from the repository root there,
# with the wheels the image lacks in .whl/ and the Quark exports (made on CPU, device-independent) in
# .gpu-cache/. Writes results.json, summary.md, server log tails and the torch memory probes to $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HARNESS_CACHE_DIR=$PWD/.gpu-cache HF_HOME=/tmp/hf PYTHONUNBUFFERED=1
mkdir -p /tmp/hf/hub "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
# amd-quark JIT-compiles its emulation extension on first load: do it once, timed, outside the run.
start=$(date +%s)
timeout 300 python3 -c "
import glob, torch
from transformers import AutoModelForCausalLM
for path in sorted(glob.glob('.gpu-cache/*')):
    AutoModelForCausalLM.from_pretrained(path, device_map='cuda:0')
    print('loaded', path)
" 2>&1 | grep -vE 'QUARK|^\s*$' | tail -5
echo "warm-up (quark JIT) $(( $(date +%s) - start )) s"
start=$(date +%s)
run="gpu-$start"
python3 -m harness run --suite local --run-id "$run" --reports-dir /tmp/reports 2>&1 | grep -vE 'QUARK|^\s*$' | tail -16
echo "harness run --suite local: exit ${PIPESTATUS[0]}, $(( $(date +%s) - start )) s"
cp "/tmp/reports/$run/results.json" "/tmp/reports/$run/summary.md" "$OUT/" 2>/dev/null
for cell in "/tmp/reports/$run"/cells/*; do
  name=$(basename "$cell")
  tail -40 "$cell/server.log" > "$OUT/$name.log"
  cp "$cell/torch_memory.json" "$OUT/$name.torch.json" 2>/dev/null
done
