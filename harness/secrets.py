"""Secrets: values that must never reach an artifact (server.log, result.json, results.json, summary.md,
junit.xml) or the console.

A value is secret when its environment key looks secret (`*TOKEN*`, `*KEY*`, `*SECRET*`, `*PASSWORD*`), when
it equals $HF_TOKEN, or when it is an API key harness sends. Known values are replaced wherever they appear
as text; values under a secret-looking key are replaced whatever their length.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

REDACTED = "[redacted]"
# TOKENIZERS_PARALLELISM and friends name tokenizers, not tokens; a plural names a count (`--max-total-tokens`,
# `--speculative-num-draft-tokens`: both were hidden in the rig's server logs).
_SECRET_KEY = re.compile(r"TOKEN(?!IZER|S)|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
# Shorter values are redacted by key only: replacing "true" or "1234" in free text would corrupt figures.
MIN_SCANNED_LENGTH = 6

_lock = threading.Lock()
_values: list[str] = []  # longest first, so that a secret containing another is replaced whole


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def register(value: str | None) -> None:
    """Redact this value from now on, wherever harness writes or prints text."""
    if not value or len(value) < MIN_SCANNED_LENGTH:
        return
    with _lock:
        if value not in _values:
            _values.append(value)
            _values.sort(key=len, reverse=True)


def register_env(env: Mapping[str, str]) -> None:
    """Every value of a secret-looking key, and any value equal to $HF_TOKEN."""
    hf_token = os.environ.get("HF_TOKEN")
    for key, value in env.items():
        if is_secret_key(key) or (hf_token and value == hf_token):
            register(value)


def register_environment() -> None:
    """Harness's own environment (HF_TOKEN, CI tokens): servers inherit it and may echo it."""
    register_env(os.environ)


def known() -> tuple[str, ...]:
    with _lock:
        return tuple(_values)


def redact(text: str) -> str:
    for value in known():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    return {key: REDACTED if is_secret_key(key) and value else redact(value) for key, value in env.items()}


def redact_argv(argv: Iterable[str]) -> list[str]:
    """An argv with the value after a secret-looking flag (`--api-key K`, `--hf-token=K`) replaced."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, equals, _ = arg.partition("=")
        secret_flag = flag.startswith("-") and is_secret_key(flag)
        if secret_flag and equals:
            out.append(f"{flag}={REDACTED}")
        else:
            out.append(redact(arg))
            hide_next = secret_flag
    return out


ENV_KEY = "env"  # where a document holds an environment (a cell's server.env): keys there name variables


def redact_document(document: Any) -> Any:
    """A JSON/YAML document with secrets replaced in its strings (never in numbers or keys): known values
    anywhere, and every value of a secret-looking variable in an environment mapping. Other keys that merely
    contain a secret-looking word (a protocol's `token_sha256`) are figures, not secrets."""
    return _redact_value(document, secret=False, in_env=False)


def _redact_value(value: Any, *, secret: bool, in_env: bool) -> Any:
    if isinstance(value, str):
        return REDACTED if secret and value else redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item, secret=in_env and isinstance(key, str) and is_secret_key(key),
                                   in_env=key == ENV_KEY)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(item, secret=False, in_env=False) for item in value]
    return value


class RedactingStream:
    """A text stream that redacts what is written through it (the console)."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


# --- where a token may go ------------------------------------------------------------------------------
# A Hugging Face token is sent to the Hugging Face endpoint and nowhere else: huggingface.co, or the endpoint
# the user named in $HF_ENDPOINT (over HTTPS; plain HTTP only to this machine). The environment's token goes
# to huggingface.co only: an $HF_ENDPOINT mirror gets a token only when one is given explicitly (--hf-token),
# since a token minted for the hub should not follow an endpoint set for another reason. Nothing reads the
# hub while $HF_HUB_OFFLINE is set (as huggingface_hub itself); tests set it.
HUB_ENDPOINT = "https://huggingface.co"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT).rstrip("/")


def hub_token(explicit: str | None = None) -> tuple[str | None, str | None]:
    """The token harness may send to the hub endpoint, or None and why not (a phrase; None: no token at all)."""
    from urllib.parse import urlsplit

    if hub_offline():
        return None, "HF_HUB_OFFLINE is set: the hub is not read"
    endpoint = urlsplit(hub_endpoint())
    host = endpoint.hostname or ""
    if endpoint.scheme != "https" and not (endpoint.scheme == "http" and host in _LOOPBACK):
        return None, f"HF_ENDPOINT {hub_endpoint()!r}: a token is sent over HTTPS only (plain HTTP to this machine)"
    if explicit:
        return explicit, None
    ambient = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not ambient:
        return None, None
    if host != "huggingface.co":
        return None, (f"HF_TOKEN is sent to huggingface.co only, not to HF_ENDPOINT {hub_endpoint()!r}; "
                      f"give --hf-token to send one there")
    return ambient, None
