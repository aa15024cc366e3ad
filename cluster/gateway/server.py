"""The HTTP gateway: QLDB's session protocol and its control plane on one aiohttp port.

Every request goes through the same steps, in this order, each refusing with AWS's error
shape before the next runs: (1) size: a body larger than the model allows for its protocol
(`Content-Length`, or counted while reading) is 413 before it is read whole; (2) SigV4
(cluster/gateway/sigv4.py) against the configured keys; (3) dispatch: `X-Amz-Target:
QLDBSession.SendCommand` goes to the session service (cluster/gateway/session.py), any other
target is UnknownOperationException, no target is the REST control plane
(`cluster.gateway.control.handle_control`, written separately; 501 until it exists).

Blocking work (ledger calls, the control plane) runs on thread pools, never on the event loop:
one client's slow statement or ledger creation never holds up another's request.

Stopping (`stop`, on SIGTERM in `strand serve`): the listening socket closes first, requests
still arriving on open connections are answered 503 CapacityExceededException, requests in
flight get up to `stop_grace_s` to finish, then every open session transaction is aborted,
the ledgers are closed and the pools shut down.

Invariants: no request reaches a ledger or the control plane unauthenticated; a refused
request changed nothing; every response carries `x-amzn-RequestId`.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import logging
import ssl
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cluster.gateway import sigv4
from cluster.gateway.session import SessionConfig, SessionService

log = logging.getLogger(__name__)

SESSION_TARGET = "QLDBSession.SendCommand"
JSON_10 = "application/x-amz-json-1.0"
# A SendCommand carries one statement (100,000 characters) and its parameters (128 KB of Ion
# binary each, within QLDB's 4 MB per transaction): base64 and JSON framing included.
MAX_SESSION_BODY_BYTES = 6 * 1024 * 1024
MAX_CONTROL_BODY_BYTES = 1024 * 1024  # control-plane requests are small JSON documents
READ_CHUNK_BYTES = 64 * 1024
SWEEP_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything a gateway needs besides its ledgers."""

    keys: Mapping[str, str]  # access key -> secret key
    session: SessionConfig = field(default_factory=SessionConfig)
    max_session_body_bytes: int = MAX_SESSION_BODY_BYTES
    max_control_body_bytes: int = MAX_CONTROL_BODY_BYTES
    session_threads: int = 32
    control_threads: int = 4
    stop_grace_s: float = 10.0


def _error(status: int, code: str, message: str, request_id: str, *, rest: bool) -> web.Response:
    """AWS's error shape: JSON 1.0 (`__type`, `Message`) or REST-JSON (header + `message`)."""
    headers = {"x-amzn-RequestId": request_id}
    if rest:
        headers["x-amzn-ErrorType"] = code
        body: dict[str, str] = {"__type": code, "message": message}
        content_type = "application/json"
    else:
        body = {"__type": code, "Message": message}
        content_type = JSON_10
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type=content_type, headers=headers
    )


def _control_module() -> Any:
    """cluster.gateway.control, or None while it does not exist yet."""
    try:
        from cluster.gateway import control
    except ImportError as exc:
        if exc.name not in ("cluster.gateway.control",):
            raise
        return None
    return control


class Gateway:
    """One server: a LedgerSet behind the QLDB session protocol and control plane."""

    def __init__(self, ledgers: Any, config: GatewayConfig) -> None:
        if not config.keys:
            raise ValueError("the gateway needs at least one access key")
        self.ledgers = ledgers
        self.config = config
        self._session_pool = ThreadPoolExecutor(config.session_threads, "strand-session")
        self._control_pool = ThreadPoolExecutor(config.control_threads, "strand-control")
        self.sessions = SessionService(ledgers, self._session_pool, config.session)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._active = 0
        self._idle = asyncio.Event()
        self._stopping = False
        self.port = 0
        self.scheme = "http"

    # ----------------------------------------------------------------- lifecycle
    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> int:
        """Listen; the port (a free one when `port` is 0)."""
        app = web.Application(
            client_max_size=max(
                self.config.max_session_body_bytes, self.config.max_control_body_bytes
            )
        )
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await self._site.start()
        self.port = int(self._runner.addresses[0][1])
        self.scheme = "https" if ssl_context is not None else "http"
        self._idle.set()
        self._sweeper = asyncio.create_task(self._sweep_forever())
        # build the PartiQL parser now (~3 s on first use) rather than in the first statement
        asyncio.get_running_loop().run_in_executor(self._session_pool, _warm_up)
        return self.port

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                self.sessions.sweep()
            except Exception:  # never let the sweeper die
                log.exception("session sweep failed")

    async def stop(self) -> None:
        """Graceful stop (see the module docstring); idempotent."""
        if self._stopping:
            return
        self._stopping = True
        if self._site is not None:
            await self._site.stop()  # no new connections
        try:
            await asyncio.wait_for(self._idle.wait(), self.config.stop_grace_s)
        except TimeoutError:
            log.warning("stopping with %d requests still in flight", self._active)
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.sessions.close()
        if self._runner is not None:
            await self._runner.cleanup()
        loop = asyncio.get_running_loop()
        close = getattr(self.ledgers, "close", None)
        if close is not None:
            try:
                await loop.run_in_executor(self._control_pool, close)
            except Exception:
                log.exception("closing the ledgers failed")
        self._session_pool.shutdown(wait=False, cancel_futures=True)
        self._control_pool.shutdown(wait=False, cancel_futures=True)

    # ----------------------------------------------------------------- requests
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._active += 1
        self._idle.clear()
        try:
            return await self._serve(request)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        target = request.headers.get("X-Amz-Target")
        rest = target is None
        if self._stopping:
            return _error(
                503, "CapacityExceededException", "the server is stopping", request_id, rest=rest
            )
        limit = self.config.max_control_body_bytes if rest else self.config.max_session_body_bytes
        body = await _read_body(request, limit)
        if body is None:
            return _error(
                413,
                "RequestEntityTooLargeException",
                f"the request body exceeds {limit} bytes",
                request_id,
                rest=rest,
            )
        try:
            signer = sigv4.verify(
                method=request.method,
                raw_path=request.raw_path,
                headers=[
                    (k.decode("latin-1"), v.decode("utf-8", "replace"))
                    for k, v in request.raw_headers
                ],
                body=body,
                keys=self.config.keys,
                now=datetime.datetime.now(datetime.UTC),
            )
        except sigv4.AuthError as exc:
            return _error(exc.status, exc.code, exc.message, request_id, rest=rest)
        if target is not None:
            if target != SESSION_TARGET:
                return _error(
                    400,
                    "UnknownOperationException",
                    f"unknown operation {target[:100]!r}",
                    request_id,
                    rest=False,
                )
            status, payload = await self.sessions.handle(body, signer.access_key, request_id)
            return web.Response(
                status=status,
                body=json.dumps(payload).encode(),
                content_type=JSON_10,
                headers={"x-amzn-RequestId": request_id},
            )
        return await self._control(request, body, request_id, signer.region)

    async def _control(
        self, request: web.Request, body: bytes, request_id: str, region: str
    ) -> web.Response:
        control = _control_module()
        if control is None:
            return _error(
                501,
                "NotImplementedException",
                "the control plane is not available yet",
                request_id,
                rest=True,
            )
        # the path still percent-encoded (an ARN's "/" is "%2F"), every value of each key
        call = functools.partial(
            control.handle_control,
            self.ledgers,
            request.method,
            request.rel_url.raw_path,
            request.query,
            body,
            region=region,
        )
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._control_pool, call)
        except Exception:
            log.exception("control plane request failed")
            return _error(500, "InternalFailure", "internal error", request_id, rest=True)
        headers = {"x-amzn-RequestId": request_id, **answer.headers}
        return web.Response(
            status=answer.status,
            body=json.dumps(answer.body).encode(),
            content_type="application/json",
            headers=headers,
        )


def _warm_up() -> None:
    from core.partiql import parser

    try:
        parser.parse("SELECT * FROM << 1 >>")
    except Exception:  # only an optimisation
        log.debug("parser warm-up failed", exc_info=True)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(READ_CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


# --------------------------------------------------------------------- in a thread
class GatewayThread:
    """A gateway on its own event loop in a background thread (tests, benchmarks).

    `start()` returns once it listens; `url` is its address; `stop()` stops it gracefully.
    """

    def __init__(
        self,
        ledgers: Any,
        config: GatewayConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.gateway = Gateway(ledgers, config)
        self._host, self._port, self._ssl = host, port, ssl_context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="strand-gateway"
        )

    @property
    def url(self) -> str:
        return f"{self.gateway.scheme}://{self._host}:{self.gateway.port}"

    def start(self) -> GatewayThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(
            self.gateway.start(self._host, self._port, self._ssl), self._loop
        ).result(timeout=30)
        return self

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the gateway's loop (to inspect its state safely)."""

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
