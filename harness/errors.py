"""The user-facing error types, caught once in `harness.cli.main`.

Each carries the process exit code it maps to, so that the CLI prints one line and exits
without a traceback (style convention 4).
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_INFRA = 3
EXIT_INTERNAL = 4  # a bug in harness itself, outside any cell; what was measured is still written
EXIT_INTERRUPTED = 130

# Several runs' codes combined (`harness gate`, the nightly of many suites, the Slurm executor's shards): the
# worst wins, best first. 4 and 130 rank above 1 because both mean the verdict is incomplete: a regression
# found beside them may not be the only one. Then 1 (a regression) > 3 (infrastructure) > 2 (configuration).
EXIT_RANKING = (EXIT_OK, EXIT_USAGE, EXIT_INFRA, EXIT_REGRESSION, EXIT_INTERRUPTED, EXIT_INTERNAL)
EXIT_MEANINGS = {EXIT_OK: "pass", EXIT_REGRESSION: "regression", EXIT_USAGE: "configuration",
                 EXIT_INFRA: "infrastructure", EXIT_INTERNAL: "internal error", EXIT_INTERRUPTED: "interrupted"}

EXIT_CODES_HELP = """exit codes:
  0    every gated figure passed (or improved, or has no baseline yet)
  1    a regression: a significant and large accuracy drop, memory over tolerance or ceiling,
       accept length too low, or a model-loading failure the guarded fixes removed
  2    usage or configuration error (a protocol that differs from the baseline's, a failed preflight)
  3    infrastructure failure without regression (server crash, timeout, OOM, missing cell)
  4    internal error: a bug in harness outside any cell (traceback printed; what was measured is saved)
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP): servers torn down, what was measured is saved
several runs (`harness gate`): the worst, 4 > 130 > 1 > 3 > 2 > 0; any other code counts as 4
"""


def ranked_exit_code(code: int) -> int:
    """A code as the ranking reads it: one that harness never exits with (a process killed by a signal, a
    shell's 127) says that harness did not finish, so the verdict is incomplete: it counts as EXIT_INTERNAL."""
    return code if code in EXIT_RANKING else EXIT_INTERNAL


def worst_exit_code(codes: Iterable[int]) -> int:
    """The worst of several runs' exit codes by EXIT_RANKING (EXIT_OK for none)."""
    return max((ranked_exit_code(code) for code in codes), key=EXIT_RANKING.index, default=EXIT_OK)


class HarnessError(Exception):
    """An error the user can fix; printed as one line (and, for a syntax error, the excerpt of the file that
    shows where: its line and a caret under the column, printed as they are so that the caret stays in place)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str = "", excerpt: str = ""):
        super().__init__(message)
        self.excerpt = excerpt


def print_error(error: BaseException) -> None:
    """`harness: error: <line>` for each line of the message, then a HarnessError's excerpt as it is."""
    import sys

    for line in str(error).splitlines() or [""]:  # several problems of one file: one line each
        print(f"harness: error: {line}", file=sys.stderr)
    excerpt = getattr(error, "excerpt", "")
    if excerpt:
        print(excerpt.rstrip("\n"), file=sys.stderr)


class ConfigError(HarnessError):
    """A suite, baseline or result file is malformed or inconsistent."""

    exit_code = EXIT_USAGE


class ConfigErrors(ConfigError):
    """Several independent problems of one file, one line each (`harness validate` reports every one)."""

    def __init__(self, errors: list[ConfigError]):
        super().__init__("\n".join(str(error) for error in errors))
        self.errors = list(errors)


class InfraError(HarnessError):
    """The machine or engine failed in a way that says nothing about the model."""

    exit_code = EXIT_INFRA


def report_internal_error(error: BaseException) -> None:
    """A bug in harness: its traceback and one line saying so (exit EXIT_INTERNAL, never 1)."""
    import sys
    import traceback

    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    print(f"harness: internal error (a bug in harness, exit {EXIT_INTERNAL}): {type(error).__name__}: {error}",
          file=sys.stderr)
