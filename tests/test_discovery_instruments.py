"""SCPI instruments on the LAN: announced over mDNS as LXI instruments are (`_lxi._tcp`, `_scpi-raw._tcp`),
identified by *IDN? on their raw socket, reached by the same query/write calls as a serial instrument and under
the same policy; one record each, across both announcements and restarts."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from conftest import code_reply, make_config, until
from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncZeroconf

from gateway.app import Gateway
from gateway.discovery.idn import instrument_key
from gateway.transports.lines import TcpLines
from simulators.base import SimContext
from simulators.scpi import ScpiMultimeter, ScpiPowerSupply

SUFFIX = secrets.token_hex(2)  # only this test's instruments are adopted, whatever else announces on lo


@pytest.fixture
async def instruments() -> AsyncIterator[tuple[ScpiPowerSupply, ScpiMultimeter]]:
    zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])
    context = SimContext(zeroconf=zeroconf, mdns_suffix=SUFFIX)
    psu = ScpiPowerSupply("bench_psu", name="Bench Supply", area="lab")
    dmm = ScpiMultimeter("bench_dmm", source=psu.channels[0], name="Bench Meter", area="lab")
    for instrument in (psu, dmm):
        await instrument.start(context)
    yield psu, dmm
    for instrument in (psu, dmm):
        await instrument.stop()
    await zeroconf.async_close()


def lab_config(tmp_path, llm=None):
    return make_config(tmp_path, llm, discovery={"mqtt": False, "mdns": True, "mdns_names": [f"*-{SUFFIX}"]})


def scpi_devices(gateway: Gateway) -> dict[str, object]:
    return {device.key: device for device in gateway.registry.all() if device.key.startswith("scpi:")}


def test_the_key_comes_from_the_identity_or_else_the_address():
    assert instrument_key("Keysight Technologies,E36313A,MY5912,2.1", "10.0.0.5:5025") == \
        "scpi:keysight technologies,e36313a,my5912"
    assert instrument_key("ACME,PSU1,0,1.0", "10.0.0.5:5025") == "scpi:10.0.0.5:5025"
    assert instrument_key("garbage", "10.0.0.5:5025") == "scpi:10.0.0.5:5025"


async def test_instruments_announce_both_lxi_services_with_their_identity(instruments):
    psu, _ = instruments
    seen: dict[str, dict[bytes, bytes | None]] = {}
    zeroconf = Zeroconf(interfaces=["127.0.0.1"])

    def changed(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if name.startswith(f"Bench Supply-{SUFFIX}.") and state_change is ServiceStateChange.Added:
            info = zeroconf.get_service_info(service_type, name, 3000)
            if info is not None:
                seen[service_type] = {**info.properties, b"port": str(info.port).encode()}

    browser = ServiceBrowser(zeroconf, ["_lxi._tcp.local.", "_scpi-raw._tcp.local."], handlers=[changed])
    try:
        await until(lambda: len(seen) == 2, timeout=15)
    finally:
        browser.cancel()
        zeroconf.close()
    serial = psu.identity.split(",")[2]
    assert seen["_lxi._tcp.local."][b"SerialNumber"] == serial.encode()
    assert seen["_lxi._tcp.local."][b"Manufacturer"] == b"PYUSE" and seen["_lxi._tcp.local."][b"port"] == b"80"
    assert seen["_scpi-raw._tcp.local."][b"port"] == str(psu.tcp_port).encode()


async def test_instruments_are_found_by_mdns_and_identified_once_each(tmp_path, instruments, gateway_factory):
    psu, dmm = instruments
    gateway = await gateway_factory(lab_config(tmp_path))
    await until(lambda: len(scpi_devices(gateway)) == 2, timeout=20)
    await gateway.settle_discovery()
    found = scpi_devices(gateway)
    assert len(found) == 2  # each announced twice (_lxi._tcp and _scpi-raw._tcp): one record each
    supply = found[instrument_key(psu.identity, f"{psu.host}:{psu.tcp_port}")]
    meter = found[instrument_key(dmm.identity, f"{dmm.host}:{dmm.tcp_port}")]
    assert (supply.kind, supply.transport, supply.serial_port) == ("scpi_psu", "serial", None)
    assert (supply.host, supply.port) == (psu.host, psu.tcp_port)
    assert supply.name == f"Bench Supply-{SUFFIX}" and supply.api["idn"] == psu.identity
    assert meter.kind == "scpi_dmm" and supply.online and meter.online
    assert "host" not in supply.for_job() and "port" not in supply.for_job()  # the broker holds addresses

    await psu.stop()  # goodbye packets
    await until(lambda: gateway.registry.get(supply.id).online is False, timeout=15)


async def test_a_restart_never_duplicates_an_instrument(tmp_path, instruments):
    config = lab_config(tmp_path)
    async with Gateway(config) as first:
        await until(lambda: len(scpi_devices(first)) == 2, timeout=20)
        before = {key: device.id for key, device in scpi_devices(first).items()}
    async with Gateway(config) as second:
        await second.settle_discovery()
        await until(lambda: all(device.online for device in scpi_devices(second).values()), timeout=20)
        assert {key: device.id for key, device in scpi_devices(second).items()} == before


async def test_a_task_reaches_a_lan_instrument_with_serial_calls_under_the_same_policy(
        tmp_path, instruments, scripted_llm, gateway_factory):
    psu, _ = instruments
    llm = await scripted_llm({"conversations": [
        {"match": "set the supply", "replies": [code_reply(
            'psu = next(d for d in devices.values() if d.kind == "scpi_psu")\n'
            'psu.write("VOLT 5")\n'
            'final_answer(psu.query("VOLT?"))')]},
        {"match": "switch the supply on", "replies": [code_reply(
            'psu = next(d for d in devices.values() if d.kind == "scpi_psu")\n'
            'psu.write("OUTP ON")\n'
            'final_answer("on")')]}]})
    gateway = await gateway_factory(lab_config(tmp_path, llm))
    await until(lambda: len(scpi_devices(gateway)) == 2, timeout=20)

    result = await gateway.run_task("set the supply to 5 volts")
    assert result.status == "done", result.error
    assert float(result.answer) == 5.0 and psu.volts_set == 5.0

    refused = await gateway.run_task("switch the supply on")  # a danger rule of scpi_psu: needs a person
    assert refused.calls == 0 and psu.channels[0].output is False


async def test_the_tcp_transport_drops_a_connection_that_timed_out(instruments):
    psu, _ = instruments
    lines = TcpLines()
    try:
        assert (await lines.query(psu.host, psu.tcp_port, "*IDN?")) == psu.identity
        psu.apply({"fault": "slow"})
        with pytest.raises(TimeoutError):
            await lines.query(psu.host, psu.tcp_port, "*IDN?", timeout=0.2)
        psu.apply({"fault": "none"})
        assert (await lines.query(psu.host, psu.tcp_port, "VOLT?", timeout=5)) != psu.identity  # no late reply
    finally:
        lines.close()
