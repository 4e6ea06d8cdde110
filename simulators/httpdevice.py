"""What every simulated HTTP device shares: an aiohttp server on its own address, faults, WebSockets, mDNS."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import WSMsgType, web

from simulators.base import SLOW_REPLY_S, Fault, Simulator
from simulators.mdns import MdnsAnnouncer, MdnsService

# Neither UTF-8 nor JSON: what a device with corrupted firmware or a broken connection might send.
GARBAGE = b'\xff\xfe{"\x00garbage'
TextHandler = Callable[[web.WebSocketResponse, str], Awaitable[None]]
SocketHook = Callable[[web.WebSocketResponse], Awaitable[None]]


def parse_json(raw: bytes | str) -> Any:
    """JSON as device firmware parses it: NaN and Infinity are not JSON, nor is nesting past any sane depth.

    Raises ValueError.
    """
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError as error:
        raise ValueError("nested too deeply") from error


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def mac_for(device_id: str, oui: str) -> str:
    """A stable MAC address (12 upper-case hex digits): the vendor's OUI, then a hash of the device id.

    Devices in a scenario need distinct MACs, because their mDNS names and ids are derived from them.
    """
    return (oui + hashlib.sha256(device_id.encode()).hexdigest()[:6]).upper()


def serial_for(device_id: str, prefix: str, digits: int = 5) -> str:
    """A stable serial number: the vendor's prefix, then `digits` decimal digits from a hash of the device id."""
    return prefix + f"{int(hashlib.sha256(device_id.encode()).hexdigest(), 16) % 10 ** digits:0{digits}d}"


class HttpDevice(Simulator):
    """A device that serves HTTP (and WebSockets) on host:port and announces itself over mDNS.

    Without a host, a device on a fixed port (WLED: 80) takes a loopback address of its own from the context,
    so clients that hard-code the port reach it; a device on an ephemeral port (port 0) shares 127.0.0.1.
    """

    def __init__(self, device_id: str, name: str = "", area: str = "", host: str | None = None,
                 port: int = 0) -> None:
        super().__init__(device_id, name, area)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._mdns: MdnsAnnouncer | None = None
        self._sockets: dict[web.WebSocketResponse, asyncio.Transport] = {}

    @abstractmethod
    def routes(self) -> Iterable[web.RouteDef]:
        """The device's HTTP and WebSocket endpoints."""

    def mdns_hostname(self) -> str:
        """The device's host name on the LAN, without `.local.`."""
        return self.id

    def mdns_services(self) -> list[MdnsService]:
        """The DNS-SD services the device announces on its HTTP port."""
        return []

    def mdns_names(self) -> list[str]:
        """The full names its services are announced under, each with its context's suffix."""
        return [service.name(self.context.mdns_suffix) for service in self.mdns_services()]

    async def serve(self) -> None:
        app = web.Application(middlewares=[self._faults])
        app.add_routes(self.routes())
        # handler_cancellation: a client that gives up on a slow reply does not keep its handler busy.
        runner = self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                              shutdown_timeout=1.0)
        await runner.setup()
        try:
            if self.host is None and self.port:
                self.host, _ = await self.context.addresses.bind(
                    lambda host: web.TCPSite(runner, host, self.port).start())
            else:
                self.host = self.host or "127.0.0.1"
                await web.TCPSite(runner, self.host, self.port).start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = self._runner.addresses[0][1]
        if self.context.zeroconf is not None:
            self._mdns = MdnsAnnouncer(self.context.zeroconf, self.mdns_hostname(), self.host, self.port,
                                       self.context.mdns_suffix)
            await self._mdns.announce(self.mdns_services())

    async def stop(self) -> None:
        if self._mdns is not None:
            await self._mdns.withdraw()
            self._mdns = None
        await self.cancel_tasks()
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def address(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_fault(self, fault: Fault) -> None:
        super().set_fault(fault)
        if fault == "offline":
            for transport in self._sockets.values():
                transport.abort()

    @property
    def serving(self) -> bool:
        return self._runner is not None

    async def websocket(self, request: web.Request, on_text: TextHandler,
                        on_open: SocketHook | None = None, on_close: SocketHook | None = None,
                        ) -> web.WebSocketResponse:
        """Serve a WebSocket connection: text frames go to on_text; binary ones are ignored, as devices do."""
        socket = web.WebSocketResponse(timeout=2.0)
        await socket.prepare(request)
        if request.transport is None:
            return socket
        self._sockets[socket] = request.transport
        try:
            if on_open is not None:
                await on_open(socket)
            async for message in socket:
                if message.type is WSMsgType.TEXT:
                    await on_text(socket, message.data)
        finally:
            del self._sockets[socket]
            if on_close is not None:
                await on_close(socket)
        return socket

    @property
    def websockets(self) -> list[web.WebSocketResponse]:
        return list(self._sockets)

    async def send_text(self, socket: web.WebSocketResponse, text: str) -> None:
        """Send a text frame as the device would under its current fault; a peer that left is no error."""
        if self.fault == "offline" or socket.closed:
            return
        if self.fault == "slow":
            await asyncio.sleep(SLOW_REPLY_S)
        payload = GARBAGE.decode("latin-1") if self.fault == "garbage" else text
        with contextlib.suppress(ConnectionError):
            await socket.send_str(payload)

    @web.middleware
    async def _faults(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if self.fault == "offline":
            # Drop the connection without a reply; aiohttp then gives up writing the response below.
            if request.transport is not None:
                request.transport.abort()
            return web.Response()
        if self.fault == "slow":
            await asyncio.sleep(SLOW_REPLY_S)
        if self.fault == "garbage":
            return web.Response(body=GARBAGE, content_type="application/json")
        return await handler(request)
