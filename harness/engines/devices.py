"""GPUs: discovery, per-device used memory, and a sampler that keeps the peak during a cell.

Backends, tried in order: NVML (pynvml), nvidia-smi, amd-smi, rocm-smi; on a machine with none,
the sampler records the RSS of the server's process tree instead (the CPU engine's memory).
The smi tools' JSON differs between releases; the parsers below are pure and tested on outputs from amd-smi's
own sources and public issues (tests/test_devices.py cites each). A figure the tools cannot give for a device
("N/A", a partition that reports its whole card) is unknown (None) and never sampled: no figure is better
than a wrong one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_gib: float | None  # None: unknown (a CPX partition reports its whole card's)
    driver: str | None = None


def _run(argv: list[str], timeout: float = 10.0) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


# --- pure parsers of the tools' outputs --------------------------------------------------------------

def parse_nvidia_smi(text: str) -> dict[int, tuple[str, float, float]]:
    """`index, name, memory.total, memory.used` CSV (MiB, noheader, nounits) -> index: (name, total, used) GiB."""
    out = {}
    for line in text.strip().splitlines():
        index, name, total, used = (part.strip() for part in line.split(","))
        out[int(index)] = (name, float(total) * MIB / GIB, float(used) * MIB / GIB)
    return out


Reading = tuple[float | None, float | None]  # (total, used) GiB; None: the tool could not say


def json_document(text: str) -> Any:
    """The JSON an smi tool printed, past the lines some print before it on stdout (amd-smi's "WARNING: User is
    missing the following required groups: render, video. ..."); None when there is none (rocm-smi's
    "WARNING: No JSON data to report" alone)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("{", "[")):
            try:
                return json.loads("\n".join(lines[index:]))
            except ValueError:
                continue  # a warning that happens to start with a bracket: the JSON starts later
    return None


def _number(value: Any) -> float | None:
    """A finite number, from a JSON number or a numeric string; None for "N/A" and anything else."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def parse_rocm_smi_meminfo(text: str) -> dict[int, Reading]:
    """`rocm-smi --showmeminfo vram --json` -> index: (total, used) GiB (bytes as strings; "N/A" is unknown)."""
    document = json_document(text)
    out: dict[int, Reading] = {}
    for card, fields in (document or {}).items():
        if not card.startswith("card") or not isinstance(fields, dict):
            continue
        total, used = (_number(fields.get(key)) for key in ("VRAM Total Memory (B)", "VRAM Total Used Memory (B)"))
        out[int(card.removeprefix("card"))] = (None if total is None else total / GIB,
                                               None if used is None else used / GIB)
    return out


# amd-smi writes "MB" for what it computes as bytes // (1024 * 1024) (amdsmi_commands.py, metric --mem-usage).
_AMD_SMI_UNITS = {"B": 1, "KB": 1 << 10, "MB": MIB, "MIB": MIB, "GB": GIB, "GIB": GIB}


def _amd_smi_gib(value: Any) -> float | None:
    """A memory value in GiB: {value, unit} (ROCm 6.1 on), a bare integer in MB (before 6.1), or unknown
    ("N/A" bare or as {"value": "N/A"}, an unknown unit)."""
    if isinstance(value, dict):
        number, scale = _number(value.get("value")), _AMD_SMI_UNITS.get(str(value.get("unit", "MB")).upper())
        return None if number is None or scale is None else number * scale / GIB
    number = _number(value)
    return None if number is None else number * MIB / GIB


def _amd_smi_entries(document: Any) -> list[dict]:
    """One dict per GPU: a list (ROCm 6.1 on), {"gpu_data": [...]}, or one bare object (one GPU, before 6.1)."""
    if isinstance(document, dict):
        document = document.get("gpu_data", [document] if "gpu" in document else [])
    return [entry for entry in document or [] if isinstance(entry, dict) and _number(entry.get("gpu")) is not None]


def parse_amd_smi_metric(text: str) -> dict[int, Reading]:
    """`amd-smi metric --mem-usage --json` -> index: (total, used) GiB, each None where amd-smi says "N/A"."""
    out: dict[int, Reading] = {}
    for entry in _amd_smi_entries(json_document(text)):
        usage = entry.get("mem_usage")
        usage = usage if isinstance(usage, dict) else {}
        out[int(entry["gpu"])] = (_amd_smi_gib(usage.get("total_vram")), _amd_smi_gib(usage.get("used_vram")))
    return out


def parse_amd_smi_partitions(text: str) -> dict[int, str]:
    """`amd-smi static --partition --json` -> index: compute partition mode ("SPX", "CPX", ...) where known."""
    out = {}
    for entry in _amd_smi_entries(json_document(text)):
        partition = entry.get("partition")
        mode = partition.get("compute_partition") if isinstance(partition, dict) else None
        if isinstance(mode, str) and mode.strip().upper() not in ("", "N/A"):
            out[int(entry["gpu"])] = mode.strip().upper()
    return out


def partitioned(modes: dict[int, str]) -> set[int]:
    """The devices that are one partition of a card (any mode but SPX). amd-smi and rocm-smi report such a
    partition's VRAM total and used as the whole card's (MI300X in CPX, ROCm/ROCm#4750): read per partition,
    a card would count once per partition, and a partition's figure would be the whole card's."""
    return {index for index, mode in modes.items() if mode != "SPX"}


def known_readings(readings: dict[int, Reading], split: set[int]) -> dict[int, Reading]:
    """The readings with what they cannot say made unknown: a partitioned device's figures are its card's."""
    return {index: (None, None) if index in split else reading for index, reading in readings.items()}


# --- backends ------------------------------------------------------------------------------------------

@dataclass
class Backend:
    name: str
    read_used: Callable[[], dict[int, float]]  # index -> used GiB
    gpus: list[GpuInfo] = field(default_factory=list)
    runtime: dict[str, Any] = field(default_factory=dict)


def _nvml_backend() -> Backend | None:
    try:
        import pynvml  # optional: present on CUDA machines
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - any failure means "no NVML here"
        return None
    count = pynvml.nvmlDeviceGetCount()
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def name_of(handle: Any) -> str:
        name = pynvml.nvmlDeviceGetName(handle)
        return name.decode() if isinstance(name, bytes) else str(name)

    driver = pynvml.nvmlSystemGetDriverVersion()
    driver = driver.decode() if isinstance(driver, bytes) else str(driver)
    gpus = [GpuInfo(i, name_of(h), pynvml.nvmlDeviceGetMemoryInfo(h).total / GIB, driver) for i, h in enumerate(handles)]
    cuda = pynvml.nvmlSystemGetCudaDriverVersion()
    runtime = {"driver": driver, "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}"}
    return Backend("nvml", lambda: {i: pynvml.nvmlDeviceGetMemoryInfo(h).used / GIB for i, h in enumerate(handles)},
                   gpus, runtime)


def _nvidia_smi_backend() -> Backend | None:
    query = ["nvidia-smi", "--query-gpu=index,name,memory.total,memory.used", "--format=csv,noheader,nounits"]
    text = _run(query)
    if not text:
        return None
    parsed = parse_nvidia_smi(text)
    driver = (_run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]) or "").split("\n")[0]
    gpus = [GpuInfo(i, name, total, driver or None) for i, (name, total, _) in parsed.items()]
    return Backend("nvidia-smi", lambda: {i: used for i, (_, _, used) in parse_nvidia_smi(_run(query) or "").items()},
                   gpus, {"driver": driver or None})


def _amd_backend() -> Backend | None:
    for tool, argv, parse in (
        ("amd-smi", ["amd-smi", "metric", "--mem-usage", "--json"], parse_amd_smi_metric),
        ("rocm-smi", ["rocm-smi", "--showmeminfo", "vram", "--json"], parse_rocm_smi_meminfo),
    ):
        parsed = parse(_run(argv) or "")
        if not parsed:
            continue
        split = partitioned(parse_amd_smi_partitions(_run(["amd-smi", "static", "--partition", "--json"]) or ""))
        names = _rocm_names()
        gpus = [GpuInfo(i, names.get(i, "AMD GPU"), total) for i, (total, _) in known_readings(parsed, split).items()]

        def read(argv: list[str] = argv, parse: Callable = parse, split: set[int] = split) -> dict[int, float]:
            return {i: used for i, (_, used) in known_readings(parse(_run(argv) or ""), split).items()
                    if used is not None}

        runtime: dict[str, Any] = {"rocm": _rocm_version()}
        if split:
            runtime["partitioned_gpus"] = sorted(split)  # their memory is unknown: amd-smi reports the card's
        return Backend(tool, read, gpus, runtime)
    return None


def _rocm_names() -> dict[int, str]:
    text = _run(["rocm-smi", "--showproductname", "--json"])
    if not text:
        return {}
    try:
        return {int(card.removeprefix("card")): fields.get("Card Series") or fields.get("Card series", "AMD GPU")
                for card, fields in json.loads(text).items() if card.startswith("card")}
    except (ValueError, AttributeError):
        return {}


def _rocm_version() -> str | None:
    try:
        with open("/opt/rocm/.info/version") as handle:
            return handle.read().strip()
    except OSError:
        return None


_BACKEND: Backend | None = None
_PROBED = False


def gpu_backend() -> Backend | None:
    """The first GPU backend that answers on this machine (probed once)."""
    global _BACKEND, _PROBED
    if not _PROBED:
        # HARNESS_GPU_BACKEND=none: ignore the GPUs here (test doubles on a GPU host: their device ids are
        # fake, and asking NVML about device 7 of a one-GPU host would only fail).
        disabled = os.environ.get("HARNESS_GPU_BACKEND", "").lower() == "none"
        _BACKEND = None if disabled else (_nvml_backend() or _nvidia_smi_backend() or _amd_backend())
        _PROBED = True
    return _BACKEND


def discover() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """GPUs and runtime facts for machine info: ([{index, name, memory_total_gib, driver}], {driver, ...})."""
    backend = gpu_backend()
    if backend is None:
        return [], {}
    gpus = [{"index": g.index, "name": g.name, "driver": g.driver,
             "memory_total_gib": None if g.memory_total_gib is None else round(g.memory_total_gib, 2)}
            for g in backend.gpus]
    return gpus, {"backend": backend.name, **backend.runtime}


_SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(os.uname().machine)
_KCMP_VM = 1


def _kcmp_vm() -> Callable[[int, int], int | None]:
    """kcmp(2)'s KCMP_VM: 0 when two processes share one address space (None where it cannot be asked)."""
    if _SYS_KCMP is None:
        return lambda a, b: None
    import ctypes

    syscall = ctypes.CDLL(None, use_errno=True).syscall

    def compare(a: int, b: int) -> int | None:
        answer = syscall(_SYS_KCMP, a, b, _KCMP_VM, 0, 0)
        return None if answer < 0 else answer

    return compare


_same_vm = _kcmp_vm()


def tree_rss_gib(pid: int, same_vm: Callable[[int, int], int | None] | None = None) -> float:
    """RSS of a process and all its descendants, in GiB (0 when it is gone), each address space counted once.

    A child made by vfork() (Python's subprocess prefers it) shares its parent's address space until it execs,
    and reads the parent's whole RSS meanwhile: the parent counted twice for as long as the exec takes, longer on
    a busy machine (issue 25 §4: a 1.6 GiB vLLM worker starting a compiler, its tree read 4.5 GiB for 2.9).
    kcmp(2) tells such a child apart; a fork() child has its own (copy-on-write) address space and is counted."""
    same_vm = same_vm or _same_vm
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total, counted = 0, []
    for process in processes:
        try:
            rss = process.memory_info().rss
            parent = process.ppid()
        except psutil.Error:
            continue
        if parent in counted and same_vm(process.pid, parent) == 0:
            continue  # the parent's own pages, read through a child that has not exec'd yet
        total += rss
        counted.append(process.pid)
    return total / GIB


class PeakSampler:
    """Samples used memory in a thread and keeps the peak per device (or of the process tree)."""

    def __init__(self, devices: list[int], *, interval_s: float = 0.5, pid: Callable[[], int | None] = lambda: None):
        self._backend = gpu_backend() if devices else None
        self._devices = devices
        self._pid = pid
        self._interval = interval_s if self._backend is None or self._backend.name == "nvml" else max(interval_s, 1.0)
        self.source = self._backend.name if self._backend else "process-tree-rss"
        self.peaks: dict[str, float] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="harness-peak-sampler", daemon=True)

    def start(self) -> PeakSampler:
        self._thread.start()
        return self

    def used_now(self) -> dict[str, float]:
        if self._backend is not None:
            used = self._backend.read_used()
            return {f"gpu{i}": used[i] for i in self._devices if i in used}
        pid = self._pid()
        return {"process-tree": tree_rss_gib(pid)} if pid else {}

    def sample(self) -> None:
        try:
            for key, value in self.used_now().items():
                self.peaks[key] = max(self.peaks.get(key, 0.0), value)
        except Exception:  # noqa: BLE001 - a failed sample must not end the cell; it is counted
            self.errors += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        return {k: round(v, 4) for k, v in self.peaks.items()}


def wait_until_released(devices: list[int], before: dict[int, float], *, timeout_s: float,
                        slack_gib: float = 1.0) -> dict[str, Any]:
    """Wait (bounded) until the devices' used memory is back near its level before the launch."""
    backend = gpu_backend()
    if backend is None or not devices:
        return {"waited_s": 0.0, "released": True}
    start = time.monotonic()
    while True:
        used = backend.read_used()
        held = {i: used.get(i, 0.0) - before.get(i, 0.0) for i in devices}
        if all(extra <= slack_gib for extra in held.values()):
            return {"waited_s": round(time.monotonic() - start, 3), "released": True}
        if time.monotonic() - start > timeout_s:
            return {"waited_s": round(time.monotonic() - start, 3), "released": False,
                    "held_gib": {f"gpu{i}": round(v, 2) for i, v in held.items()}}
        time.sleep(0.5)


def used_by_device(devices: list[int]) -> dict[int, float]:
    backend = gpu_backend()
    if backend is None or not devices:
        return {}
    used = backend.read_used()
    return {i: used.get(i, 0.0) for i in devices}


def detect_vendor() -> str:
    """The vendor of this machine's GPUs ("nvidia", "amd"), or "cpu" when none answers."""
    backend = gpu_backend()
    if backend is None:
        return "cpu"
    return "nvidia" if backend.name in ("nvml", "nvidia-smi") else "amd"


def assign(count: int, vendor: str) -> list[int]:
    """The first `count` devices (cells run one at a time here; packing is the scheduler's)."""
    if vendor == "cpu" or count == 0:
        return []
    backend = gpu_backend()
    available = [g.index for g in backend.gpus] if backend else list(range(count))
    return available[:count]
