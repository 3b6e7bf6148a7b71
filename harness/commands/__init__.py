"""The command line's commands: one module each (asv's `commands/`), each exposing a `COMMAND`
(harness.commands.base), and the table below, which the CLI builds its parser and dispatch from.
Adding a command is adding its module and one entry here."""

from __future__ import annotations

from harness.commands import (
    baseline,
    compare,
    data,
    evaluate,
    fixes,
    gate,
    history,
    listing,
    local,
    memory,
    merge,
    plan,
    preflight,
    publish,
    report,
    run,
    upgrade,
    validate,
)
from harness.commands.base import Command

# In the order `harness --help` lists them.
COMMANDS: tuple[Command, ...] = (
    listing.COMMAND,
    run.COMMAND,
    plan.COMMAND,
    merge.COMMAND,
    gate.COMMAND,
    validate.COMMAND,
    compare.COMMAND,
    baseline.COMMAND,
    report.COMMAND,
    memory.COMMAND,
    evaluate.COMMAND,
    data.COMMAND,
    local.COMMAND,
    preflight.COMMAND,
    fixes.COMMAND,
    history.COMMAND,
    publish.COMMAND,
    upgrade.COMMAND,
)

BY_NAME: dict[str, Command] = {command.name: command for command in COMMANDS}
