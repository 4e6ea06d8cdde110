"""Danger rules on canonical actions, confirmations, exposure and rate limits, enforced by the broker on real
devices. The spellings the model may use are in tests/security/test_danger_*.py."""

from __future__ import annotations

import asyncio

import pytest
from conftest import make_config, psu_entry, shelly_entry

from gateway.config import ConfigError, PolicyRule, PolicySection, load_config
from gateway.devices.docs import DocError, DocLibrary, parse_doc
from gateway.devices.model import Device
from gateway.policy import Action, Policy, operation_for, rule_matches
from gateway.policy.protocols import read_call
from gateway.policy.rules import decide
from gateway.sandbox.broker import JobContext
from gateway.sandbox.messages import CallRequest

DOCS = DocLibrary.load()
SHELLY = Device(id="heater_relay", name="Heater Relay", kind="shelly_switch", transport="http", area="lab",
                host="127.0.0.1", port=1)
SWITCH_ON = PolicyRule(device="heater_relay", when="output_on", reason="feeds a heater")


def actions_of(device: Device, method: str, args: dict) -> list[Action]:
    doc = DOCS.get(device.kind)
    return read_call(operation_for(device, method, args, doc.rpc_path), device, doc, {}).actions


@pytest.mark.parametrize(("method", "args"), [
    ("rpc", {"rpc_method": "Switch.Set", "params": {"id": 0, "on": True}}),
    ("rpc", {"rpc_method": "switch.set", "params": {"id": 0, "on": True}}),
    ("rpc", {"rpc_method": "Switch.Toggle", "params": {"id": 0}}),
    ("rpc", {"rpc_method": "Switch.Set", "params": {"id": 0, "on": False, "toggle_after": 1}}),
    ("rpc", {"rpc_method": "Switch.SetConfig", "params": {"id": 0, "config": {"auto_on": True}}}),
    ("get", {"path": "/rpc/Switch.Set?id=0&on=true", "params": {}}),
    ("get", {"path": "/rpc/Switch.Set", "params": {"id": 0, "on": "true"}}),
    ("get", {"path": "/RPC/Switch.Toggle?id=0", "params": {}}),
    ("post", {"path": "/rpc/Switch.Set", "json": {"id": 0, "on": True}}),
    ("post", {"path": "/rpc", "json": {"id": 1, "method": "Switch.Set", "params": {"id": 0, "on": True}}}),
], ids=["rpc", "lower case", "toggle", "a timer", "auto_on", "GET query", "GET params", "GET upper-case path",
        "POST to the method", "POST a frame"])
def test_a_rule_on_output_on_holds_however_the_relay_is_switched_on(method, args):
    assert any(rule_matches(SWITCH_ON, action) for action in actions_of(SHELLY, method, args))


@pytest.mark.parametrize(("method", "args"), [
    ("rpc", {"rpc_method": "Switch.Set", "params": {"id": 0, "on": False}}),
    ("get", {"path": "/rpc/Switch.GetStatus", "params": {"id": 0}}),
    ("get", {"path": "/shelly", "params": {}}),
])
def test_calls_that_do_not_switch_it_on_are_not_caught(method, args):
    assert not any(rule_matches(SWITCH_ON, action) for action in actions_of(SHELLY, method, args))


def rule(when: str, action: str = "confirm", **fields) -> PolicyRule:
    return PolicyRule(when=when, action=action, reason="test", **fields)


@pytest.mark.parametrize(("when", "action", "expected"), [
    ("set_voltage > 12", Action("set_voltage", 13.0), True),
    ("set_voltage > 12", Action("set_voltage", 12.0), False),
    ("set_voltage >= 12", Action("set_voltage", 12.0), True),
    ("set_voltage > 12", Action("set_voltage", "MAX"), True),
    ("set_voltage > 12", Action("set_voltage", None), True),
    ("set_mode == heat", Action("set_mode", "HEAT"), True),
    ("set_mode == heat", Action("set_mode", "auto"), False),
    ("set_mode != off", Action("set_mode", "auto"), True),
    ("output_on", Action("output_toggle"), True),
    ("output_off", Action("output_toggle"), True),
    ("output_on", Action("output_off"), False),
    ("unlock", Action("lock"), False),
])
def test_conditions_compare_the_actions_value_and_an_unknown_value_is_the_dangerous_case(when, action, expected):
    assert rule_matches(rule(when), action) is expected


def test_a_rule_for_one_channel_holds_for_actions_whose_channel_the_command_does_not_name():
    second = rule("output_on", channel=2)
    assert rule_matches(second, Action("output_on", channel=2))
    assert not rule_matches(second, Action("output_on", channel=1))
    assert rule_matches(second, Action("output_on", channel=1, selected=True))  # selected earlier: may be another
    assert rule_matches(second, Action("output_on"))


def test_an_allow_rule_holds_only_when_the_action_surely_is_what_it_allows():
    low = rule("set_voltage <= 5", "allow")
    assert rule_matches(low, Action("set_voltage", 3.3))
    assert not rule_matches(low, Action("set_voltage", "MIN"))
    assert not rule_matches(rule("output_on", "allow"), Action("output_toggle"))
    assert not rule_matches(rule("output_on", "allow", channel=1), Action("output_on", channel=1, selected=True))


def test_the_strictest_action_decides_and_a_config_allow_comes_before_the_docs_rule():
    doc_rules = DOCS.get("scpi_psu").danger
    chain = [Action("set_voltage", 5.0), Action("output_on"), Action("set_current", 3.0)]
    assert decide(chain, doc_rules).reason == "switches the supply's output on"
    assert decide(chain, [rule("set_current > 2", "deny"), *doc_rules]).action == "deny"
    assert decide([Action("output_on")], [rule("output_on", "allow"), *doc_rules]).action == "allow"


def test_what_the_reader_cannot_read_asks_only_on_a_device_with_rules():
    unknown = [Action("unknown", text="SYST:BEEP")]
    assert decide(unknown, DOCS.get("scpi_psu").danger).reason == "could not read this command"
    assert decide(unknown, DOCS.get("scpi_dmm").danger).action == "allow"
    assert decide(unknown, [rule("unknown", "allow"), *DOCS.get("scpi_psu").danger]).action == "allow"


@pytest.mark.parametrize(("fields", "message"), [
    ({"command": "OUTP ON"}, "command: a rule names what the device does, not how a call is spelled"),
    ({"rpc": "Switch.Set", "params": {"on": True}}, "rpc: a rule names what the device does"),
    ({"when": "output_onn"}, "unknown action 'output_onn'; the actions are read, output_on,"),
    ({"when": "set_voltage > twelve"}, "> compares numbers, and 'twelve' is not one"),
    ({"when": "set voltage above 12"}, 'expected an action and an optional comparison, such as "output_on"'),
])
def test_a_bad_rule_is_refused_with_the_key_and_the_fix(fields, message):
    with pytest.raises(ValueError) as error:
        PolicyRule(reason="test", **fields)
    assert message in str(error.value)


def test_a_bad_config_rule_names_its_key_and_file(tmp_path):
    path = tmp_path / "pyuse.toml"
    path.write_text('[[policy.rules]]\ndevice = "psu"\ncommand = "OUTP ON"\nreason = "careful"\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    [problem] = error.value.problems
    assert str(path) in problem and "policy.rules" in problem and 'write when = "set_voltage > 12"' in problem


def test_a_bad_doc_rule_names_the_line_of_its_table():
    text = ('+++\nkind = "heater"\ntitle = "Heater"\ntransport = "http"\n\n[[danger]]\nwhen = "reboot"\n'
            'reason = "ok"\n\n[[danger]]\nwhen = "heat_on"\nreason = "bad"\n+++\nbody\n')
    with pytest.raises(DocError) as error:
        parse_doc(text, "heater.md")
    assert str(error.value).startswith("heater.md:10: danger.1.when: unknown action 'heat_on'")


def test_doc_methods_name_known_actions_and_calls_fit_the_transport():
    base = '+++\nkind = "k"\ntitle = "K"\ntransport = "http"\n'
    with pytest.raises(DocError, match="methods.on.does: unknown action 'switch_on'"):
        parse_doc(base + '[methods.on]\ndoc = "On."\ndoes = ["switch_on"]\ncode = "pass"\n+++\n', "k.md")
    with pytest.raises(DocError, match="calls.0: a http device's calls are named by path"):
        parse_doc(base + '[[calls]]\ndoes = "output_on"\ntopic = "x/set"\n+++\n', "k.md")
    with pytest.raises(DocError, match="the shelly reader already knows"):
        parse_doc(base + 'protocol = "shelly"\n[[calls]]\ndoes = "reboot"\npath = "/r"\n+++\n', "k.md")


def test_exposure_patterns_and_hide_winning():
    policy = Policy(PolicySection(expose=["area:lab", "desk_plug"], hide=["kind:scpi_psu"]), docs=DOCS)
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
    rows = gateway.store.audit_rows("t1")
    assert len([row for row in rows if row.outcome == "denied"]) == 8
    assert rows[0].detail == "does: set_voltage 5 V"
    assert rows[6].detail.endswith("does: set_voltage 5 V, output_on")


async def test_a_confirmed_call_goes_through_and_a_refused_one_does_not(tmp_path, shelly, gateway_factory):
    config = make_config(tmp_path, devices=[shelly_entry(shelly, id="heater_relay")],
                         policy={"rules": [SWITCH_ON.model_dump(exclude_defaults=True)]})
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
    assert [(row.outcome, row.detail.split(":")[0]) for row in rows] == [
        ("denied", "denied"), ("ok", "confirmed (feeds a heater)")]
    assert rows[1].detail.endswith("does: output_on ch0")
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


async def test_a_config_rule_can_allow_what_the_doc_would_ask_about(tmp_path, psu, gateway_factory):
    allow = {"device": "bench_psu", "when": "set_voltage <= 15", "action": "allow", "reason": "a 15 V bench"}
    gateway = await gateway_factory(make_config(tmp_path, devices=[psu_entry(psu)], policy={"rules": [allow]}))
    context = JobContext("t7", {d.id: d for d in gateway.registry.all()})
    allowed = await gateway.broker.handle(context, call("bench_psu", "write", cmd="VOLT 13"))
    refused = await gateway.broker.handle(context, call("bench_psu", "write", cmd="VOLT MAX"))
    assert allowed["ok"] and not refused["ok"] and "above 12 V" in refused["error"]["message"]


async def test_a_runaway_loop_is_stopped_by_the_rate_limit(tmp_path, shelly, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly)]))
    context = JobContext("t6", {d.id: d for d in gateway.registry.all()})
    toggle = call("desk_plug", "rpc", rpc_method="Switch.Toggle", params={"id": 0})
    outcomes = [(await gateway.broker.handle(context, toggle))["ok"] for _ in range(15)]
    assert outcomes[:10] == [True] * 10  # the doc allows 30 a minute, in bursts of 10
    assert outcomes[10:] == [False] * 5
    assert "rate limit" in gateway.store.audit_rows("t6")[-1].detail
