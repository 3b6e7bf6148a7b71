"""The real-SGLang rig's CPU side: its checkpoints, their pack, the suites, the failure classes it found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.engines.failures import classify
from harness.engines.sglang import SGLANG
from harness.local import models
from harness.matrix import expand, select
from harness.rig import pack as rig_pack
from harness.rig.checkpoints import BY_ID, VARIANTS, fp8_block_quantize
from harness.suite import find_suite, load_suite

ROOT = Path(__file__).resolve().parent.parent


def test_every_variant_is_a_local_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    for variant in VARIANTS:
        reference = f"local:{variant.id}"
        assert models.parse(reference) == (variant.model, variant.name)
        assert models.resolve(reference) == tmp_path / "rig" / variant.model / variant.name


def test_an_unknown_variant_names_the_known_ones():
    with pytest.raises(Exception, match="tiny-dsv3/"):
        models.parse("local:tiny-dsv3/quark-nvfp4")


def test_pack_round_trip_is_byte_identical_per_tensor(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    root = tmp_path / "root"
    BY_ID["tiny-qwen3-next/fp8-ba-skipped"].build(root / "a" / "one", ROOT / "models" / "tiny-qwen3")
    BY_ID["tiny-qwen3-next/fp8-ba-quantized"].build(root / "a" / "two", ROOT / "models" / "tiny-qwen3")
    stats = rig_pack.pack(root, tmp_path / "rig.pack.xz")
    # The two variants differ in one tensor pair: every other tensor is stored once.
    assert stats["checkpoints"] == 2 and stats["packed_bytes"] < stats["raw_bytes"]
    restored = rig_pack.unpack(tmp_path / "rig.pack.xz", tmp_path / "restored")
    assert sorted(p.relative_to(tmp_path / "restored").as_posix() for p in restored) == ["a/one", "a/two"]
    for name in ("one", "two"):
        ours, theirs = load_file(root / "a" / name / "model.safetensors"), load_file(
            tmp_path / "restored" / "a" / name / "model.safetensors")
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert ours[key].dtype == theirs[key].dtype
            assert torch.equal(ours[key].view(-1).view(torch.uint8), theirs[key].view(-1).view(torch.uint8))
        assert (root / "a" / name / "config.json").read_text() == (
            tmp_path / "restored" / "a" / name / "config.json").read_text()


def test_qwen3_next_variants_store_in_proj_ba_as_their_config_says(tmp_path):
    pytest.importorskip("torch")
    headers = {}
    for name in ("fp8-ba-skipped", "fp8-ba-quantized"):
        BY_ID[f"tiny-qwen3-next/{name}"].build(tmp_path / name, ROOT / "models" / "tiny-qwen3")
    headers = rig_pack.headers(tmp_path)
    skipped, quantized = headers["fp8-ba-skipped"], headers["fp8-ba-quantized"]
    ba = "model.layers.0.linear_attn.in_proj_ba"
    assert skipped["tensors"][ba + ".weight"]["dtype"] == "BF16"
    assert ba in skipped["config"]["quantization_config"]["modules_to_not_convert"]
    assert quantized["tensors"][ba + ".weight"]["dtype"] == "F8_E4M3"
    assert quantized["tensors"][ba + ".weight_scale_inv"]["shape"] == [1, 2]
    assert ba not in quantized["config"]["quantization_config"]["modules_to_not_convert"]


def test_block_fp8_scales_cover_partial_blocks():
    torch = pytest.importorskip("torch")
    weight = torch.randn(8, 200)
    quantized, scale = fp8_block_quantize(weight)
    assert quantized.dtype == torch.float8_e4m3fn and quantized.shape == (8, 200)
    assert scale.shape == (1, 2)
    dequantized = quantized.float().view(8, 200)
    dequantized[:, :128] *= scale[0, 0]
    dequantized[:, 128:] *= scale[0, 1]
    assert torch.allclose(dequantized, weight, rtol=0.07, atol=1e-3)


@pytest.mark.parametrize("suite", ["gpu-sglang", "gpu-sglang-fixes", "gpu-sglang-mxfp4", "gpu-sglang-mxfp4-smoke",
                                   "gpu-sglang-eagle3",
                                   "gpu-sglang-eagle3-trained"])
def test_rig_suites_expand(suite):
    cells = expand(load_suite(find_suite(suite, ROOT / "suites")))
    assert cells and all(cell.engine == "sglang" and cell.tp == 1 for cell in cells)
    references = {cell.checkpoint.path for cell in cells} | {cell.draft.path for cell in cells if cell.draft}
    for reference in references:
        models.parse(reference)  # every checkpoint is one the rig builds


def test_a_local_draft_is_served_from_its_directory(tmp_path, monkeypatch):
    from harness.cellrun import materialize

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    cell = select(expand(load_suite(find_suite("gpu-sglang-eagle3", ROOT / "suites"))), ["dsv3-eagle3-mla/*"])[0]
    argv = list(SGLANG.command(materialize(cell, create=False), python="python", port=1, devices=[0]).argv)
    assert argv[argv.index("--speculative-draft-model-path") + 1] == str(tmp_path / "rig" / "tiny-dsv3-eagle3" / "mla")
    assert argv[argv.index("--model-path") + 1] == str(tmp_path / "rig" / "tiny-dsv3" / "bf16")


def test_mxfp4_suite_serves_only_its_mxfp4_cells_through_the_reference_kernels():
    from harness.kernels.selection import AITER_REFERENCE, NATIVE

    cells = expand(load_suite(find_suite("gpu-sglang-mxfp4", ROOT / "suites")))
    assert {cell.id: cell.kernels for cell in cells if cell.quant == "bf16"} and \
        {cell.kernels for cell in cells if cell.quant == "bf16"} == {NATIVE}
    assert {cell.kernels for cell in cells if cell.quant != "bf16"} == {AITER_REFERENCE}
    canary = next(cell for cell in cells if cell.baseline_id)
    assert canary.baseline_id == "tiny-qwen3/quark-mxfp4/none/tp1"


@pytest.mark.parametrize(("variant", "predicted"), [
    ("mla", "PASS"), ("mla-hidden-wide", "is [704, 512] (BF16); the draft layer expects [704, 1024]"),
    ("mla-no-q-lora", "q_lora_rank is missing"), ("mla-llama-arch", "declares LlamaForCausalLMEagle3"),
    ("mla-kimi-model-type", "model_type 'kimi_k25' is no DeepseekV3Config alias"),
])
def test_eagle3_draft_variants_are_what_the_mla_draft_rule_reads(variant, predicted, tmp_path):
    from harness.loading.manifest import load_manifest
    from harness.loading.rules import eagle3_mla_draft
    from harness.rig import checkpoints
    from tests.checkpoints import write_checkpoint

    change = {"mla-no-q-lora": {"q_lora_rank": None}, "mla-llama-arch": {"architectures": ["LlamaForCausalLMEagle3"]},
              "mla-kimi-model-type": {"model_type": "kimi_k25"}}.get(variant, {})
    config = checkpoints.eagle3_mla_config(**change)
    width = checkpoints.HIDDEN if variant == "mla-hidden-wide" else 2 * checkpoints.HIDDEN
    shapes = checkpoints.eagle3_mla_shapes(config, a_proj="fused", width=width)
    root = write_checkpoint(tmp_path / variant, config, {name: ("BF16", shape) for name, shape in shapes.items()})
    result = eagle3_mla_draft(load_manifest(root))
    assert (result.outcome.value == "PASS") if predicted == "PASS" else (predicted in result.reason)
    assert config["eagle_config"]["eagle_aux_hidden_state_layer_ids"] == [0, 1]  # both of tiny-dsv3's layers


def test_ngram_cell_asks_sglang_for_ngram_drafts():
    cell = select(expand(load_suite(find_suite("gpu-sglang", ROOT / "suites"))), ["tiny-qwen3/bf16/ngram/tp1"])[0]
    argv = list(SGLANG.command(cell, python="python", port=1234, devices=[0]).argv)
    assert argv[argv.index("--speculative-algorithm") + 1] == "NGRAM"
    assert argv[argv.index("--speculative-num-draft-tokens") + 1] == "4"
    assert "--speculative-draft-model-path" not in argv


@pytest.mark.parametrize(("line", "cause"), [
    ("AssertionError: param.shape=torch.Size([512, 512]) param.dtype=torch.uint8 "
     "loaded_weight.shape=torch.Size([512, 1024]) loaded_weight.dtype=torch.bfloat16", "weight_shape_mismatch"),
    ("KeyError: 'model.decoder.mlp.shared_experts.gate_up_proj.weight_scale'", "unexpected_checkpoint_tensor"),
    ("NameError: name 'dynamic_mxfp4_quant' is not defined", "aiter_missing"),
    ("AttributeError: 'QuarkConfig' object has no attribute 'weight_block_size'", "quark_fp8_shared_experts"),
    ("ValueError: Found different quantization schemes for ['q_a_proj', 'kv_a_proj_with_mqa'] in "
     "language_model.model.layers.1.self_attn.fused_qkv_a_proj_with_mqa. SGLang requires all to use the same "
     "scheme.", "fused_shard_disagreement"),
    ("AssertionError: target.shape=torch.Size([512, 256]), loaded_weight.shape=torch.Size([512, 512])",
     "weight_shape_mismatch"),
])
def test_rig_failure_classes(line, cause):
    lines = ["[2026-11-29 14:00:00] Scheduler hit an exception: Traceback (most recent call last):", line]
    assert classify(lines, exited=True).cause == cause


def test_rig_headers_are_json(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"architectures": ["X"]}))
    assert rig_pack.headers(tmp_path) == {"m": {"config": {"architectures": ["X"]}, "tensors": {}}}


# --- the fix table: preflight's predictions against what real SGLang 0.5.17 did (tests/fixtures/rig) --------

RIG = ROOT / "tests" / "fixtures" / "rig"


def rig_outcomes() -> dict:
    import yaml

    return yaml.safe_load((RIG / "outcomes.yaml").read_text())


def rig_headers() -> dict:
    import gzip

    return json.loads(gzip.decompress((RIG / "headers.json.gz").read_bytes()))


def predicted_failures(tmp_path: Path, checkpoint: str, spec: str, capsys) -> list[str]:
    """The FAILs of `harness preflight` on the recorded headers (data as holes), SGLang 0.5.17's loader."""
    from harness.cli import main
    from tests.checkpoints import write_checkpoint

    recorded = rig_headers()[checkpoint]
    root = write_checkpoint(tmp_path / checkpoint.replace("/", "__"), recorded["config"],
                            {name: (t["dtype"], tuple(t["shape"])) for name, t in recorded["tensors"].items()})
    argv = ["preflight", "--checkpoint", str(root), "--tp", "1", "--engine-version", "0.5.17", "--json"]
    if spec != "none":
        argv += ["--spec", spec]
    capsys.readouterr()
    main(argv)
    (check,) = json.loads(capsys.readouterr().out)
    return [f"{rule['fix']}: {rule['reason']}" for rule in check["rules"] if rule["outcome"] == "FAIL"]


@pytest.mark.parametrize("row", [row for row in rig_outcomes()["cells"] if row.get("reached", True)],
                         ids=lambda row: row["cell"])
def test_preflight_agrees_with_real_sglang(row, tmp_path, capsys):
    failures = predicted_failures(tmp_path, row["checkpoint"], row["cell"].split("/")[2], capsys)
    if row["sglang"] == "loaded":
        assert failures == [], failures  # a false alarm would block a cell that loads
    else:
        assert failures, f"SGLang failed ({row['line']}) but preflight predicted a load"


@pytest.mark.parametrize("row", rig_outcomes()["cells"] + rig_outcomes()["classified"], ids=lambda row: row["log"])
def test_real_rig_logs_classify_as_recorded(row):
    lines = (RIG / "logs" / row["log"]).read_text(encoding="utf-8", errors="replace").splitlines()
    if row.get("sglang") == "loaded":
        assert any("The server is fired up and ready to roll!" in line for line in lines)
        return
    failure = classify(lines, exited=True)
    assert failure.cause == row["cause"]
    assert any(row["line"] in line for line in lines)


def test_every_rig_log_is_in_the_table():
    named = {row["log"] for row in rig_outcomes()["cells"] + rig_outcomes()["classified"]}
    fix_logs = {path.name for path in (RIG / "logs").glob("*.log")
                if path.name.startswith(("fixes.", "call", "early."))}
    assert fix_logs == named


@pytest.mark.gsm8k
def test_an_mxfp4_forward_without_aiter_is_named_at_once(tmp_path, capsys):
    """What the rig saw with a Quark MXFP4 checkpoint on CUDA: loaded, then the first forward needs aiter.
    The cell is INFRA_ERROR `aiter_missing` (a platform limit, exit 3), found after the first failed requests,
    not a bare scheduler exception after every question failed."""
    from harness.cli import main
    from tests.helpers import assert_nothing_survives, dirs, reports_written, suite_with_eval

    root = suite_with_eval(tmp_path, scenario="aiter_first_forward", questions=200)
    started = __import__("time").monotonic()
    assert main(["run", "--suite", "fake", "--run-id", "mxfp4", *dirs(root)]) == 3
    elapsed = __import__("time").monotonic() - started
    (cell,) = reports_written(root / "reports" / "mxfp4")["cells"]
    assert cell["error"]["cause"] == "aiter_missing"
    assert "NameError: name 'dynamic_mxfp4_quant' is not defined" in cell["error"]["message"]
    err = capsys.readouterr().err
    # The client stopped sending once more than the 2% of failures the eval allows (4 of 200) had failed:
    # a handful of failed requests (those in flight at concurrency 2 included), the rest never sent.
    import re

    failed, unsent = map(int, re.search(r"(\d+) failed requests, (\d+) not sent \(stopped after too many failures\)",
                                        err).groups())
    assert failed <= 4 + 2 and failed + unsent == 200, err
    assert elapsed < 60
    assert_nothing_survives(tmp_path)


# --- the rig at TP 4 (issue 16): what runs without the 4-GPU machine -----------------------------------------

def test_tp_cells_pin_every_rank_and_keep_multicast_off():
    cells = expand(load_suite(find_suite("gpu-sglang-tp", ROOT / "suites")))
    (tp4,) = select(cells, ["tiny-qwen3/bf16/none/tp4"])
    command = SGLANG.command(tp4, python="python", port=1234, devices=[0, 1, 2, 3])
    argv = list(command.argv)
    assert argv[argv.index("--tp") + 1] == "4" and "--disable-custom-all-reduce" in argv
    assert command.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert {command.env[k] for k in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST")} == {"0", "1"}


def test_tp_suite_packs_the_tp2_cell_beside_two_tp1_cells():
    from harness.schedule import run_packed

    cells = [c for c in expand(load_suite(find_suite("gpu-sglang-tp", ROOT / "suites")))
             if c.tp in (1, 2) and c.model == "tiny-qwen3"]  # the `tp` stage; #23973's cells are `tpfixes`
    starts = []
    results, interrupted = run_packed(cells, [0, 1, 2, 3], lambda cell, devices: starts.append(
        (cell.id, tuple(devices))) or None, on_done=lambda result: None)
    assert not interrupted
    placed = dict(starts)
    assert len(placed["tiny-qwen3/bf16/none/tp2"]) == 2
    used = [d for devices in placed.values() for d in devices]
    assert sorted(used) == [0, 1, 2, 3]  # all three at once, no GPU held twice


@pytest.mark.parametrize("tp, per_rank", [(2, 4), (4, 2)])
@pytest.mark.parametrize(("checkpoint", "fails"), [("tiny-qwen3-next/tp4-fp8-ba-skipped", False),
                                                  ("tiny-qwen3-next/tp4-fp8-ba-quantized", True)])
def test_23973_at_tp2_and_tp4_prediction(checkpoint, fails, tp, per_rank, tmp_path, capsys):
    from harness.cli import main
    from tests.checkpoints import write_checkpoint

    recorded = rig_headers()[checkpoint]
    root = write_checkpoint(tmp_path / "ckpt", recorded["config"],
                            {name: (t["dtype"], tuple(t["shape"])) for name, t in recorded["tensors"].items()})
    capsys.readouterr()
    main(["preflight", "--checkpoint", str(root), "--tp", str(tp), "--engine-version", "0.5.17", "--json"])
    (check,) = json.loads(capsys.readouterr().out)
    failures = [rule["reason"] for rule in check["rules"] if rule["outcome"] == "FAIL"]
    assert bool(failures) == fails
    if fails:
        assert f"output_partition_size = {per_rank} is not divisible by weight quantization block_n = 128" in failures[0]


@pytest.mark.parametrize("answer", [None, "text", ["text"], [], {"meta_info": "x"}, [{"meta_info": {}}],
                                    {"meta_info": {"spec_accept_length": "2"}}])
def test_the_speculative_probe_takes_no_figure_from_a_malformed_answer(answer, monkeypatch):
    import harness.engines.sglang as sglang

    monkeypatch.setattr(sglang, "post_json", lambda url, body, **kw: answer)
    assert SGLANG.spec_probe("http://127.0.0.1:1", ["q"]) == {"requests": 1, "per_request": [],
                                                               "mean_accept_length": None}


def test_the_speculative_probe_reads_generates_meta_info(monkeypatch):
    import harness.engines.sglang as sglang

    answers = iter([{"meta_info": {"spec_accept_length": 3.2857}}, [{"meta_info": {"spec_accept_length": 2.75}}]])
    monkeypatch.setattr(sglang, "post_json", lambda url, body, **kw: next(answers))
    assert SGLANG.spec_probe("http://127.0.0.1:1", ["a", "b"]) == {
        "requests": 2, "per_request": [3.2857, 2.75], "mean_accept_length": 3.0179}


# --- the rig page's tables (docs/rig.md): rendered from the recorded run (benchmarks/rig-runs/) -------------------------

RECORDS = ROOT / "benchmarks" / "rig-runs"
RECORD = RECORDS / "2026-11-29-r3"  # the run docs/rig.md shows


def test_preflight_text_parses_rules_with_nested_parentheses():
    from harness.report.rig import parse_preflight

    text = ("a/quark-fp8/mtp/tp1  (/x/a)  [SGLang 0.5.17 loader]\n"
            "  FAIL            quark-fp8-shared-experts (deepseek_v2.py (0.5.17)): m is QuarkW8A8Fp8\n"
            "  PASS            glm5-mxfp4-mtp (#23219): fine\n"
            "b/fp8/none/tp1  (/x/b)  [SGLang 0.5.17 loader]\n"
            "  NOT_APPLICABLE  qwen3-next-fp8-skip (#23973): not FP8\n")
    predictions = parse_preflight(text)
    assert predictions["a/quark-fp8/mtp/tp1"].failures == ("quark-fp8-shared-experts: m is QuarkW8A8Fp8",)
    assert predictions["b/fp8/none/tp1"].verdict == "PASS"
    assert predictions["a/quark-fp8/mtp/tp1"].loader == "SGLang 0.5.17 loader"


@pytest.mark.parametrize("run, stage, checkpoints, learned_after", [
    # r2: copy_with_check's assertion was a bare scheduler_exception then; the table says both causes.
    ("2026-11-29-r2", "fixes", 13, [("scheduler_exception", "weight_shape_mismatch")]),
    ("2026-11-29-r3", "fixes", 14, []),
    ("2026-11-29-t2", "tpfixes", 2, []),  # #23973 at TP 2, two H200s
])
def test_each_recorded_run_agrees_on_every_checkpoint(run, stage, checkpoints, learned_after):
    from harness.report.rig import fix_rows, parse_preflight

    fixes = json.loads((RECORDS / run / f"{stage}.results.json").read_text())
    rows = fix_rows(fixes, parse_preflight((RECORDS / run / "preflight.txt").read_text()))
    assert len(rows) == checkpoints and all(row.agrees for row in rows)
    assert {row.prediction.loader for row in rows} == {"SGLang 0.5.17 loader"}
    assert [(row.recorded_cause, row.cause) for row in rows if row.recorded_cause != row.cause] == learned_after


def test_the_fixture_outcomes_are_the_rig_page_run():
    from harness.report.rig import fix_rows, parse_preflight

    fixes = json.loads((RECORD / "fixes.results.json").read_text())
    rows = fix_rows(fixes, parse_preflight((RECORD / "preflight.txt").read_text()))
    outcomes = {row["cell"]: row for row in rig_outcomes()["cells"]}
    assert set(outcomes) == {row.cell for row in rows}
    for row in rows:  # the fixture table (replayed above from the logs) is this run's
        assert outcomes[row.cell]["sglang"] == ("loaded" if row.loaded else "failed")
        assert outcomes[row.cell].get("cause") == row.cause


@pytest.mark.parametrize("run, tables", [("2026-11-29-r3", 2), ("2026-11-29-t1", 1), ("2026-11-29-t2", 1)])
def test_the_rig_page_shows_the_recorded_runs(run, tables):
    from harness.report.rig import render
    from harness.rig.checkpoints import VARIANTS

    rendered = render(RECORDS / run, {variant.id: variant.what for variant in VARIANTS})
    page = (ROOT / "docs" / "rig.md").read_text()
    blocks = rendered.strip().split("\n\n")  # the tables, and the fix table's agreement line
    assert sum(line.startswith("|---|") for line in rendered.splitlines()) == tables
    assert all(block in page for block in blocks)


def test_a_server_message_cannot_break_the_fix_table():
    from harness.report.rig import FixRow, Prediction, fix_table

    row = FixRow(cell="c/q/none/tp1", checkpoint="m/v", prediction=Prediction("c/q/none/tp1", "SGLang 0.5.17 loader",
                 ("rule: why",)), loaded=False, recorded_cause="weight_shape_mismatch",
                 cause="weight_shape_mismatch", message="AssertionError: `a|b` mismatch")
    line = fix_table([row]).splitlines()[2]
    assert "``AssertionError: `a\\|b` mismatch``" in line and line.count(" | ") == 4


def test_an_out_of_memory_load_is_not_comparable_in_the_fix_table():
    """Issue 25: on an 80 GB GPU one of the shared fix cells ran out of memory; that is no disagreement with
    preflight (the load was never decided) and is counted apart."""
    from harness.report.rig import FixRow, Prediction, fix_rows, fix_table

    fixes = {"cells": [{"cell_id": "c/q/mtp/tp1", "status": "infra_error", "cell": {"model_path": "/x/m/v"},
                        "error": {"cause": "scheduler_exception", "message": "Scheduler hit an exception",
                                  "log_tail": "ValueError: Loaded weights leave no GPU memory for the KV cache "
                                              "under --mem-fraction-static=0.06. Raise --mem-fraction-static"}}]}
    predictions = {"c/q/mtp/tp1": Prediction("c/q/mtp/tp1", "SGLang 0.5.17 loader", ())}
    (row,) = fix_rows(fixes, predictions)
    assert (row.cause, row.comparable, row.agrees) == ("oom_kv_cache", False, False)
    loaded = FixRow(cell="d/q/none/tp1", checkpoint="m/w", prediction=Prediction("d/q/none/tp1", "l", ()),
                    loaded=True, recorded_cause=None, cause=None, message=None)
    table = fix_table([row, loaded])
    assert "| not comparable (oom_kv_cache: the load was never decided) |" in table
    assert table.endswith("Agreement: 1 of 1 checkpoints. Not comparable: 1 (out of memory before the load was "
                          "decided).")
