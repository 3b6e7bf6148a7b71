"""The only module that speaks HTTP to servers: readiness probes, server info, and the eval client.

Readiness and info calls are small synchronous GETs (stdlib); the eval client is asynchronous,
with one keep-alive HTTP/1.1 connection per worker, so that the server, never the client, is the
bottleneck.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
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


# --- downloads ----------------------------------------------------------------------------------------

def download(url: str, target: Path, *, sha256: str | None = None, timeout: float = 120.0) -> Path:
    """Fetch a URL to a file atomically, verifying its SHA-256 when one is known."""
    from harness.errors import ConfigError

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed dataset URLs
            data = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise ConfigError(f"cannot download {url}: {getattr(error, 'reason', error)} "
                          f"(offline? provide the file by hand, see `harness data --help`)") from None
    digest = hashlib.sha256(data).hexdigest()
    if sha256 and digest != sha256:
        raise ConfigError(f"{url}: SHA-256 {digest[:12]}... does not match the expected {sha256[:12]}...")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


# --- the eval client ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    id: str
    path: str  # "/v1/completions" or "/v1/chat/completions"
    body: dict[str, Any]
    raw: bool = False  # the response's JSON text is the Response's text, unparsed (evals that read more)


@dataclass(frozen=True)
class Response:
    id: str
    text: str | None
    error: str | None
    latency_s: float
    completion_tokens: int | None = None
    attempts: int = 1


@dataclass(frozen=True)
class ClientSettings:
    concurrency: int = 128
    timeout_s: float = 600.0
    retries: int = 3
    backoff_s: float = 0.5
    max_errors: int | None = None  # stop sending once this many requests have failed


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class _RetryableError(Exception):
    """A connection-level failure: worth a retry on a fresh connection."""


def _response_text(path: str, body: dict[str, Any]) -> tuple[str, int | None]:
    choice = body["choices"][0]
    text = choice["message"]["content"] if "/chat/" in path else choice["text"]
    usage = body.get("usage") or {}
    return text or "", usage.get("completion_tokens")


class _Connection:
    """One keep-alive HTTP/1.1 connection. A hand-written client, because a general one (aiohttp) spends
    ~0.4 ms of CPU per request: at 1319 questions x 128 in flight on 2 cores, the client became the
    bottleneck (benchmarks/bench_eval_client.py)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (OSError, ConnectionError):
                pass
        self.reader = self.writer = None

    async def post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                    f"Accept: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
            self.writer.write(head + payload)
            return await self._read_response()
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as problem:
            await self.close()
            raise _RetryableError(f"{type(problem).__name__}: {problem}") from None

    async def _read_response(self) -> tuple[int, bytes]:
        assert self.reader is not None
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = await self._read_chunked()
        else:
            body = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection") == "close":
            await self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


async def _send(connection: _Connection, request: Request, settings: ClientSettings) -> Response:
    start = time.perf_counter()
    payload = json.dumps(request.body).encode()
    error = "not sent"
    for attempt in range(1, settings.retries + 2):
        retryable = False
        try:
            status, body = await _within(connection.post(request.path, payload), settings.timeout_s)
            if status == 200 and request.raw:
                return Response(request.id, body.decode(), None, time.perf_counter() - start, None, attempt)
            if status == 200:
                text, tokens = _response_text(request.path, json.loads(body))
                return Response(request.id, text, None, time.perf_counter() - start, tokens, attempt)
            error = f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
            retryable = status in RETRY_STATUSES
        except _RetryableError as problem:
            error, retryable = str(problem), True
        except asyncio.TimeoutError:
            await connection.close()  # a late reply must not be read as the next request's
            error = f"timeout after {settings.timeout_s:.0f} s"
        except (KeyError, IndexError, TypeError, ValueError) as problem:
            error = f"malformed response: {type(problem).__name__}: {problem}"
        if not retryable or attempt > settings.retries:
            break
        await asyncio.sleep(settings.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
    return Response(request.id, None, error, time.perf_counter() - start, None, attempt)


async def _within(awaitable: Any, seconds: float) -> Any:
    if hasattr(asyncio, "timeout"):  # 3.11+: no extra task per request, unlike wait_for
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def _host_port(base_url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        from harness.errors import ConfigError

        raise ConfigError(f"{base_url}: the eval client speaks plain HTTP (http://host:port) to the server under test")
    return parts.hostname, parts.port or 80


async def _run_all(base_url: str, requests: Iterable[Request], settings: ClientSettings,
                   on_done: Callable[[Response], None]) -> list[Response]:
    host, port = _host_port(base_url)
    pending = iter(requests)
    order: list[str] = []
    responses: dict[str, Response] = {}
    failures = 0

    async def worker() -> None:
        nonlocal failures
        connection = _Connection(host, port)
        try:
            for request in pending:  # a shared iterator: each request is taken by exactly one worker
                order.append(request.id)
                if settings.max_errors is not None and failures > settings.max_errors:
                    response = Response(request.id, None, "not sent: too many failed requests", 0.0, None, 0)
                else:
                    response = await _send(connection, request, settings)
                failures += response.error is not None
                responses[request.id] = response
                on_done(response)
        finally:
            await connection.close()

    heartbeat = asyncio.ensure_future(_heartbeat())
    try:
        await asyncio.gather(*(worker() for _ in range(settings.concurrency)))
    finally:
        heartbeat.cancel()
    return [responses[request_id] for request_id in order]


async def _heartbeat(period_s: float = 0.2) -> None:
    """Wake the event loop at least this often. Cells run in threads when packed on a host, and Ctrl-C
    reaches them as an exception set on the thread, which Python raises only while running bytecode:
    an event loop asleep in select() for a slow server would hold it back until a response came."""
    while True:
        await asyncio.sleep(period_s)


def run_requests(base_url: str, requests: Iterable[Request], settings: ClientSettings,
                 on_done: Callable[[Response], None] = lambda response: None) -> list[Response]:
    """Send every request with bounded concurrency, retrying connection errors, 429 and 5xx with backoff.

    Failed requests come back with `error` set; they are never dropped or scored here.
    """
    return asyncio.run(_run_all(base_url.rstrip("/"), requests, settings, on_done))
