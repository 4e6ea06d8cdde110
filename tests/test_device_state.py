"""HTTP devices' state, read by the gateway: at start, after a call that changes it, and when polled."""

from __future__ import annotations

from conftest import make_config, shelly_entry, until
from gateway.config import DeviceEntry
from gateway.devices.poller import state_fields
from simulators.elgato import ElgatoKeyLight


async def test_a_shellys_state_follows_calls_and_its_availability_follows_polls(tmp_path, shelly, gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, None, [shelly_entry(shelly)], discovery={"poll_s": 0.2}))
    plug = gateway.registry.get("desk_plug")
    await until(lambda: plug.state.get("output") is False)
    assert "apower" in plug.state and "aenergy" not in plug.state  # scalars only

    result = await gateway.run_task("turn on the desk plug")  # the fast path: a Switch.Set call
    assert result.status == "done" and result.processed_locally
    await until(lambda: plug.state.get("output") is True)
    _, execution = await gateway.run_code('print(devices["desk_plug"].state["output"])', "the job sees it")
    assert execution.output == "True\n"

    shelly.apply({"fault": "offline"})
    await until(lambda: gateway.registry.get("desk_plug").online is False)
    shelly.apply({"fault": "none"})
    await until(lambda: gateway.registry.get("desk_plug").online is True)


async def test_an_elgato_lights_state_comes_from_inside_its_reply(tmp_path, gateway_factory):
    async with ElgatoKeyLight("key_light", "Key Light", "studio") as light:
        entry = DeviceEntry(id="key_light", name="Key Light", area="studio", kind="elgato_light", host=light.host,
                            port=light.port)
        gateway = await gateway_factory(make_config(tmp_path, None, [entry], discovery={"poll_s": 0}))
        device = gateway.registry.get("key_light")
        await until(lambda: "brightness" in device.state)
        assert set(device.state) >= {"on", "brightness", "temperature"}


def test_state_fields_follow_a_json_pointer():
    reply = {"numberOfLights": 1, "lights": [{"on": 1, "brightness": 20, "nested": {"x": 1}}]}
    assert state_fields(reply, "/lights/0") == {"on": 1, "brightness": 20}
    assert state_fields(reply, "/lights/3") is None
    assert state_fields(reply, "") == {"numberOfLights": 1}
    assert state_fields("not json", "") is None
