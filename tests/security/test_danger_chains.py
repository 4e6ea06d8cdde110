"""A chain is as many commands as it holds (issue 11, point 6): a Tasmota Backlog of 30 Power toggles switched a
relay 30 times for one rate-limit token and one audit row. Now each command costs a token, a chain the device's
burst cannot hold is refused whole, and the one audit row of a call lists every action."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import make_config, psu_entry, tasmota_entry, until

from gateway.config import DeviceEntry
from gateway.sandbox.broker import JobContext
from gateway.sandbox.messages import CallRequest
from security.attack import spy
from simulators.korad import KoradPowerSupply

POWER = "cmnd/tasmota_A1B2C3/Power"
BACKLOG = "cmnd/tasmota_A1B2C3/Backlog"


def call(device: str, method: str, **args) -> CallRequest:
    return CallRequest(op="call", id=1, device=device, method=method, args=args)


def toggles(count: int) -> str:
    return ";".join(["Power TOGGLE"] * count)


@pytest.fixture
async def plug_gateway(tmp_path, mqtt_broker, tasmota, gateway_factory):
    return await gateway_factory(make_config(tmp_path, devices=[tasmota_entry(tasmota)], broker=mqtt_broker))


async def test_a_backlog_of_30_toggles_is_30_actions_and_is_refused_whole(plug_gateway, tasmota):
    received = spy(tasmota, "run_command")
    context = JobContext("t1", {d.id: d for d in plug_gateway.registry.all()})

    reply = await plug_gateway.broker.handle(context, call("tv_plug", "publish", topic=BACKLOG, payload=toggles(30)))

    assert reply["error"]["type"] == "PermissionError"
    assert reply["error"]["message"].startswith("rate limit: this call does 30 things, and 'tv_plug' takes at most "
                                                "60 a minute (in bursts of 20)")
    assert received == [] and tasmota.power is False
    [row] = plug_gateway.store.audit_rows("t1")
    assert row.outcome == "denied" and row.detail.endswith("does: output_toggle ×30")


async def test_every_command_of_a_backlog_takes_a_token(plug_gateway, tasmota):
    received = spy(tasmota, "run_command")
    context = JobContext("t2", {d.id: d for d in plug_gateway.registry.all()})

    async def backlog(count: int) -> bool:
        reply = await plug_gateway.broker.handle(context, call("tv_plug", "publish", topic=BACKLOG,
                                                               payload=toggles(count)))
        return reply["ok"]

    assert await backlog(5)  # 15 of the burst of 20 left
    assert not await backlog(16)
    assert await backlog(15)
    assert not await backlog(1)
    await until(lambda: received.count("Power") == 20)
    assert tasmota.power is False  # 20 toggles: back where it started
    rows = plug_gateway.store.audit_rows("t2")
    assert [row.outcome for row in rows] == ["ok", "denied", "ok", "denied"]
    assert rows[0].detail == "does: output_toggle ×5" and rows[2].detail == "does: output_toggle ×15"


async def test_a_backlog_is_judged_step_by_step(tmp_path, mqtt_broker, tasmota, gateway_factory):
    rule = {"device": "tv_plug", "when": "output_on", "reason": "the plug feeds a heater"}
    gateway = await gateway_factory(make_config(tmp_path, devices=[tasmota_entry(tasmota)], broker=mqtt_broker,
                                                policy={"rules": [rule]}))
    context = JobContext("t3", {d.id: d for d in gateway.registry.all()})
    received = spy(tasmota, "run_command")

    for payload in ("Power OFF; Power 1", "Status 0;Power2 toggle", "Backlog0 Power OFF;Backlog Power ON"):
        reply = await gateway.broker.handle(context, call("tv_plug", "publish", topic=BACKLOG, payload=payload))
        assert "the plug feeds a heater" in reply["error"]["message"], payload
    reply = await gateway.broker.handle(context, call("tv_plug", "publish", topic=POWER, payload="off"))
    await until(lambda: received != [])
    assert reply["ok"] and received == ["Power"] and tasmota.power is False


async def test_a_long_scpi_chain_is_refused_and_audited_with_its_actions(tmp_path, psu, gateway_factory):
    received = spy(psu, "answer_line")
    gateway = await gateway_factory(make_config(tmp_path, devices=[psu_entry(psu)]))
    context = JobContext("t4", {d.id: d for d in gateway.registry.all()})

    refused = await gateway.broker.handle(context, call("bench_psu", "write", cmd=";".join(["OUTP OFF"] * 25)))
    chained = await gateway.broker.handle(context, call("bench_psu", "write", cmd="INST:NSEL 2;VOLT 1;:CURR 0.5"))
    await gateway.broker.handle(context, call("bench_psu", "query", cmd="*OPC?"))

    assert refused["error"]["message"].startswith("rate limit: this call does 25 things")
    assert chained["ok"] and received == ["INST:NSEL 2;VOLT 1;:CURR 0.5", "*OPC?"]
    assert (psu.channels[1].volts_set, psu.channels[1].amps_set) == (1.0, 0.5)
    rows = gateway.store.audit_rows("t4")
    assert rows[0].detail.endswith("does: output_off ×25")
    assert rows[1].detail == "does: select_channel 2, set_voltage 1 V ch2, set_current 0.5 A ch2"


@pytest.fixture
async def korad() -> AsyncIterator[KoradPowerSupply]:
    async with KoradPowerSupply("lab_korad") as device:
        yield device


async def test_a_korad_burst_counts_every_token(tmp_path, korad, gateway_factory):
    entry = DeviceEntry(id="lab_korad", name="Korad", area="lab", kind="korad_psu", serial_port=korad.port)
    gateway = await gateway_factory(make_config(tmp_path, devices=[entry]))
    context = JobContext("t5", {d.id: d for d in gateway.registry.all()})
    received = spy(korad, "run")

    reply = await gateway.broker.handle(context, call("lab_korad", "write", cmd="OUT0" * 21))

    assert reply["error"]["message"].startswith("rate limit: this call does 21 things") and received == []


async def test_the_selected_channel_carries_over_to_later_calls_in_the_audit(tmp_path, psu, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[psu_entry(psu)]))
    context = JobContext("t6", {d.id: d for d in gateway.registry.all()})
    for command in ("INST CH2", "VOLT 13"):
        await gateway.broker.handle(context, call("bench_psu", "write", cmd=command))
    rows = gateway.store.audit_rows("t6")
    assert rows[1].outcome == "denied" and rows[1].detail.endswith("does: set_voltage 13 V ch2")
    assert psu.channels[1].volts_set == 0.0
