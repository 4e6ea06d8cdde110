"""Announcing a simulated device over mDNS, on the caller's zeroconf instance (bound to 127.0.0.1 only).

A device announces its services with its own loopback address and host name, as a real one announces its LAN
address; a browser on the same loopback interface then finds it like it would on a LAN. Every instance and host
name carries the context's suffix (`shellyplusplugs-aabbccddeeff-1f3a`), since two simulated homes on one
machine hold devices with the same ids, hence the same MACs and names.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field

from zeroconf import NonUniqueNameException, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf


@dataclass(frozen=True)
class MdnsService:
    """One DNS-SD service a device announces, e.g. `_wled._tcp.local.` with TXT `mac=...`."""

    type_: str
    instance: str
    properties: Mapping[str, str] = field(default_factory=dict)

    def name(self, suffix: str) -> str:
        """The full service name announced with `suffix`: `<instance>-<suffix>.<type>`."""
        return f"{self.instance}-{suffix}.{self.type_}"


def server_name(hostname: str, suffix: str) -> str:
    """The host name announced with `suffix`, in the `.local.` domain."""
    return f"{hostname}-{suffix}.local."


class MdnsAnnouncer:
    """Registers a device's services on start and withdraws them (with goodbye packets) on stop."""

    def __init__(self, zeroconf: AsyncZeroconf, hostname: str, address: str, port: int, suffix: str) -> None:
        self._zeroconf = zeroconf
        self._suffix = suffix
        self._server = server_name(hostname, suffix)
        self._address = socket.inet_aton(address)
        self._port = port
        self._registered: list[ServiceInfo] = []

    async def announce(self, services: Iterable[MdnsService]) -> None:
        """Register every service; raises RuntimeError naming one whose name another responder holds."""
        infos = [ServiceInfo(service.type_, service.name(self._suffix), port=self._port,
                             properties=dict(service.properties), server=self._server,
                             addresses=[self._address]) for service in services]
        # Each registration first probes for about a second that the name is free, so they run side by side.
        # What they return repeats the announcement in the background.
        results = await asyncio.gather(*(self._register(info) for info in infos), return_exceptions=True)
        self._registered.extend(info for info, result in zip(infos, results, strict=True)
                                if not isinstance(result, Exception))
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def _register(self, info: ServiceInfo) -> Awaitable[None]:
        try:
            return await self._zeroconf.async_register_service(info)
        except NonUniqueNameException as error:  # it carries no message
            raise RuntimeError(f"another responder already announces the mDNS name {info.name}") from error

    async def withdraw(self) -> None:
        goodbyes = [await self._zeroconf.async_unregister_service(info) for info in self._registered]
        self._registered.clear()
        await asyncio.gather(*goodbyes)

