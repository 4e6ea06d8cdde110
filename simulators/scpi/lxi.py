"""Announcing an instrument over mDNS as an LXI instrument does (LXI Device Specification, mDNS and DNS-SD).

`_lxi._tcp` names its web page (port 80, TXT `txtvers`, `Manufacturer`, `Model`, `SerialNumber`,
`FirmwareVersion` from its identity) and `_scpi-raw._tcp` its raw SCPI socket. The instance name is the one a
user gives the instrument on its LXI page, here the simulated device's name; the web page itself is not
simulated, clients find the instrument and talk SCPI on the raw socket.
"""

from __future__ import annotations

import asyncio
import re

from zeroconf.asyncio import AsyncZeroconf

from simulators.mdns import MdnsAnnouncer, MdnsService

LXI_WEB_PORT = 80


def lxi_txt(identity: str) -> dict[str, str]:
    """'PYUSE,SIM-PSU2,PSU01234,1.2.0' -> the TXT record an LXI instrument gives `_lxi._tcp`."""
    maker, model, serial, firmware = ([*identity.split(","), "", "", "", ""])[:4]
    return {"txtvers": "1", "Manufacturer": maker, "Model": model, "SerialNumber": serial,
            "FirmwareVersion": firmware}


class LxiAnnouncer:
    def __init__(self, zeroconf: AsyncZeroconf, device_id: str, name: str, identity: str, address: str,
                 raw_port: int, suffix: str) -> None:
        hostname = re.sub(r"[^a-z0-9-]+", "-", device_id.casefold())  # `_` is not allowed in a host name
        self._web = MdnsAnnouncer(zeroconf, hostname, address, LXI_WEB_PORT, suffix)
        self._raw = MdnsAnnouncer(zeroconf, hostname, address, raw_port, suffix)
        self._services = (MdnsService("_lxi._tcp.local.", name, lxi_txt(identity)),
                          MdnsService("_scpi-raw._tcp.local.", name))

    async def announce(self) -> None:
        await asyncio.gather(self._web.announce([self._services[0]]), self._raw.announce([self._services[1]]))

    async def withdraw(self) -> None:
        await asyncio.gather(self._web.withdraw(), self._raw.withdraw())
