"""What keeps the daemon answering under a flood: capped connections and event streams, the open-file limit
raised at start, and repeated errors logged once a minute with a count instead of a traceback each.

Without these, 1,100 idle event streams at a 1,024-file limit stopped the API and wrote 11 MB of tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from yarl import URL

log = logging.getLogger(__name__)

REFUSED_LINGER_S = 2.0  # how long a turned-away connection may take to read its 503 before it is cut


@dataclass
class Limits:
    connections: int = 256  # open TCP connections to the API, idle ones included
    streams: int = 64  # open Server-Sent Events streams (each holds a connection)


def busy_response(message: str) -> bytes:
    body = json.dumps({"error": {"code": "busy", "message": message}}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 5\r\n\r\n")
    return head.encode() + body


class TurnedAway(asyncio.Protocol):
    """A connection beyond the cap: answered 503 at once and closed, without a request handler or a traceback.

    The response goes out before the request is read, then the write side is shut, so the client reads the 503
    rather than a reset; whatever it sends is discarded until it closes, or for REFUSED_LINGER_S at most.
    """

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.response)
        transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(REFUSED_LINGER_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        pass  # the request of a turned-away connection is never read

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


class CappedSite(web.BaseSite):
    """aiohttp's TCP site, but connections beyond `limits.connections` are turned away with a 503.

    A connection counts once its handler has it, one loop turn after it is accepted: a burst arriving at once can
    overshoot the cap by up to the listen backlog (100), which the raised open-file limit absorbs.
    """

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: Limits) -> None:
        super().__init__(runner)
        self.host, self.requested_port, self.limits = host, port, limits

    @property
    def port(self) -> int:
        """The bound port (the requested one may be 0: any free port)."""
        if self._server is None:
            return self.requested_port
        # aiohttp types _server as AbstractServer, which has no sockets; the site made an asyncio.Server
        port: int = self._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return port

    @property
    def open_connections(self) -> int:
        server = self._runner.server
        return len(server.connections) if server else 0

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self.host, port=self.port))

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(self._protocol(server), self.host,
                                                                      self.requested_port)

    def _protocol(self, server: web.Server) -> Callable[[], asyncio.BaseProtocol]:
        def make() -> asyncio.BaseProtocol:
            if self.open_connections < self.limits.connections:
                return server()
            log.warning("turned away a connection: %d are open, the most the API takes", self.limits.connections)
            return TurnedAway(busy_response(f"the gateway has {self.limits.connections} connections open, the most "
                                            "it takes; try again shortly, and close idle clients"))
        return make


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (Debian's soft default, 1,024, is easily reached by event
    streams); the number now allowed. Jobs set their own, lower limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


class RepeatedErrors(logging.Filter):
    """Lets a warning or error through once per `window_s`; repeats in between are counted, and the next one let
    through says how many were held back. A repeat is the same message, or for a record with a traceback the
    same log call and exception type (its message often differs by an address or a path)."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[tuple[object, ...], tuple[float, int]] = {}  # key -> (first let through at, held back)
        self._lock = threading.Lock()  # records come from paho's thread too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        decided = getattr(record, "repeat_shown", None)  # one decision per record, however many handlers ask
        if decided is None:
            decided = record.repeat_shown = self._decide(record)
        return decided

    def _decide(self, record: logging.LogRecord) -> bool:
        key = self._key(record)
        now = self.clock()
        with self._lock:
            shown_at, held = self._seen.get(key, (None, 0))
            if shown_at is not None and now - shown_at < self.window_s:
                self._seen[key] = (shown_at, held + 1)
                return False
            self._forget_old(now)
            self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.window_s:g} s were not logged)"
        return True

    @staticmethod
    def _key(record: logging.LogRecord) -> tuple[object, ...]:
        if record.exc_info and record.exc_info[0] is not None:
            return record.name, record.levelno, record.pathname, record.lineno, record.exc_info[0]
        return record.name, record.levelno, record.getMessage()

    def _forget_old(self, now: float) -> None:
        if len(self._seen) > 1000:  # one entry per distinct message: a long run must not keep them all
            self._seen = {key: value for key, value in self._seen.items() if now - value[0] < self.window_s}
