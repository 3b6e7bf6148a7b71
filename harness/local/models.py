"""`local:` checkpoints: the project's tiny model and its Quark exports, resolved to directories.

    local:tiny-qwen3/bf16                 the committed weights (models/tiny-qwen3)
    local:tiny-qwen3/mxfp4, .../fp8       amd-quark exports, made once and cached
    local:tiny-qwen3/mxfp4-scale-defect   the MXFP4 export with one layer's E8M0 scales one exponent too high
    local:tiny-qwen3/mxfp4-sparse-scale-defect   the MXFP4 export with one block in 16 of another layer's
                                          scales one exponent too high (harness.local.fakequant.DEFECTS)
    local:tiny-qwen3/fq-mxfp4             BF16 weights fake-quantized by harness's reference MXFP4
                                          (harness.local.fakequant), for engines without MXFP4 kernels
    local:tiny-qwen3/fq-mxfp4-scale-defect, .../fq-mxfp4-sparse-scale-defect   the same with a scale defect
    local:tiny-qwen3-moe/...              the same variants of the tiny Qwen3-MoE (models/tiny-qwen3-moe)
    local:tiny-qwen3-eagle3/bf16          the tiny model's trained EAGLE3 draft (models/tiny-qwen3-eagle3,
                                          harness.local.eagle3)
    local:tiny-qwen3-eagle3/aux-order-defect   that draft with its fc reading the aux states in the other order
    local:tiny-dsv3/bf16, ...             the real-SGLang rig's random-weight checkpoints in the fix
                                          architectures (harness.rig.checkpoints), built once and cached

The cache ($HARNESS_CACHE_DIR, default ~/.cache/harness/models) is keyed by a hash of the BF16
weights, so retraining never serves a stale export.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from harness.errors import ConfigError

PREFIX = "local:"
MODELS = ("tiny-qwen3", "tiny-qwen3-moe")
EXPORTS = {"mxfp4": "mxfp4", "fp8": "fp8"}
# Planted defects in the real MXFP4 export -> the harness.local.fakequant defect they carry (the same tensors and
# blocks as the fake-quantized checkpoints').
DEFECTS = {"mxfp4-scale-defect": "scale", "mxfp4-sparse-scale-defect": "sparse-scale"}
DEFECT_BASE = "mxfp4"
# Fake-quantized BF16 checkpoints -> the harness.local.fakequant defect they carry (None: none).
FAKE_QUANT = {"fq-mxfp4": None, "fq-mxfp4-scale-defect": "scale", "fq-mxfp4-sparse-scale-defect": "sparse-scale"}
VARIANTS = ("bf16", *EXPORTS, *DEFECTS, *FAKE_QUANT)
# EAGLE3 drafts committed under models/ -> their variants derived at run time (bf16: the committed weights).
DRAFTS = {"tiny-qwen3-eagle3": ("bf16", "aux-order-defect")}


def is_local(path: str) -> bool:
    return path.startswith(PREFIX)


def repo_models_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "models"


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness" / "models")


def rig_variants() -> dict[str, tuple[str, ...]]:
    """The rig's models and their variants (harness.rig.checkpoints; importing it costs no torch)."""
    from harness.rig.checkpoints import VARIANTS as RIG

    found: dict[str, tuple[str, ...]] = {}
    for variant in RIG:
        found[variant.model] = (*found.get(variant.model, ()), variant.name)
    return found


def parse(reference: str) -> tuple[str, str]:
    body = reference.removeprefix(PREFIX)
    model, _, variant = body.partition("/")
    rig = rig_variants()
    if model in rig and variant in rig[model]:
        return model, variant
    if model in DRAFTS and variant in DRAFTS[model]:
        return model, variant
    if model not in MODELS or variant not in VARIANTS:
        known = ([f"{m}/{{{','.join(VARIANTS)}}}" for m in MODELS] + [f"{m}/{{{','.join(v)}}}" for m, v in rig.items()]
                 + [f"{m}/{{{','.join(v)}}}" for m, v in DRAFTS.items()])
        raise ConfigError(f"{reference}: unknown local checkpoint (known: {'; '.join(known)})")
    return model, variant


def rig_dir() -> Path:
    """Where the rig's checkpoints are built, or unpacked from a pack (benchmarks/gpu_sglang_run.sh)."""
    return cache_dir() / "rig"


def source_dir(model: str) -> Path:
    path = repo_models_dir() / model
    if not (path / "model.safetensors").exists():
        raise ConfigError(f"{path}: the tiny model's weights are missing; train them with "
                          f"`python -m harness.local.train --out {path}`")
    return path


def source_digest(model: str) -> str:
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if model not in DRAFTS or (source_dir(model) / name).exists():  # a draft has no tokenizer
            digest.update((source_dir(model) / name).read_bytes())
    return digest.hexdigest()[:12]


def resolve(reference: str) -> Path:
    """Where a local checkpoint lives (it may not exist yet: see `ensure`)."""
    model, variant = parse(reference)
    if model not in MODELS and model not in DRAFTS:
        return rig_dir() / model / variant
    if variant == "bf16":
        return source_dir(model)
    if variant in FAKE_QUANT:  # the code that made them is part of the key: an MXFP4 fix is never served stale
        return cache_dir() / f"{model}-{source_digest(model)}-{variant}-{fake_quant_code_digest()}"
    return cache_dir() / f"{model}-{source_digest(model)}-{variant}"


def fake_quant_code_digest() -> str:
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in (package / "local" / "fakequant.py", package / "loading" / "mxfp4.py"):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def ensure(reference: str, *, python: str = sys.executable, log=print) -> Path:
    """The checkpoint's directory, exporting (amd-quark, in a subprocess) or deriving it first if needed.
    `log` gets harness's own lines; the subprocess's output goes to `<target>.log` beside the cache entry."""
    model, variant = parse(reference)
    target = resolve(reference)
    if (variant == "bf16" and (model in MODELS or model in DRAFTS)) or (target / "config.json").exists():
        return target
    if model in DRAFTS:
        log(f"harness: deriving {reference} (once; cached in {target.parent})")
        make_aux_order_defect(source_dir(model), target)
        return target
    from harness.engines.probe import run_python_module

    output = export_log(target)
    if model not in MODELS:
        log(f"harness: building {reference} (once; cached in {rig_dir()}; its output: {output})")
        run_python_module(python, "harness.rig", ["build", str(rig_dir()), "--only", f"{model}/{variant}"],
                          timeout_s=1800, log=output)
        return target
    if variant in FAKE_QUANT:
        defect = FAKE_QUANT[variant]
        log(f"harness: fake-quantizing {reference} (once; cached in {target.parent}; its output: {output})")
        run_python_module(python, "harness.local.fakequant", [str(source_dir(model)), str(target),
                                                              *(["--defect", defect] if defect else [])],
                          timeout_s=600, log=output)
        return target
    if variant in EXPORTS:
        log(f"harness: exporting {reference} with amd-quark (once; cached in {target.parent}; its output: {output})")
        run_python_module(python, "harness.local.export", ["--scheme", EXPORTS[variant], str(source_dir(model)),
                                                           str(target)], timeout_s=1800, log=output)
        return target
    from harness.local.fakequant import DEFECTS as SCALE_DEFECTS

    base = ensure(f"{PREFIX}{model}/{DEFECT_BASE}", python=python, log=log)
    scale_defect = SCALE_DEFECTS[DEFECTS[variant]]
    make_scale_defect(base, target, tensor=scale_defect.tensor + "_scale", stride=scale_defect.stride)
    return target


def export_log(target: Path) -> Path:
    """Where the subprocess that makes `target` writes its output: `<target>.log` beside it in the cache."""
    return target.with_name(target.name + ".log")


def make_scale_defect(source: Path, target: Path, tensor: str, stride: int = 1) -> None:
    """Copy an MXFP4 export with every stride-th E8M0 scale of one tensor (row-major order, as
    `fakequant.raise_scales` counts) raised by one exponent: those blocks' weights doubled.

    Only that tensor's bytes change: the file is edited in place through its safetensors header, so every
    other tensor stays byte-identical.
    """
    from harness.loading.safetensors import tensor_span

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    weights = tmp / "model.safetensors"
    try:
        dtype, _, start, end = tensor_span(weights, tensor)
    except KeyError:
        dtype = None
    if dtype != "U8":
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"{source}: no uint8 E8M0 scale tensor {tensor} to corrupt")
    with open(weights, "r+b") as handle:
        handle.seek(start)
        scales = bytearray(handle.read(end - start))
        # 0xFF is NaN in E8M0: stay below it.
        handle.seek(start)
        handle.write(bytes(min(value + 1, 254) if index % stride == 0 else value
                           for index, value in enumerate(scales)))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


AUX_FC = "fc.weight"


def make_aux_order_defect(source: Path, target: Path) -> None:
    """Copy an EAGLE3 draft with its fc reading the target's aux hidden states in the reverse order.

    It is the draft a trainer makes when it concatenates the aux states in the order its
    `eagle_aux_hidden_state_layer_ids` lists them, from a config listing them in reverse layer order: SGLang
    captures them in layer order whatever the list says (qwen2.py: `if i in self.layers_to_capture`), so the
    draft loads and serves with the same shapes but reads each aux block where it expects another. The config
    gets that reversed list, and fc's input column blocks are reversed in the file's bytes; every other tensor
    stays byte-identical.
    """
    import json

    from harness.loading.safetensors import tensor_span

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    config = json.loads((tmp / "config.json").read_text())
    layer_ids = config["eagle_config"]["eagle_aux_hidden_state_layer_ids"]
    config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] = layer_ids[::-1]
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    weights = tmp / "model.safetensors"
    dtype, shape, start, end = tensor_span(weights, AUX_FC)
    if dtype != "BF16" or len(shape) != 2 or shape[1] % len(layer_ids):
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"{source}: {AUX_FC} is not a BF16 matrix over {len(layer_ids)} aux blocks")
    with open(weights, "r+b") as handle:
        handle.seek(start)
        data = handle.read(end - start)
        row_bytes, block = len(data) // shape[0], len(data) // shape[0] // len(layer_ids)
        rows = (data[r * row_bytes:(r + 1) * row_bytes] for r in range(shape[0]))
        handle.seek(start)
        handle.write(b"".join(b"".join(row[i:i + block] for i in reversed(range(0, row_bytes, block)))
                              for row in rows))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
