"""The only module that speaks HTTP to servers: readiness probes, server info, and the eval client.

Readiness and info calls are small synchronous GETs (stdlib, no extra dependency).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback servers only
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace") if error.fp else ""
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, ""


def get_json(url: str, *, timeout: float = 5.0) -> Any | None:
    status, body = http_get(url, timeout=timeout)
    if status != 200:
        return None
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return None


def is_healthy(base_url: str, paths: tuple[str, ...], *, timeout: float = 5.0) -> bool:
    """True when every readiness path answers 200."""
    return all(http_get(base_url + path, timeout=timeout)[0] == 200 for path in paths)
