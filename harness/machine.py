"""What machine a result was measured on: host, CPU, memory, Python, and GPUs when known."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

import psutil


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(gpus: list[dict[str, Any]] | None = None, runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """Machine facts for results. `gpus` and `runtime` (driver, ROCm/CUDA) come from the engine layer."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 2),
        "gpus": gpus or [],
        "runtime": runtime or {},
    }
