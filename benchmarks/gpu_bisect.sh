#!/usr/bin/env bash
# `harness bisect` on real SGLang 0.5.17 (issue 27's GPU demonstration), on the lent NVIDIA GPU.
#
# Here, once:   echo /.sgl/ >> .git/info/exclude; cp -r ../shared/sglang-gpu .sgl
#               echo /.rig/ >> .git/info/exclude; benchmarks/gpu_sglang_pack.sh     (the rig's checkpoints)
# There:        bash benchmarks/gpu_bisect.sh      (device tool: carry .sgl and .rig; $OUT collects)
#
# Builds the git history of the bundle's `sglang` package replaying #23467 and #23973
# (benchmarks/sglang_history.py: commit 5 puts in_proj_ba / in_proj_qkvz into _FALLBACK_FUSED_SHARDS, commit 12
# takes them out), then bisects the Qwen3-Next fix cell of suite gpu-sglang-fixes (the block-FP8 checkpoint
# with in_proj_ba skipped, which loads on 0.5.17) from commit 0 (good) to commit 11 (bad): it must name commit
# 5. Each step checks a worktree of one commit out and puts it first on the server's PYTHONPATH.
# BISECT_ID names the bisect (default gpu-bisect): called again with the same id on the warm machine, it goes
# on with `harness bisect --resume` (a device call is cut at 600 s; BUDGET, default 560, stops the bisect with
# SIGINT before that: the finished steps are kept).
# Writes to $OUT: run.log, history.txt (the commits), evidence.md, logs.tar.gz (the bisect directory).
set -uo pipefail
T0=$(date +%s)
BUDGET=${BUDGET:-560}
BISECT_ID=${BISECT_ID:-gpu-bisect}
OUT=${OUT:-/tmp/bisect-out}
BISECTS=/tmp/bisects
SOURCE=/tmp/sglang-src
export HARNESS_CACHE_DIR=/tmp/harness-cache
mkdir -p "$OUT" "$BISECTS" "$HARNESS_CACHE_DIR"
exec > >(tee -a "$OUT/run.log") 2>&1
say() { echo "[bisect +$(( $(date +%s) - T0 ))s] $*"; }

# 1-2. The SGLang bundle and the environment its README gives; the rig's checkpoints (gpu_sglang_pack.sh).
PREPARE_LOG="$OUT/prepare.log" source benchmarks/gpu_sglang_env.sh

# 3. The engine's history: the bundle's package, #23467 and #23973 replayed among unrelated commits.
if [ ! -d "$SOURCE" ]; then
  python3 benchmarks/sglang_history.py /tmp/sglsite/sglang "$SOURCE" > "$OUT/history.txt" || { say "history failed"; exit 3; }
fi
say "history: $(git -C "$SOURCE" rev-list --count HEAD) commits in $SOURCE"

# 4. The bisect (resumed when this id's directory exists).
if [ -f "$BISECTS/$BISECT_ID/bisect.json" ]; then
  what=(--resume "$BISECTS/$BISECT_ID")
else
  what=(--suite gpu-sglang-fixes --cell 'qwen3-next-ba-skipped/*' --engine-src "$SOURCE" --good HEAD~15 --bad HEAD~4
        --bisects-dir "$BISECTS" --run-id "$BISECT_ID")
fi
left=$(( BUDGET - ($(date +%s) - T0) - 20 ))
say "harness bisect ${what[*]} (at most ${left}s)"
timeout -s INT -k 30 "$left" python3 -m harness bisect "${what[@]}"
say "harness bisect: exit $?"
cp "$BISECTS/$BISECT_ID/evidence.md" "$OUT/" 2>/dev/null
echo "[bisect] sglang server processes left: $(pgrep -fc sglang.launch_server)"
echo "[bisect] worktrees of $SOURCE: $(git -C "$SOURCE" worktree list | wc -l) (1: only the repository)"
tar -czf "$OUT/logs.tar.gz" -C "$BISECTS" "$BISECT_ID" 2>/dev/null
say "done"
