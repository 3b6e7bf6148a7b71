"""Run the upstream scorers harness's eval protocols copy on the corpus of hard completions, and record their
answers as goldens (tests/golden/evals/upstream.json.gz), which tests/test_eval_upstreams.py replays against
harness's scorers offline.

- `sglang-fewshot`: `get_answer_value` of SGLang's python/sglang/test/few_shot_gsm8k.py (taken out of the
  release wheel by its syntax tree; nothing of SGLang imported).
- `sglang-run-eval`: SGLang's GPQAEval itself (test/simple_eval_gpqa.py and simple_eval_common.py of the wheel,
  loaded as a package of their own), run on a synthetic CSV with a sampler that answers each question with
  one completion of the corpus: the prompts it sent, the correct letters and the letters it extracted.
- `simple-evals`: openai/simple-evals' GPQAEval itself (gpqa_eval.py, common.py, types.py at a pinned commit),
  the same way (its read_csv pointed at the synthetic CSV).
The synthetic CSV starts with a UTF-8 BOM and holds cells pandas reads as NaN. No GPQA text is involved.
lm-eval (its filters and metric) and sgl-eval (its grader) are installed by the test extra and checked live.

    python tools/eval_reference.py --simple-evals /path/to/simple-evals-git-dir   # pip downloads sglang
"""

from __future__ import annotations

import argparse
import ast
import base64
import csv
import gzip
import hashlib
import importlib
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.eval_corpus import GSM8K_ANSWERS, completions, digest  # noqa: E402

SGLANG = "0.5.17"
SIMPLE_EVALS_COMMIT = "ee3b0318d8d1d9d72755a4120879be65f7c07e9e"
GOLDEN = ROOT / "tests" / "golden" / "evals" / "upstream.json.gz"
FIELDS = ["Record ID", "Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"]
# Cells pandas reads as NaN in the upstreams (and one it does not), spread over the synthetic rows.
NAN_LIKE = ("None", "NA", "N/A", "null", "NULL", "n/a", "#N/A", "", "nan", "-NaN", "none")


def synthetic_csv(count: int) -> bytes:
    """A GPQA-format CSV of `count` synthetic rows, BOM first; row i's question carries the marker `Q{i}:`."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for i in range(count):
        row = {"Record ID": f"rec{i:04d}", "Question": f"Q{i}: which choice is right?",
               "Correct Answer": f"right {i}", "Incorrect Answer 1": f"wrong a{i}",
               "Incorrect Answer 2": f"wrong b{i}", "Incorrect Answer 3": f"wrong c{i}"}
        if i % 7 == 3:  # a choice pandas reads as NaN
            row[FIELDS[2 + i % 4]] = NAN_LIKE[i % len(NAN_LIKE)]
        if i % 31 == 5:  # two NaN choices, the correct one among them (list.index's identity rule decides)
            row["Correct Answer"], row["Incorrect Answer 2"] = "N/A", "None"
        if i % 53 == 8:
            row["Record ID"] = "NA"  # no usable id: harness hashes the question
        writer.writerow(row)
    return b"\xef\xbb\xbf" + out.getvalue().encode()


# --- the sources ---------------------------------------------------------------------------------------

def sglang_wheel(into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", f"sglang=={SGLANG}", "--no-deps", "-d", str(into),
                    "--quiet"], check=True)
    return next(into.glob(f"sglang-{SGLANG}-*.whl"))


def simple_evals_files(git_dir: Path) -> dict[str, str]:
    def show(name: str) -> str:
        return subprocess.run(["git", "-C", str(git_dir), "show", f"{SIMPLE_EVALS_COMMIT}:{name}"], check=True,
                              capture_output=True, text=True).stdout

    return {name: show(name) for name in ("gpqa_eval.py", "common.py", "types.py")}


def load_get_answer_value(wheel: zipfile.ZipFile):
    """few_shot_gsm8k.get_answer_value and INVALID, executed from the wheel's source alone."""
    tree = ast.parse(wheel.read("sglang/test/few_shot_gsm8k.py").decode())
    keep = [node for node in tree.body if (isinstance(node, ast.FunctionDef) and node.name == "get_answer_value")
            or (isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "INVALID")]
    namespace: dict[str, Any] = {"ast": ast, "re": re}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "few_shot_gsm8k.py", "exec"), namespace)  # noqa: S102
    return namespace["get_answer_value"], namespace["INVALID"]


def install_package(root: Path, package: str, files: dict[str, str]) -> None:
    """Write `files` as a package `package` (dotted) under root, with empty __init__ files."""
    directory = root.joinpath(*package.split("."))
    directory.mkdir(parents=True, exist_ok=True)
    for depth in range(1, len(package.split(".")) + 1):
        init = root.joinpath(*package.split(".")[:depth]) / "__init__.py"
        if not init.exists():
            init.write_text("")
    for name, text in files.items():
        (directory / name).write_text(text)


# --- running the upstream GPQA evals ---------------------------------------------------------------------

class Answers:
    """What both upstream samplers need: the corpus completion of the question a prompt carries."""

    def __init__(self, texts: list[str]):
        self.texts, self.prompts = texts, {}

    def _pack_message(self, content: str, role: str = "user") -> dict[str, str]:
        return {"role": role, "content": content}

    def answer(self, messages: list[dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        index = int(re.search(r"\bQ(\d+): ", prompt).group(1))
        self.prompts[index] = hashlib.sha256(prompt.encode()).hexdigest()
        return self.texts[index]


def _graded(results: Any) -> list[tuple[str, str]]:
    """(correct letter, extracted letter or 'None') per row, read from the upstream's own HTML report rows."""
    rows = []
    for html in results.htmls:
        correct = re.search(r"<p>Correct Answer: (.*?)</p>", html).group(1)
        extracted = re.search(r"<p>Extracted Answer: (.*?)</p>", html).group(1)
        rows.append((correct, extracted))
    return rows


def run_gpqa(module: Any, csv_path: Path, texts: list[str], *, sglang: bool) -> dict[str, Any]:
    """The upstream GPQAEval, one repeat, on the synthetic CSV: per row its prompt's SHA-256, its correct letter
    and the letter it extracted from the corpus completion it was given."""
    if sglang:  # SGLang's sampler returns the text; its GPQAEval takes the file name
        class Sampler(Answers):
            def __call__(self, messages):
                return self.answer(messages)

        sampler = Sampler(texts)
        evaluation = module.GPQAEval(str(csv_path), None, 4)
    else:  # simple-evals' returns a SamplerResponse; its GPQAEval reads a URL it hard-codes
        types = importlib.import_module(module.__name__.rsplit(".", 1)[0] + ".types")

        class Sampler(Answers):
            def __call__(self, messages):
                return types.SamplerResponse(self.answer(messages), messages, {})

        sampler = Sampler(texts)
        original = module.pandas.read_csv
        module.pandas.read_csv = lambda _url: original(csv_path)
        try:
            evaluation = module.GPQAEval(n_repeats=1)
        finally:
            module.pandas.read_csv = original
    order = [int(re.search(r"\bQ(\d+): ", example["Question"]).group(1)) for example in evaluation.examples]
    # aggregate_results keeps the examples' order (map_with_progress returns results in input order).
    graded = dict(zip(order, _graded(evaluation(sampler))))
    return {"prompt_sha256": [sampler.prompts[i] for i in range(len(texts))],
            "correct": [graded[i][0] for i in range(len(texts))],
            "extracted": [None if graded[i][1] == "None" else graded[i][1] for i in range(len(texts))]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simple-evals", type=Path, required=True, help="a git directory of openai/simple-evals")
    parser.add_argument("--sglang-wheel", type=Path, help=f"sglang-{SGLANG}-*.whl (default: pip download)")
    args = parser.parse_args()
    texts = completions()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wheel_path = args.sglang_wheel or sglang_wheel(root)
        wheel = zipfile.ZipFile(wheel_path)
        get_answer_value, invalid = load_get_answer_value(wheel)
        install_package(root / "pkgs", "sglang.test", {
            name: wheel.read(f"sglang/test/{name}").decode() for name in ("simple_eval_common.py", "simple_eval_gpqa.py")})
        install_package(root / "pkgs", "upstream_simple_evals", simple_evals_files(args.simple_evals))
        sys.path.insert(0, str(root / "pkgs"))
        csv_bytes = synthetic_csv(len(texts))
        csv_path = root / "gpqa.csv"
        csv_path.write_bytes(csv_bytes)
        sglang_gpqa = importlib.import_module("sglang.test.simple_eval_gpqa")
        simple_gpqa = importlib.import_module("upstream_simple_evals.gpqa_eval")
        golden = {
            "sources": {"sglang": f"{SGLANG} ({wheel_path.name}, sha256 "
                                  f"{hashlib.sha256(wheel_path.read_bytes()).hexdigest()[:16]})",
                        "simple-evals": f"openai/simple-evals@{SIMPLE_EVALS_COMMIT}"},
            "corpus_sha256": digest(texts), "completions": len(texts),
            "sglang-fewshot": {"answers": [_encode(get_answer_value(text), invalid) for text in texts],
                               "labels": [_encode(get_answer_value(text), invalid) for text in GSM8K_ANSWERS]},
            "gpqa_csv": base64.b64encode(gzip.compress(csv_bytes, mtime=0)).decode(),
            "sglang-run-eval": run_gpqa(sglang_gpqa, csv_path, texts, sglang=True),
            "simple-evals": run_gpqa(simple_gpqa, csv_path, texts, sglang=False),
        }
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_bytes(gzip.compress(json.dumps(golden, indent=0).encode(), mtime=0))
    print(f"wrote {GOLDEN.relative_to(ROOT)}: {len(texts)} completions")
    return 0


def _encode(value: Any, invalid: Any) -> str | None:
    """An upstream answer as the golden stores it: None for INVALID, else its decimal text."""
    return None if value == invalid else str(value)


if __name__ == "__main__":
    sys.exit(main())
