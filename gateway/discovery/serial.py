"""Serial discovery: ask each configured port who it is (*IDN?), first as SCPI with a line ending, then in the
Korad form without one, and match the reply against the docs' `idn` rules.

An instrument is known by its serial number (`instrument_key`), not by the port it is on: ports are renumbered
(a pty, a USB adapter plugged elsewhere), and an instrument keeps its id and area wherever it turns up."""

from __future__ import annotations

import logging

from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.devices.registry import ClaimRefused, DeviceLimit, Registry
from gateway.discovery.idn import instrument_key, name_from_idn
from gateway.transports.serial import SerialPorts
from gateway.untrusted import one_line

log = logging.getLogger(__name__)

PROBE_BAUDRATE = 9600
PROBES = (("\n", 1.0), ("", 0.5))  # (line ending, seconds to wait for a reply)


async def identify(serial: SerialPorts, port: str) -> str | None:
    for terminator, timeout in PROBES:
        try:
            reply = (await serial.query(port, PROBE_BAUDRATE, "*IDN?", terminator, timeout)).strip()
        except (TimeoutError, ConnectionError, OSError):
            continue
        if reply:
            return one_line(reply, 200)
    return None


async def discover_serial(ports: list[str], serial: SerialPorts, docs: DocLibrary, registry: Registry) -> None:
    for port in ports:
        idn = await identify(serial, port)
        if idn is None:
            log.warning("serial port %s did not answer *IDN?", port)
            for device in registry.all():
                if device.source == "serial" and device.serial_port == port:
                    registry.set_online(device.key, False)
            continue
        key = instrument_key(idn, port)
        found = docs.match("serial", {"idn": idn})
        if found is None:
            log.warning("serial port %s answered %r, and no device doc matches it (add one with an idn rule)",
                        port, idn)
            continue
        doc, _ = found
        try:
            registry.upsert(Device(key=key, name=name_from_idn(idn), kind=doc.kind, transport="serial",
                                   serial_port=port, baudrate=doc.baudrate, source="serial", api={"idn": idn}))
        except ClaimRefused as exc:  # declared in the config too: that device keeps the port
            log.warning("serial port %s was not added as %s: %s", port, doc.kind, exc)
            continue
        except DeviceLimit:
            continue  # the registry logs that once
        registry.set_online(key, True)
