"""The eval client harness used before it moved to aiohttp, kept only so that bench_eval_client.py can
compare the two side by side (`--only handwritten`): one keep-alive HTTP/1.1 connection per worker over
asyncio streams, plain HTTP only. Not used by harness itself.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from harness.transport import RETRY_STATUSES, ClientSettings, Request, Response


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

    await asyncio.gather(*(worker() for _ in range(settings.concurrency)))
    return [responses[request_id] for request_id in order]




def run_requests(base_url: str, requests: Iterable[Request], settings: ClientSettings,
                 on_done: Callable[[Response], None] = lambda response: None) -> list[Response]:
    return asyncio.run(_run_all(base_url.rstrip("/"), requests, settings, on_done))
