"""Server processes: launch in their own session, stream the log, wait for readiness, tear down.

Readiness is a poll with a deadline while the process lives (never a bare sleep); a fatal log line
or an exit ends the wait at once. Teardown interrupts, terminates, then kills the whole tree,
then checks that nothing of it survived (nox `popen.shutdown_process`, SGLang `kill_process_tree`).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness import interrupts, secrets
from harness.engines import leftovers
from harness.engines.base import ServerCommand
from harness.engines.failures import Signature, first_fatal_line
from harness.transport import is_healthy

LOG_TAIL_LINES = 80


class LogWatcher(threading.Thread):
    """Copies the server's output to its log file line by line and watches for key lines."""

    def __init__(self, stream, log_path: Path, ready_line: str | None):
        super().__init__(name="harness-log-watcher", daemon=True)
        self._stream = stream
        self._log_path = log_path
        self._ready_line = ready_line
        self.ready_seen = threading.Event()
        self.fatal: tuple[Signature, str] | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.line_count = 0

    def run(self) -> None:
        with open(self._log_path, "a", encoding="utf-8") as log:
            for raw in iter(self._stream.readline, b""):
                line = secrets.redact(raw.decode("utf-8", "replace"))  # a server may echo its token or key
                log.write(line)
                log.flush()
                self.line_count += 1
                self.tail.append(line.rstrip("\n"))
                if self._ready_line and self._ready_line in line:
                    self.ready_seen.set()
                if self.fatal is None:
                    signature = first_fatal_line(line)
                    if signature is not None:
                        self.fatal = (signature, line.strip())
        self._stream.close()


@dataclass
class ServerProcess:
    command: ServerCommand
    process: subprocess.Popen
    log_path: Path
    watcher: LogWatcher
    started: float
    # psutil.Process objects, not pids: they check the create time, so a reused pid is never signalled.
    known: dict[int, psutil.Process] = field(default_factory=dict)
    # Its leftovers record (harness.engines.leftovers): the marker in its environment, its session, start time.
    record: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def remember_tree(self) -> None:
        """Record every descendant and every member of the server's session, so that orphans whose
        parent died (re-parented away from the tree) are still found."""
        try:
            root = self.known.get(self.pid) or psutil.Process(self.pid)
            self.known.setdefault(self.pid, root)
            for child in root.children(recursive=True):
                self.known.setdefault(child.pid, child)
        except psutil.Error:
            pass
        for member in _session_members(self.pid):
            self.known.setdefault(member.pid, member)


def launch(command: ServerCommand, log_path: Path, *, ready_line: str | None) -> ServerProcess:
    """Start the server in a new session (its own process group) with stdout+stderr to the log, and record
    it (harness.engines.leftovers) so that a harness killed before its teardown leaves nothing unfound.

    Raises OSError when the server cannot be started at all (no such interpreter, not executable)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    secrets.register_env(command.env)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"# harness: {command.display()}\n")
        for key, value in sorted(secrets.redact_env(command.env).items()):
            log.write(f"# harness: env {key}={value}\n")
    server_id = leftovers.new_server_id()
    process = subprocess.Popen(  # noqa: S603 - an argv list, never a shell string
        list(command.argv), env={**os.environ, **command.env, leftovers.MARKER: server_id},
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    record = leftovers.record(server_id, process.pid, command.shown_argv(), log_path.parent)
    watcher = LogWatcher(process.stdout, log_path, ready_line)
    watcher.start()
    server = ServerProcess(command, process, log_path, watcher, time.monotonic(), record=record)
    server.remember_tree()
    return server


def _session_members(session_id: int) -> list[psutil.Process]:
    """Processes of a session: the server started one of its own, and its children stay in it
    unless they call setsid (those only the tree snapshot finds)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id:
                members.append(process)
        except (OSError, psutil.Error):
            continue
    return members


@dataclass(frozen=True)
class ReadyOutcome:
    ready: bool
    elapsed_s: float
    reason: str = ""  # "exited", "fatal", "timeout" when not ready
    fatal_line: str | None = None


def wait_ready(server: ServerProcess, *, health_paths: tuple[str, ...], needs_ready_line: bool,
               timeout_s: float, poll_max_s: float = 2.0) -> ReadyOutcome:
    """Poll readiness until the deadline, as long as the process lives and logs nothing fatal."""
    deadline = server.started + timeout_s
    interval = 0.05
    while True:
        elapsed = time.monotonic() - server.started
        server.remember_tree()
        if not server.alive():
            return ReadyOutcome(False, elapsed, "exited")
        if server.watcher.fatal is not None:
            return ReadyOutcome(False, elapsed, "fatal", server.watcher.fatal[1])
        line_ok = not needs_ready_line or server.watcher.ready_seen.is_set()
        if line_ok and is_healthy(server.command.base_url, health_paths, timeout=min(5.0, timeout_s)):
            return ReadyOutcome(True, time.monotonic() - server.started)
        if time.monotonic() >= deadline:
            return ReadyOutcome(False, elapsed, "timeout")
        # Back off, but wake at once when the ready line arrives; stop at once when the run stops.
        if line_ok:
            interrupts.sleep(interval)
        else:
            server.watcher.ready_seen.wait(timeout=min(interval, 0.2))
            interrupts.check()
        interval = min(interval * 1.5, poll_max_s)


@dataclass(frozen=True)
class TeardownReport:
    elapsed_s: float
    signals: tuple[str, ...]
    survivors: tuple[int, ...]
    exit_code: int | None


def _living(known: dict[int, psutil.Process]) -> list[psutil.Process]:
    living = []
    for process in known.values():
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                living.append(process)
        except psutil.Error:
            continue
    return living


def teardown(server: ServerProcess, *, grace_s: float = 5.0, kill_wait_s: float = 5.0) -> TeardownReport:
    """Interrupt, terminate, then kill the whole tree; report any process that survived."""
    start = time.monotonic()
    server.remember_tree()
    if server.record:  # and whatever carries its marker, wherever it went (setsid, double fork)
        for process in leftovers.processes_of(server.record):
            server.known.setdefault(process.pid, process)
    signals_sent: list[str] = []
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, grace_s), (signal.SIGKILL, kill_wait_s)):
        server.remember_tree()
        living = _living(server.known)
        if not living:
            break
        signals_sent.append(sig.name)
        try:
            os.killpg(server.pid, sig)  # the group reaches children that have not left it
        except (ProcessLookupError, PermissionError):
            pass
        for process in living:  # and the snapshot reaches those that did (setsid, re-parented orphans)
            try:
                process.send_signal(sig)
            except psutil.Error:
                continue
        _wait_gone(server, wait)
    try:
        exit_code = server.process.wait(timeout=kill_wait_s)
    except subprocess.TimeoutExpired:
        exit_code = None
    server.watcher.join(timeout=2.0)
    survivors = tuple(sorted(p.pid for p in _living(server.known)))
    if not survivors and server.record:
        leftovers.forget(server.record["server_id"], server.log_path.parent)
    return TeardownReport(round(time.monotonic() - start, 3), tuple(signals_sent), survivors, exit_code)


def _wait_gone(server: ServerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.process.poll()  # reap the root so it does not linger as a zombie
        if not _living(server.known):
            return
        time.sleep(0.02)


def log_tail(server: ServerProcess, lines: int = 40) -> str:
    return "\n".join(list(server.watcher.tail)[-lines:])
