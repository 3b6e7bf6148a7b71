"""Cells packed onto one host's GPUs: concurrently when their GPU counts fit, largest first, never more
GPUs in use than the host has (two TP4 cells share 8 GPUs; TP1 cells run eight at a time).

With `--share-gpus N` a device is listed N times in `host_gpus` (one slot per cell that may share it); a cell
always gets distinct devices (a TP2 cell two GPUs, never one GPU twice), the least shared first.

Each cell runs in a thread of its own (the work is waiting on a server process); every result reaches
the caller on the calling thread, in completion order, so that results are written as they come.
Ctrl-C reaches the main thread only: it is passed on to every running cell's thread, each of which
tears its server down and returns what it measured.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

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


def simulate(durations: dict[str, float], cells: list[Cell], host_gpus: int) -> float:
    """The makespan of this packing with known durations and no overhead: the ideal a run is held to."""
    import heapq

    pending, free, cpu_busy, clock = pack_order(cells), host_gpus, False, 0.0
    running: list[tuple[float, int, str, int]] = []  # (end, sequence, cell id, gpus)
    sequence = 0
    while pending or running:
        for cell in list(pending):
            if fits(cell, free, cpu_busy):
                pending.remove(cell)
                free -= cell.gpus
                cpu_busy = cpu_busy or cell.gpus == 0
                heapq.heappush(running, (clock + durations[cell.id], sequence, cell.id, cell.gpus))
                sequence += 1
        clock, _, _, gpus = heapq.heappop(running)
        free += gpus
        cpu_busy = cpu_busy and gpus != 0
    return clock


def run_packed(cells: list[Cell], host_gpus: list[int], run_one: CellRunner, *,
               on_start: Callable[[Placement], None] = lambda placement: None,
               on_done: Callable[[CellResult], None] = lambda result: None,
               max_parallel: int | None = None) -> tuple[list[CellResult], bool]:
    """Run every cell on its own GPUs; returns the results (completion order) and whether Ctrl-C stopped it.

    A cell that needs more GPUs than the host has can never start: it is left out of the results, and so
    shows as MISSING in the comparison; callers check `too_large` first to say why.
    """
    pending = [cell for cell in pack_order(cells) if cell.gpus <= len(set(host_gpus))]
    free = sorted(host_gpus)
    cpu_busy = False
    running: dict[str, tuple[threading.Thread, Placement]] = {}
    finished: queue.Queue[tuple[Placement, CellResult | None, BaseException | None]] = queue.Queue()
    results: list[CellResult] = []

    stopping = threading.Event()
    told: set[int] = set()  # threads already sent their interrupt: never twice, or a teardown could be cut short

    def work(placement: Placement) -> None:
        if stopping.is_set():  # started just as the run stopped: never launched, left for --resume
            finished.put((placement, None, None))
            return
        try:
            finished.put((placement, run_one(placement.cell, list(placement.devices)), None))
        except CellInterrupted as interrupted:
            finished.put((placement, interrupted.result, interrupted))
        except BaseException as problem:  # noqa: BLE001 - re-raised on the main thread
            finished.put((placement, None, problem))

    def collect(placement: Placement, result: CellResult | None, problem: BaseException | None) -> bool:
        nonlocal free, cpu_busy
        running.pop(placement.cell.id, None)
        free = sorted(free + list(placement.devices))
        cpu_busy = cpu_busy and placement.cell.gpus != 0
        if result is not None:
            results.append(result)
            on_done(result)
        if problem is not None and not isinstance(problem, CellInterrupted):
            raise problem
        return isinstance(problem, CellInterrupted)

    try:
        while pending or running:
            for cell in list(pending):
                if max_parallel is not None and len(running) >= max_parallel:
                    break
                if fits(cell, len(set(free)), cpu_busy):
                    pending.remove(cell)
                    devices, free = take_devices(free, cell.gpus)
                    placement = Placement(cell, devices)
                    cpu_busy = cpu_busy or cell.gpus == 0
                    on_start(placement)
                    thread = threading.Thread(target=work, args=(placement,), name=f"cell {cell.id}", daemon=True)
                    running[cell.id] = (thread, placement)
                    thread.start()
            while True:  # a timeout, so that Ctrl-C is seen promptly on every platform
                try:
                    item = finished.get(timeout=0.2)
                    break
                except queue.Empty:
                    continue
            if collect(*item):
                raise KeyboardInterrupt  # a cell saw Ctrl-C first (a single-threaded caller's signal)
    except BaseException as stopped:  # Ctrl-C, or a cell's runner failed in harness itself
        # Either way, no server may outlive the run: the other cells stop as on Ctrl-C and keep their results.
        stopping.set()
        while running:
            for thread, _ in list(running.values()):
                if thread.ident is not None and thread.ident not in told:
                    told.add(thread.ident)
                    _interrupt(thread)
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


def too_large(cells: list[Cell], host_gpus: list[int]) -> list[Cell]:
    """The cells needing more distinct GPUs than the host has (shared slots of one GPU count once)."""
    return [cell for cell in cells if cell.gpus > len(set(host_gpus))]


def _interrupt(thread: threading.Thread) -> None:
    """Raise KeyboardInterrupt inside a cell's thread, as Ctrl-C would in a single-threaded run."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))
