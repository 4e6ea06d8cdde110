"""The broker decides each handle call on what the registry says a device owns, never on what the job says."""

from __future__ import annotations

import pytest
from conftest import make_config, psu_entry, shelly_entry, tasmota_entry

from gateway.sandbox.broker import JobContext
from gateway.sandbox.call_args import normalize_http_path
from gateway.sandbox.messages import CallRequest


def call(device: str, method: str, **args) -> CallRequest:
    return CallRequest(op="call", id=1, device=device, method=method, args=args)


@pytest.mark.parametrize("path", ["http://evil/", "//evil/x", "/../etc/passwd", "/a/./b", "/x#frag", "rpc",
                                  "/a b", "/a\r\nHost: evil", "\\\\evil"])
def test_paths_that_could_leave_the_device_are_refused(path):
    with pytest.raises(ValueError):
        normalize_http_path(path)


@pytest.mark.parametrize("path", ["/rpc/Switch.Set?id=0&on=true", "/json/state", "/", "/cm?cmnd=Power%20On"])
def test_ordinary_device_paths_pass(path):
    assert normalize_http_path(path) == path


def test_percent_encoding_in_the_path_is_decoded_once_and_double_encoding_refused():
    assert normalize_http_path("/rpc/Shelly%2EReboot") == "/rpc/Shelly.Reboot"
    with pytest.raises(ValueError):
        normalize_http_path("/rpc/Shelly%252EReboot")
    with pytest.raises(ValueError):
        normalize_http_path("/a%2F..%2Fetc")


async def test_calls_are_checked_against_what_each_device_owns(tmp_path, shelly, mqtt_broker, tasmota, psu,
                                                               gateway_factory):
    gateway = await gateway_factory(make_config(
        tmp_path, devices=[shelly_entry(shelly), tasmota_entry(tasmota), psu_entry(psu)], broker=mqtt_broker))
    devices = {device.id: device for device in gateway.registry.all()}
    context = JobContext("t1", devices)

    async def outcome(request: CallRequest) -> tuple[bool, str]:
        reply = await gateway.broker.handle(context, request)
        return reply["ok"], (reply.get("error") or {}).get("type", "")

    assert await outcome(call("desk_plug", "get", path="/shelly")) == (True, "")
    assert await outcome(call("desk_plug", "get", path="//127.0.0.1:1/")) == (False, "ValueError")
    assert await outcome(call("desk_plug", "publish", topic="x")) == (False, "ValueError")
    assert await outcome(call("desk_plug", "get", path="/x", host="127.0.0.2")) == (False, "ValueError")
    assert await outcome(call("tv_plug", "publish", topic="cmnd/tasmota_A1B2C3/Power", payload="ON")) == (True, "")
    assert await outcome(call("tv_plug", "publish", topic="cmnd/other_device/Power", payload="ON")) \
        == (False, "PermissionError")
    assert await outcome(call("tv_plug", "publish", topic="cmnd/#", payload="ON")) == (False, "ValueError")
    assert await outcome(call("tv_plug", "wait", topic="homeassistant/status", timeout=0.1)) \
        == (False, "PermissionError")
    assert await outcome(call("bench_psu", "query", cmd="*IDN?")) == (True, "")
    assert await outcome(call("bench_psu", "write", cmd="VOLT 5\nOUTP ON")) == (False, "ValueError")
    assert await outcome(call("ghost", "get", path="/")) == (False, "PermissionError")

    rows = gateway.store.audit_rows("t1")
    assert [row.outcome for row in rows] == ["ok", "invalid", "invalid", "invalid", "ok", "denied", "invalid",
                                             "denied", "ok", "invalid", "denied"]
    assert psu.volts_set == 0.0 and psu.output is False


async def test_device_errors_come_back_as_device_errors(tmp_path, shelly, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly)]))
    context = JobContext("t2", {device.id: device for device in gateway.registry.all()})

    reply = await gateway.broker.handle(context, call("desk_plug", "rpc", rpc_method="Cover.Open", params={"id": 0}))
    assert reply["error"] == {"type": "DeviceError", "message": "Cover.Open failed: error 404: No handler for "
                                                                "Cover.Open"}
    reply = await gateway.broker.handle(context, call("desk_plug", "get", path="/rpc/Nope.GetStatus"))
    assert reply["error"]["type"] == "DeviceError" and reply["error"]["message"].startswith("HTTP 404")


async def test_an_unreachable_device_is_a_connection_error(tmp_path, shelly, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=[shelly_entry(shelly)]))
    context = JobContext("t3", {device.id: device for device in gateway.registry.all()})
    await shelly.stop()

    reply = await gateway.broker.handle(context, call("desk_plug", "get", path="/shelly"))
    assert reply["error"]["type"] == "ConnectionError"
