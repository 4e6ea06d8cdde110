"""Danger rules, confirmations, exposure and rate limits, enforced by the broker on real devices."""

from __future__ import annotations

import asyncio

import pytest

from conftest import make_config, psu_entry, shelly_entry
from gateway.config import PolicyRule, PolicySection
from gateway.devices.model import Device
from gateway.policy import Policy, operation_for, rule_matches
from gateway.sandbox.broker import JobContext
from gateway.sandbox.messages import CallRequest

SHELLY = Device(id="heater_relay", name="Heater Relay", kind="shelly_switch", transport="http", area="lab",
                host="127.0.0.1", port=1)
SWITCH_ON = PolicyRule(device="heater_relay", rpc="Switch.Set", params={"on": True}, reason="feeds a heater")


@pytest.mark.parametrize(("method", "args"), [
    ("rpc", {"rpc_method": "Switch.Set", "params": {"id": 0, "on": True}}),
    ("rpc", {"rpc_method": "switch.set", "params": {"id": 0, "on": True}}),
    ("get", {"path": "/rpc/Switch.Set?id=0&on=true", "params": {}}),
    ("get", {"path": "/rpc/Switch.Set", "params": {"id": 0, "on": "true"}}),
    ("post", {"path": "/rpc/Switch.Set", "json": {"id": 0, "on": True}}),
    ("post", {"path": "/rpc", "json": {"id": 1, "method": "Switch.Set", "params": {"id": 0, "on": True}}}),
])
def test_a_shelly_rule_holds_however_the_call_is_phrased(method, args):
    assert rule_matches(SWITCH_ON, SHELLY, operation_for(SHELLY, method, args, "/rpc"))


@pytest.mark.parametrize(("method", "args"), [
    ("rpc", {"rpc_method": "Switch.Set", "params": {"id": 0, "on": False}}),
    ("get", {"path": "/rpc/Switch.GetStatus", "params": {"id": 0}}),
    ("get", {"path": "/shelly", "params": {}}),
])
def test_other_calls_are_not_caught_by_it(method, args):
    assert not rule_matches(SWITCH_ON, SHELLY, operation_for(SHELLY, method, args, "/rpc"))


def test_exposure_patterns_and_hide_winning():
    policy = Policy(PolicySection(expose=["area:lab", "desk_plug"], hide=["kind:scpi_psu"]),
                    docs=__import__("gateway.devices.docs", fromlist=["DocLibrary"]).DocLibrary.load())
    lab_relay = SHELLY
    lab_psu = Device(id="psu", name="PSU", kind="scpi_psu", transport="serial", area="lab")
    desk = Device(id="desk_plug", name="Desk", kind="shelly_switch", transport="http", area="office")
    hall = Device(id="hall", name="Hall", kind="shelly_switch", transport="http", area="hall")
    assert [policy.exposed(d) for d in (lab_relay, lab_psu, desk, hall)] == [True, False, True, False]


def call(device: str, method: str, **args) -> CallRequest:
    return CallRequest(op="call", id=1, device=device, method=method, args=args)


async def test_psu_limits_need_a_yes_and_nobody_to_ask_means_no(tmp_path, psu, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[psu_entry(psu)]))
    context = JobContext("t1", {d.id: d for d in gateway.registry.all()})  # no confirmation channel

    async def error_of(cmd: str) -> str | None:
        reply = await gateway.broker.handle(context, call("bench_psu", "write", cmd=cmd))
        return None if reply["ok"] else reply["error"]["message"]

    assert await error_of("VOLT 5") is None
    for refused in ("OUTP ON", "outp:stat 1", "VOLT 20", ":SOUR:VOLT:LEV 13", "VOLT MAX", "VOLT 5;OUTP ON",
                    "APPL 24,1", "CURR 2.5"):
        message = await error_of(refused)
        assert message and message.startswith("denied:") and "nobody can confirm it" in message, refused
    reply = await gateway.broker.handle(context, call("bench_psu", "query", cmd="VOLT?"))  # a round trip: writes done
    assert float(reply["result"]) == 5.0
    assert psu.output is False and psu.volts_set == 5.0
    denials = [row for row in gateway.store.audit_rows("t1") if row.outcome == "denied"]
    assert len(denials) == 8


async def test_a_confirmed_call_goes_through_and_a_refused_one_does_not(tmp_path, shelly, gateway_factory):
    config = make_config(tmp_path, devices=[shelly_entry(shelly, id="heater_relay")],
                         policy={"rules": [SWITCH_ON.model_dump(by_alias=True, exclude_defaults=True)]})
    gateway = await gateway_factory(config)
    answers = iter([False, True])
    seen = []

    async def person(request) -> bool:
        seen.append((request.device_id, request.action, request.reason))
        return next(answers)

    context = JobContext("t2", {d.id: d for d in gateway.registry.all()}, confirm=person)
    on = call("heater_relay", "rpc", rpc_method="Switch.Set", params={"id": 0, "on": True})

    first = await gateway.broker.handle(context, on)
    assert first["error"]["type"] == "PermissionError" and "the user said no" in first["error"]["message"]
    assert shelly.output is False
    second = await gateway.broker.handle(context, on)
    assert second["ok"] and shelly.output is True
    assert seen == [("heater_relay", "Switch.Set(id=0, on=True)", "feeds a heater")] * 2
    rows = gateway.store.audit_rows("t2")
    assert [(row.outcome, row.detail.split(":")[0] if row.detail else None) for row in rows] == [
        ("denied", "denied"), ("ok", "confirmed (feeds a heater)")]
    off = await gateway.broker.handle(context, call("heater_relay", "rpc", rpc_method="Switch.Set",
                                                    params={"id": 0, "on": False}))
    assert off["ok"] and len(seen) == 2  # switching off needs nobody


async def test_an_unanswered_confirmation_times_out_as_a_denial(tmp_path, shelly, gateway_factory):
    config = make_config(tmp_path, devices=[shelly_entry(shelly)], policy={"confirm_timeout_s": 0.2})
    gateway = await gateway_factory(config)

    async def never_answers(request) -> bool:
        await asyncio.sleep(60)
        return True

    context = JobContext("t3", {d.id: d for d in gateway.registry.all()}, confirm=never_answers)
    reply = await gateway.broker.handle(context, call("desk_plug", "rpc", rpc_method="Shelly.Reboot", params={}))
    assert "no answer within 0.2 s" in reply["error"]["message"]
    assert not gateway.confirmations.pending


async def test_a_confirmation_can_be_answered_by_id_from_elsewhere(tmp_path, shelly, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly)]))

    async def someone_elsewhere(request) -> bool:
        await asyncio.sleep(60)  # e.g. a web dialog; the answer comes through Confirmations.answer
        return False

    context = JobContext("t4", {d.id: d for d in gateway.registry.all()}, confirm=someone_elsewhere)
    pending = asyncio.create_task(gateway.broker.handle(
        context, call("desk_plug", "get", path="/rpc/Shelly.Update", params={"stage": "stable"})))
    while not gateway.confirmations.pending:
        await asyncio.sleep(0.01)
    [request_id] = gateway.confirmations.pending
    assert gateway.confirmations.answer(request_id, True)
    reply = await pending
    assert reply["ok"] is False and reply["error"]["type"] == "DeviceError"  # reached the device: no Update there


async def test_factory_reset_is_refused_without_asking(tmp_path, shelly, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly)]))
    asked = []

    async def person(request) -> bool:
        asked.append(request)
        return True

    context = JobContext("t5", {d.id: d for d in gateway.registry.all()}, confirm=person)
    reply = await gateway.broker.handle(context, call("desk_plug", "post", path="/rpc",
                                                      json={"method": "Shelly.FactoryReset"}))
    assert "is not allowed (erases the device's configuration)" in reply["error"]["message"] and not asked


async def test_a_runaway_loop_is_stopped_by_the_rate_limit(tmp_path, shelly, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly)]))
    context = JobContext("t6", {d.id: d for d in gateway.registry.all()})
    toggle = call("desk_plug", "rpc", rpc_method="Switch.Toggle", params={"id": 0})
    outcomes = [(await gateway.broker.handle(context, toggle))["ok"] for _ in range(15)]
    assert outcomes[:10] == [True] * 10  # the doc allows 30 a minute, in bursts of 10
    assert outcomes[10:] == [False] * 5
    assert "rate limit" in gateway.store.audit_rows("t6")[-1].detail
