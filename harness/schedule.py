"""Cells packed onto one host's GPUs: concurrently when their GPU counts fit, largest first, never more
GPUs in use than the host has (two TP4 cells share 8 GPUs; TP1 cells run eight at a time).

With `--share-gpus N` a device is listed N times in `host_gpus` (one slot per cell that may share it); a cell
always gets distinct devices (a TP2 cell two GPUs, never one GPU twice), the least shared first.

Each cell runs in a thread of its own (the work is waiting on a server process); every result reaches
the caller on the calling thread, in completion order, so that results are written as they come.
Ctrl-C reaches the main thread only: the scheduler then sets the run's stop event, which every running cell's
thread sees at its next wait (the launcher's readiness poll, the eval transport: harness.interrupts.stop_on);
each tears its server down and returns what it measured. Nothing is raised into a thread from outside.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from harness import interrupts
from harness.matrix import Cell
from harness.results import CellResult

CellRunner = Callable[[Cell, list[int]], CellResult]


@dataclass(frozen=True)
class Placement:
    cell: Cell
    devices: tuple[int, ...]


class CellInterrupted(Exception):  # noqa: N818 - reads as what happened, like KeyboardInterrupt
    """Ctrl-C during a cell: the server is already torn down and what was measured is in `result`."""

    def __init__(self, result: CellResult):
        super().__init__("interrupted")
        self.result = result


def pack_order(cells: list[Cell]) -> list[Cell]:
    """Largest first; within a size, the suite's order (sorted is stable)."""
    return sorted(cells, key=lambda cell: -cell.gpus)


def fits(cell: Cell, free_gpus: int, cpu_busy: bool) -> bool:
    # Cells without GPUs (CPU engines) share the host's cores: one at a time.
    return (not cpu_busy) if cell.gpus == 0 else cell.gpus <= free_gpus


def take_devices(free: list[int], count: int) -> tuple[tuple[int, ...], list[int]]:
    """`count` distinct devices from the free slots, those with the most free slots first (then by index),
    and the slots left. The caller checked `fits` with the number of distinct free devices."""
    distinct = sorted(set(free), key=lambda device: (-free.count(device), device))
    if len(distinct) < count:
        raise ValueError(f"{count} distinct devices asked, {len(distinct)} free")
    taken = tuple(sorted(distinct[:count]))
    left = list(free)
    for device in taken:
        left.remove(device)
    return taken, left


class Packer:
    """The placement rule, one home for the run (`run_packed`) and its ideal (`simulate`): the cells waiting,
    largest first; each start takes distinct free devices; CPU cells one at a time; at most `max_parallel`
    running. A cell needing more distinct GPUs than the host has is never placed (see `too_large`)."""

    def __init__(self, cells: list[Cell], host_gpus: list[int], max_parallel: int | None = None):
        if max_parallel is not None and max_parallel < 1:
            raise ValueError(f"max_parallel {max_parallel}: must be at least 1 (no cell could ever start)")
        self.pending = [cell for cell in pack_order(cells) if cell.gpus <= len(set(host_gpus))]
        self.free = sorted(host_gpus)
        self.cpu_busy = False
        self.running = 0
        self.max_parallel = max_parallel

    def start_now(self) -> list[Placement]:
        """The cells that start now, each with its devices (taken until `release`)."""
        started = []
        for cell in list(self.pending):
            if self.max_parallel is not None and self.running >= self.max_parallel:
                break
            if fits(cell, len(set(self.free)), self.cpu_busy):
                self.pending.remove(cell)
                devices, self.free = take_devices(self.free, cell.gpus)
                self.cpu_busy = self.cpu_busy or cell.gpus == 0
                self.running += 1
                started.append(Placement(cell, devices))
        return started

    def release(self, placement: Placement) -> None:
        self.free = sorted(self.free + list(placement.devices))
        self.cpu_busy = self.cpu_busy and placement.cell.gpus != 0
        self.running -= 1


def simulate(durations: dict[str, float], cells: list[Cell], host_gpus: int) -> float:
    """The makespan of this packing with known durations and no overhead: the ideal a run is held to."""
    import heapq

    packer, clock = Packer(cells, list(range(host_gpus))), 0.0
    running: list[tuple[float, int, Placement]] = []  # (end, sequence, placement)
    sequence = 0
    while packer.pending or running:
        for placement in packer.start_now():
            heapq.heappush(running, (clock + durations[placement.cell.id], sequence, placement))
            sequence += 1
        clock, _, placement = heapq.heappop(running)
        packer.release(placement)
    return clock


Finished = tuple[Placement, "CellResult | None", "BaseException | None"]


def run_packed(cells: list[Cell], host_gpus: list[int], run_one: CellRunner, *,
               on_start: Callable[[Placement], None] = lambda placement: None,
               on_done: Callable[[CellResult], None] = lambda result: None,
               max_parallel: int | None = None) -> tuple[list[CellResult], bool]:
    """Run every cell on its own GPUs; returns the results (completion order) and whether Ctrl-C stopped it.

    A cell that needs more GPUs than the host has can never start: it is left out of the results, and so
    shows as MISSING in the comparison; callers check `too_large` first to say why.
    """
    packer = Packer(cells, host_gpus, max_parallel)
    running: dict[str, threading.Thread] = {}
    finished: queue.Queue[Finished] = queue.Queue()
    results: list[CellResult] = []
    # Set once the run stops: every cell's thread sees it at its next wait (harness.interrupts.stop_on).
    stopping = threading.Event()

    def work(placement: Placement) -> None:
        if stopping.is_set():  # started just as the run stopped: never launched, left for --resume
            finished.put((placement, None, None))
            return
        try:
            with interrupts.stop_on(stopping):
                finished.put((placement, run_one(placement.cell, list(placement.devices)), None))
        except CellInterrupted as interrupted:
            finished.put((placement, interrupted.result, interrupted))
        except BaseException as problem:  # noqa: BLE001 - re-raised on the main thread
            finished.put((placement, None, problem))

    def collect(placement: Placement, result: CellResult | None, problem: BaseException | None) -> bool:
        running.pop(placement.cell.id, None)
        packer.release(placement)
        if result is not None:
            results.append(result)
            on_done(result)
        if problem is not None and not isinstance(problem, CellInterrupted):
            raise problem
        return isinstance(problem, CellInterrupted)

    try:
        while packer.pending or running:
            for placement in packer.start_now():
                on_start(placement)
                thread = threading.Thread(target=work, args=(placement,), name=f"cell {placement.cell.id}",
                                          daemon=True)
                running[placement.cell.id] = thread
                thread.start()
            if collect(*_next_finished(finished)):
                raise KeyboardInterrupt  # a cell saw Ctrl-C first (a single-threaded caller's signal)
    except BaseException as stopped:  # Ctrl-C, or a cell's runner failed in harness itself
        # Either way, no server may outlive the run: the other cells stop as on Ctrl-C and keep their results.
        stopping.set()
        while running:
            try:
                collect(*finished.get(timeout=0.2))
            except (queue.Empty, KeyboardInterrupt):  # a second Ctrl-C: the cells are stopping already
                continue
            except Exception:  # noqa: BLE001 - the first failure is the one re-raised below
                continue
        if isinstance(stopped, KeyboardInterrupt):
            return results, True
        raise
    return results, False


def _next_finished(finished: queue.Queue[Finished]) -> Finished:
    while True:  # a timeout, so that Ctrl-C is seen promptly on every platform
        try:
            return finished.get(timeout=0.2)
        except queue.Empty:
            continue


def too_large(cells: list[Cell], host_gpus: list[int]) -> list[Cell]:
    """The cells needing more distinct GPUs than the host has (shared slots of one GPU count once)."""
    return [cell for cell in cells if cell.gpus > len(set(host_gpus))]

