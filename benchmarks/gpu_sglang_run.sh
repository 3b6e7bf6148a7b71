#!/usr/bin/env bash
# The real-SGLang rig (issue 12) on the lent NVIDIA GPU: harness drives SGLang 0.5.17 from the offline bundle.
#
# Here, once:   echo /.sgl/ >> .git/info/exclude; cp -r ../shared/sglang-gpu .sgl
#               echo /.rig/ >> .git/info/exclude; benchmarks/gpu_sglang_pack.sh     (the rig's checkpoints)
# There:        bash benchmarks/gpu_sglang_run.sh        (device tool: carry .sgl and .rig; $OUT collects)
#
# STAGES (default "fixes main"): `fixes` loads every fix checkpoint (suite gpu-sglang-fixes, 8 cells sharing
# the GPU), `main` runs suite gpu-sglang (one cell at a time: its memory figures are the cell's own),
# `numerics` runs suite gpu-sglang-numerics (the BF16 cell, its reference promoted, then the FP8 cell);
# `tp` runs suite gpu-sglang-tp's tiny-qwen3 cells (TP 1/2/4 packed on a 4-GPU host), `tpfixes` its #23973
# checkpoints at TP 2 and 4 (load only, two sharing each GPU; preflight.txt gets their predictions);
# `eagle3` loads suite gpu-sglang-eagle3's MLA drafts (6 cells sharing the GPU), `mxfp4` runs suite gpu-sglang-mxfp4 (SGLang's MXFP4 code through the aiter reference kernels: BF16 references,
# MXFP4 cells, the planted defect), `sglang-defect` its MXFP4 cells on a patched SGLang build;
# `a+b` runs two stages at once (both share the GPU: neither may be `main`).
# FIXES_CELLS: glob patterns restricting `fixes`.
# MAIN_CELLS, TP_CELLS, TP_FIX_CELLS: glob patterns (space-separated) restricting `main`, `tp`, `tpfixes` (on a
# 2-GPU host: TP_CELLS="tiny-qwen3/*/tp1 tiny-qwen3/*/tp2" TP_FIX_CELLS="qwen3-next-*/tp2").
# BUDGET: seconds for the whole script (a device call is cut at 600 s); each stage is interrupted (SIGINT:
# harness tears down and saves what it measured) before it runs out. RIG_ID names the rig's run (default: the script's start time): called again with the same
# RIG_ID on a warm machine, a stage whose run directory exists is resumed (`harness run --resume`: finished
# cells kept, the rest run), so one run of the rig may span several device calls.
# Writes to $OUT (the device tool brings back 8 files): <stage>.results.json, run.log, preflight.txt,
# logs.tar.gz (every run directory: summaries, server logs; the bundle's prepare.log), and for `numerics`
# numerics.tar.gz (the promoted reference and its baseline file).
set -uo pipefail
T0=$(date +%s)
RIG_ID=${RIG_ID:-$T0}
BUDGET=${BUDGET:-560}
STAGES=${STAGES:-fixes main}
OUT=${OUT:-/tmp/rig-out}
REPORTS=/tmp/rig-reports
export HARNESS_CACHE_DIR=/tmp/harness-cache
mkdir -p "$OUT" "$REPORTS" "$HARNESS_CACHE_DIR"
exec > >(tee -a "$OUT/run.log") 2>&1
say() { echo "[rig +$(( $(date +%s) - T0 ))s] $*"; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }

# 1-2. The SGLang bundle (unpacked once per machine) and the environment its README gives; the rig's
# checkpoints and the tiny model's Quark exports (built on a CPU, see gpu_sglang_pack.sh).
PREPARE_LOG="$REPORTS/prepare.log" source benchmarks/gpu_sglang_env.sh
say "bundle ready; $(nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader)"
say "checkpoints: $(find "$HARNESS_CACHE_DIR" -name config.json | wc -l)"

# 3. Preflight on every cell, recorded beside what SGLang does with it (PREFLIGHT=0 skips it: CPU tests
# recompute the same predictions from the checkpoints' headers).
if [ "${PREFLIGHT:-1}" = 1 ]; then
  suites=()
  [[ " $STAGES " == *fixes* || " $STAGES " == *main* ]] && suites+=(gpu-sglang-fixes gpu-sglang)
  [[ " $STAGES " == *tpfixes* ]] && suites+=(gpu-sglang-tp)
  [[ " $STAGES " == *" mxfp4 "* ]] && suites+=(gpu-sglang-mxfp4)
  [[ " $STAGES " == *mxfp4-smoke* ]] && suites+=(gpu-sglang-mxfp4-smoke)
  [[ " $STAGES " == *" eagle3 "* ]] && suites+=(gpu-sglang-eagle3)
  [[ " $STAGES " == *eagle3-trained* ]] && suites+=(gpu-sglang-eagle3-trained)
  for suite in "${suites[@]}"; do
    python3 -m harness preflight --suite "$suite" >> "$OUT/preflight.txt" 2>&1
    echo "exit $?" >> "$OUT/preflight.txt"
  done
fi

run_stage() {  # name, suite, cell patterns (space-separated, may be empty), run flags...
  local name=$1 suite=$2 patterns=$3; shift 3
  local budget=$(( $(left) - 25 )) run_dir="$REPORTS/$name-$RIG_ID" what=()
  [ "$budget" -gt 30 ] || { say "no time left for $name"; return; }
  if [ -f "$run_dir/plan.json" ]; then
    what=(--resume "$run_dir")  # the recorded plan decides the cells
  else
    what=(--suite "$suite" --run-id "$name-$RIG_ID")
    local pattern cell_patterns=()
    read -ra cell_patterns <<< "$patterns"  # split on spaces, never globbed
    for pattern in "${cell_patterns[@]}"; do what+=(--cell "$pattern"); done
  fi
  say "stage $name: harness run ${what[*]} $* (at most ${budget}s)"
  timeout -s INT -k 20 "$budget" python3 -m harness run --reports-dir "$REPORTS" "${what[@]}" "$@"
  say "stage $name: exit $?"
  cp "$run_dir/results.json" "$OUT/$name.results.json" 2>/dev/null
}
numerics_stage() {
  run_stage numerics-ref gpu-sglang-numerics 'tiny-qwen3/bf16/*' --share-gpus 2
  # Promotes the reference where none is stored yet (a stored one is kept: replacing it needs --force);
  # the FP8 cell then measures against whichever is stored.
  python3 -m harness baseline update --from "$REPORTS/numerics-ref-$RIG_ID" --cell 'tiny-qwen3/bf16/*'
  run_stage numerics gpu-sglang-numerics 'tiny-qwen3/quark-fp8/*' --share-gpus 2
  tar -czf "$OUT/numerics.tar.gz" baselines/gpu-sglang-numerics.yaml baselines/references/gpu-sglang-numerics \
    2>/dev/null
}
# Issue 23: SGLang's own MXFP4 code through harness's aiter reference kernels (suite gpu-sglang-mxfp4). The BF16
# cells first (native kernels; two share the GPU), promoted: the numerics references and their baselines; then
# the MXFP4 cells (pre-quantized and online, dense and MoE), promoted: the baselines the canary is gated against;
# then the planted scale defect, which must come out REGRESSED. MXFP4_CELLS restricts the middle step.
mxfp4_stage() {
  run_stage mxfp4-ref gpu-sglang-mxfp4 '*/bf16/*' --share-gpus 2
  python3 -m harness baseline update --from "$REPORTS/mxfp4-ref-$RIG_ID" --cell '*/bf16/*'
  run_stage mxfp4 gpu-sglang-mxfp4 "${MXFP4_CELLS:-tiny-qwen3/quark-mxfp4/* tiny-qwen3-moe/quark-mxfp4/* */quark_mxfp4/*}" \
    --share-gpus 4  # the four cells at once (0.2 of the GPU each): the device figures are left out
  python3 -m harness baseline update --from "$REPORTS/mxfp4-$RIG_ID" --cell 'tiny-qwen3*/quark*'
  run_stage mxfp4-defect gpu-sglang-mxfp4 'tiny-qwen3-scale-defect/*'
  tar -czf "$OUT/mxfp4-baselines.tar.gz" baselines/gpu-sglang-mxfp4.yaml baselines/outcomes/gpu-sglang-mxfp4 \
    baselines/references/gpu-sglang-mxfp4 2>/dev/null
}
# Issue 23, item 3: a regression in SGLang's own MXFP4 MoE code, as a user's engine build would carry it: the
# bundle's sglang package copied into a git tree (commit 1: as released; commit 2: the patch below), served by an
# interpreter that puts it first on the path; gated against the baselines the released build measured (stage
# mxfp4, same machine): the MoE cell must regress, the dense MXFP4 cell (code not reached) must not.
SGLANG_PATCH=benchmarks/patches/sglang-0.5.17-mxfp4-moe-w2-scale-unshuffled.patch
defect_build() {
  local build=/tmp/sgl-build-defect
  if [ ! -x "$build/bin/python3" ]; then
    rm -rf "$build"; mkdir -p "$build/bin"
    cp -r /tmp/sglsite/sglang "$build/sglang"
    git -C "$build" init -q && git -C "$build" add -A sglang \
      && git -C "$build" -c user.name=rig -c user.email=rig@localhost commit -qm "sglang 0.5.17 as released" \
      && patch -d "$build" -p1 < "$SGLANG_PATCH" && git -C "$build" add -A sglang \
      && git -C "$build" -c user.name=rig -c user.email=rig@localhost commit -qm "$(basename "$SGLANG_PATCH")" \
      || { say "building the defect build failed"; return 1; }
    printf '#!/bin/sh\nPYTHONPATH=%s${PYTHONPATH:+:$PYTHONPATH} exec %s "$@"\n' "$build" "$(command -v python3)" \
      > "$build/bin/python3"
    chmod +x "$build/bin/python3"
  fi
  run_stage sglang-defect gpu-sglang-mxfp4 'tiny-qwen3/quark-mxfp4/* tiny-qwen3-moe/quark-mxfp4/*' --share-gpus 2 \
    --python "$build/bin/python3"
}
one_stage() {
  case $1 in
    # --no-preflight: every checkpoint is loaded, whatever preflight predicts (preflight.txt holds that).
    fixes) run_stage fixes gpu-sglang-fixes "${FIXES_CELLS:-}" --share-gpus 8 --no-preflight ;;
    main) run_stage main gpu-sglang "${MAIN_CELLS:-}" ;;
    numerics) numerics_stage ;;
    mxfp4) mxfp4_stage ;;
    # The MXFP4 cells with GSM8K alone, the five at once (suite gpu-sglang-mxfp4-smoke): for a short hold.
    mxfp4-smoke) run_stage mxfp4-smoke gpu-sglang-mxfp4-smoke "${SMOKE_CELLS:-}" --share-gpus 5 ;;
    # Seed 004: EAGLE3 with MLA drafts, healthy and broken, all loaded whatever preflight predicts.
    eagle3) run_stage eagle3 gpu-sglang-eagle3 "${EAGLE3_CELLS:-}" --share-gpus 6 --no-preflight ;;
    # The trained EAGLE3 draft of tiny-qwen3 (a real accept length) and its aux-order defect, which must regress.
    # Its cells first, promoted; then the defect, gated against them.
    eagle3-trained)
      run_stage eagle3-trained gpu-sglang-eagle3-trained 'tiny-qwen3/*' --share-gpus 2
      python3 -m harness baseline update --from "$REPORTS/eagle3-trained-$RIG_ID" --cell 'tiny-qwen3/*'
      run_stage eagle3-trained-defect gpu-sglang-eagle3-trained 'tiny-qwen3-eagle3-*/*'
      tar -czf "$OUT/eagle3-baselines.tar.gz" baselines/gpu-sglang-eagle3-trained.yaml \
        baselines/outcomes/gpu-sglang-eagle3-trained 2>/dev/null ;;
    sglang-defect) defect_build ;;
    # Issue 16, on a host of 4 GPUs (nvidia-h200-x4): every cell on its own GPUs, packed.
    tp) run_stage tp gpu-sglang-tp "${TP_CELLS:-tiny-qwen3/*}" ;;
    tpfixes) run_stage tpfixes gpu-sglang-tp "${TP_FIX_CELLS:-qwen3-next-*}" --share-gpus 2 --no-preflight ;;
  esac
}
for stage in $STAGES; do
  pids=()
  for part in ${stage//+/ }; do one_stage "$part" & pids+=($!); done
  wait "${pids[@]}"
done
nvidia-smi --query-gpu=memory.used --format=csv,noheader | sed 's/^/[rig] GPU memory used after the runs: /'
echo "[rig] sglang server processes left: $(pgrep -fc sglang.launch_server)"
tar -czf "$OUT/logs.tar.gz" -C "$REPORTS" . 2>/dev/null
say "done"
