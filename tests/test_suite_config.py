"""Every strict-config error, asserted by its message (file and key path, with did-you-mean)."""

from __future__ import annotations

import re

import pytest

from harness.errors import ConfigError
from harness.matrix import expand, select
from harness.suite import load_suite
from tools import aiter_reference as upstream


def load_and_expand(path):
    return expand(load_suite(path))


def error_of(path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_and_expand(path)
    message = str(caught.value)
    assert "\n" not in message, "errors are one line"
    assert message.startswith(str(path)), message
    return message


def test_unknown_top_level_key_names_the_closest(base_suite, write_suite):
    base_suite["modles"] = base_suite.pop("models")
    message = error_of(write_suite(base_suite))
    assert "modles: unknown key 'modles'; did you mean 'models'?" in message


def test_unknown_nested_key_has_the_full_path(base_suite, write_suite):
    base_suite["models"][0]["checkpoints"]["quark-mxfp4"] = {"pth": "amd/GLM-5-MXFP4"}
    message = error_of(write_suite(base_suite))
    assert "models[0].checkpoints.quark-mxfp4.pth: unknown key 'pth'; did you mean 'path'?" in message


def test_typo_in_an_eval_parameter_is_not_ignored(base_suite, write_suite):
    base_suite["evals"]["gsm8k"]["shot"] = 8
    assert "evals.gsm8k.shot: unknown key 'shot'; did you mean 'shots'?" in error_of(write_suite(base_suite))


def test_unknown_spec_value_suggests_the_known_one(base_suite, write_suite):
    base_suite["matrix"]["spec"] = ["none", "mpt"]
    message = error_of(write_suite(base_suite))
    assert "matrix.spec[1]: unknown spec 'mpt'; did you mean 'mtp'?" in message


def test_unknown_quant_kind(base_suite, write_suite):
    base_suite["matrix"]["quant"] = ["quark-mxfp5"]
    assert "unknown quant 'quark-mxfp5'; did you mean 'quark-mxfp4'?" in error_of(write_suite(base_suite))


def test_tp_must_be_an_integer_not_a_string_or_bool(base_suite, write_suite):
    base_suite["matrix"]["tp"] = ["8"]
    assert "matrix.tp[0]: expected an integer, got a string" in error_of(write_suite(base_suite))
    base_suite["matrix"]["tp"] = [True]
    assert "matrix.tp[0]: expected an integer, got a boolean" in error_of(write_suite(base_suite))


def test_tp_must_be_a_power_of_two(base_suite, write_suite):
    base_suite["matrix"]["tp"] = [3]
    assert "matrix.tp[0]: tp must be a power of two, got 3" in error_of(write_suite(base_suite))


def test_tp_larger_than_the_gpu_count(base_suite, write_suite):
    base_suite["hardware"]["gpus"] = 4
    message = error_of(write_suite(base_suite))
    assert "matrix.tp: tp 8 is larger than hardware.gpus (4) for model 'glm5'" in message


def test_eagle3_without_a_draft(base_suite, write_suite):
    base_suite["matrix"]["spec"] = ["eagle3"]
    message = error_of(write_suite(base_suite))
    assert "models[0].draft: spec 'eagle3' needs a draft model for 'glm5'" in message


def test_ep_must_divide_tp(base_suite, write_suite):
    base_suite["matrix"]["tp"] = [4]
    base_suite["matrix"]["ep"] = [8]
    assert "matrix.ep: ep 8 must divide tp 4" in error_of(write_suite(base_suite))


def test_quant_without_a_checkpoint_for_the_model(base_suite, write_suite):
    base_suite["matrix"]["quant"] = ["quark-mxfp4", "fp8"]
    message = error_of(write_suite(base_suite))
    assert "matrix.quant: model 'glm5' has no checkpoint for quant 'fp8' (it has: quark-mxfp4)" in message


def test_exclude_rule_that_matches_nothing(base_suite, write_suite):
    base_suite["exclude"] = [{"spec": "mtp", "tp": 2}]
    message = error_of(write_suite(base_suite))
    assert "exclude[0]: this exclude rule {'spec': 'mtp', 'tp': 2} matches no cell" in message


def test_override_rule_that_matches_nothing(base_suite, write_suite):
    base_suite["matrix"]["spec"] = ["none"]
    base_suite["overrides"] = [{"match": {"spec": "mtp"}, "server": {"args": ["--x"]}}]
    assert "overrides[0]: this override rule {'spec': 'mtp'} matches no cell" in error_of(write_suite(base_suite))


def test_exclude_with_an_unknown_model(base_suite, write_suite):
    base_suite["exclude"] = [{"model": "glm6"}]
    assert "exclude[0].model: unknown model 'glm6'; did you mean 'glm5'?" in error_of(write_suite(base_suite))


def test_managed_flags_are_refused_in_server_args(base_suite, write_suite):
    base_suite["server"] = {"args": ["--tp", "8"]}
    message = error_of(write_suite(base_suite))
    assert "server.args[0]: '--tp' is set by the harness from the matrix" in message
    base_suite["server"] = {"args": ["--quantization=fp8"]}
    assert "'--quantization' is set by the harness" in error_of(write_suite(base_suite))


def test_env_values_must_be_strings(base_suite, write_suite):
    base_suite["server"] = {"env": {"SGLANG_USE_AITER": True}}
    message = error_of(write_suite(base_suite))
    assert "server.env.SGLANG_USE_AITER: expected a string (quote it" in message


def test_unknown_fix_id(base_suite, write_suite):
    base_suite["models"][0]["fix"] = "glm5-mxfp4-mpt"
    assert "models[0].fix: unknown fix id 'glm5-mxfp4-mpt'; did you mean 'glm5-mxfp4-mtp'?" in error_of(
        write_suite(base_suite))


def test_unknown_eval_protocol(base_suite, write_suite):
    base_suite["evals"]["gsm8k"]["protocol"] = "lm_eval"
    assert "evals.gsm8k.protocol: unknown gsm8k protocol 'lm_eval'; did you mean 'lm-eval'?" in error_of(
        write_suite(base_suite))


def test_more_questions_than_the_dataset(base_suite, write_suite):
    base_suite["evals"]["gsm8k"]["questions"] = 5000
    assert "evals.gsm8k.questions: gsm8k has 1319 questions, asked for 5000" in error_of(write_suite(base_suite))


def test_name_must_match_the_file(base_suite, write_suite):
    path = write_suite(base_suite, name="other")
    assert "name: 'demo' must equal the file name 'other'" in error_of(path)


def test_unsupported_schema_version(base_suite, write_suite):
    base_suite["schema_version"] = 2
    assert "schema_version: suite schema 2 is not supported" in error_of(write_suite(base_suite))


def test_missing_required_key(base_suite, write_suite):
    del base_suite["engine"]
    assert "missing required key 'engine'" in error_of(write_suite(base_suite))


def test_invalid_yaml_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    message = error_of(path)
    assert re.search(r"broken\.yaml:2:1: not valid YAML: ", message) and "\n" not in message


def test_duplicate_model_ids(base_suite, write_suite):
    base_suite["models"].append(dict(base_suite["models"][0]))
    assert "models[1]: duplicate model id 'glm5'" in error_of(write_suite(base_suite))


def test_cpu_vendor_allows_only_tp1(base_suite, write_suite):
    base_suite["hardware"] = {"vendor": "cpu"}
    base_suite["matrix"]["tp"] = [2]
    assert "tp 2 needs GPUs, but hardware.vendor is 'cpu'" in error_of(write_suite(base_suite))


def test_unknown_cell_selection_is_an_error(base_suite, write_suite):
    cells = load_and_expand(write_suite(base_suite))
    with pytest.raises(ConfigError, match=r"--cell 'glm5/quark-mxfp4/mtp/tp16' matches no cell; did you mean "
                                          r"'glm5/quark-mxfp4/mtp/tp8'\?"):
        select(cells, ["glm5/quark-mxfp4/mtp/tp16"])


def test_the_suites_engine_facts_are_the_adapters():
    """harness.engine_specs is what loading a suite knows of the engines; each adapter reads its own spec, and each
    spec's "module:attr" references resolve to an adapter of that name and a log parser."""
    from pkgutil import resolve_name

    from harness.engine_specs import ENGINE_NAMES, ENGINES
    from harness.engines import engines

    adapters = engines()
    assert tuple(adapters) == ENGINE_NAMES
    assert all(adapters[name].spec is ENGINES[name] and adapters[name].name == name for name in ENGINE_NAMES)
    assert all(callable(resolve_name(spec.log_parser)) for spec in ENGINES.values() if spec.log_parser)


def _sglang_spellings() -> list[set[str]]:
    """Each ServerArgs field of the pinned SGLang wheel as the flags that set it: `--field-name` and its aliases
    (0.5.17 declares fields as `name: A[type, Arg(..., aliases=[...])]` and derives the flag from the name)."""
    import re

    source = upstream.read("sglang", "sglang/srt/server_args.py")
    fields = re.split(r"^    ([a-z_0-9]+): ", source[source.index("class ServerArgs"):], flags=re.M)
    spellings = []
    for name, declaration in zip(fields[1::2], fields[2::2]):
        aliases = re.search(r"aliases=\[([^\]]*)\]", declaration)
        spellings.append({"--" + name.replace("_", "-"),
                          *(re.findall(r'"(--[a-z0-9-]+)"', aliases.group(1)) if aliases else ())})
    return spellings


@pytest.mark.skipif(upstream.wheel("sglang") is None, reason=upstream.missing_reason("sglang"))
def test_every_spelling_of_a_managed_or_sizing_sglang_flag_is_one_too():
    """A suite's hand-written flag is refused (managed) or compared (sizing) under any name SGLang accepts for it:
    checked against SGLang 0.5.17's own ServerArgs, so an alias cannot slip past (--speculative-draft-model did)."""
    from harness.engine_specs import ENGINES

    spec = ENGINES["sglang"]
    spellings = _sglang_spellings()
    assert {"--model-path", "--model"} in spellings and len(spellings) > 300  # the parse read the real class
    for group in (spec.managed_flags, spec.sizing_flags):
        partial = [sorted(names - group) for names in spellings if names & group and not names <= group]
        assert partial == []


def test_memory_tolerances_are_per_metric_in_the_suite(base_suite, write_suite):
    from harness.metrics import Tolerance

    base_suite["gate"] = {"memory": {"memory.weights_gib": {"rel": 0.01, "abs_gib": 0.1}}}
    gate = load_suite(write_suite(base_suite)).gate
    assert gate.memory_tolerance("memory.weights_gib") == Tolerance(rel=0.01, abs_gib=0.1)
    assert gate.memory_tolerance("memory.host_rss_peak_gib") == Tolerance(rel=0.20, abs_gib=0.05)  # the default
    base_suite["gate"] = {"memory": {"memory.weight_gib": {"rel": 0.01, "abs_gib": 0.1}}}
    assert "gate.memory.memory.weight_gib: unknown key 'memory.weight_gib'; did you mean 'memory.weights_gib'?" in \
        error_of(write_suite(base_suite))
    base_suite["gate"] = {"memory_rel": 0.05}
    assert "gate.memory_rel: replaced by a tolerance per memory metric: gate.memory.<metric>" in \
        error_of(write_suite(base_suite))
