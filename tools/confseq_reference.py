"""Record the goldens of harness.sequential's betting tests from the method authors' own code, `confseq`.

confseq 0.0.11 (PyPI, source only) does not build on Python 3.11 as released (its build pins pybind11 2.6,
which predates 3.11), and its betting module imports matplotlib, scipy and multiprocess at the top. The two
functions the gate mirrors, `betting.betting_mart` and `betting_strategies.lambda_predmix_eb`, are plain numpy:
this script takes their source from the sdist with `ast` and runs them with numpy alone (nothing of confseq
imported, nothing compiled), on fixed-seed inputs, and writes tests/golden/confseq/betting.json.gz; likewise
`betting.diversified_betting_mart` with constant bets, the paired PASS test (tests/golden/confseq/mixture.json.gz).

    python tools/confseq_reference.py                      # pip download confseq==0.0.11 --no-deps, read it
    python tools/confseq_reference.py --sdist confseq-0.0.11.tar.gz
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import math
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

VERSION = "0.0.11"
OUT = Path(__file__).resolve().parent.parent / "tests" / "golden" / "confseq" / "betting.json.gz"
MIXTURE_OUT = OUT.parent / "mixture.json.gz"
FUNCTIONS = {"betting.py": ("betting_mart", "diversified_betting_mart"),
             "betting_strategies.py": ("lambda_predmix_eb",)}
# harness.sequential.PASS_BET_SHARES, written out: the goldens hold confseq's numbers, not the gate's constants
PASS_BET_SHARES = (0.45, 0.65, 0.85, 0.95, 0.99)


def sdist(path: Path | None) -> Path:
    if path is not None:
        return path
    target = Path(tempfile.mkdtemp())
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "confseq",
                    f"confseq=={VERSION}", "-d", str(target)], check=True)
    return next(target.glob("confseq-*.tar.gz"))


def load_functions(archive: Path) -> dict:
    """confseq's functions, compiled from its own source, in a namespace holding numpy and math only."""
    namespace: dict = {"np": np, "math": math}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if name in FUNCTIONS and "/src/confseq/" in member.name:
                tree = ast.parse(tar.extractfile(member).read().decode())
                nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in FUNCTIONS[name]]
                exec(compile(ast.Module(nodes, type_ignores=[]), member.name, "exec"), namespace)  # noqa: S102
    missing = [f for names in FUNCTIONS.values() for f in names if f not in namespace]
    if missing:
        raise SystemExit(f"{archive}: no {missing} in the source")
    return namespace


def cases(rng: np.random.Generator) -> list[dict]:
    """Streams the gate sees (paired {0, 1/2, 1} at several discordance rates and drops; Bernoulli outcomes)
    and generic [0, 1] values, each against several null means, both sides, two alphas."""
    out = []
    for index in range(24):
        n = int(rng.integers(5, 300))
        kind = index % 4
        if kind == 0:  # paired, A/A-like
            x = rng.choice([0.0, 0.5, 1.0], size=n, p=[0.02, 0.96, 0.02])
        elif kind == 1:  # paired, a drop
            x = rng.choice([0.0, 0.5, 1.0], size=n, p=[0.15, 0.83, 0.02])
        elif kind == 2:  # one side's outcomes
            x = (rng.random(n) < rng.uniform(0.3, 0.97)).astype(float)
        else:
            x = rng.random(n)
        x = np.round(x, 6)  # the values stored are the values run
        alpha = (0.01, 0.05)[index % 2]
        tests = []
        for m in (0.5, 0.495, 0.45, round(float(rng.uniform(0.05, 0.95)), 6)):
            for theta in (1.0, 0.0):
                mart = namespace_["betting_mart"](x, m, alpha=alpha, theta=theta)
                tests.append({"m": m, "side": 1 if theta == 1.0 else -1,
                              "capital": [float(f"{v:.12g}") for v in mart]})
        out.append({"x": [float(v) for v in x], "alpha": alpha, "tests": tests})
    return out


def constant(share: float, against: float):
    """A confseq bet function that bets share / against at every step."""
    return lambda x, m: np.repeat(share / against, len(x))


def mixture_cases(rng: np.random.Generator) -> list[dict]:
    """The paired PASS test: confseq's diversified_betting_mart with one constant bet per share (share / m for
    the positive capital, share / (1 - m) for the negative), equal weights, no truncation beyond 1/m (trunc_scale
    1), on paired streams of several discordance rates and drops, and Bernoulli outcomes."""
    out = []
    for index in range(12):
        n = int(rng.integers(20, 600))
        if index % 4 == 3:
            x = (rng.random(n) < rng.uniform(0.3, 0.97)).astype(float)
        else:
            lost, gained = [(0.0, 0.0), (0.005, 0.005), (0.02, 0.01)][index % 4 if index % 4 < 3 else 0]
            x = rng.choice([0.0, 0.5, 1.0], size=n, p=[lost, 1 - lost - gained, gained])
        tests = []
        for m in (0.495, round(float(rng.uniform(0.05, 0.95)), 6)):
            for theta in (1.0, 0.0):
                positive = [constant(share, m) for share in PASS_BET_SHARES]
                negative = [constant(share, 1 - m) for share in PASS_BET_SHARES]
                mart = namespace_["diversified_betting_mart"](x, m, positive, negative, theta=theta, trunc_scale=1)
                tests.append({"m": m, "side": 1 if theta == 1.0 else -1,
                              "capital": [float(f"{v:.12g}") for v in mart]})
        out.append({"x": [float(v) for v in x], "shares": list(PASS_BET_SHARES), "tests": tests})
    return out


namespace_: dict = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", type=Path, help=f"confseq-{VERSION}.tar.gz (default: pip download it)")
    args = parser.parse_args()
    namespace_.update(load_functions(sdist(args.sdist)))
    body = {"source": f"confseq {VERSION}: betting.betting_mart (theta 1 or 0, trunc_scale 1/2, m_trunc) with "
                      f"betting_strategies.lambda_predmix_eb", "cases": cases(np.random.default_rng(20261205))}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # mtime 0: the same bytes every time
    OUT.write_bytes(gzip.compress((json.dumps(body, separators=(",", ":")) + "\n").encode(), mtime=0))
    print(f"{OUT}: {len(body['cases'])} cases")
    mixture = {"source": f"confseq {VERSION}: betting.diversified_betting_mart (theta 1 or 0, trunc_scale 1) with "
                         f"constant bets share / m (share / (1 - m) for theta 0)",
               "cases": mixture_cases(np.random.default_rng(20261206))}
    MIXTURE_OUT.write_bytes(gzip.compress((json.dumps(mixture, separators=(",", ":")) + "\n").encode(), mtime=0))
    print(f"{MIXTURE_OUT}: {len(mixture['cases'])} cases")


if __name__ == "__main__":
    main()
