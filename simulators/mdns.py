"""Announcing a simulated device over mDNS, on the caller's zeroconf instance (bound to 127.0.0.1 only).

A device announces its services with its own loopback address and host name, as a real one announces its LAN
address; a browser on the same loopback interface then finds it like it would on a LAN.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from zeroconf import ServiceInfo
from zeroconf.asyncio import AsyncZeroconf


@dataclass(frozen=True)
class MdnsService:
    """One DNS-SD service a device announces, e.g. `_wled._tcp.local.` with TXT `mac=...`."""

    type_: str
    instance: str
    properties: Mapping[str, str] = field(default_factory=dict)


class MdnsAnnouncer:
    """Registers a device's services on start and withdraws them (with goodbye packets) on stop."""

    def __init__(self, zeroconf: AsyncZeroconf, hostname: str, address: str, port: int) -> None:
        self._zeroconf = zeroconf
        self._server = f"{hostname}.local."
        self._address = socket.inet_aton(address)
        self._port = port
        self._registered: list[ServiceInfo] = []

    async def announce(self, services: Iterable[MdnsService]) -> None:
        infos = [ServiceInfo(service.type_, f"{service.instance}.{service.type_}", port=self._port,
                             properties=dict(service.properties), server=self._server,
                             addresses=[self._address]) for service in services]
        # Each registration first probes for about a second that the name is free, so they run side by side.
        # What they return repeats the announcement in the background.
        results = await asyncio.gather(*(self._zeroconf.async_register_service(info) for info in infos),
                                       return_exceptions=True)
        self._registered.extend(info for info, result in zip(infos, results, strict=True)
                                if not isinstance(result, Exception))
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def withdraw(self) -> None:
        goodbyes = [await self._zeroconf.async_unregister_service(info) for info in self._registered]
        self._registered.clear()
        await asyncio.gather(*goodbyes)

