"""SCPI instruments on the LAN, as mDNS finds them (gateway/discovery/mdns.py hands them over).

An LXI instrument announces `_lxi._tcp` (its web page) and, when it has one, `_scpi-raw._tcp` (its raw SCPI
socket, port 5025). Either way the instrument is asked `*IDN?` on its raw socket and matched against the docs'
`idn` rules, as a serial instrument is, then recorded as one: the same `query`/`write` calls and the same
protocol reader, reached over TCP instead of a serial port.
Its key comes from its identity (maker, model, serial number), so an instrument announced under both types, at a
new address or after a restart is still one record with one id.
"""

from __future__ import annotations

import logging

from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.devices.registry import ClaimRefused, DeviceLimit, Registry
from gateway.discovery.idn import instrument_key, name_from_idn
from gateway.transports.lines import TcpLines
from gateway.untrusted import one_line

log = logging.getLogger(__name__)

LXI_TYPE = "_lxi._tcp.local."
SCPI_RAW_TYPE = "_scpi-raw._tcp.local."
INSTRUMENT_TYPES = (LXI_TYPE, SCPI_RAW_TYPE)
SCPI_RAW_PORT = 5025
IDN_TIMEOUT_S = 3.0
MAX_LOGGED = 1000  # addresses whose failure is logged: forged announcements cannot flood the log


class InstrumentDiscovery:
    def __init__(self, registry: Registry, docs: DocLibrary, lines: TcpLines) -> None:
        self.registry = registry
        self.docs = docs
        self.lines = lines
        self._asking: set[tuple[str, int]] = set()  # one *IDN? at a time per socket, whichever type led to it
        self._keys: dict[tuple[str, int], str] = {}
        self._logged: set[tuple[str, int]] = set()

    async def found(self, service_type: str, instance: str, host: str, port: int) -> str | None:
        """Identify and record the instrument behind an announcement; its key, or None when it was not added."""
        address = (host, port if service_type == SCPI_RAW_TYPE else SCPI_RAW_PORT)
        if address in self._asking:
            return self._keys.get(address)
        self._asking.add(address)
        try:
            return self._record(instance, *address, await self._identify(*address))
        except (TimeoutError, ConnectionError, OSError, ValueError) as exc:
            self._log_once(address, "%s at %s:%s did not answer *IDN?: %s", one_line(instance), *address, exc)
            if address in self._keys:
                self.registry.set_online(self._keys[address], False, "it did not answer *IDN?")
            return None
        finally:
            self._asking.discard(address)

    async def _identify(self, host: str, port: int) -> str:
        idn = one_line(await self.lines.query(host, port, "*IDN?", "\n", IDN_TIMEOUT_S), 200)
        if not idn:
            raise ValueError("an empty reply")
        return idn

    def _record(self, instance: str, host: str, port: int, idn: str) -> str | None:
        found = self.docs.match("serial", {"idn": idn})  # the idn rules name the instrument, whatever its wire
        if found is None:
            self._log_once((host, port), "%s at %s:%s answered %r, and no device doc matches it (add one with an "
                                         "idn rule)", one_line(instance), host, port, idn)
            return None
        doc, _ = found
        key = instrument_key(idn, f"{host}:{port}")
        name = one_line(instance) or name_from_idn(idn)
        try:
            self.registry.upsert(Device(key=key, name=name, kind=doc.kind, transport="serial", host=host, port=port,
                                        source="mdns", api={"idn": idn, "mdns": one_line(instance)}))
        except ClaimRefused as exc:
            self._log_once((host, port), "the instrument at %s:%s (%s) was refused: %s", host, port, idn, exc)
            return None
        except DeviceLimit:
            return None  # the registry logs that once
        self.registry.set_online(key, True)
        self._keys[(host, port)] = key
        return key

    def _log_once(self, address: tuple[str, int], message: str, *args: object) -> None:
        if address not in self._logged and len(self._logged) < MAX_LOGGED:
            self._logged.add(address)
            log.warning(message, *args)
