"""The flags of each engine's command line that harness sets or reads itself, from its spec
(harness.engine_specs): the managed flags a suite must not pass, the sizing flags that make two memory figures
comparable, the memory fraction. The config layer (harness.suite) and the adapters (harness.engines) read the
same spec, so the two never disagree and loading a suite imports no adapter.
"""

from __future__ import annotations

from harness.engine_specs import ENGINES


def refused_flag(engine: str, arg: str) -> str | None:
    """The managed flag that `arg` would set on this engine, or None. The engines parse with argparse, which
    expands any unambiguous prefix (`--hos` is `--host`) and vLLM reads `_` as `-`: so an exact name, an
    abbreviation and an underscore spelling are all refused (argparse's allow_abbrev=False, for our flags)."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    flag = arg.split("=", 1)[0]
    dashes = len(flag) - len(flag.lstrip("-"))
    flag = flag[:dashes] + flag[dashes:].replace("_", "-")
    for managed in sorted(ENGINES[engine].managed_flags):
        if managed == flag or (len(flag) > dashes and managed.startswith(flag)):
            return managed
    return None


def sizing_flags(engine: str, args: list[str], env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The sizing flags among a server's arguments (`--flag value`, `--flag=value`, or a bare switch: "true")
    and environment, sorted: what makes two runs' memory pools comparable."""
    wanted = ENGINES[engine].sizing_flags if engine in ENGINES else frozenset()
    found: dict[str, str] = {}
    for index, arg in enumerate(args):
        flag, _, inline = arg.partition("=")
        flag = flag.replace("_", "-") if flag.startswith("--") else flag
        if flag not in wanted:
            continue
        following = args[index + 1] if index + 1 < len(args) else None
        if inline:
            found[flag] = inline
        elif following is not None and not following.startswith("--"):
            found[flag] = following
        else:
            found[flag] = "true"
    found.update({name: str(value) for name, value in env.items() if name in wanted})
    return tuple(sorted(found.items()))


# Above this a server leaves its GPU nothing for the CUDA context and activations.
MAX_MEMORY_FRACTION = 0.95


def memory_fraction_args(engine: str, memory_gib: float, device_gib: float | None) -> tuple[str, str]:
    """The engine's fraction flag that gives a server `memory_gib` of a GPU of `device_gib` (rounded to three
    decimals, as SGLang prints it); a placeholder where the GPU is not known (a dry run). Raises ValueError when
    the GPU is too small."""
    flag = ENGINES[engine].memory_fraction_flag
    if flag is None:
        raise ValueError(f"the {engine} engine takes no memory fraction")
    if device_gib is None:
        return flag, f"<{memory_gib:g} GiB / GPU memory>"
    fraction = round(memory_gib / device_gib, 3)
    if fraction > MAX_MEMORY_FRACTION:
        raise ValueError(f"memory_gib {memory_gib:g} is {fraction:.0%} of a {device_gib:g} GiB GPU "
                         f"(at most {MAX_MEMORY_FRACTION:.0%})")
    return flag, f"{fraction:g}"
