"""HTTPS for the admission webhook: a small ASGI app served by hypercorn's trio worker.

TLS only (the API server calls webhooks over HTTPS; a plain-HTTP client fails the
handshake). The certificate and key are re-read when their files change, checked at
each TLS handshake, so cert-manager's renewals (an atomic symlink swap in the mounted
Secret) take effect without a restart.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import Framework

from procfs_view.webhook import DEFAULT_MOUNT_DIR, review

log = logging.getLogger(__name__)

MUTATE_PATH = "/mutate"
HEALTH_PATH = "/healthz"
# The API server caps a request at 3 MiB, and we are sent pod CREATEs only (the object
# once, no oldObject). 8 MiB of JSON took a review to 253 MiB of RSS, over the
# manifest's 128 MiB limit.
MAX_BODY = 4 * 1024 * 1024
# What the memory goes on is objects and arrays, ~100 bytes each once parsed: 4 MiB of
# `{},` took the server to 139 MiB. A 3 MiB pod of 95,000 env entries has ~95,000.
MAX_CONTAINERS = 300_000

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class WebhookConfig:
    """What ``procfs-view webhook`` was asked for."""

    listen: str
    tls_cert: Path
    tls_key: Path
    mount_dir: str = DEFAULT_MOUNT_DIR


class AdmissionApp:
    """ASGI: POST /mutate answers AdmissionReviews, GET /healthz says the server is up."""

    def __init__(self, mount_dir: str = DEFAULT_MOUNT_DIR) -> None:
        self.mount_dir = mount_dir

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            await _respond(send, 200, b"ok\n", "text/plain")
        elif path != MUTATE_PATH:
            await _respond(send, 404, b"not found\n", "text/plain")
        elif method != "POST":
            await _respond(send, 405, b"POST an AdmissionReview\n", "text/plain")
        else:
            body = await _read_body(receive)
            if body is None or body.count(b"{") + body.count(b"[") > MAX_CONTAINERS:
                await _respond(send, 413, b"request body too large\n", "text/plain")
                return
            status, answer = review(body, self.mount_dir)
            await _respond(send, status, json.dumps(answer).encode(), "application/json")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _signature(path: Path) -> tuple[int, int, int, int]:
    info = os.stat(path)  # follows symlinks: a Secret volume swaps its ..data link
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


class ReloadingTLSConfig(Config):
    """A hypercorn Config whose SSL context swaps in a fresh one when the files change.

    The listener keeps the first context; its SNI callback (which OpenSSL calls on every
    handshake, with or without SNI) moves the connection to the newest context. A
    half-written pair (cert and key not matching yet) is logged and the old one kept.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__()
        self.certfile = str(cert)
        self.keyfile = str(key)
        self._cert, self._key = cert, key
        self._loaded: tuple[tuple[int, int, int, int], ...] = ()
        self._rejected: tuple[tuple[int, int, int, int], ...] = ()
        self._current: ssl.SSLContext | None = None

    def _fresh_context(self) -> ssl.SSLContext:
        context = super().create_ssl_context()
        assert context is not None  # certfile and keyfile are always set
        return context

    def create_ssl_context(self) -> ssl.SSLContext:
        self._loaded = (_signature(self._cert), _signature(self._key))
        context = self._fresh_context()
        context.sni_callback = self._on_handshake
        self._current = context
        return context

    def _on_handshake(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        current = self.current_context()
        if connection.context is not current:
            connection.context = current

    def current_context(self) -> ssl.SSLContext:
        """The context for a new connection, reloading the files if they changed."""
        assert self._current is not None
        try:
            signature = (_signature(self._cert), _signature(self._key))
        except OSError as error:
            log.warning("cannot stat the TLS files (%s); keeping the loaded ones", error)
            return self._current
        if signature in (self._loaded, self._rejected):
            return self._current
        try:
            context = self._fresh_context()
        except (OSError, ssl.SSLError) as error:
            log.warning("cannot load the changed TLS files (%s); keeping the loaded ones", error)
            self._rejected = signature
            return self._current
        log.info("reloaded the TLS certificate %s", self._cert)
        self._loaded, self._current = signature, context
        return context


def hypercorn_config(config: WebhookConfig) -> ReloadingTLSConfig:
    """TLS on ``config.listen`` only (no insecure bind), logging through ours."""
    hyper = ReloadingTLSConfig(config.tls_cert, config.tls_key)
    hyper.bind = [config.listen]
    hyper.insecure_bind = []
    hyper.errorlog = logging.getLogger("hypercorn.error")
    hyper.accesslog = None
    hyper.graceful_timeout = 5.0
    return hyper


async def _until_stop_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s: shutting down", signal.Signals(signum).name)
            return


async def serve(config: WebhookConfig) -> None:
    """Serve until SIGTERM/SIGINT; logs the bound address (the port may be ephemeral)."""
    hyper = hypercorn_config(config)
    app = cast(Framework, AdmissionApp(config.mount_dir))
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(_serve_with_status, app, hyper)
        log.info("webhook listening on %s", " ".join(binds))


async def _serve_with_status(
    app: Framework, hyper: Config, *, task_status: trio.TaskStatus[list[str]]
) -> None:
    await hypercorn_serve(app, hyper, shutdown_trigger=_until_stop_signal, task_status=task_status)


def run(config: WebhookConfig) -> int:
    """Exit 0 after a signal; 1 (reason logged) when the TLS files or the address are bad."""
    try:
        hypercorn_config(config).create_ssl_context()
    except (OSError, ssl.SSLError) as error:
        log.error("cannot load the TLS certificate and key (HTTPS only): %s", error)
        return 1
    try:
        trio.run(serve, config)
    except BaseExceptionGroup as group:
        matched, rest = group.split(OSError)
        if matched is None or rest is not None:
            raise
        log.error("cannot serve on %s: %s", config.listen, _first(matched))
        return 1
    return 0


def _first(group: BaseExceptionGroup[OSError]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
