"""Run SGLang's own loader functions on randomized inputs and record what they return or raise, as goldens.

harness mirrors a handful of SGLang functions whose answers decide whether a checkpoint loads (layer skipping,
Quark exclusion, the FP8 block checks, the NextN quantization decision, shared-expert fusion). This script takes
their source from a real SGLang release (a wheel from `pip download sglang==X --no-deps`, or an unpacked tree),
executes those pure functions with minimal stubs (no torch, no GPU, nothing of SGLang imported), and writes
`tests/golden/sglang/<function>.json.gz`: per case the inputs and each release's answer, a raise recorded as
[exception type, message]. The tests replay every case against harness's mirror. SGLang's code itself is never
written anywhere.

    python tools/sglang_reference.py                        # pip download 0.5.17 and 0.5.23, regenerate
    python tools/sglang_reference.py --source 0.5.17=/tmp/sgl/0.5.17/sglang --source 0.5.23=/tmp/sgl/0.5.23/sglang
"""

from __future__ import annotations

import argparse
import ast
import copy
import fnmatch
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
import tempfile
import types
import zipfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Optional

RELEASES = ("0.5.17", "0.5.23")
SEED = 20260611
GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden" / "sglang"
FILES = {
    "utils": "srt/layers/quantization/utils.py",
    "quark_utils": "srt/layers/quantization/quark/utils.py",
    "quark": "srt/layers/quantization/quark/quark.py",
    "fp8": "srt/layers/quantization/fp8.py",
    "moe_utils": "srt/layers/moe/utils.py",
    "model_utils": "srt/models/utils.py",
    "nextn": "srt/models/deepseek_nextn.py",
    "glm": "srt/models/glm4_moe.py",
    "deepseek": "srt/models/deepseek_v2.py",
    "base_config": "srt/layers/quantization/base_config.py",
    "quark_fp8": "srt/layers/quantization/quark/schemes/quark_w8a8_fp8.py",
    "qwen3_next": "srt/models/qwen3_next.py",
    "kimi_k25": "srt/models/kimi_k25.py",
    "loader": "srt/model_loader/loader.py",
}


# ---------------------------------------------------------------------------------------------- the source
class Source:
    """One release's files, from an unpacked `sglang` package directory or from its wheel."""

    def __init__(self, version: str, root: Path):
        self.version, self.root = version, root
        self._wheel = zipfile.ZipFile(root) if root.suffix == ".whl" else None

    def read(self, key: str) -> str:
        relative = FILES[key]
        if self._wheel is not None:
            return self._wheel.read(f"sglang/{relative}").decode()
        return (self.root / relative).read_text()

    def digests(self) -> dict[str, str]:
        return {FILES[key]: hashlib.sha256(self.read(key).encode()).hexdigest()[:16] for key in sorted(FILES)}


def pip_download(version: str, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", f"sglang=={version}", "--no-deps", "-d", str(into),
                    "--quiet"], check=True)
    return next(into.glob(f"sglang-{version}-*.whl"))


def _top_level(tree: ast.Module, name: str) -> ast.stmt:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return node
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node
    raise LookupError(name)


def _member(tree: ast.Module, class_name: str, name: str) -> ast.stmt:
    cls = _top_level(tree, class_name)
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
    raise LookupError(f"{class_name}.{name}")


def _exec(nodes: list[ast.stmt], namespace: dict) -> dict:
    module = ast.Module(body=[*ast.parse("from __future__ import annotations").body, *nodes], type_ignores=[])
    exec(compile(ast.fix_missing_locations(module), "<sglang>", "exec"), namespace)  # noqa: S102 - SGLang's own code
    return namespace


def _class(name: str, members: list[ast.stmt], bases: tuple[str, ...] = ()) -> ast.ClassDef:
    """A class holding only the given members of a real one (its other code needs torch)."""
    node = ast.parse(f"class {name}({', '.join(bases)}): pass").body[0]
    node.body = members
    return node


class _Obj:
    """A stub object: attributes given as keywords."""

    def __init__(self, **attributes):
        self.__dict__.update(attributes)


# ---------------------------------------------------------------------------------- SGLang's functions, run
@contextmanager
def _fake_modules(modules: dict[str, dict]):
    """Modules a function imports in its body (`from sglang... import x`), stubbed for the call."""
    saved = {name: sys.modules.get(name) for name in modules}
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def load_is_layer_skipped(src: Source) -> Callable:
    tree = ast.parse(src.read("utils"))
    names = ("_module_path_match", "_FALLBACK_FUSED_SHARDS", "is_layer_skipped")
    ns = _exec([_top_level(tree, n) for n in names], {"Mapping": Mapping, "List": list,
                                                       "MappingProxyType": MappingProxyType})
    return lambda prefix, ignored, fused: ns["is_layer_skipped"](prefix, list(ignored), dict(fused))


def load_should_ignore_layer(src: Source) -> Callable:
    tree = ast.parse(src.read("quark_utils"))
    names = ("should_ignore_layer", "check_equal_or_regex_match", "_is_equal_or_regex_match")
    ns = _exec([_top_level(tree, n) for n in names], {"re": re, "MappingProxyType": MappingProxyType})
    return ns["should_ignore_layer"]


def load_validate_block_quant_shapes(src: Source) -> Callable:
    node = _member(ast.parse(src.read("fp8")), "Fp8LinearMethod", "validate_block_quant_shapes")
    node.decorator_list = []
    parallel = _Obj(tp_size=1)
    ns = _exec([node], {"get_parallel": lambda: parallel, "print_warning_once": lambda *_: None})
    function = ns["validate_block_quant_shapes"]
    takes_layer = [a.arg for a in node.args.args][0] == "layer"

    def call(global_tp, layer_tp, block, input_size, input_per_partition, output_size, output_per_partition,
             partitions, skip):
        parallel.tp_size = global_tp
        args = (_Obj(weight_block_size=list(block)), input_size, input_per_partition, output_size,
                output_per_partition, list(partitions), skip)
        layer = _Obj(tp_group=_Obj(world_size=layer_tp))
        return function(layer, *args) if takes_layer else function(*args)

    return call


def load_moe_block_check(src: Source) -> Callable:
    """The block-shape check of Fp8MoEMethod.create_fp8_moe_weight_: its `tp_size = ...` and `if block_quant:`
    statements, run as they stand in a function of the variables they read."""
    method = _member(ast.parse(src.read("fp8")), "Fp8MoEMethod", "create_fp8_moe_weight_")
    tp_assign = next(s for s in method.body if isinstance(s, ast.Assign) and ast.unparse(s.targets[0]) == "tp_size")
    check = next(s for s in method.body if isinstance(s, ast.If) and ast.unparse(s.test) == "block_quant")
    function = ast.parse("def moe_check(layer, quant_config, intermediate_size_per_partition, block_quant): pass")
    function.body[0].body = [tp_assign, check]
    moe_utils = ast.parse(src.read("moe_utils"))
    env = {"SGLANG_MOE_PADDING": "0"}
    parallel = _Obj(tp_size=1)
    ns = _exec([_top_level(moe_utils, n) for n in ("AITER_PADDING_SIZE", "TRITON_PADDING_SIZE", "get_moe_padding_size")]
               + function.body, {"os": _Obj(getenv=lambda key, default=None: env.get(key, default)),
                                 "get_parallel": lambda: parallel})

    def call(global_tp, moe_tp, block, intermediate_per_partition, use_aiter, moe_padding_env):
        parallel.tp_size, env["SGLANG_MOE_PADDING"], ns["_use_aiter"] = global_tp, moe_padding_env, use_aiter
        layer = _Obj(moe_tp_size=moe_tp, moe_runner_config=_Obj(is_gated=True))
        return ns["moe_check"](layer, _Obj(weight_block_size=list(block)), intermediate_per_partition, True)

    return call


QUARK_PACKED_MODULES = {"gate_up_proj": ["gate_proj", "up_proj"],
                        "fused_qkv_a_proj_with_mqa": ["q_a_proj", "kv_a_proj_with_mqa"]}
NEXTN_CLASSES = ("DeepseekV3ForCausalLMNextN", "GlmMoeDsaForCausalLMNextN")


def _nextn_classes(src: Source, should_ignore_layer: Callable) -> tuple[dict, type, dict]:
    """The two NextN draft classes with their real exclusion members, the real WeightsMapper, and a Quark
    config class holding the real apply_weight_name_mapper."""
    utils = ast.parse(src.read("model_utils"))
    ns = _exec([_top_level(utils, "WeightsMapping"), _top_level(utils, "WeightsMapper")],
               {"dataclass": dataclass, "field": field, "Mapping": Mapping, "Optional": Optional,
                "Iterable": Iterable, "Any": Any})
    quark = _class("QuarkConfig", [_member(ast.parse(src.read("quark")), "QuarkConfig", "apply_weight_name_mapper")])
    nextn, glm = ast.parse(src.read("nextn")), ast.parse(src.read("glm"))
    deepseek_members = [_member(nextn, NEXTN_CLASSES[0], n) for n in ("hf_to_sglang_mapper", "get_hf_to_sglang_mapper",
                                                                       "_resolve_nextn_quant_config")
                        if _has_member(nextn, NEXTN_CLASSES[0], n)]
    glm_members = [_member(glm, NEXTN_CLASSES[1], n) for n in ("hf_to_sglang_mapper", "_NEXTN_SPEC_WEIGHT_NAMES",
                                                                "_map_mtp_ckpt_name", "_resolve_nextn_quant_config")]
    helpers = [_top_level(glm, n) for n in ("enable_glm_nextn_moe_ptpc", "glm_nextn_mtp_fused_experts_excluded",
                                            "should_apply_glm_nextn_moe_ptpc") if _has_top_level(glm, n)]
    envs = _Obj(SGLANG_GLM_NEXTN_MOE_PTPC=_Obj(get=lambda: False))  # the environment variable's default
    ns.update(copy=copy, logger=_Obj(info=lambda *_: None), envs=envs)
    _exec([quark, *helpers, _class(NEXTN_CLASSES[0], deepseek_members),
           _class(NEXTN_CLASSES[1], glm_members, (NEXTN_CLASSES[0],))], ns)
    return {name: ns[name] for name in NEXTN_CLASSES}, ns["QuarkConfig"], {"should_ignore_layer": should_ignore_layer}


def _has_member(tree: ast.Module, class_name: str, name: str) -> bool:
    try:
        _member(tree, class_name, name)
    except LookupError:
        return False
    return True


def _has_top_level(tree: ast.Module, name: str) -> bool:
    try:
        _top_level(tree, name)
    except LookupError:
        return False
    return True


def load_nextn_eh_proj(src: Source) -> Callable:
    """#23219's decision for a Quark checkpoint's NextN (MTP) draft: the whole draft unquantized (eh_proj an
    nn.Linear), or a Quark draft whose `model.eh_proj` ReplicatedLinear is excluded or quantized. The exclude
    list goes through the loader's steps first: the draft class's weight-name mapper (apply_weight_name_mapper)."""
    should_ignore_layer = load_should_ignore_layer(src)
    classes, quark_class, quark_utils = _nextn_classes(src, should_ignore_layer)

    def call(architecture, num_hidden_layers, exclude):
        cls, config = classes[architecture], _Obj(num_hidden_layers=num_hidden_layers)
        quant = quark_class()
        quant.__dict__.update(exclude_layers=list(exclude), quant_config={"exclude": list(exclude)}, kv_cache_group=[],
                              packed_modules_mapping=dict(QUARK_PACKED_MODULES), get_name=lambda: "quark")
        getter = getattr(cls, "get_hf_to_sglang_mapper", None)
        quant.apply_weight_name_mapper(getter(config) if getter else cls.hf_to_sglang_mapper)
        with _fake_modules({"sglang.srt.layers.quantization.quark.utils": quark_utils}):
            resolved = cls._resolve_nextn_quant_config(cls.__new__(cls), config, quant)
        if resolved is None:
            return "unquantized"
        excluded = should_ignore_layer("model.eh_proj", ignore=resolved.exclude_layers,
                                       fused_mapping=resolved.packed_modules_mapping)
        return "excluded" if excluded else "quantized"

    return call


def load_fused_shared_experts(src: Source) -> Callable:
    """DeepseekV2ForCausalLM.determine_num_fused_shared_experts (0.5.17): whether the shared expert is fused
    into the routed experts' MoE kernel (no standalone shared_experts MLP is built) or not."""
    method = _member(ast.parse(src.read("deepseek")), "DeepseekV2ForCausalLM", "determine_num_fused_shared_experts")
    state: dict = {}
    torch = _Obj(cuda=_Obj(get_device_capability=lambda *_: state["capability"]),
                 musa=_Obj(get_device_capability=lambda *_: state["capability"]))
    ns = _exec([_class("DeepseekV2ForCausalLM", [method])], {
        "get_exec": lambda: _Obj(moe=_Obj(disable_shared_experts_fusion=state["disable"],
                                          enforce_shared_experts_fusion=state["enforce"])),
        "get_server_args": lambda: None, "is_sbo_enabled": lambda: state["sbo"], "is_tbo_enabled": lambda: state["tbo"],
        "is_deepep_class_backend": lambda: state["deepep"], "torch": torch,
        "get_parallel": lambda: _Obj(moe_ep_size=state["ep"]), "is_wint4afp8_or_wint4a16_config": lambda _: False,
        "log_info_on_rank0": lambda *_: None, "logger": None})
    overrides = {"sglang.srt.arg_groups.overrides": {"declare_load_time_override": lambda *_: None}}

    def call(architecture, model_class_architecture, n_routed_experts, n_shared_experts, quant_name, disable, enforce,
             sbo, tbo, deepep, platform, capability, ep):
        state.update(disable=disable, enforce=enforce, sbo=sbo, tbo=tbo, deepep=deepep, ep=ep, capability=tuple(capability))
        ns.update(_is_cuda=platform == "cuda", _is_hip=platform == "hip", _is_musa=platform == "musa")
        model = ns["DeepseekV2ForCausalLM"].__new__(ns["DeepseekV2ForCausalLM"])
        model.config = _Obj(architectures=[architecture], n_routed_experts=n_routed_experts,
                            n_shared_experts=n_shared_experts)
        model.quant_config = None if quant_name is None else _Obj(get_name=lambda: quant_name)
        with _fake_modules(overrides):
            model.determine_num_fused_shared_experts(model_class_architecture)
        return model.num_fused_shared_experts

    return call


def facts(src: Source) -> dict[str, Any]:
    """Facts of a release's source that the rules rest on, re-read at every regeneration."""
    base = _top_level(ast.parse(src.read("base_config")), "QuantizationConfig")
    declared = [ast.unparse(n) for n in base.body if isinstance(n, ast.AnnAssign) and ast.unparse(n.target) == "weight_block_size"]
    quark_init = _member(ast.parse(src.read("quark")), "QuarkConfig", "__init__")
    quark_sets = [ast.unparse(n.test) for n in ast.walk(quark_init)
                  if isinstance(n, ast.If) and any("self.weight_block_size" in ast.unparse(b) for b in n.body)]
    create = _member(ast.parse(src.read("quark_fp8")), "QuarkW8A8Fp8", "create_weights")
    weight_dtypes = sorted({ast.unparse(k.value) for k in ast.walk(create) if isinstance(k, ast.keyword) and k.arg == "dtype"
                            and "float8" in ast.unparse(k.value)})
    gated = _top_level(ast.parse(src.read("qwen3_next")), "Qwen3GatedDeltaNet")
    built = {ast.unparse(n.targets[0]): ast.unparse(n.value.func) for n in ast.walk(gated)
             if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
             and ast.unparse(n.targets[0]) in ("self.in_proj_ba", "self.out_proj")}
    kimi = _top_level(ast.parse(src.read("kimi_k25")), "KimiK25ForConditionalGeneration")
    prefixed_for = [ast.unparse(n.test.args[1]) for n in ast.walk(kimi) if isinstance(n, ast.IfExp)
                    and isinstance(n.body, ast.Constant) and n.body.value == "language_model"]
    loader = _top_level(ast.parse(src.read("loader")), "_get_quantization_config")
    quark_mapping = [ast.literal_eval(n.body[0].value.args[0]) for n in ast.walk(loader) if isinstance(n, ast.If)
                     and ast.unparse(n.test) == "model_config.quantization == 'quark'"]
    return {
        "QuantizationConfig declares weight_block_size": declared,
        "QuarkConfig sets weight_block_size only if": quark_sets,
        "DeepseekV2MoE reads the FP8 shared experts' quant_config.weight_block_size":
            "shared_experts.gate_up_proj.quant_method.quant_config.weight_block_size" in src.read("deepseek"),
        "QuarkW8A8Fp8.create_weights weight dtype": weight_dtypes,
        "Qwen3GatedDeltaNet builds": built,
        "KimiK25 gives the language_model prefix for": prefixed_for,
        "loader's packed modules for quark": quark_mapping,
    }


def load_quark_layer_scheme(src: Source) -> Callable:
    """QuarkConfig._find_matched_config, then _is_mx_fp4 / _is_fp8_w8a8 on what it found: the scheme a layer gets."""
    tree = ast.parse(src.read("quark"))
    members = [_member(tree, "QuarkConfig", n) for n in ("_find_matched_config", "_fused_expert_config", "_is_mx_fp4",
                                                          "_is_fp8_w8a8") if _has_member(tree, "QuarkConfig", n)]
    utils = ast.parse(src.read("quark_utils"))
    ns = _exec([_top_level(utils, "deep_compare"), _class("QuarkConfig", members)],
               {"fnmatch": fnmatch, "cast": lambda _, value: value, "logger": _Obj(debug=lambda *_: None), "Any": Any})

    def call(specs, layer_name, layer_type, mapping):
        config = ns["QuarkConfig"].__new__(ns["QuarkConfig"])
        config.quant_config, config.packed_modules_mapping = expand_specs(specs), SCHEME_MAPPINGS[mapping]
        found = config._find_matched_config(layer_name, type(layer_type, (), {})())
        weight, inputs = found.get("weight"), found.get("input_tensors")
        return "mxfp4" if config._is_mx_fp4(weight, inputs) else "fp8_w8a8" if config._is_fp8_w8a8(weight, inputs) \
            else "other"

    return call


# ---------------------------------------------------------------------------------------- randomized inputs
ROOTS = ("", "model.", "model.", "model.", "language_model.model.", "model.language_model.", "language_model.")
LAYERS = ("0", "1", "3", "5", "34", "340", "61", "78", "11")
MODULES = (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.qkv_proj", "self_attn.o_proj",
    "self_attn.q_a_proj", "self_attn.kv_a_proj_with_mqa", "self_attn.fused_qkv_a_proj_with_mqa", "self_attn.q_b_proj",
    "self_attn.kv_b_proj", "linear_attn.in_proj_ba", "linear_attn.in_proj_qkvz", "linear_attn.out_proj",
    "linear_attn.in_proj_b", "linear_attn.in_proj_a", "linear_attn.in_proj_qkv", "linear_attn.in_proj_z",
    "mlp.gate", "mlp.gate_up_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "mlp.shared_expert.gate_up_proj",
    "mlp.shared_experts.gate_up_proj", "mlp.shared_experts.down_proj", "mlp.shared_expert_gate", "mlp.experts",
    "mlp.experts.0.gate_proj", "mlp.experts.12.up_proj", "mlp.experts.3.down_proj", "mlp.experts.7.w1",
    "mlp.experts.7.w3", "mlp.experts.gate_up_proj", "mlp.experts.0.gate_up_proj", "eh_proj", "mlp.gate_up_proj_x",
)
TOP_LEVEL = ("lm_head", "model.embed_tokens", "language_model.lm_head", "model.decoder.eh_proj", "model.eh_proj")
FUSED = {
    "gate_up_proj": ("gate_proj", "up_proj"), "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "fused_qkv_a_proj_with_mqa": ("q_a_proj", "kv_a_proj_with_mqa"), "in_proj_qkvz": ("in_proj_qkv", "in_proj_z"),
    "in_proj_ba": ("in_proj_b", "in_proj_a"),
}
MAPPINGS = (
    {}, {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]},
    QUARK_PACKED_MODULES, {"fused_qkv_a_proj_with_mqa": ["q_a_proj", "kv_a_proj_with_mqa"]},
    {"in_proj_qkvz": ["in_proj_qkv", "in_proj_z"], "in_proj_ba": ["in_proj_b", "in_proj_a"]},
    {"gate_up_proj": ["gate_proj", "up_proj"], "experts": ["w1", "w3"]}, {"gate_up_proj": []},
)


def random_name(rng: random.Random, layer: str | None = None) -> str:
    if rng.random() < 0.08:
        return rng.choice(TOP_LEVEL)
    return f"{rng.choice(ROOTS)}layers.{layer or rng.choice(LAYERS)}.{rng.choice(MODULES)}"


def _related(rng: random.Random, name: str) -> str:
    """An entry derived from a module's name: itself, a shard of it, a parent, its tail, with or without a root."""
    parts = name.split(".")
    leaf = parts[-1]
    choice = rng.randrange(9)
    if choice == 0:
        return name
    if choice == 1 and leaf in FUSED:
        return ".".join(parts[:-1] + [rng.choice(FUSED[leaf])])
    if choice == 2:
        return ".".join(parts[: rng.randrange(1, len(parts) + 1)]) + rng.choice(("", ".", ".."))
    if choice == 3:
        return ".".join(parts[rng.randrange(len(parts)):])
    if choice == 4:
        return rng.choice(("", ".", "language_model.", "model.")) + name.removeprefix("model.")
    if choice == 5 and "experts" in parts:
        return ".".join(parts[: parts.index("experts") + 1]) + rng.choice((".0.w1", ".3.down_proj", "", "."))
    if choice == 6:
        return name + rng.choice(("", ".", ".weight", ".0.gate_proj"))
    return random_name(rng, rng.choice((None, *parts[1:2])))


GENERIC = ("mlp.gate", "lm_head", "model.layers.34.", "experts", "mlp.experts", "gate_up_proj", "mlp", "", ".")


def ignored_list(rng: random.Random, name: str) -> list[str]:
    entries = []
    for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4, 6))):
        roll = rng.random()
        entries.append(_related(rng, name) if roll < 0.6 else rng.choice(GENERIC) if roll < 0.75 else random_name(rng))
    leaf = name.split(".")[-1]
    if leaf in FUSED and rng.random() < 0.35:  # some or all shards listed: the cases that agree or raise
        parent = name[: -len(leaf)]
        entries += [parent + shard for shard in FUSED[leaf] if rng.random() < 0.6]
    return entries


def _quark_entry(rng: random.Random, name: str) -> str:
    """A Quark exclude entry: an exact name or a `re:` pattern, often derived from the module's own name."""
    plain = _related(rng, name) if rng.random() < 0.7 else random_name(rng)
    roll = rng.random()
    if roll < 0.45:
        return plain
    if roll < 0.65:
        return "re:" + re.escape(plain) + rng.choice(("", "$", ".*", r"\..*"))
    if roll < 0.8:
        return "re:.*" + re.escape(plain.split(".")[-1]) + rng.choice(("", "$", ".*"))
    patterns = (r"re:.*lm_head", r"re:model\.layers\.61\..*", r"re:model.layers.61.*", r"re:.*mlp\.gate$",
                r"re:language_model\.model\.layers\.\d+\.self_attn\.(q_a_proj|kv_a_proj_with_mqa)",
                r"re:.*mlp\.experts.*", r"re:.*self_attn.*", r"re:.*shared_experts.*", r"re:.*\.experts\.\d+\..*",
                r"re:(", r"re:.*vision_tower.*", r"re:.*mm_projector.*")
    return rng.choice(patterns) if rng.random() < 0.97 else "re:(unbalanced"


def quark_exclude(rng: random.Random, name: str) -> list[str]:
    entries = [_quark_entry(rng, name) for _ in range(rng.choice((0, 1, 1, 2, 3, 4, 5)))]
    leaf = name.split(".")[-1]
    if leaf in FUSED and rng.random() < 0.35:
        entries += [name[: -len(leaf)] + shard for shard in FUSED[leaf] if rng.random() < 0.6]
    if name.endswith(".experts") and rng.random() < 0.4:
        entries.append(name + rng.choice((".0.gate_proj", ".12.w2", "", ".")))
    rng.shuffle(entries)
    return entries


def layer_skip_cases(rng: random.Random, count: int) -> list[list]:
    cases = []
    for _ in range(count):
        name = random_name(rng) + ("." if rng.random() < 0.04 else "")
        if rng.random() < 0.02:  # the module's name twice in its path: str.replace changes both
            name = name.replace("layers.", name.split(".")[-1] + ".layers.", 1)
        cases.append([name, ignored_list(rng, name), rng.choice(MAPPINGS)])
    return cases


def quark_cases(rng: random.Random, count: int) -> list[list]:
    cases = []
    for _ in range(count):
        name = random_name(rng) if rng.random() > 0.01 else None
        if name is not None and rng.random() < 0.15:
            name = name.rsplit(".", 1)[0] + ".experts" if "experts" not in name else name.split("experts")[0] + "experts"
        cases.append([name, quark_exclude(rng, name or random_name(rng)), rng.choice(MAPPINGS)])
    return cases


SPECS = {
    "mxfp4": {"weight": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "is_dynamic": False,
                         "scale_format": "e8m0"},
              "input_tensors": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "is_dynamic": True,
                                "scale_format": "e8m0"}},
    "fp8_tensor": {"weight": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False},
                   "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False}},
    "fp8_channel": {"weight": {"dtype": "fp8_e4m3", "qscheme": "per_channel", "is_dynamic": False},
                    "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_channel", "is_dynamic": True}},
    "fp8_block": {"weight": {"dtype": "fp8_e4m3", "qscheme": "per_block", "is_dynamic": False, "block_size": [128, 128]},
                  "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_group", "is_dynamic": True}},
    "fp8_channel_static_input": {"weight": {"dtype": "fp8_e4m3", "qscheme": "per_channel", "is_dynamic": False},
                                 "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_channel", "is_dynamic": False}},
    "w4a8": {"weight": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "is_dynamic": False,
                        "scale_format": "e8m0"},
             "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_tensor", "is_dynamic": False}},
    "mxfp4_dynamic_weight": {"weight": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32, "is_dynamic": True,
                                        "scale_format": "e8m0"},
                             "input_tensors": {"dtype": "fp4", "qscheme": "per_group", "group_size": 32,
                                               "scale_format": "e8m0"}},
    "weight_only": {"weight": {"dtype": "fp8_e4m3", "qscheme": "per_tensor"}, "input_tensors": None},
    "fp8_block_reordered": {"weight": {"dtype": "fp8_e4m3", "qscheme": "per_block", "is_dynamic": False,
                                       "block_size": [128, 128, 64]},
                            "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_group", "is_dynamic": True}},
    "fp8_block_64": {"weight": {"dtype": "fp8_e4m3", "qscheme": "per_block", "is_dynamic": False,
                                "block_size": [64, 128, 128]},
                     "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_group", "is_dynamic": True}},
}
PATTERNS = ("*self_attn*", "*shared_experts*", "*.q_a_proj", "*mlp.experts*", "model.layers.3.*", "*kv_a_proj_with_mqa",
            "*gate_proj", "*up_proj", "*down_proj", "language_model.*", "*o_proj", "*eh_proj", "*mlp.gate_up_proj")
LAYER_TYPES = {"fused_qkv_a_proj_with_mqa": "ReplicatedLinear", "kv_a_proj_with_mqa": "ReplicatedLinear",
               "q_b_proj": "ColumnParallelLinear", "kv_b_proj": "ColumnParallelLinear", "q_proj": "ColumnParallelLinear",
               "o_proj": "RowParallelLinear", "down_proj": "RowParallelLinear", "gate_up_proj": "MergedColumnParallelLinear",
               "experts": "FusedMoE", "eh_proj": "ReplicatedLinear"}


SCHEME_MAPPINGS = {"quark": QUARK_PACKED_MODULES, "mla": {"fused_qkv_a_proj_with_mqa": ["q_a_proj", "kv_a_proj_with_mqa"]},
                   "none": {}}


def expand_specs(specs: list) -> dict:
    """A Quark quantization_config from [global, per-layer, per-type] spec names (the goldens name SPECS' entries)."""
    global_spec, per_layer, per_type = specs
    return {"global_quant_config": copy.deepcopy(SPECS[global_spec]),
            "layer_quant_config": {k: copy.deepcopy(SPECS[v]) for k, v in per_layer.items()},
            "layer_type_quant_config": {k: copy.deepcopy(SPECS[v]) for k, v in per_type.items()}}


def quark_scheme_cases(rng: random.Random, count: int) -> list[list]:
    cases = []
    for _ in range(count):
        leaf = rng.choice(list(LAYER_TYPES))
        parent = rng.choice(("self_attn", "mlp", "mlp.shared_experts")) if leaf not in ("experts", "eh_proj") else "mlp"
        root = rng.choice(("model.", "language_model.model.", "model.language_model."))
        name = f"{root}layers.{rng.choice(LAYERS)}.{parent}.{leaf}" if leaf != "eh_proj" else "model.eh_proj"
        types = sorted(set(LAYER_TYPES.values()))
        specs = [rng.choice(list(SPECS)),
                 {rng.choice(PATTERNS): rng.choice(list(SPECS)) for _ in range(rng.choice((0, 0, 1, 2, 3)))},
                 {rng.choice(types): rng.choice(list(SPECS)) for _ in range(rng.choice((0, 0, 0, 1)))}]
        layer_type = LAYER_TYPES[leaf] if rng.random() < 0.9 else rng.choice(types)
        cases.append([specs, name, layer_type, rng.choice(list(SCHEME_MAPPINGS))])
    return cases


SIZES = (8, 16, 32, 48, 64, 96, 128, 192, 256, 320, 384, 512, 576, 768, 1024, 1536, 2048, 2112, 3072, 4096, 7168)
BLOCKS = ((128, 128),) * 6 + ((64, 128), (128, 64), (1, 32), (256, 128))


def _linear_shapes(rng: random.Random, kind: str, tp: int) -> tuple[int, int, int, int, list[int]]:
    """(input_size, input_size_per_partition, output_size, output_size_per_partition, output_partition_sizes)
    as SGLang's linear classes compute them on a rank of a group of `tp`."""
    hidden, out = rng.choice(SIZES), rng.choice(SIZES)
    if kind == "merged":
        sizes = [rng.choice(SIZES)] * 2 if rng.random() < 0.6 else [rng.choice(SIZES) for _ in range(rng.choice((2, 4)))]
        partitions = [s // tp for s in sizes]
        return hidden, hidden, sum(sizes), sum(partitions), partitions
    if kind == "qkv":
        heads, kv_heads, head_dim = rng.choice((8, 16, 32, 64)), rng.choice((1, 2, 4, 8)), rng.choice((64, 128, 256))
        per_rank_kv = 1 if tp >= kv_heads else kv_heads // tp
        partitions = [heads // tp * head_dim, per_rank_kv * head_dim, per_rank_kv * head_dim]
        return hidden, hidden, sum(partitions) * tp, sum(partitions), partitions
    if kind == "row":
        return hidden, hidden // tp, out, out, [out]
    if kind == "replicated":
        return hidden, hidden, out, out, [out]
    return hidden, hidden, out, out // tp, [out // tp]


def linear_cases(rng: random.Random, count: int) -> list[list]:
    cases = []
    for _ in range(count):
        global_tp = rng.choice((1, 1, 2, 4, 8))
        layer_tp = global_tp if rng.random() < 0.7 else rng.choice((1, max(1, global_tp // 2)))
        kind = rng.choice(("column", "merged", "qkv", "row", "replicated"))
        shapes = _linear_shapes(rng, kind, layer_tp)
        cases.append([global_tp, layer_tp, list(rng.choice(BLOCKS)), *shapes, rng.random() < 0.04])
    return cases


def moe_cases(rng: random.Random, count: int) -> list[list]:
    cases = []
    for _ in range(count):
        global_tp = rng.choice((1, 2, 4, 8))
        ep = rng.choice([e for e in (1, 2, 4, 8) if e <= global_tp])
        moe_tp = global_tp // ep
        intermediate = rng.choice((96, 192, 256, 320, 384, 512, 768, 1024, 1408, 1536, 2048, 2560))
        cases.append([global_tp, moe_tp, list(rng.choice(BLOCKS)), intermediate // moe_tp, rng.random() < 0.4,
                      rng.choice(("0", "0", "1"))])
    return cases


def _mtp_entry(rng: random.Random, layer: int) -> str:
    p = f"model.layers.{layer}"
    e = re.escape(p)
    choices = (f"re:{e}\\..*", f"re:{p}.*", f"re:{p}\\..*", "re:.*eh_proj", "re:.*decoder.*", "model.eh_proj",
               "model.decoder.eh_proj", "lm_head", "re:.*lm_head", f"{p}.eh_proj", f"{p}.mlp.experts.3.down_proj",
               f"language_model.{p}.eh_proj", p, f"{p}.", f"{p}.self_attn.q_a_proj", f"{p}.shared_head.norm",
               f"model.layers.{layer - 1}.eh_proj", f"re:model\\.layers\\.{layer - 1}\\..*", "re:model\\.decoder\\..*",
               "model.decoder", f"{p}.enorm", "re:.*self_attn.*", f"re:.*layers\\.{layer}.*")
    return rng.choice(choices)


def nextn_cases(rng: random.Random, count: int) -> list[list]:
    cases = []
    for _ in range(count):
        layer = rng.choice((61, 61, 78, 2, 3, 92, 46))
        exclude = [_mtp_entry(rng, layer) for _ in range(rng.choice((0, 1, 1, 2, 3, 4)))]
        cases.append([rng.choice(NEXTN_CLASSES), layer, exclude])
    return cases


def fusion_cases(rng: random.Random, count: int) -> list[list]:
    cases = []
    classes = ("DeepseekV3ForCausalLM", "GlmMoeDsaForCausalLM", "DeepseekV3ForCausalLMNextN")
    capabilities = {"cuda": ((7, 5), (8, 0), (9, 0), (10, 0)), "hip": ((9, 0), (9, 4), (9, 5)), "musa": ((2, 2), (3, 1)),
                    "cpu": ((0, 0),)}
    for _ in range(count):
        model_class = rng.choice(classes)
        architecture = model_class if rng.random() < 0.75 else rng.choice(classes + ("DeepseekV2ForCausalLM",))
        platform = rng.choice(("cuda", "cuda", "hip", "hip", "musa", "cpu"))
        flags = [rng.random() < p for p in (0.08, 0.08, 0.05, 0.05, 0.05)]
        cases.append([architecture, model_class, rng.choice((8, 16, 64, 160, 256, 256, 384, 384)),
                      rng.choice((1, 1, 1, 2)), rng.choice(("quark", "quark", "fp8", None)), *flags, platform,
                      list(rng.choice(capabilities[platform])), rng.choice((1, 1, 2, 8))])
    return cases


# ------------------------------------------------------------------------------------------------ the goldens
@dataclass(frozen=True)
class Function:
    load: Callable[[Source], Callable]
    cases: Callable[[random.Random, int], list[list]]
    arguments: tuple[str, ...]
    releases: tuple[str, ...] = RELEASES


FUNCTIONS = {
    "is_layer_skipped": Function(load_is_layer_skipped, layer_skip_cases, ("prefix", "ignored", "fused_mapping")),
    "should_ignore_layer": Function(load_should_ignore_layer, quark_cases, ("layer_name", "ignore", "fused_mapping")),
    "validate_block_quant_shapes": Function(
        load_validate_block_quant_shapes, linear_cases,
        ("global_tp", "layer_tp", "block", "input_size", "input_size_per_partition", "output_size",
         "output_size_per_partition", "output_partition_sizes", "skip_block_quant_check")),
    "fp8_moe_block_check": Function(load_moe_block_check, moe_cases, ("global_tp", "moe_tp", "block",
                                                                        "intermediate_size_per_partition", "use_aiter",
                                                                        "SGLANG_MOE_PADDING")),
    "quark_layer_scheme": Function(load_quark_layer_scheme, quark_scheme_cases,
                                   ("[global, per-layer, per-type] spec names", "layer_name", "layer_type",
                                    "fused_mapping name")),
    "nextn_eh_proj": Function(load_nextn_eh_proj, nextn_cases, ("draft_architecture", "num_hidden_layers", "exclude")),
    # Only 0.5.17's answer matters: 0.5.23 cannot raise the error the fusion decision leads to.
    "fused_shared_experts": Function(load_fused_shared_experts, fusion_cases,
                                     ("architecture", "model_class_architecture", "n_routed_experts", "n_shared_experts",
                                      "quant_method", "disable_fusion", "enforce_fusion", "sbo", "tbo", "deepep",
                                      "platform", "capability", "moe_ep_size"), ("0.5.17",)),
}


def answer(function: Callable, case: list) -> Any:
    """What SGLang returned, or [exception type, message] for what it raised."""
    try:
        return function(*copy.deepcopy(case))
    except re.error as problem:
        return ["re.error", str(problem)]
    except Exception as problem:  # every raise is an answer to record
        return [type(problem).__name__, str(problem)]


def _distinct(per_release: list) -> list:
    """One answer when every release gives it, else one per release (in the header's order)."""
    return per_release[:1] if all(a == per_release[0] for a in per_release) else per_release


def write_golden(name: str, function: Function, sources: dict[str, Source], count: int, out: Path) -> dict[str, int]:
    rng = random.Random(f"{SEED}/{name}")
    cases = function.cases(rng, count)
    callables = {version: function.load(sources[version]) for version in function.releases}
    answers = {version: [answer(call, case) for case in cases] for version, call in callables.items()}
    header = {"function": name, "generated_by": "tools/sglang_reference.py", "seed": SEED,
              "arguments": list(function.arguments), "releases": list(function.releases),
              "sources": {version: sources[version].digests() for version in function.releases},
              **({"specs": SPECS, "mappings": SCHEME_MAPPINGS} if name == "quark_layer_scheme" else {})}
    lines = [json.dumps([case, *_distinct([answers[v][i] for v in function.releases])], separators=(",", ":"))
             for i, case in enumerate(cases)]
    text = json.dumps(header, indent=1)[:-2] + ',\n "cases": [\n' + ",\n".join(lines) + "\n]}\n"
    out.mkdir(parents=True, exist_ok=True)
    # gzip with no timestamp: the same inputs and answers give the same bytes (zcat reads them)
    (out / f"{name}.json.gz").write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    return {version: sum(isinstance(a, list) for a in answers[version]) for version in function.releases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", action="append", default=[], metavar="VERSION=PATH",
                        help="an unpacked sglang package directory or wheel (default: pip download each release)")
    parser.add_argument("--cases", type=int, default=4000, help="randomized inputs per function (default 4000)")
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR)
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.source)
    with tempfile.TemporaryDirectory() as scratch:
        sources = {v: Source(v, Path(given[v]) if v in given else pip_download(v, Path(scratch))) for v in RELEASES}
        for name, function in FUNCTIONS.items():
            raised = write_golden(name, function, sources, args.cases, args.out)
            print(f"{name}: {args.cases} cases, raised " + ", ".join(f"{v}: {n}" for v, n in raised.items()))
        (args.out / "facts.json").write_text(json.dumps({v: facts(s) for v, s in sources.items()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
