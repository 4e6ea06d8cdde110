"""mDNS discovery: browse the service types the docs' match rules name, resolve each instance, check it with the
doc's probe (a GET that must answer the right JSON), and record it as an HTTP device. SCPI instruments
(`_lxi._tcp`, `_scpi-raw._tcp`) go to gateway/discovery/instruments.py, which asks them who they are.

Interfaces come from `[discovery] mdns_interfaces`; the default, 127.0.0.1, keeps every packet on this machine.
Only instances whose name `[discovery] mdns_names` selects are adopted: two simulated homes on one machine share
loopback mDNS, and each demo takes only its own.
A service's goodbye marks its device offline (it usually comes back); a failed probe does too. An address
another device already has (declared in the config, or found first) is refused and logged once per instance.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from typing import Any

from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from gateway.devices.docs import DeviceDoc, DocLibrary, MatchRule
from gateway.devices.model import Device
from gateway.devices.registry import ClaimRefused, DeviceLimit, Registry
from gateway.discovery.instruments import INSTRUMENT_TYPES, InstrumentDiscovery
from gateway.transports.http import HttpTransport
from gateway.untrusted import one_line

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 3000
AT_ONCE = 16  # services resolved and probed at a time: a LAN full of devices is not asked all at once
PROBE_TIMEOUT_S = 5.0
MAX_REFUSED_LOGGED = 1000  # forged announcements under ever new names cannot flood the log


def instance_of(name: str, service_type: str) -> str:
    """'shellyplusplugs-aabb._shelly._tcp.local.' -> 'shellyplusplugs-aabb'."""
    return name[: -len(service_type) - 1] if name.endswith("." + service_type) else name


class MdnsDiscovery:
    def __init__(self, registry: Registry, docs: DocLibrary, http: HttpTransport, interfaces: list[str],
                 names: list[str] | None = None, instruments: InstrumentDiscovery | None = None) -> None:
        self.registry = registry
        self.docs = docs
        self.http = http
        self.interfaces = interfaces
        self.names = [pattern.casefold() for pattern in names or ["*"]]
        self.types = sorted({rule.type for doc in docs.docs.values() for rule in doc.match
                             if rule.source == "mdns" and rule.type} | set(INSTRUMENT_TYPES if instruments else ()))
        self.instruments = instruments
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._work: set[asyncio.Task[None]] = set()
        self._keys: dict[tuple[str, int], str] = {}  # host:port -> key: one device however many services it offers
        self._instances: dict[str, str] = {}  # instance name -> key, for goodbyes
        self._refused: set[str] = set()  # instances whose refusal was logged
        self._started = 0.0
        self._in_turn = asyncio.Semaphore(AT_ONCE)

    async def start(self) -> None:
        if not self.types:
            return
        self._zeroconf = AsyncZeroconf(interfaces=self.interfaces)
        self._browser = AsyncServiceBrowser(self._zeroconf.zeroconf, self.types, handlers=[self._changed])
        self._started = time.monotonic()

    async def settle(self, browse_s: float = 1.5, limit_s: float = 6.0) -> None:
        """For one-shot commands: browse a moment, then let the resolutions and probes under way finish."""
        if self._zeroconf is None:
            return
        deadline = self._started + limit_s
        await asyncio.sleep(max(0.0, self._started + browse_s - time.monotonic()))
        while self._work and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for work in self._work:
            work.cancel()
        if self._browser:
            await self._browser.async_cancel()
        if self._zeroconf:
            await self._zeroconf.async_close()

    def _changed(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        instance = instance_of(name, service_type).casefold()
        if not any(fnmatch.fnmatchcase(instance, pattern) for pattern in self.names):
            return
        if state_change is ServiceStateChange.Removed:
            key = self._instances.get(instance_of(name, service_type))
            if key is not None:
                self.registry.set_online(key, False)
            return
        work = asyncio.ensure_future(self._found_in_turn(service_type, name))
        self._work.add(work)
        work.add_done_callback(self._work.discard)

    async def _found_in_turn(self, service_type: str, name: str) -> None:
        async with self._in_turn:
            await self._found(service_type, name)

    async def _found(self, service_type: str, name: str) -> None:
        assert self._zeroconf is not None
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zeroconf.zeroconf, RESOLVE_TIMEOUT_MS):
            log.debug("mDNS service %s did not resolve", name)
            return
        addresses = info.parsed_addresses()
        if not addresses or not info.port:
            return
        instance = instance_of(name, service_type)
        if self.instruments is not None and service_type in INSTRUMENT_TYPES:
            key = await self.instruments.found(service_type, instance, addresses[0], info.port)
            if key is not None:
                self._instances[instance] = key
            return
        txt = {key.decode("utf-8", "replace"): (value or b"").decode("utf-8", "replace")
               for key, value in info.properties.items()}
        found = self.docs.match("mdns", {"type": service_type, "name": instance, "txt": txt})
        if found is None:
            return  # a generic service type (_http._tcp) announced by something no doc knows
        doc, rule = found
        host, port = addresses[0], info.port
        key = self._keys.get((host, port), f"mdns:{instance.casefold()}")
        try:
            probed = await self._probe(host, port, rule)
        except (ConnectionError, TimeoutError, ValueError, OSError) as exc:
            log.warning("%s at %s:%s did not pass the %s probe: %s", one_line(instance), host, port, doc.kind, exc)
            self.registry.set_online(key, False)
            return
        if probed is None:
            return
        try:
            self._record(key, doc, rule, instance, host, port, txt, probed)
        except ClaimRefused as exc:
            if instance not in self._refused and len(self._refused) < MAX_REFUSED_LOGGED:
                self._refused.add(instance)
                log.warning("mDNS service %s was refused: %s", one_line(instance), exc)
            return
        except DeviceLimit:
            return  # the registry logs that once
        self._keys[(host, port)] = key
        self._instances[instance] = key

    async def _probe(self, host: str, port: int, rule: MatchRule) -> dict[str, Any] | None:
        """The probe's JSON when it holds what the rule wants, None when it is another kind of device."""
        if rule.probe is None:
            return {}
        reply = await self.http.request("GET", host, port, rule.probe, timeout=PROBE_TIMEOUT_S)
        if not reply.ok or not isinstance(reply.body, dict):
            raise ValueError(f"GET {rule.probe} answered HTTP {reply.status}")
        if any(reply.body.get(field) != value for field, value in rule.probe_fields.items()):
            return None
        return reply.body

    def _record(self, key: str, doc: DeviceDoc, rule: MatchRule, instance: str, host: str, port: int,
                txt: dict[str, str], probed: dict[str, Any]) -> None:
        own_name = probed.get(rule.probe_name) if rule.probe_name else None
        name = one_line(own_name) if isinstance(own_name, str) and own_name.strip() else one_line(instance)
        self.registry.upsert(Device(key=key, name=name, kind=doc.kind, transport="http", host=host, port=port,
                                    source="mdns", api={"mdns": one_line(instance),
                                                        "txt": {one_line(k, 40): one_line(v, 100)
                                                                for k, v in list(txt.items())[:20]}}))
        self.registry.set_online(key, True)
