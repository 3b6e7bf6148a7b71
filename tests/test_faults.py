"""Issue 13, as a hostile tester tries it: signals, timeouts, harness bugs, hostile input, secrets.

Real processes and real signals (the SGLang test double, harness as a child process), fault-injecting
stubs for HTTP, and after every scenario that starts a server: no process of it survives, and no record of
it is left in the host-wide registry of launched servers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest
import yaml

from harness.cli import main
from harness.engines import leftovers
from harness.errors import ConfigError
from tests.fake_cells import recorded_pids
from tests.helpers import assert_nothing_survives, dirs, fake_suite, reports_written, suite_with_eval

CELL = "fake/quark-mxfp4/none/tp1"
CELL_DIR = "fake__quark-mxfp4__none__tp1"
SECRET = "hf_s3cretT0kenPlantedByTheFaultTests"


# --- helpers ------------------------------------------------------------------------------------------

def _default_signals() -> None:
    # The default dispositions harness would get from a terminal: a background job inherits SIGINT ignored
    # (see test_run_cli), and tests run under `nohup` inherit SIGHUP ignored, which harness keeps on purpose.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def start_harness(root: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "run", "--suite", "fake", *args, *dirs(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", **(env or {})},
                            preexec_fn=_default_signals)


def wait_for_log(path: Path, text: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    pytest.fail(f"{path} never said {text!r}")


def start_until_ready(root: Path, run_id: str) -> tuple[subprocess.Popen, Path]:
    """`harness run` of the fake suite in the background, returned once its server is ready."""
    process = start_harness(root, "--run-id", run_id)
    cell_dir = root / "reports" / run_id / "cells" / CELL_DIR
    wait_for_log(cell_dir / "server.log", "ready to roll")
    return process, cell_dir


def finish(process: subprocess.Popen, timeout_s: float = 90) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        out, err = process.communicate(timeout=30)
        pytest.fail(f"harness did not exit; its threads:\n{err}")


def no_records_left(root: Path) -> None:
    """Nothing of this test is left in the registry of launched servers, nor a pid file in its cells."""
    for path in leftovers.registry_dir().glob("*.json"):
        assert str(root) not in path.read_text(), path.read_text()
    assert list(root.glob(f"reports/*/cells/*/{leftovers.CELL_RECORD}")) == []


# --- 1. signals: SIGTERM and SIGHUP take Ctrl-C's path ---------------------------------------------------

@pytest.mark.gsm8k
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_mid_eval_tears_down_saves_and_reports(tmp_path, sig):
    root = suite_with_eval(tmp_path, latency_s=0.5, questions=60)
    process, cell_dir = start_until_ready(root, "sig")
    time.sleep(1.5)  # mid-eval: some questions answered, most not
    process.send_signal(sig)
    out, err = finish(process)
    assert process.returncode == 130, err
    results = reports_written(root / "reports" / "sig")
    (cell,) = results["cells"]
    assert cell["error"]["cause"] == "interrupted" and cell["memory"]["weights_gib"] == 40.0
    assert f"({sig.name})" in err and "harness run --resume" in err
    assert_nothing_survives(tmp_path)
    no_records_left(root)


@pytest.mark.parametrize("inherited, kept", [(signal.SIG_IGN, True), (signal.SIG_DFL, False)])
def test_nohup_keeps_sighup_ignored(inherited, kept):
    # `nohup harness run ...` asks that a closed terminal not stop the run; SIGTERM and SIGINT still do.
    from harness import interrupts

    before = signal.signal(signal.SIGHUP, inherited)
    try:
        with interrupts.installed():
            assert (signal.getsignal(signal.SIGHUP) == signal.SIG_IGN) == kept
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGHUP) == inherited
    finally:
        signal.signal(signal.SIGHUP, before)


@pytest.mark.gsm8k
def test_a_second_signal_during_teardown_does_not_cut_it_short(tmp_path):
    # Stubborn children ignore SIGINT and SIGTERM: teardown takes its grace periods, and a second SIGTERM
    # arrives in the middle of them.
    root = suite_with_eval(tmp_path, latency_s=0.5, questions=60, scenario="stubborn_children")
    process, cell_dir = start_until_ready(root, "twice")
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    wait_for_log(cell_dir / "server.log", "Received SIGINT")  # teardown under way
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    process.send_signal(signal.SIGHUP)
    out, err = finish(process)
    assert process.returncode == 130, err
    assert "again: still tearing servers down" in err
    results = reports_written(root / "reports" / "twice")
    assert results["cells"][0]["error"]["cause"] == "interrupted"
    assert len(recorded_pids(tmp_path)) == 4  # server, scheduler, detokenizer, setsid grandchild
    assert_nothing_survives(tmp_path)
    no_records_left(root)


@pytest.mark.gsm8k
def test_servers_of_a_sigkilled_harness_are_torn_down_by_the_next_run(tmp_path):
    root = suite_with_eval(tmp_path, latency_s=0.5, questions=60, scenario="stubborn_children")
    process, cell_dir = start_until_ready(root, "killed")
    process.kill()  # SIGKILL: no teardown, no report
    finish(process)
    time.sleep(0.5)
    pids = recorded_pids(tmp_path)
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    assert len(alive) >= 3, "the server should have outlived the killed harness"  # what SIGKILL leaves
    record = json.loads((cell_dir / leftovers.CELL_RECORD).read_text())
    assert record["owner_pid"] == process.pid and "sglang.launch_server" in " ".join(record["argv"])
    assert not (root / "reports" / "killed" / "results.json").exists()

    # The next run on this host finds them, by their record, and tears them down first.
    suite_file = root / "suites" / "fake.yaml"
    suite_file.write_text(suite_file.read_text().replace("stubborn_children", "ok"))
    again = start_harness(root, "--run-id", "next")
    out, err = finish(again)
    assert again.returncode == 0, err
    assert f"left by harness pid {process.pid} (gone)" in err
    assert_nothing_survives(tmp_path)
    no_records_left(root)


# --- 2. timeouts.eval_s is a deadline -----------------------------------------------------------------------

@pytest.mark.gsm8k
def test_eval_s_is_enforced_and_what_was_answered_is_kept(tmp_path, capsys):
    root = suite_with_eval(tmp_path, latency_s=0.5, questions=200, eval_s=3)  # unbounded: 50 s
    start = time.monotonic()
    code = main(["run", "--suite", "fake", "--run-id", "slow", *dirs(root)])
    assert code == 3, capsys.readouterr().err
    assert time.monotonic() - start < 25
    (cell,) = reports_written(root / "reports" / "slow")["cells"]
    assert cell["status"] == "infra_error" and cell["error"]["cause"] == "eval_timeout"
    answered = cell["evals"]["gsm8k"]["metrics"]["accuracy"]["n"]
    assert 4 <= answered < 200 and cell["evals"]["gsm8k"]["metrics"]["accuracy"]["value"] == 1.0
    assert cell["timings"]["eval_s"] < 6
    assert_nothing_survives(tmp_path)
    no_records_left(root)


# --- 3. no exception escapes as exit 1 ----------------------------------------------------------------------

@pytest.mark.gsm8k
def test_an_engine_that_cannot_be_launched_is_infra_error(tmp_path, capsys):
    root = suite_with_eval(tmp_path, specs=("none", "mtp"))
    code = main(["run", "--suite", "fake", "--run-id", "nopython", "--python", "/nonexistent/python", *dirs(root)])
    assert code == 3, capsys.readouterr()
    cells = reports_written(root / "reports" / "nopython")["cells"]
    assert [c["error"]["cause"] for c in cells] == ["launch_failed", "launch_failed"]
    assert "/nonexistent/python" in cells[0]["error"]["message"]


@pytest.mark.gsm8k
def test_a_python_without_the_engine_is_launch_failed_with_the_hint_on_the_console(tmp_path, capsys, monkeypatch):
    """A GPU-less user's first `harness run` of a real suite: the engine's Python has no SGLang (`-S`: no
    site-packages, no PYTHONPATH, whatever this machine has installed)."""
    from harness.engines import devices

    monkeypatch.setattr(devices, "_BACKEND", None)  # as on a machine without a GPU
    monkeypatch.setattr(devices, "_PROBED", True)
    root = suite_with_eval(tmp_path)
    python = tmp_path / "python-without-sglang"
    python.write_text(f'#!/bin/sh\nexec env -u PYTHONPATH {sys.executable} -S "$@"\n')
    python.chmod(0o755)
    code = main(["run", "--suite", "fake", "--run-id", "nosglang", "--python", str(python), *dirs(root)])
    out, err = capsys.readouterr()
    assert code == 3, (out, err)
    [cell] = reports_written(root / "reports" / "nosglang")["cells"]
    assert cell["error"]["cause"] == "launch_failed"
    assert "No module named 'sglang'" in cell["error"]["message"]
    assert f"{python} (given by --python or the suite's `python:`) has no such module" in cell["error"]["message"]
    assert f"{CELL} cell: INFRA ERROR: launch_failed: " in out and "given by --python" in out  # the console's why
    assert "launching on GPUs" not in err and "no GPU found on this host" in err
    assert "(no GPU found on this host)" in err


@pytest.mark.gsm8k
def test_a_harness_bug_in_one_cell_costs_that_cell_only(tmp_path, capsys, monkeypatch):
    from harness.engines.sglang import SGLangEngine

    original = SGLangEngine.parse_log

    def parse_log(self, lines):
        lines = list(lines)
        if any("speculative" in line for line in lines):
            raise ZeroDivisionError("planted bug")
        return original(self, lines)

    monkeypatch.setattr(SGLangEngine, "parse_log", parse_log)
    root = suite_with_eval(tmp_path, specs=("none", "mtp"))
    code = main(["run", "--suite", "fake", "--run-id", "bug", *dirs(root)])
    assert code == 3, capsys.readouterr()
    cells = {c["cell_id"]: c for c in reports_written(root / "reports" / "bug")["cells"]}
    assert cells[CELL]["status"] == "ok" and cells[CELL]["evals"]["gsm8k"]["metrics"]["accuracy"]["value"] == 1.0
    broken = cells["fake/quark-mxfp4/mtp/tp1"]
    assert broken["error"]["cause"] == "harness_error" and "ZeroDivisionError: planted bug" in broken["error"]["message"]
    assert "Traceback (most recent call last)" in broken["error"]["log_tail"]
    assert_nothing_survives(tmp_path)
    no_records_left(root)


@pytest.mark.gsm8k
def test_a_harness_bug_outside_cells_exits_4_and_writes_what_it_has(tmp_path, capsys, monkeypatch):
    import harness.pipeline

    def broken_preflight(*args):
        raise RuntimeError("planted bug outside any cell")

    monkeypatch.setattr(harness.pipeline, "preflight_cells", broken_preflight)
    root = suite_with_eval(tmp_path)
    code = main(["run", "--suite", "fake", "--run-id", "outside", *dirs(root)])
    err = capsys.readouterr().err
    assert code == 4
    assert "RuntimeError: planted bug outside any cell" in err and "internal error" in err
    results = reports_written(root / "reports" / "outside")
    assert [v["state"] for v in results["verdicts"]] == ["MISSING"]


@pytest.mark.parametrize(("body", "problem"), [
    ('{"choices": [{"text": "#### 3"}], "usage": "five"}', "usage is a string"),
    ('{"choices": [{"text": "#### 3"}], "usage": {"completion_tokens": "5"}}', "completion_tokens is '5'"),
    ('{"choices": [{"text": 3}]}', "text is a number"),
    ('{"choices": [{"text": null}]}', "text is null"),
    ('{"choices": [{"text": "#### 3"}], "usage": {"completion_tokens": NaN}}', "NaN is not a number"),
    ('[' * 50000 + ']' * 50000, "nested too deeply"),
    ('{"choices": []}', "no choices[0]"),
])
@pytest.mark.gsm8k
def test_a_200_of_the_wrong_shape_is_a_failed_request(stub_server, tmp_path, body, problem):
    from harness.evals.base import EvalConfig
    from harness.evals.registry import run_eval

    reply = tmp_path / "reply.json"
    reply.write_text(body)
    url = stub_server("--reply-json", str(reply))
    config = EvalConfig(name="gsm8k", protocol="sglang-fewshot", shots=0, questions=10, max_tokens=16,
                        temperature=0.0, repeats=1, concurrency=2, max_error_rate=1.0)
    result = run_eval(config, url, model="m")
    assert result.metrics["accuracy"].n == 0 and result.request_errors == 10  # failed, never scored wrong
    assert all(o.error.startswith("malformed response") for o in result.outcomes), result.outcomes[0]
    assert problem.split(" is ")[0].split()[-1] in result.outcomes[0].error, result.outcomes[0].error


# --- 4. NaN and infinity ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_a_non_finite_baseline_is_refused(tmp_path, capsys, value):
    root = fake_suite(tmp_path, {"none": "ok"})
    path = root / "baselines" / "fake.yaml"
    path.write_text(path.read_text().replace("value: 40.0", f"value: {value}"))
    assert main(["validate", "--suites-dir", str(root / "suites"), "--baselines-dir", str(root / "baselines")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "memory.weights_gib.value: expected a finite number" in err
    assert main(["run", "--suite", "fake", "--run-id", "nan", *dirs(root)]) == 2
    assert not (root / "reports" / "nan").exists()


def test_results_never_hold_bare_nan(tmp_path):
    from harness import schema

    schema.write_json(tmp_path / "r.json", {"value": float("nan"), "list": [float("inf"), 1.0]})
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=pytest.fail) == {"value": None,
                                                                                         "list": [None, 1.0]}


def test_nan_on_the_command_line_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exiting:
        main(["compare", str(tmp_path), str(tmp_path), "--alpha", "nan"])
    assert exiting.value.code == 2 and "expected a finite number" in capsys.readouterr().err


# --- 5. YAML alias bombs and deep nesting --------------------------------------------------------------

BOMB = "\n".join(["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                 + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)])


def test_an_alias_bomb_in_a_suite_is_one_line_exit_2(tmp_path, capsys):
    root = fake_suite(tmp_path, {"none": "ok"})
    path = root / "suites" / "fake.yaml"
    path.write_text(BOMB + "\ndescription: *a9\n" + path.read_text())
    start = time.monotonic()
    assert main(["list", "--suite", "fake", "--suites-dir", str(root / "suites")]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - start < 5 and err.count("\n") == 1
    assert "fake.yaml: not valid YAML: expands to more than" in err


@pytest.mark.parametrize("kind", ["suite", "baseline", "results"])
def test_deep_nesting_is_one_line_exit_2(tmp_path, capsys, kind):
    root = fake_suite(tmp_path, {"none": "ok"})
    deep = "[" * 50000 + "]" * 50000
    if kind == "suite":
        (root / "suites" / "fake.yaml").write_text(f"description: {deep}\n")
        argv = ["list", "--suite", "fake", "--suites-dir", str(root / "suites")]
    elif kind == "baseline":
        (root / "baselines" / "fake.yaml").write_text(f"cells: {deep}\n")
        argv = ["validate", "--suites-dir", str(root / "suites"), "--baselines-dir", str(root / "baselines")]
    else:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "results.json").write_text(deep)
        argv = ["report", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nested" in err and "Traceback" not in err


# --- 6./7./12. the transport: null text, Retry-After, servers that close connections, HTTPS, API keys ----

def _requests(count: int):
    from harness.transport import Request

    return [Request(f"r{i}", "/v1/completions", {"prompt": f"Question: x{i}\nAnswer:"}) for i in range(count)]


@pytest.mark.gsm8k
def test_retry_after_is_honoured(stub_server):
    from harness.transport import ClientSettings, run_requests

    url = stub_server("--retry-after", "2")
    start = time.monotonic()
    # Fixed back-off alone (0.01 s x 2^k) would give up long before the server's 2 s.
    responses = run_requests(url, _requests(8), ClientSettings(concurrency=8, retries=2, backoff_s=0.01))
    assert all(r.error is None and r.attempts == 2 for r in responses), responses[0]
    assert 2.0 <= time.monotonic() - start < 8


@pytest.mark.gsm8k
def test_retry_after_is_bounded(stub_server):
    from harness.transport import ClientSettings, run_requests

    url = stub_server("--retry-after", "3600")
    start = time.monotonic()
    responses = run_requests(url, _requests(2), ClientSettings(concurrency=2, retries=1, backoff_s=0.01,
                                                                max_retry_after_s=0.5))
    assert all(r.error and r.error.startswith("HTTP 429") for r in responses)
    assert time.monotonic() - start < 5


@pytest.mark.gsm8k
def test_a_server_that_closes_every_connection_costs_no_retry(stub_server):
    from harness.transport import ClientSettings, run_requests

    url = stub_server("--close-after-response", "--latency-s", "0.01")
    start = time.monotonic()
    responses = run_requests(url, _requests(200), ClientSettings(concurrency=8))
    elapsed = time.monotonic() - start
    assert all(r.error is None and r.attempts == 1 for r in responses)
    assert elapsed < 10  # a 0.5 s back-off per request would be 200 x 0.5 / 8 = 12.5 s at the least


@pytest.fixture
def tls_files(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.gsm8k
def test_https_and_an_api_key(stub_server, tls_files, monkeypatch, capsys):
    from harness.transport import ClientSettings, get_json, run_requests, set_api_key

    cert, key = tls_files
    url = stub_server("--tls", str(cert), str(key), "--api-key", "k-123456789").replace("http:", "https:")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    refused = run_requests(url, _requests(2), ClientSettings(concurrency=2, retries=0))
    assert all(r.error.startswith("HTTP 401") for r in refused)
    assert get_json(url + "/v1/models") is None
    set_api_key(url, "k-123456789")
    try:
        answered = run_requests(url, _requests(20), ClientSettings(concurrency=4))
        assert all(r.error is None for r in answered)
        assert get_json(url + "/v1/models")["data"][0]["id"] == "stub-model"
    finally:
        set_api_key(url, None)
    # The same through the command line, as a user runs it.
    code = main(["eval", "gsm8k", "--base-url", url, "--questions", "5", "--shots", "0", "--api-key", "k-123456789"])
    assert code == 0, capsys.readouterr()
    assert "k-123456789" not in capsys.readouterr().out


@pytest.mark.gsm8k
def test_harness_run_api_key_reaches_the_server_and_every_request(tmp_path, capsys):
    root = suite_with_eval(tmp_path)
    code = main(["run", "--suite", "fake", "--run-id", "key", "--api-key", "sk-planted-api-key", *dirs(root)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (cell,) = reports_written(root / "reports" / "key")["cells"]
    assert cell["evals"]["gsm8k"]["metrics"]["accuracy"]["value"] == 1.0  # the double answered: key sent
    for path in (root / "reports").rglob("*"):
        if path.is_file():
            assert "sk-planted-api-key" not in path.read_text(errors="replace"), path
    assert "sk-planted-api-key" not in captured.out + captured.err
    assert_nothing_survives(tmp_path)


# --- 8. abbreviations of managed flags ----------------------------------------------------------------------

@pytest.mark.parametrize(("engine", "args", "managed"), [
    ("sglang", ["--hos", "0.0.0.0"], "--host"),
    ("sglang", ["--po", "1"], "--port"),
    ("sglang", ["--tp-siz", "8"], "--tp-size"),
    ("sglang", ["--host=0.0.0.0"], "--host"),
    ("sglang", ["--model_path", "x"], "--model-path"),
    ("vllm", ["--tensor-parallel", "2"], "--tensor-parallel-size"),
    ("vllm", ["--tensor_parallel_size", "2"], "--tensor-parallel-size"),
    ("vllm", ["-t", "2"], "-tp"),
])
def test_an_abbreviated_managed_flag_is_refused(tmp_path, capsys, engine, args, managed):
    root = fake_suite(tmp_path, {"none": "ok"})
    path = root / "suites" / "fake.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["engine"] = engine
    suite["server"]["args"] = ["--mem-fraction-static", "0.8", *args]
    path.write_text(yaml.safe_dump(suite))
    assert main(["list", "--suite", "fake", "--suites-dir", str(root / "suites")]) == 2
    err = capsys.readouterr().err
    assert f"server.args[2]: '{args[0].split('=')[0]}'" in err and managed in err


# --- 9. secrets ----------------------------------------------------------------------------------------

@pytest.mark.gsm8k
def test_secrets_never_reach_an_artifact_or_the_console(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    # The checkpoint `fake/model` is no directory: with a token, preflight would read its headers from the
    # hub, sending the planted token there. Tests never read the hub (conftest's HF_HUB_OFFLINE): a stand-in
    # huggingface_hub records any call.
    hub_calls: list = []
    fake_hub = types.ModuleType("huggingface_hub")
    fake_hub.hf_hub_download = fake_hub.HfApi = lambda *args, **kwargs: hub_calls.append((args, kwargs))
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub)
    root = suite_with_eval(tmp_path, env={"HF_TOKEN": SECRET, "MY_PASSWORD": "pw-planted-123",
                                          "ODD_NAME": SECRET, "TOKENIZERS_PARALLELISM": "false"})
    path = root / "suites" / "fake.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["server"]["args"] = ["--served-model-name", SECRET]  # echoed by the server, and in results
    path.write_text(yaml.safe_dump(suite))
    assert main(["run", "--suite", "fake", "--dry-run", *dirs(root)]) == 0
    code = main(["run", "--suite", "fake", "--run-id", "secret", *dirs(root)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    files = [p for p in (root / "reports").rglob("*") if p.is_file()]
    assert len(files) >= 5  # plan, result, server.log, results.json, summary.md, junit.xml
    for leaked in (SECRET, "pw-planted-123"):
        assert leaked not in captured.out + captured.err
        for file in files:
            assert leaked not in file.read_text(errors="replace"), file
    log = (root / "reports" / "secret" / "cells" / CELL_DIR / "server.log").read_text()
    assert "env HF_TOKEN=[redacted]" in log and "env TOKENIZERS_PARALLELISM=false" in log
    assert "env  HF_TOKEN=[redacted]" in captured.out  # the dry run
    assert "HF_HUB_OFFLINE is set: the hub is not read" in captured.err and not hub_calls
    assert_nothing_survives(tmp_path)


@pytest.mark.parametrize(("env", "explicit", "sent", "why"), [
    ({"HF_TOKEN": "hf_env"}, None, "hf_env", None),  # the environment's token, to huggingface.co
    ({}, "hf_flag", "hf_flag", None),
    ({}, None, None, None),
    ({"HF_TOKEN": "hf_env", "HF_HUB_OFFLINE": "1"}, "hf_flag", None, "HF_HUB_OFFLINE is set"),
    # A mirror gets a token only when one is given for the run; never over plain HTTP to another machine.
    ({"HF_TOKEN": "hf_env", "HF_ENDPOINT": "https://mirror.example"}, None, None, "huggingface.co only"),
    ({"HF_ENDPOINT": "https://mirror.example"}, "hf_flag", "hf_flag", None),
    ({"HF_ENDPOINT": "http://mirror.example"}, "hf_flag", None, "over HTTPS only"),
    ({"HF_ENDPOINT": "http://127.0.0.1:5000"}, "hf_flag", "hf_flag", None),
])
def test_a_hub_token_goes_only_to_the_hub_endpoint_it_is_for(monkeypatch, env, explicit, sent, why):
    from harness.secrets import hub_token

    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    token, refused = hub_token(explicit)
    assert token == sent
    assert (refused is None) if why is None else (why in refused)


def test_the_hub_client_never_picks_the_environment_token_up_itself(monkeypatch, tmp_path):
    """huggingface_hub sends $HF_TOKEN when given token=None: harness passes False where it sends none."""
    from harness.loading.manifest import load_hub_manifest

    seen: list = []
    fake_hub = types.ModuleType("huggingface_hub")
    fake_hub.hf_hub_download = lambda *args, token=None, **kwargs: seen.append(token) or 1 / 0
    fake_hub.HfApi = object
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub)
    with pytest.raises(ConfigError):
        load_hub_manifest("org/model", token=None)
    assert seen == [False]


def test_token_counts_are_figures_not_secrets():
    from harness.secrets import REDACTED, redact_argv

    argv = ["--speculative-num-draft-tokens", "4", "--max-total-tokens=4096", "--hf-token", "hf_x", "--api-key=k",
            "--max-prefill-tokens", "16384"]
    assert redact_argv(argv) == ["--speculative-num-draft-tokens", "4", "--max-total-tokens=4096", "--hf-token",
                                 REDACTED, f"--api-key={REDACTED}", "--max-prefill-tokens", "16384"]


# --- 10. --run-id is a plain name ---------------------------------------------------------------------

@pytest.mark.parametrize("run_id", ["../../escaped", "/tmp/absolute-run", "a/b", "..", ".hidden", "x\ny"])
def test_run_id_must_be_a_plain_name(tmp_path, capsys, run_id):
    root = fake_suite(tmp_path, {"none": "ok"})
    assert main(["run", "--suite", "fake", "--run-id", run_id, *dirs(root)]) == 2
    assert "--run-id" in capsys.readouterr().err
    assert not (root / "reports").exists() and not Path("/tmp/absolute-run").exists()
    assert not (tmp_path.parent / "escaped").exists()


# --- 11. reports escape what servers say -----------------------------------------------------------------

def test_summary_escapes_server_text():
    markdown_it = pytest.importorskip("markdown_it")
    from harness.compare import State, Verdict
    from harness.report.markdown import render_markdown
    from harness.results import CellError, CellResult, RunResult

    tail = "line one\n```\n# a heading that must stay code\n````` five\n<script>alert(1)</script>"
    error = CellError("crash<b>", "boom", tail)
    result = CellResult(cell_id="m/fp8/none/tp1", suite="s", status="infra_error", cell={}, error=error)
    verdict = Verdict(cell_id="m/fp8/none/tp1", metric="cell", state=State.INFRA_ERROR,
                      reason="<img src=x onerror=alert(1)> [link](http://x) `tick` | pipe\nnew line")
    run = RunResult(run_id="r", suite="s", planned=("m/fp8/none/tp1",), cells=(result,), exit_code=3)
    text = render_markdown(run, [verdict])
    assert "``````text" in text  # a fence longer than the five backticks inside
    page = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    assert "<script>" not in page and "<img" not in page and "<b>" not in page and "<a href" not in page
    assert "# a heading that must stay code" in page and "<h1>" not in page.split("<h2>")[1]
    assert "new line" in page


def test_junit_holds_only_xml_characters():
    from harness.compare import State, Verdict
    from harness.report.junit import render_junit
    from harness.results import CellError, CellResult, RunResult

    error = CellError("crash", "boom", "\x1b[31mred\x1b[0m and a NUL \x00 and \ud800")
    result = CellResult(cell_id="m/fp8/none/tp1", suite="s", status="infra_error", cell={}, error=error)
    verdict = Verdict(cell_id="m/fp8/none/tp1", metric="cell", state=State.INFRA_ERROR, reason="\x07bell")
    run = RunResult(run_id="r", suite="s", planned=("m/fp8/none/tp1",), cells=(result,), exit_code=3)
    ET.fromstring(render_junit(run, [verdict]).split("\n", 1)[1])


def test_a_model_id_with_a_newline_is_refused(tmp_path, capsys):
    root = fake_suite(tmp_path, {"none": "ok"})
    path = root / "suites" / "fake.yaml"
    suite = yaml.safe_load(path.read_text())
    suite["models"][0]["id"] = "fake\n| broken | table |"
    path.write_text(yaml.safe_dump(suite))
    assert main(["list", "--suite", "fake", "--suites-dir", str(root / "suites")]) == 2
    assert "models[0].id" in capsys.readouterr().err


# --- 13. a baseline whose cell is gone ------------------------------------------------------------------

def test_run_refuses_a_baseline_whose_cell_no_longer_exists(tmp_path, capsys):
    root = fake_suite(tmp_path, {"none": "ok"})
    path = root / "baselines" / "fake.yaml"
    path.write_text(path.read_text().replace("fake/quark-mxfp4/none/tp1", "fake/quark-mxfp4/none/tp2"))
    assert main(["run", "--suite", "fake", "--run-id", "stale", *dirs(root)]) == 2
    err = capsys.readouterr().err
    assert "cells.fake/quark-mxfp4/none/tp2: no such cell in suite 'fake'" in err
    assert not (root / "reports" / "stale").exists()
