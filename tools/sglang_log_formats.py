"""Extract, from SGLang's own source, every log format string carrying a figure or a failure harness reads.

harness reads SGLang's server log (harness/engines/logs.py for memory, accept length and readiness,
harness/engines/failures.py for failures). Pasted logs show only the forms someone happened to paste; this
script takes the forms from the source of real releases (wheels from `pip download sglang==X --no-deps`, or
unpacked trees): every `logger.<level>(...)`, `print(...)` and `raise X(...)` message (f-strings, `%` formats
with their arguments, `+` and `+=` concatenations within a function) that holds one of MARKERS, with the
release, file and line, the template (literal text and `{expression:spec}` placeholders), and a line rendered
with sample values. It writes `tests/golden/sglang_log_formats.json`; tests/test_log_formats.py requires the
parser (or the classifier) to read every rendered line and fails on a form it cannot read. Nothing of SGLang
is imported or run; only message templates are stored.

    python tools/sglang_log_formats.py                                  # pip download RELEASES, regenerate
    python tools/sglang_log_formats.py --add 0.5.24                     # RELEASES plus a new release
    python tools/sglang_log_formats.py --source 0.5.23=/tmp/sgl/0.5.23  # an unpacked tree (`sglang/` inside)
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Chosen to cover the history: 0.4.0 (no `mem usage` on load end), 0.4.3 (the last before it), 0.4.6 (draft
# graphs, accept len), 0.4.10, 0.5.1, 0.5.4, 0.5.8 (SWA pools, piecewise graphs), 0.5.12, 0.5.17 (the rig's),
# 0.5.20 and 0.5.23 (the newest on PyPI when this was written: post-capture KV sizing).
RELEASES = ("0.4.0", "0.4.3.post4", "0.4.6.post5", "0.4.10.post2", "0.5.1", "0.5.4", "0.5.8", "0.5.12",
            "0.5.17", "0.5.20", "0.5.23")
OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "golden" / "sglang_log_formats.json"

# (a regular expression searched in the message's literal text, what harness reads from it). `parse:<pattern>` is a pattern of
# harness.engines.logs.SGLANG_PATTERNS; `fail:<cause>` a cause of harness.engines.failures (oom matches any
# oom_<phase>).
MARKERS = (
    ("Init torch distributed ends", "parse:init_dist"),
    ("Load weight begin", "parse:load_begin"),
    ("Load weight end", "parse:load_end"),
    ("Peak GPU memory before loading weights", "parse:peak_before_load"),
    ("Memory increase during load_weights", "parse:load_increase"),
    ("Post-capture KV sizing: (?:draft )?KV cache allocated", "parse:kv_post_capture"),
    ("KV Cache (?:is allocated|VA upper bound)", "parse:kv_pool"),
    ("SWAKVPool (?:mem usage|VA upper bound)", "parse:swa_pool"),
    ("Mamba Cache is allocated", "parse:mamba_pool"),
    ("Memory pool end", "parse:pool_end"),
    ("The available memory for KV cache", "parse:kv_available"),
    ("graph end", "parse:graph"),
    ("^max_total_num_tokens=", "parse:capacity"),
    ("accept len:", "parse:decode"),
    ("fired up and ready to roll", "parse:ready"),
    ("Not enough memory", "fail:oom"),
    ("leave no GPU memory", "fail:oom"),
    ("is not divisible by weight quantization block", "fail:fp8_block_divisibility"),
    ("Scheduler hit an exception", "fail:scheduler_exception"),
    ("Found different quantization schemes", "fail:fused_shard_disagreement"),
    ("Detected some but not all shards", "fail:fused_shard_disagreement"),
    ("Attempted to load weight", "fail:weight_shape_mismatch"),
)
LOG_METHODS = frozenset({"info", "warning", "warn", "error", "debug", "critical", "exception"})


# ------------------------------------------------------------------------------------------ templates
@dataclass(frozen=True)
class Hole:
    expr: str
    spec: str


Part = str | Hole


MAX_ALTERNATIVES = 16
Alternatives = list[list[Part]]


def _concat(left: Alternatives, right: Alternatives) -> Alternatives:
    return [a + b for a in left for b in right][:MAX_ALTERNATIVES]


def _parts(node: ast.expr, scope: dict[str, Alternatives]) -> Alternatives | None:
    """Every message an expression can build (a conditional's branches each give one), as literal text and
    holes; None where it is not a string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [[node.value]]
    if isinstance(node, ast.JoinedStr):
        built: Alternatives = [[]]
        for value in node.values:
            if isinstance(value, ast.Constant):
                built = _concat(built, [[str(value.value)]])
            elif isinstance(value, ast.FormattedValue):
                built = _concat(built, _hole(value, scope))
        return built
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _parts(node.left, scope), _parts(node.right, scope)
        if left is None and right is None:
            return None
        return _concat(left or [[Hole(ast.unparse(node.left), "")]], right or [[Hole(ast.unparse(node.right), "")]])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        text = _parts(node.left, scope)
        if text and all(isinstance(p, str) for p in text[0]):
            args = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
            return [_percent("".join(text[0]), args)]
    if isinstance(node, ast.Name) and node.id in scope:
        return scope[node.id]
    if isinstance(node, ast.IfExp):
        body, orelse = _parts(node.body, scope), _parts(node.orelse, scope)
        if body is None and orelse is None:
            return None
        return ((body or []) + (orelse or []))[:MAX_ALTERNATIVES]
    return None


def _hole(value: ast.FormattedValue, scope: dict[str, Alternatives]) -> Alternatives:
    """An f-string's placeholder: a string it can only be (a name built above, a conditional between
    literals) is spelled out; anything else stays a hole."""
    if value.format_spec is None and isinstance(value.value, (ast.Name, ast.IfExp)):
        spelled = _parts(value.value, scope)
        if spelled is not None:
            return spelled
    spec = ast.unparse(value.format_spec)[2:-1] if value.format_spec is not None else ""
    return [[Hole(ast.unparse(value.value), spec)]]


_PERCENT = re.compile(r"%(?P<spec>[-+ #0]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%])")


def _percent(text: str, args: list[ast.expr]) -> list[Part]:
    """A `%` format (or a logger's message with its arguments) as parts."""
    parts: list[Part] = []
    position, index = 0, 0
    for found in _PERCENT.finditer(text):
        parts.append(text[position:found.start()])
        spec = found["spec"]
        if spec == "%":
            parts.append("%")
        else:
            expr = ast.unparse(args[index]) if index < len(args) else "?"
            index += 1
            parts.append(Hole(expr, "" if spec[-1] in "sra" else spec))
        position = found.end()
    parts.append(text[position:])
    return [p for p in parts if p != ""]


def _message(call: ast.Call, scope: dict[str, Alternatives]) -> Alternatives | None:
    if not call.args:
        return None
    alternatives = _parts(call.args[0], scope)
    is_logger = isinstance(call.func, ast.Attribute) and call.func.attr in LOG_METHODS
    if alternatives and is_logger and len(call.args) > 1:
        return [_percent("".join(parts), list(call.args[1:])) if all(isinstance(p, str) for p in parts) else parts
                for parts in alternatives]
    return alternatives


def _is_message_call(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr in LOG_METHODS
    return isinstance(func, ast.Name) and (func.id == "print" or func.id.endswith(("Error", "Exception")))


def _scopes(tree: ast.Module) -> Iterator[ast.AST]:
    yield tree
    yield from (node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function (or module) body, not those of the functions nested in it, in source order."""
    stack = list(reversed(list(ast.iter_child_nodes(scope))))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


def messages(source: str) -> Iterator[tuple[int, list[Part]]]:
    """(line, template) of every message a module's source logs, prints or raises. A name built up with `=`
    and `+=` in one function (`msg = f"Decode batch. ..."; msg += f"accept len: ..."`) is followed: every
    appended piece is kept, as if each optional branch were taken."""
    tree = ast.parse(source)
    for scope in _scopes(tree):
        built: dict[str, Alternatives] = {}
        for node in _own_nodes(scope):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                parts = _parts(node.value, built)
                if parts is not None:
                    built[node.targets[0].id] = parts
            elif (isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add)
                  and isinstance(node.target, ast.Name) and node.target.id in built):
                parts = _parts(node.value, built)
                if parts is not None:
                    built[node.target.id] = _concat(built[node.target.id], parts)
            elif isinstance(node, ast.Call) and _is_message_call(node):
                for parts in _message(node, built) or []:
                    yield node.lineno, parts


def literal_text(parts: list[Part]) -> str:
    return "".join(p if isinstance(p, str) else "\x00" for p in parts)


def template_text(parts: list[Part]) -> str:
    return "".join(p if isinstance(p, str) else "{" + p.expr + (":" + p.spec if p.spec else "") + "}"
                   for p in parts)


# ------------------------------------------------------------------------------------------ samples
_INTEGER_WORDS = re.compile(r"tokens|token_num|size|_len|\blen\(|num|step|layers|\bbs\b|count|rank|block|max_|ct\b")
_FLOAT_WORDS = ("mem", "gb", "usage", "elapsed", "time", "tic", "accept", "rate", "throughput", "ratio", "latency")
# Placeholders that name a thing rather than a number, by the expression's name: what SGLang puts there.
_NAMED = (("quant_str", "quant=fp8, fmt=e4m3"), ("__name__", "Qwen3MoeForCausalLM"), ("__class__", "Qwen3MoeForCausalLM"),
          ("dtype", "torch.bfloat16"), ("allocation_label", "Full"), ("role", "target"), ("device", "cuda"))


def sample(hole: Hole, index: int) -> str:
    """A value for one placeholder: by its format spec, else by the expression's name. Numbers differ per
    hole (12.34, 13.34, ...) so a test can tell which one the parser took."""
    spec, lowered = hole.spec, hole.expr.lower()
    float_spec = re.fullmatch(r"[-+ #0]*\d*\.(\d+)[fFeEgG%]", spec)
    if float_spec:
        return f"{12.34 + index:.{int(float_spec[1])}f}"
    if spec and spec[-1] in "diouxX":
        return str(100 + index)
    for word, value in _NAMED:
        if word in lowered:
            # `{quant_str + ', ' if quant_str else ''}`: the separator is part of the placeholder
            return value + (", " if word == "quant_str" and "', '" in hole.expr else "")
    if _INTEGER_WORDS.search(lowered) and not any(word in lowered for word in ("mem", "gb", "bytes")):
        return str(100 + index)
    if any(word in lowered for word in _FLOAT_WORDS):
        return f"{12.34 + index:.2f}"
    return "x"


def render(parts: list[Part]) -> str:
    holes = 0
    text = []
    for part in parts:
        if isinstance(part, str):
            text.append(part)
        else:
            text.append(sample(part, holes))
            holes += 1
    return "".join(text)


# ------------------------------------------------------------------------------------------ releases
def python_files(root: Path) -> Iterator[tuple[str, str]]:
    """(path under sglang/, source) of a wheel's or an unpacked tree's runtime modules (srt/, not tests)."""
    if root.suffix == ".whl":
        with zipfile.ZipFile(root) as wheel:
            for name in sorted(wheel.namelist()):
                if name.startswith("sglang/srt/") and name.endswith(".py"):
                    yield name.removeprefix("sglang/"), wheel.read(name).decode("utf-8", "replace")
        return
    package = root / "sglang" if (root / "sglang").is_dir() else root
    for path in sorted((package / "srt").rglob("*.py")):
        yield path.relative_to(package).as_posix(), path.read_text(encoding="utf-8", errors="replace")


def marker_of(parts: list[Part]) -> tuple[str, str] | None:
    text = literal_text(parts)
    return next(((marker, reads) for marker, reads in MARKERS if re.search(marker, text)), None)


def extract(version: str, root: Path) -> list[dict[str, object]]:
    """Every marked message of one release."""
    found = []
    for path, source in python_files(root):
        try:
            templates = list(messages(source))
        except SyntaxError:
            continue
        for line, parts in templates:
            marked = marker_of(parts)
            if marked is None:
                continue
            found.append({"release": version, "file": path, "line": line, "marker": marked[0], "reads": marked[1],
                          "template": template_text(parts), "sample": render(parts)})
    return found


def merge(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    """One entry per distinct template, with every release (and its file:line) that logs it."""
    merged: dict[str, dict[str, object]] = {}
    for entry in entries:
        key = str(entry["template"])
        where = f"{entry['release']} {entry['file']}:{entry['line']}"
        if key in merged:
            merged[key]["releases"].append(where)  # type: ignore[union-attr]
            continue
        merged[key] = {"marker": entry["marker"], "reads": entry["reads"], "template": key,
                       "sample": entry["sample"], "releases": [where]}
    return sorted(merged.values(), key=lambda e: (str(e["reads"]), str(e["template"])))


def pip_download(version: str, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", f"sglang=={version}", "--no-deps", "-d", str(into),
                    "--quiet"], check=True)
    return next(into.glob(f"sglang-{version}-*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", action="append", default=[], metavar="VERSION=PATH",
                        help="a release's wheel or unpacked tree instead of downloading it")
    parser.add_argument("--add", action="append", default=[], metavar="VERSION", help="a release beyond RELEASES")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.source)
    versions = list(dict.fromkeys([*RELEASES, *args.add, *given]))
    entries = []
    with tempfile.TemporaryDirectory() as scratch:
        for version in versions:
            root = Path(given[version]) if version in given else pip_download(version, Path(scratch))
            found = extract(version, root)
            print(f"{version}: {len(found)} marked messages", file=sys.stderr)
            entries += found
    merged = merge(entries)
    document = {"kind": "harness.sglang_log_formats", "releases": versions, "formats": merged}
    args.out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(merged)} distinct templates from {len(versions)} releases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
