"""Failure classification from a server log: the signatures as data, one pure classifier.

Causes (../shared/reference/sglang.md, "Failure signatures"): an engine its Python does not have
(launch_failed), out of memory by phase, weight
shape mismatch, FP8 block divisibility, scheduler exception, watchdog; `timeout` and `crash` are
given by the launcher when the log names nothing more specific.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Causes of a model-loading bug of the Quark / FP8 loading stack (the very failures the guarded fixes removed,
# and the ones preflight predicts): a cell that dies with one of these has regressed (harness.compare), it is
# not an infrastructure hiccup; resuming a run never retries it (harness.rundir).
LOAD_REGRESSION_CAUSES = frozenset({"weight_shape_mismatch", "fp8_block_divisibility", "fused_shard_disagreement",
                                    "quark_fp8_shared_experts", "unexpected_checkpoint_tensor"})


@dataclass(frozen=True)
class Signature:
    cause: str
    regex: re.Pattern[str]
    fatal: bool  # seen while waiting for readiness, it ends the wait at once


# `python -m <module>` whose Python lacks the engine (runpy's own lines, unquoted or with "finding module
# specification"; an ImportError inside a started engine is quoted, and is a crash of that engine).
ENGINE_MISSING = re.compile(
    r"Error while finding module specification for '[\w.]+' \(ModuleNotFoundError: No module named '[\w.]+'\)|"
    r": No module named [\w.]+$")

SIGNATURES = (
    # The engine's Python cannot run the engine at all (no SGLang installed there): it cannot be started.
    Signature("launch_failed", ENGINE_MISSING, fatal=True),
    # SGLang's Quark MXFP4 GEMMs (and online MXFP4) come from aiter, which exists only on ROCm: on CUDA an MXFP4
    # linear loads, then its first forward fails; an MXFP4 MoE fails already after loading (e8m0_shuffle, seen
    # on the rig). A platform limit, named before the scheduler's crash.
    Signature("aiter_missing", re.compile(
        r"name '(?:dynamic_mxfp4_quant|e8m0_shuffle|shuffle_weight)' is not defined|No module named 'aiter'|"
        r"Failed to import aiter"), fatal=True),
    # The fused module's shards are stored (or excluded) differently: SGLang refuses to build it.
    Signature("fused_shard_disagreement", re.compile(
        r"Found different quantization schemes for .* SGLang requires all to use the same scheme|"
        r"Detected some but not all shards of .* are quantized"), fatal=True),
    # deepseek_v2 assumes FP8 shared experts carry an Fp8Config (SGLang 0.5.17 with amd-quark FP8 exports).
    Signature("quark_fp8_shared_experts", re.compile(
        r"'QuarkConfig' object has no attribute 'weight_block_size'"), fatal=True),
    # Linear layers' partition sizes, and (fp8.py's MoE method) the experts' gate/up and down sizes.
    Signature("fp8_block_divisibility", re.compile(
        r"(?:output_partition_size|input_size_per_partition|output_size of gate's and up's weight|"
        r"input_size of down's weight) = \d+ is not divisible by (?:weight quantization )?block_[nk] = \d+"),
        fatal=True),
    Signature("weight_shape_mismatch", re.compile(
        r"size mismatch for|param_data\.shape == loaded_weight\.shape|shape mismatch|"
        # SGLang 0.5.17's weight_loader assertion (seen on the rig: a packed eh_proj built, a BF16 one stored).
        r"param\.shape=torch\.Size\(\[[\d, ]+\]\) param\.dtype=\S+ loaded_weight\.shape=|"
        # copy_with_check (0.5.17, 0.5.23; seen on the rig: a Kimi q/kv projection built packed, stored BF16).
        r"target\.shape=torch\.Size\(\[[\d, ]+\]\), loaded_weight\.shape=torch\.Size|"
        r"Attempted to load weight \(torch\.Size\(\[[\d, ]+\]\)\) into parameter \(torch\.Size"), fatal=True),
    # A stored tensor the built model has no parameter for: the checkpoint stores a module quantized (its
    # scales) that the config makes SGLang build unquantized (seen on the rig: a NextN draft built BF16).
    Signature("unexpected_checkpoint_tensor", re.compile(
        r"KeyError: '[\w.]+\.(?:weight_scale_inv|weight_scale|input_scale|weight)'"), fatal=True),
    Signature("oom", re.compile(
        r"CUDA out of memory|HIP out of memory|OutOfMemoryError|"
        r"Not enough memory\. Please try to increase --mem-fraction-static|"
        # 0.5.17+ (kv_cache_configurator.py): the weights took the whole --mem-fraction-static budget.
        r"Loaded weights leave no GPU memory for the KV cache"), fatal=True),
    Signature("watchdog", re.compile(r"watchdog timeout", re.IGNORECASE), fatal=True),
    Signature("scheduler_exception", re.compile(r"Scheduler hit an exception"), fatal=True),
)

# What to do about a cause that is the platform's, not the checkpoint's (shown beside the cause's message).
REMEDIES = {
    "aiter_missing": "aiter is ROCm-only; elsewhere serve SGLang's MXFP4 code through harness's reference kernels "
                     "(suite server: {kernels: aiter-reference}, or harness run --kernels aiter-reference)",
}

# The last phase line before an OOM tells which allocation failed.
_PHASES = (
    # A traceback names the capture too: `Capture cuda graph failed: CUDA out of memory` (sglang#5285).
    ("graph_capture", re.compile(r"Capture .*graph (?:begin|end|failed)|Capturing batches|cuda_graph_runner\.py",
                                 re.IGNORECASE)),
    ("kv_cache", re.compile(r"KV Cache is allocated|Memory pool end|max_total_num_tokens=|Not enough memory|"
                            r"leave no GPU memory for the KV cache")),
    ("load", re.compile(r"Load weight begin|Load weight end")),
)

CRASH_MARKER = "Traceback (most recent call last)"


def is_out_of_memory(cause: str | None) -> bool:
    """An out-of-memory failure (`oom_<phase>`): the device was too small for what was asked, which says
    nothing about whether the checkpoint loads."""
    return cause is not None and cause.startswith("oom")


@dataclass(frozen=True)
class Failure:
    cause: str
    message: str  # the line that named it


def missing_engine_hint(python: str, from_flag_or_suite: bool) -> str:
    """What to do when the engine's Python lacks the engine: point harness at the Python of the engine's install."""
    if from_flag_or_suite:
        return (f"{python} (given by --python or the suite's `python:`) has no such module: point it at the Python "
                f"of your engine's install")
    return (f"harness's own Python ({python}) runs the servers and has no such module: pass --python "
            f"/path/to/your-engine-env/bin/python to `harness run`, or set `python:` in the suite")


def first_fatal_line(line: str) -> Signature | None:
    """The signature a single log line carries, if it is one that ends a readiness wait."""
    return next((s for s in SIGNATURES if s.fatal and s.regex.search(line)), None)


def classify(lines: Sequence[str], *, exited: bool, timed_out: bool = False) -> Failure | None:
    """The most specific failure the log shows, or None if it shows none and the server did not die."""
    for signature in SIGNATURES:
        for index, line in enumerate(lines):
            if signature.regex.search(line):
                cause = signature.cause
                if cause == "oom":
                    cause = f"oom_{_phase_before(lines, index)}"
                return Failure(cause, line.strip())
    if timed_out:
        return Failure("timeout", "the server was not ready before the launch deadline")
    if exited:
        traceback_lines = [i for i, line in enumerate(lines) if CRASH_MARKER in line]
        if traceback_lines:
            last = next((line.strip() for line in reversed(lines) if line.strip()), "")
            return Failure("crash", last)
        return Failure("crash", "the server exited without an error in its log")
    return None


def _phase_before(lines: Sequence[str], index: int) -> str:
    for line in reversed(lines[: index + 1]):
        for phase, regex in _PHASES:
            if regex.search(line):
                return phase
    return "runtime"
