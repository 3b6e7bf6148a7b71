"""Servers a killed harness left behind: recorded at launch, found and torn down by the next `harness run`.

A SIGKILL (or the OOM killer, or a power-cut of the runner's agent) gives harness no chance to tear its
servers down, and they run in sessions of their own, so nothing else stops them: they keep their GPUs.
Each launch therefore leaves two records:
- `server.pid.json` in the cell's directory (what ran there, for a person reading the run directory), and
- one file per server in a host-wide registry (`$HARNESS_STATE_DIR`, else `$XDG_RUNTIME_DIR/harness/servers`,
  else `~/.cache/harness/servers`),
both naming the server's pid, start time and session, the owning harness's pid and start time, and a marker
(`HARNESS_SERVER_ID`) set in the server's environment, which every process it starts inherits. A clean
teardown removes both. `sweep()` tears down the servers of every record whose harness is gone.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

MARKER = "HARNESS_SERVER_ID"
CELL_RECORD = "server.pid.json"


def registry_dir() -> Path:
    if os.environ.get("HARNESS_STATE_DIR"):
        return Path(os.environ["HARNESS_STATE_DIR"]) / "servers"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "harness" / "servers"  # tmpfs: gone at reboot, as the servers are
    return Path.home() / ".cache" / "harness" / "servers"


def new_server_id() -> str:
    return uuid.uuid4().hex


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def record(server_id: str, pid: int, argv: list[str], cell_dir: Path) -> dict[str, Any]:
    """Write both records of a server just launched; returns the record."""
    body = {"server_id": server_id, "pid": pid, "session": pid, "create_time": _create_time(pid),
            "argv": argv, "owner_pid": os.getpid(), "owner_create_time": _create_time(os.getpid()),
            "cell_dir": str(cell_dir), "started": time.time()}
    text = json.dumps(body, indent=2) + "\n"
    (cell_dir / CELL_RECORD).write_text(text)
    try:
        registry_dir().mkdir(parents=True, exist_ok=True)
        (registry_dir() / f"{server_id}.json").write_text(text)
    except OSError:
        pass  # an unwritable home: the cell's own record still says what ran
    return body


def forget(server_id: str, cell_dir: Path | None) -> None:
    """The server is gone: remove both records."""
    paths = [registry_dir() / f"{server_id}.json"] + ([cell_dir / CELL_RECORD] if cell_dir else [])
    for path in paths:
        try:
            path.unlink()
        except OSError:
            continue


def _owner_alive(body: dict[str, Any]) -> bool:
    created = _create_time(int(body.get("owner_pid", 0) or 0))
    recorded = body.get("owner_create_time")
    return created is not None and (recorded is None or abs(created - recorded) < 1.0)


def processes_of(body: dict[str, Any]) -> list[psutil.Process]:
    """The live processes of a recorded server: those carrying its marker, and members of its session
    started no earlier than the server (a session id alone could be a reused pid's)."""
    found = []
    started = (body.get("create_time") or body.get("started") or 0) - 1.0
    for process in psutil.process_iter(["pid", "create_time"]):
        try:
            if process.pid == os.getpid() or process.info["create_time"] < started:
                continue
            try:
                marked = process.environ().get(MARKER) == body["server_id"]
            except (psutil.AccessDenied, psutil.ZombieProcess):
                marked = False
            if marked or (os.getsid(process.pid) == body["session"] and process.status() != psutil.STATUS_ZOMBIE):
                found.append(process)
        except (OSError, psutil.Error):
            continue
    return found


def terminate(processes: list[psutil.Process], grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL what is left after `grace_s`; returns the pids still alive after that."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for process in processes:
            try:
                process.send_signal(sig)
            except psutil.Error:
                continue
        _, processes = psutil.wait_procs(processes, timeout=wait)
        if not processes:
            return []
    return [p.pid for p in processes]


def sweep(say: Callable[[str], None] = lambda line: None) -> int:
    """Tear down every recorded server whose harness is gone; returns how many processes were stopped."""
    directory = registry_dir()
    if not directory.is_dir():
        return 0
    stopped = 0
    for path in sorted(directory.glob("*.json")):
        try:
            body = json.loads(path.read_text())
            if not isinstance(body, dict) or not isinstance(body.get("server_id"), str):
                raise ValueError("not a server record")
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _owner_alive(body):
            continue  # a harness still running on this host owns it
        processes = processes_of(body)
        if processes:
            left = terminate(processes)
            stopped += len(processes) - len(left)
            say(f"tore down {len(processes) - len(left)} process(es) of a server left by harness pid "
                f"{body.get('owner_pid')} (gone) in {body.get('cell_dir')}"
                + (f"; still alive: {left}" if left else ""))
            if left:
                continue
        forget(body["server_id"], Path(body["cell_dir"]) if body.get("cell_dir") else None)
    return stopped
