"""The user-facing error types, caught once in `harness.cli.main`.

Each carries the process exit code it maps to, so that the CLI prints one line and exits
without a traceback (style convention 4).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_INFRA = 3
EXIT_INTERNAL = 4  # a bug in harness itself, outside any cell; what was measured is still written
EXIT_INTERRUPTED = 130


class HarnessError(Exception):
    """An error the user can fix; printed as one line."""

    exit_code = EXIT_USAGE


class ConfigError(HarnessError):
    """A suite, baseline or result file is malformed or inconsistent."""

    exit_code = EXIT_USAGE


class InfraError(HarnessError):
    """The machine or engine failed in a way that says nothing about the model."""

    exit_code = EXIT_INFRA
