"""Every HTTP simulator is found over mDNS by python-zeroconf, with the TXT records real clients match on.

Where the traffic goes: `lo` here has no MULTICAST flag (`ip link show lo`: `<LOOPBACK,UP,LOWER_UP>`), yet
a zeroconf instance created with `interfaces=["127.0.0.1"]` sets IP_MULTICAST_IF to 127.0.0.1 and joins the
group there, so the kernel sends its 224.0.0.251 packets out of `lo` and loops them back to every socket that
joined on `lo`, in this process or another one (checked with a second process; eth0's TX counters did not
move). So neither a network namespace nor a change to the host's interfaces is needed. The browser below uses
a zeroconf instance of its own, so announcements, queries and answers really cross the loopback interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aioshelly.zeroconf import async_discover_devices
from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from sim.http_support import until
from simulators.elgato import ElgatoKeyLight
from simulators.shelly import ShellySwitch
from simulators.wled import WledStrip

TYPES = ["_shelly._tcp.local.", "_http._tcp.local.", "_wled._tcp.local.", "_elg._tcp.local."]


@pytest.fixture
async def devices_zeroconf() -> AsyncIterator[AsyncZeroconf]:
    """The instance the simulators announce on, as a scenario runner creates it: 127.0.0.1 only."""
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    yield zeroconf
    await zeroconf.async_close()


async def resolve(zeroconf: AsyncZeroconf, type_: str, name: str) -> AsyncServiceInfo:
    info = AsyncServiceInfo(type_, name)
    assert await info.async_request(zeroconf.zeroconf, 3000), f"{name} did not resolve"
    return info


async def test_a_browser_finds_every_http_device_with_its_txt_records(context, devices_zeroconf):
    context.zeroconf = devices_zeroconf
    plug = ShellySwitch("desk_plug")
    relay = ShellySwitch("boiler_relay", app="Plus1PM", port=80)
    strip = WledStrip("kitchen_strip")
    light = ElgatoKeyLight("desk_light")
    devices = [plug, relay, strip, light]
    await asyncio.gather(*(device.start(context) for device in devices))
    browser_zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    events: dict[str, set[tuple[str, ServiceStateChange]]] = {type_: set() for type_ in TYPES}

    def on_change(zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        events[service_type].add((name, state_change))

    browser = AsyncServiceBrowser(browser_zeroconf.zeroconf, TYPES, handlers=[on_change])
    try:
        def added(type_: str) -> set[str]:
            return {name for name, change in events[type_] if change is ServiceStateChange.Added}

        # By name, not by count: another simulator process on this machine announces devices of its own.
        ours = {name for device in devices for name in device.mdns_names()}
        assert len(ours) == 7  # 2 Shelly and 1 WLED, each on its own type and on _http._tcp; 1 Elgato
        await until(lambda: ours <= set().union(*(added(type_) for type_ in TYPES)))

        suffix = context.mdns_suffix
        for device in (plug, relay):
            info = await resolve(browser_zeroconf, "_shelly._tcp.local.",
                                 f"{device.shelly_id}-{suffix}._shelly._tcp.local.")
            assert info.properties == {b"gen": b"2", b"app": device.app.encode(), b"ver": b"1.4.4",
                                       b"id": device.shelly_id.encode()}
            assert (info.parsed_addresses(), info.port) == ([device.host], device.port)
            assert info.server == f"{device.shelly_id}-{suffix}.local."
        wled_name = f"wled-{strip.mac[-6:]}-{suffix}._wled._tcp.local."
        wled = await resolve(browser_zeroconf, "_wled._tcp.local.", wled_name)
        assert wled.properties == {b"mac": strip.mac.encode()} and len(strip.mac) == 12
        assert (wled.parsed_addresses(), wled.port) == ([strip.host], 80)
        elgato = await resolve(browser_zeroconf, "_elg._tcp.local.", *light.mdns_names())
        assert elgato.properties[b"id"].decode().replace(":", "") == light.mac
        assert (elgato.parsed_addresses(), elgato.port) == ([light.host], 9123)

        # aioshelly's own discovery reads what the browser put in the cache.
        discovered = await async_discover_devices(browser_zeroconf)
        assert {(plug.host, plug.port), (relay.host, 80)} <= {
            (info.parsed_addresses()[0], info.port) for info in discovered}

        await strip.stop()
        await until(lambda: (wled_name, ServiceStateChange.Removed) in events["_wled._tcp.local."])
    finally:
        await browser.async_cancel()
        await browser_zeroconf.async_close()
        for device in devices:
            await device.stop()


async def test_a_name_another_responder_holds_is_refused_naming_it(context, devices_zeroconf):
    context.zeroconf = devices_zeroconf
    first, second = ShellySwitch("desk_plug"), ShellySwitch("desk_plug")
    await first.start(context)
    try:
        with pytest.raises(RuntimeError, match=r"^another responder already announces the mDNS name "
                                               rf"{first.shelly_id}-{context.mdns_suffix}\._shelly\._tcp\.local\.$"):
            await second.start(context)
    finally:
        await second.stop()
        await first.stop()
