"""Packing cells onto one host's GPUs, and splitting a suite into shards: pure logic and threads, no servers."""

from __future__ import annotations

import _thread
import dataclasses
import signal
import threading
import time

import pytest

from harness import interrupts
from harness.errors import ConfigError
from harness.results import STATUS_INFRA_ERROR, STATUS_OK, CellError, CellResult
from harness.schedule import CellInterrupted, pack_order, run_packed, simulate, take_devices, too_large
from harness.shard import DEFAULT_CELL_S, parse_shard, split
from tests.fake_cells import fake_cell


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return fake_cell(tmp_path_factory.mktemp("cells"))


def cells_of(template, sizes: list[int], vendor: str = "amd"):
    hardware = dataclasses.replace(template.hardware, vendor=vendor)
    return [dataclasses.replace(template, model=f"m{i}", tp=tp, hardware=hardware) for i, tp in enumerate(sizes)]


class Recorder:
    """A cell runner that holds its devices for a while and records what was held at once."""

    def __init__(self, seconds: float = 0.05):
        self.seconds, self.lock = seconds, threading.Lock()
        self.held: dict[int, str] = {}
        self.peak, self.shared, self.started = 0, False, []

    def __call__(self, cell, devices: list[int]) -> CellResult:
        with self.lock:
            self.started.append(cell.id)
            for device in devices:
                self.shared = self.shared or device in self.held
                self.held[device] = cell.id
            self.peak = max(self.peak, len(self.held))
            assert len(devices) == cell.gpus
        time.sleep(self.seconds * max(cell.tp, 1))
        with self.lock:
            for device in devices:
                self.held.pop(device, None)
        return CellResult(cell.id, cell.suite, STATUS_OK, {}, machine={"devices": devices})


def test_never_more_gpus_than_the_host_and_never_one_twice(template):
    cells = cells_of(template, [1, 4, 2, 1, 8, 2, 1, 4, 1, 1, 2, 1])
    recorder = Recorder()
    results, interrupted = run_packed(cells, list(range(8)), recorder)
    assert not interrupted and sorted(r.cell_id for r in results) == sorted(c.id for c in cells)
    assert recorder.peak <= 8 and not recorder.shared
    assert recorder.started[0] == cells[4].id  # largest first: the TP8 cell
    assert recorder.peak == 8  # and the host was filled


def test_packing_is_concurrent(template):
    cells = cells_of(template, [4, 4, 2, 2, 2, 2] + [1] * 8)
    recorder = Recorder(seconds=0.1)
    start = time.monotonic()
    run_packed(cells, list(range(8)), recorder)
    wall = time.monotonic() - start
    ideal = simulate({c.id: 0.1 * c.tp for c in cells}, cells, 8)
    assert ideal == pytest.approx(0.7) and wall < 1.6  # TP4s, then TP2s, then TP1s; serial would take 1.6 s


def test_a_cell_larger_than_the_host_never_starts(template):
    cells = cells_of(template, [16, 1])
    results, _ = run_packed(cells, list(range(8)), Recorder())
    assert [r.cell_id for r in results] == [cells[1].id]


def test_shared_gpus_give_a_cell_distinct_devices(template):
    # --share-gpus 2 on a 2-GPU host: slots [0, 1, 0, 1]. Each TP2 cell gets both GPUs, never GPU 0 twice
    # (the rig's first TP2 load checks were launched on "GPUs 0,0" and "1,1"); TP1 cells spread over the GPUs.
    starts = []
    lock = threading.Lock()

    def runner(cell, devices):
        with lock:
            starts.append((cell.tp, tuple(devices)))
        time.sleep(0.05)
        return CellResult(cell.id, cell.suite, STATUS_OK, {})

    results, _ = run_packed(cells_of(template, [2, 2, 1, 1]), [0, 1] * 2, runner)
    assert len(results) == 4
    assert starts[:2] == [(2, (0, 1)), (2, (0, 1))] and sorted(starts[2:]) == [(1, (0,)), (1, (1,))]


def test_shared_slots_of_one_gpu_never_make_a_larger_host(template):
    cells = cells_of(template, [2, 1])
    results, _ = run_packed(cells, [0, 0, 0, 0], Recorder())  # one GPU shared four ways
    assert [r.cell_id for r in results] == [cells[1].id]
    assert too_large(cells, [0, 0, 0, 0]) == [cells[0]]


def test_take_devices_prefers_the_least_shared():
    assert take_devices([0, 1, 1, 2, 2], 2) == ((1, 2), [0, 1, 2])
    assert take_devices([3, 3], 1) == ((3,), [3])
    with pytest.raises(ValueError):
        take_devices([0, 0], 2)


def test_cpu_cells_run_one_at_a_time(template):
    cells = cells_of(template, [1, 1, 1], vendor="cpu")
    assert all(cell.gpus == 0 for cell in cells)
    recorder, running, most = Recorder(), [0], [0]

    def runner(cell, devices):
        running[0] += 1
        most[0] = max(most[0], running[0])
        result = recorder(cell, devices)
        running[0] -= 1
        return result

    run_packed(cells, [], runner)
    assert most[0] == 1


def test_max_parallel(template):
    cells = cells_of(template, [1] * 6)
    recorder = Recorder()
    run_packed(cells, list(range(8)), recorder, max_parallel=2)
    assert recorder.peak == 2


def test_ctrl_c_reaches_every_running_cell_and_keeps_what_they_measured(template):
    cells = cells_of(template, [4, 4, 4])
    second_started = threading.Event()

    def runner(cell, devices):
        try:
            if cell.id == cells[1].id:
                second_started.set()
            if cell.id == cells[0].id:
                assert second_started.wait(timeout=60)  # both cells that fit at once are running
                _thread.interrupt_main()  # Ctrl-C, as the main thread receives it
            for _ in range(300):  # the cooperative waits the launcher's and the eval client's are
                interrupts.sleep(0.1)
        except KeyboardInterrupt:
            raise CellInterrupted(CellResult(cell.id, cell.suite, STATUS_INFRA_ERROR, {},
                                             error=CellError("interrupted", "Ctrl-C"))) from None
        return CellResult(cell.id, cell.suite, STATUS_OK, {})

    # A shell that starts a job in the background hands it SIGINT ignored, and interrupt_main() then does
    # nothing: install Python's own handler, as an interactive `harness run` has it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    begin = time.monotonic()
    try:
        results, interrupted = run_packed(cells, list(range(8)), runner)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert interrupted and time.monotonic() - begin < 10
    # Two fit at once; both were interrupted and kept; the third never started.
    assert sorted(r.cell_id for r in results) == sorted(c.id for c in cells[:2])
    assert all(r.error.cause == "interrupted" for r in results)


def test_a_failing_cell_stops_the_others_through_their_stop_event_alone(template):
    """No exception is raised into a thread: a cell that never waits cooperatively runs to its end, the
    others stop at their next wait and keep what they measured; the failure is re-raised."""
    cells = cells_of(template, [2, 2, 2, 2])
    waiting = threading.Barrier(3)
    ended = []

    def runner(cell, devices):
        if cell.id == cells[0].id:
            waiting.wait(timeout=60)
            raise RuntimeError("a harness bug")
        if cell.id == cells[1].id:  # busy in code that never checks: finishes, never cut off
            waiting.wait(timeout=60)
            time.sleep(0.5)
            ended.append(cell.id)
            return CellResult(cell.id, cell.suite, STATUS_OK, {})
        try:
            waiting.wait(timeout=60)
            interrupts.sleep(60)
        except interrupts.Stopped:
            raise CellInterrupted(CellResult(cell.id, cell.suite, STATUS_INFRA_ERROR, {},
                                             error=CellError("interrupted", "stopped"))) from None
        raise AssertionError("never stopped")

    begin = time.monotonic()
    with pytest.raises(RuntimeError, match="a harness bug"):
        run_packed(cells, list(range(6)), runner)
    assert time.monotonic() - begin < 30 and ended == [cells[1].id]


def test_stop_on_is_per_thread_and_outside_it_sleep_is_plain():
    event = threading.Event()
    event.set()
    interrupts.sleep(0)  # no stop event here: a plain sleep
    interrupts.check()
    with interrupts.stop_on(event):
        assert interrupts.stop_requested()
        with pytest.raises(interrupts.Stopped):
            interrupts.sleep(10)
        seen = []
        other = threading.Thread(target=lambda: seen.append(interrupts.stop_requested()))
        other.start()
        other.join()
        assert seen == [False]  # another thread has its own (none)
    assert not interrupts.stop_requested()
    assert issubclass(interrupts.Stopped, KeyboardInterrupt)  # Ctrl-C's path: teardown, measurements kept


def test_max_parallel_below_one_is_refused_not_a_hang(template):
    with pytest.raises(ValueError, match="max_parallel 0"):
        run_packed(cells_of(template, [1]), [0], Recorder(), max_parallel=0)


def test_simulate_is_the_greedy_packing_makespan(template):
    cells = cells_of(template, [8, 4, 4, 1])
    durations = {cells[0].id: 10.0, cells[1].id: 5.0, cells[2].id: 7.0, cells[3].id: 1.0}
    # t=0: TP8 alone; t=10: both TP4; t=15: the TP1 in the freed half; t=17: done.
    assert simulate(durations, cells, 8) == 17.0
    assert [c.tp for c in pack_order(cells_of(template, [1, 4, 2, 8]))] == [8, 4, 2, 1]


def test_shards_are_balanced_by_cost_and_cover_every_cell_once(template):
    cells = cells_of(template, [8, 8, 4, 4, 2, 2, 1, 1, 1, 1])
    known = {cells[0].id: 3600.0, cells[1].id: 600.0}
    shards = split(cells, 3, known)
    assert sorted(c.id for s in shards for c in s.cells) == sorted(c.id for c in cells)
    loads = [s.estimated_gpu_s for s in shards]
    assert max(loads) <= 3600 * 8  # the hour-long TP8 cell alone bounds any shard
    assert shards[0].cells == (cells[0],)  # the costliest cell gets a shard of its own
    assert split(cells, 3, known) == shards  # deterministic
    assert [s.label for s in shards] == ["1/3", "2/3", "3/3"]
    unknown = split(cells, 2, {})
    assert sum(s.estimated_gpu_s for s in unknown) == DEFAULT_CELL_S * sum(c.gpus for c in cells)


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0"])
def test_bad_shard_names_the_flag(text):
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


def test_a_failing_runner_stops_the_others_before_the_error_surfaces(template):
    cells = cells_of(template, [4, 4])
    stopped = []

    def runner(cell, devices):
        if cell.id == cells[1].id:
            time.sleep(0.2)
            raise RuntimeError("export failed")
        try:
            for _ in range(300):  # the cooperative waits of the launcher and the eval client
                interrupts.sleep(0.1)
        except KeyboardInterrupt:
            stopped.append(cell.id)
            raise CellInterrupted(CellResult(cell.id, cell.suite, STATUS_INFRA_ERROR, {},
                                             error=CellError("interrupted", "stopped"))) from None
        return CellResult(cell.id, cell.suite, STATUS_OK, {})

    begin = time.monotonic()
    with pytest.raises(RuntimeError, match="export failed"):
        run_packed(cells, list(range(8)), runner)
    assert stopped == [cells[0].id] and time.monotonic() - begin < 10
