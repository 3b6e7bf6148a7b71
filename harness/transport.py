"""The only module that speaks HTTP to servers: readiness probes, server info, and the eval client.

Readiness and info calls are small synchronous GETs (stdlib); the eval client is asynchronous (aiohttp):
bounded concurrency over keep-alive HTTP/1.1 connections, plain HTTP or HTTPS, with the server's API key
when it has one. Every call obeys the deadline of the eval it runs in (`deadline`), so that a cell's
`timeouts.eval_s` holds whatever its evals do.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import hashlib
import json
import random
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness import interrupts

# --- where requests go: API keys per server, and the eval deadline ------------------------------------

_API_KEYS: dict[str, str] = {}  # "scheme://host:port" -> the key that server was started with
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("harness_eval_deadline", default=None)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def set_api_key(base_url: str, api_key: str | None) -> None:
    """Send `Authorization: Bearer <api_key>` with every request to this server (None: forget it)."""
    from harness import secrets

    if api_key:
        secrets.register(api_key)
        _API_KEYS[_origin(base_url)] = api_key
    else:
        _API_KEYS.pop(_origin(base_url), None)


def api_key(url: str) -> str | None:
    """The key registered for this server (another client, such as sgl-eval's, sends it itself)."""
    return _API_KEYS.get(_origin(url))


def _auth_headers(url: str) -> dict[str, str]:
    key = _API_KEYS.get(_origin(url))
    return {"Authorization": f"Bearer {key}"} if key else {}


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Every request made inside (this thread, its event loops) ends by `at` (time.monotonic())."""
    current = _DEADLINE.get()
    token = _DEADLINE.set(at if current is None else min(at, current))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _remaining(timeout: float) -> float:
    """`timeout`, cut to what is left before the deadline (never below zero)."""
    at = _DEADLINE.get()
    return timeout if at is None else max(0.0, min(timeout, at - time.monotonic()))


class DeadlineExceeded(Exception):  # noqa: N818 - reads as what happened
    """The eval's deadline passed; `responses` are those that had come back by then, in request order."""

    def __init__(self, responses: list[Response]):
        super().__init__(f"deadline passed with {len(responses)} responses")
        self.responses = responses


# --- small synchronous calls ----------------------------------------------------------------------------

def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answered (or the eval's deadline has passed)."""
    interrupts.check()
    timeout = _remaining(timeout)
    if timeout <= 0:
        return 0, ""
    request = urllib.request.Request(url, headers=_auth_headers(url))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - servers under test
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace") if error.fp else ""
    except (urllib.error.URLError, OSError, TimeoutError, ValueError):
        return 0, ""


def get_json(url: str, *, timeout: float = 5.0) -> Any | None:
    """The JSON body of a 200 answer; None for anything else (including NaN and absurd nesting)."""
    from harness.strict import load_json

    status, body = http_get(url, timeout=timeout)
    if status != 200:
        return None
    try:
        return load_json(body)
    except ValueError:
        return None


def post_json(url: str, body: dict[str, Any], *, timeout: float = 60.0) -> Any | None:
    """The JSON answer of a small synchronous POST (probes beside the eval), or None on any failure."""
    from harness.strict import load_json

    interrupts.check()
    timeout = _remaining(timeout)
    if timeout <= 0:
        return None
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **_auth_headers(url)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - servers under test
            return load_json(response.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError, TimeoutError, ValueError):
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
    max_retry_after_s: float = 60.0  # a server's Retry-After is honoured up to this


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class MalformedResponse(ValueError):
    """A 200 answer whose body is not a completion: a failed request, never an answer scored wrong."""


def parse_completion(path: str, body: bytes | str) -> tuple[str, int | None]:
    """(text, completion tokens) of a completion response, checked by shape: every field the scorer or the
    metrics read must have its type. Raises MalformedResponse."""
    from harness.strict import load_json

    try:
        document = load_json(body)
    except ValueError as problem:
        raise MalformedResponse(f"not JSON: {_short(problem)}") from None
    choices = document.get("choices") if isinstance(document, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("no choices[0]")
    choice = choices[0]
    if "/chat/" in path:
        message = choice.get("message")
        if not isinstance(message, dict):
            raise MalformedResponse("choices[0].message is not an object")
        text = message.get("content")
        if text is None and isinstance(message.get("reasoning_content"), str):
            text = ""  # thought until max_tokens and never answered: an invalid answer, as SGLang scores it
    else:
        text = choice.get("text")
    if not isinstance(text, str):
        raise MalformedResponse(f"the answer text is {_json_type(text)}, not a string")
    usage = document.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise MalformedResponse(f"usage is {_json_type(usage)}, not an object")
    tokens = (usage or {}).get("completion_tokens")
    if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0):
        raise MalformedResponse(f"usage.completion_tokens is {tokens!r}, not a count")
    return text, tokens


def _json_type(value: Any) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _short(problem: BaseException) -> str:
    return " ".join(str(problem).split())[:200]


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date (RFC 9110); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _backoff(settings: ClientSettings, attempt: int, retry_after: float | None) -> float:
    wait = settings.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random())
    if retry_after is not None:
        wait = max(wait, min(retry_after, settings.max_retry_after_s))
    return wait


async def _post_once(session: Any, url: str, payload: bytes, timeout_s: float) -> tuple[int, bytes, str | None]:
    """One POST, retried at once (not counted as an attempt) when a kept-alive connection turns out to have
    been closed by the server before it answered: a server that closes after each response costs nothing."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    for fresh_try in (False, True):
        try:
            async with session.post(url, data=payload, timeout=timeout) as reply:
                return reply.status, await reply.read(), reply.headers.get("Retry-After")
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as problem:
            # ServerDisconnected: closed before the answer; ClientOSError "Can not write request body": closed
            # before the request. A refused connection (ClientConnectorError) was never established: no retry.
            if fresh_try or isinstance(problem, aiohttp.ClientConnectorError):
                raise
    raise AssertionError("unreachable")


async def _send(session: Any, url: str, request: Request, settings: ClientSettings) -> Response:
    import aiohttp

    start = time.perf_counter()
    payload = json.dumps(request.body).encode()
    error = "not sent"
    for attempt in range(1, settings.retries + 2):
        retryable, retry_after = False, None
        timeout_s = _remaining(settings.timeout_s)
        if timeout_s <= 0:
            error = "not answered before the eval deadline"
            break
        try:
            status, body, retry_header = await _post_once(session, url, payload, timeout_s)
            if status == 200 and request.raw:
                return Response(request.id, body.decode(), None, time.perf_counter() - start, None, attempt)
            if status == 200:
                text, tokens = parse_completion(request.path, body)
                return Response(request.id, text, None, time.perf_counter() - start, tokens, attempt)
            error = f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
            retryable, retry_after = status in RETRY_STATUSES, retry_after_s(retry_header)
        except MalformedResponse as problem:
            error = f"malformed response: {problem}"
        except (asyncio.TimeoutError, TimeoutError):
            error = f"timeout after {timeout_s:.0f} s"
        except (aiohttp.ClientError, OSError) as problem:
            error, retryable = f"{type(problem).__name__}: {_short(problem)}", True
        if not retryable or attempt > settings.retries:
            break
        await asyncio.sleep(min(_backoff(settings, attempt, retry_after), _remaining(settings.max_retry_after_s)))
    return Response(request.id, None, error, time.perf_counter() - start, None, attempt)


def _check_url(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        from harness.errors import ConfigError

        raise ConfigError(f"{base_url}: expected http://host:port or https://host:port")


async def _run_all(base_url: str, requests: Iterable[Request], settings: ClientSettings,
                   on_done: Callable[[Response], None], stop: Callable[[], bool] | None = None) -> list[Response]:
    import aiohttp

    pending = iter(requests)
    order: list[str] = []
    responses: dict[str, Response] = {}
    failures = 0
    halted = asyncio.Event()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for request in pending:  # a shared iterator: each request is taken by exactly one worker
            if halted.is_set():
                return
            order.append(request.id)
            if settings.max_errors is not None and failures > settings.max_errors:
                response = Response(request.id, None, "not sent: too many failed requests", 0.0, None, 0)
            else:
                response = await _send(session, base_url + request.path, request, settings)
            failures += response.error is not None
            responses[request.id] = response
            on_done(response)
            if stop is not None and stop():
                halted.set()

    headers = {"Content-Type": "application/json", "Accept": "application/json", **_auth_headers(base_url)}
    # A context made now reads $SSL_CERT_FILE / $SSL_CERT_DIR as they are now (aiohttp's own is made at import).
    tls = ssl.create_default_context() if base_url.startswith("https:") else None
    connector = aiohttp.TCPConnector(limit=settings.concurrency, limit_per_host=settings.concurrency,
                                     ssl=tls or True)
    async with aiohttp.ClientSession(connector=connector, headers=headers, raise_for_status=False,
                                     timeout=aiohttp.ClientTimeout(total=None)) as session:
        workers = asyncio.gather(*(worker(session) for _ in range(settings.concurrency)))
        watcher = asyncio.ensure_future(_cancel_when_stopped(workers))
        at = _DEADLINE.get()
        try:
            await asyncio.wait_for(_until_done_or_halted(workers, halted),
                                   None if at is None else max(0.0, at - time.monotonic()))
        except asyncio.TimeoutError:
            raise DeadlineExceeded([responses[i] for i in order if i in responses]) from None
        except asyncio.CancelledError:
            if not interrupts.stop_requested():
                raise
            raise _StoppedInLoop from None
        finally:
            watcher.cancel()
    # A halted run leaves the requests in flight unanswered: they are dropped, not failed.
    return [responses[request_id] for request_id in order if request_id in responses]


class _StoppedInLoop(Exception):  # noqa: N818 - raised as interrupts.Stopped once out of the event loop
    pass


async def _cancel_when_stopped(workers: asyncio.Future, period_s: float = 0.1) -> None:
    """Cancel the requests in flight once the run stops (harness.interrupts.stop_on): cells run in threads
    when packed on a host, and the scheduler stops them through this event, never from outside."""
    while not interrupts.stop_requested():
        await asyncio.sleep(period_s)
    workers.cancel()


async def _until_done_or_halted(workers: asyncio.Future, halted: asyncio.Event) -> None:
    """Wait for every worker, or until `halted` (the caller's `stop` said so): then the requests still in
    flight are cancelled, their connections closed (a server aborts a request whose client went away)."""
    halt = asyncio.ensure_future(halted.wait())
    try:
        await asyncio.wait({workers, halt}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halt.cancel()
        if not workers.done():
            workers.cancel()
        try:
            await workers
        except asyncio.CancelledError:
            if not halted.is_set():
                raise


def run_requests(base_url: str, requests: Iterable[Request], settings: ClientSettings,
                 on_done: Callable[[Response], None] = lambda response: None,
                 stop: Callable[[], bool] | None = None) -> list[Response]:
    """Send every request with bounded concurrency, retrying connection errors, 429 and 5xx with back-off
    (a server's Retry-After honoured, bounded by `max_retry_after_s`).

    Failed requests come back with `error` set; they are never dropped or scored here. Raises
    DeadlineExceeded, with the responses that came back, when the deadline of the enclosing `deadline()`
    passes first. `stop`, asked after each response: once it says True no request is sent any more and those in
    flight are cancelled (the sequential gate decided); the responses that came back are returned.
    """
    base_url = base_url.rstrip("/")
    _check_url(base_url)
    interrupts.check()
    try:
        return asyncio.run(_run_all(base_url, requests, settings, on_done, stop))
    except _StoppedInLoop:
        raise interrupts.Stopped("stopped") from None
