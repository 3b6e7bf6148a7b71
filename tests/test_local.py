"""The embedded default's parts: synthetic problems, `local:` checkpoints, the scale defect, the suites."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from harness.cli import main
from harness.errors import ConfigError
from harness.evals import gsm8k
from harness.local import models, problems
from tests.conftest import ROOT


@pytest.mark.slow  # seconds of pure computation: not in `make test-fast`
def test_problems_are_deterministic_and_gsm8k_shaped():
    rows = problems.held_out_rows(50)
    assert rows == problems.held_out_rows(50) and problems.digest(rows) == problems.digest(problems.held_out_rows(50))
    assert problems.digest(rows) != problems.digest(problems.held_out_rows(51))
    for row in rows:
        assert row["answer"].endswith("#### " + row["answer"].rsplit("#### ", 1)[1])
        value = gsm8k.sglang_answer_value(row["answer"])
        question = gsm8k.Question("q", 0, "", str(value))
        assert gsm8k.score("sglang-fewshot", question, " " + row["answer"]).correct


@pytest.mark.slow  # seconds of pure computation: not in `make test-fast`
def test_held_out_problems_are_not_training_problems():
    train = {row["question"] for row in problems.train_rows()}
    assert not any(row["question"] in train for row in problems.held_out_rows(300))


def test_local_references():
    assert models.parse("local:tiny-qwen3/mxfp4") == ("tiny-qwen3", "mxfp4")
    with pytest.raises(ConfigError, match="unknown local checkpoint"):
        models.parse("local:tiny-qwen3/int3")
    with pytest.raises(ConfigError, match="unknown local checkpoint"):
        models.parse("local:huge/bf16")


def test_exports_are_cached_by_the_weights_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    path = models.resolve("local:tiny-qwen3/fp8")
    assert path.parent == tmp_path and path.name == f"tiny-qwen3-{models.source_digest('tiny-qwen3')}-fp8"
    assert models.resolve("local:tiny-qwen3/bf16") == ROOT / "models" / "tiny-qwen3"


DEFECT_TENSOR = "model.layers.0.mlp.down_proj.weight_scale"


def test_scale_defect_raises_one_tensor_by_one_exponent(tmp_path):
    source = tmp_path / "mxfp4"
    source.mkdir()
    scales = np.array([[120, 127], [254, 3]], dtype=np.uint8)
    other = np.array([[1, 2]], dtype=np.uint8)
    save_file({DEFECT_TENSOR: scales, "model.layers.1.mlp.down_proj.weight_scale": other},
              str(source / "model.safetensors"))
    (source / "config.json").write_text("{}")
    models.make_scale_defect(source, tmp_path / "defect", tensor=DEFECT_TENSOR)
    corrupted = load_file(str(tmp_path / "defect" / "model.safetensors"))
    assert corrupted[DEFECT_TENSOR].tolist() == [[121, 128], [254, 4]]  # 0xFF would be NaN
    assert corrupted["model.layers.1.mlp.down_proj.weight_scale"].tolist() == [[1, 2]]
    assert (tmp_path / "defect" / "config.json").exists()
    with pytest.raises(ConfigError, match="no uint8 E8M0 scale tensor"):
        models.make_scale_defect(source, tmp_path / "again", tensor="model.missing")


def test_the_real_exports_defects_hit_the_blocks_the_fake_quantized_ones_do(tmp_path):
    """Each `local:<model>/mxfp4-*-defect` is its fake-quant twin's defect (harness.local.fakequant.DEFECTS)
    applied to the real export's bytes: the same tensor, the same blocks, the same +1 capped below NaN."""
    torch = pytest.importorskip("torch")
    from harness.local import fakequant

    rng = np.random.default_rng(0)
    for variant, name in models.DEFECTS.items():
        defect = fakequant.DEFECTS[name]
        scale_tensor = defect.tensor + "_scale"
        scales = rng.integers(100, 256, size=(24, 8), dtype=np.uint8)
        scales[0, 0] = 254
        source = tmp_path / f"{variant}-source"
        source.mkdir()
        save_file({scale_tensor: scales}, str(source / "model.safetensors"))
        models.make_scale_defect(source, tmp_path / variant, tensor=scale_tensor, stride=defect.stride)
        edited = load_file(str(tmp_path / variant / "model.safetensors"))[scale_tensor]
        expected = fakequant.raise_scales(torch.from_numpy(scales.copy()), defect.stride).numpy()
        assert (edited == expected).all() and (edited != scales).sum() > 0


def test_local_dry_run_resolves_auto_to_this_machine(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    assert main(["run", "--suite", "local", "--dry-run", "--suites-dir", str(ROOT / "suites"),
                 "--baselines-dir", str(ROOT / "baselines")]) == 0
    out = capsys.readouterr().out
    assert "-m transformers.cli.transformers serve " + str(ROOT / "models" / "tiny-qwen3") in out
    assert "--device cpu" in out and "3 cells; nothing launched" in out
    assert str(tmp_path / "tiny-qwen3-") in out  # the cached export the quantized cells would read
    assert not list(tmp_path.iterdir())  # a dry run exports nothing


def test_the_defect_suite_is_gated_against_the_local_baselines(capsys):
    assert main(["list", "--suite", "local-defects", "--suites-dir", str(ROOT / "suites")]) == 0
    assert capsys.readouterr().out.startswith("tiny-qwen3/quark-mxfp4/none/tp1")
    from harness.pipeline import plan

    the_plan = plan("local-defects", suites_dir=ROOT / "suites", baselines_dir=ROOT / "baselines", cell_patterns=None)
    assert the_plan.baselines.path == ROOT / "baselines" / "local.yaml"


CHATTY = '''import sys
for i in range(130):
    print(f"\\x1b[32m[QUARK-INFO]\\x1b[0m quantization config line {i}")
print("done", file=sys.stderr)
sys.exit(int(sys.argv[1]))
'''


@pytest.mark.process
def test_an_exporters_output_goes_to_its_log_not_to_harnesss_output(tmp_path, monkeypatch, capfd):
    """What `make local` showed before harness's own first line: the exporter's ~130 lines of configuration
    dumps and colour codes. They now land in a log file beside the cache entry, named on harness's line."""
    from harness.engines.probe import run_python_module
    from harness.errors import InfraError

    (tmp_path / "chatty_exporter.py").write_text(CHATTY)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    log = tmp_path / "cache" / "tiny-qwen3-abc-mxfp4.log"
    run_python_module(sys.executable, "chatty_exporter", ["0"], timeout_s=60, log=log)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert "quantization config line 129" in log.read_text() and log.read_text().rstrip().endswith("done")
    with pytest.raises(InfraError) as failed:
        run_python_module(sys.executable, "chatty_exporter", ["3"], timeout_s=60, log=log)
    assert f"exit code 3 (its output: {log}); last lines:" in str(failed.value)
    assert "quantization config line 129" in str(failed.value) and capfd.readouterr() == ("", "")


def test_ensure_names_the_log_of_what_it_makes(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    calls, said = [], []
    monkeypatch.setattr("harness.engines.probe.run_python_module",
                        lambda python, module, args, timeout_s, log: calls.append((module, log)))
    models.ensure("local:tiny-qwen3/fp8", log=said.append)
    target = models.resolve("local:tiny-qwen3/fp8")
    assert calls == [("harness.local.export", target.with_name(target.name + ".log"))]
    assert said == [f"harness: exporting local:tiny-qwen3/fp8 with amd-quark (once; cached in {tmp_path}; its "
                    f"output: {target}.log)"]
