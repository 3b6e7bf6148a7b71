"""A git history of the bundle's `sglang` package (SGLang 0.5.17) replaying #23467 and #23973, for `harness
bisect`'s GPU demonstration (benchmarks/gpu_bisect.sh, docs/bisect.md).

Sixteen commits on top of the package as the bundle ships it (`sglang/` at the repository's root, so the
checkout itself goes on PYTHONPATH): unrelated ones append a comment to a module each; commit REGRESSION
("#23467") adds Qwen3-Next's unified `in_proj_ba` / `in_proj_qkvz` to `_FALLBACK_FUSED_SHARDS` in
`sglang/srt/layers/quantization/utils.py` (so `is_layer_skipped` explodes them into shard names that do not
exist, FP8 block-quantizes them and `validate_block_quant_shapes` raises at load); commit FIX ("#23973") takes
them out again. Between the two every build fails to load `local:tiny-qwen3-next/fp8-ba-skipped`.

    python benchmarks/sglang_history.py /tmp/sglsite/sglang /tmp/sglang-src     # prints the commits
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

REGRESSION, FIX = 5, 12  # 0-based commit numbers
UTILS = "sglang/srt/layers/quantization/utils.py"
# 0.5.17's table, as #23973 left it.
FIXED_TABLE = '''_FALLBACK_FUSED_SHARDS: Mapping[str, List[str]] = {
    "qkv_proj": ["q_proj", "k_proj", "v_proj"],
    "gate_up_proj": ["gate_proj", "up_proj"],
}'''
# #23467's: Qwen3-Next's unified projections as if they were fused shards.
REGRESSED_TABLE = '''_FALLBACK_FUSED_SHARDS: Mapping[str, List[str]] = {
    "qkv_proj": ["q_proj", "k_proj", "v_proj"],
    "gate_up_proj": ["gate_proj", "up_proj"],
    "in_proj_qkvz": ["in_proj_qkv", "in_proj_z"],
    "in_proj_ba": ["in_proj_b", "in_proj_a"],
}'''
# Modules each unrelated commit appends a comment to (imported by every server, changing nothing it does).
UNRELATED = ("sglang/version.py", "sglang/srt/server_args.py", "sglang/srt/utils/common.py",
             "sglang/srt/managers/tokenizer_manager.py", "sglang/srt/model_loader/loader.py",
             "sglang/srt/layers/linear.py", "sglang/srt/entrypoints/http_server.py",
             "sglang/srt/managers/scheduler.py", "sglang/srt/mem_cache/memory_pool.py",
             "sglang/srt/models/qwen3_next.py", "sglang/srt/layers/quantization/fp8.py",
             "sglang/srt/configs/model_config.py", "sglang/srt/layers/logits_processor.py",
             "sglang/srt/sampling/sampling_params.py")


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bisect-demo", "GIT_AUTHOR_EMAIL": "demo@harness.invalid",
           "GIT_COMMITTER_NAME": "bisect-demo", "GIT_COMMITTER_EMAIL": "demo@harness.invalid",
           "HOME": str(repo)}  # no user's git configuration (signing, hooks) reaches the history
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env, timeout=600).stdout.strip()


def _commit(repo: Path, subject: str) -> str:
    _git(repo, "add", "--all")
    _git(repo, "commit", "--quiet", "-m", subject)
    return _git(repo, "rev-parse", "HEAD")


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{path}: the _FALLBACK_FUSED_SHARDS table is not 0.5.17's; this script replays on 0.5.17")
    path.write_text(text.replace(old, new))


def build(package: Path, repo: Path) -> list[tuple[str, str]]:
    """The history in a new repository; returns (commit, subject) oldest first."""
    repo.mkdir(parents=True)
    _git(repo, "init", "--quiet", "--initial-branch", "main")
    shutil.copytree(package, repo / "sglang", ignore=shutil.ignore_patterns("__pycache__"))
    made = [(_commit(repo, "sglang 0.5.17, as the bundle ships it"), "base")]
    unrelated = iter(UNRELATED)
    for number in range(1, 16):
        if number == REGRESSION:
            _replace(repo / UTILS, FIXED_TABLE, REGRESSED_TABLE)
            subject = "#23467 (replayed): Qwen3-Next's in_proj_qkvz / in_proj_ba in _FALLBACK_FUSED_SHARDS"
        elif number == FIX:
            _replace(repo / UTILS, REGRESSED_TABLE, FIXED_TABLE)
            subject = "#23973 (replayed): fallback fused shards are qkv_proj and gate_up_proj only"
        else:
            module = next(unrelated)
            with open(repo / module, "a") as handle:
                handle.write(f"\n# bisect demo: an unrelated change ({number})\n")
            subject = f"unrelated: a comment in {module}"
        made.append((_commit(repo, subject), subject))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="the bundle's sglang package (e.g. /tmp/sglsite/sglang)")
    parser.add_argument("repo", type=Path, help="where the history is made (must not exist)")
    args = parser.parse_args()
    for number, (commit, subject) in enumerate(build(args.package, args.repo)):
        print(number, commit, subject)


if __name__ == "__main__":
    main()
