"""Loaded by a server's Python when harness puts this folder on PYTHONPATH (GPU runs of local cells).

If HARNESS_TORCH_MEMORY_PROBE names a file, a daemon thread writes torch's own peak allocation per
device there every half second, once the server has initialised CUDA: the figure harness sets
beside its device sampler's. It imports nothing heavy itself and never touches a server that has not
loaded torch.
"""

import json
import os
import sys
import threading
import time

_TARGET = os.environ.get("HARNESS_TORCH_MEMORY_PROBE")


def _watch(target: str) -> None:
    while True:
        time.sleep(0.5)
        torch = sys.modules.get("torch")
        try:
            if torch is None or not torch.cuda.is_initialized():
                continue
            peaks = {f"cuda{i}": torch.cuda.max_memory_allocated(i) / (1 << 30)
                     for i in range(torch.cuda.device_count())}
            tmp = target + ".tmp"
            with open(tmp, "w") as handle:
                json.dump({"max_memory_allocated_gib": peaks, "time": time.time()}, handle)
            os.replace(tmp, target)
        except Exception:  # noqa: BLE001 - a probe must never take the server down
            continue


if _TARGET:
    threading.Thread(target=_watch, args=(_TARGET,), name="harness-torch-memory-probe", daemon=True).start()
