"""Shelly Gen2+ RPC: what a method does to the device, timers included (simulators/shelly.py is the reference).

An output changes with Switch.Set (and a `toggle_after` timer that flips it back later: `on=False,
toggle_after=1` switches on in a second), Switch.Toggle, and Switch.SetConfig arming `auto_on` or an `on`
initial state. Get*/List*/Check* methods only read. A method not known here is `unknown`.
"""

from __future__ import annotations

from typing import Any

from gateway.devices.docs import DeviceDoc
from gateway.devices.model import Device
from gateway.policy.actions import Action, number, unknown
from gateway.policy.calls import Operation
from gateway.policy.protocols.reading import Reading

OPPOSITE = {"output_on": "output_off", "output_off": "output_on"}
WHOLE_DEVICE = {"shelly.reboot": "reboot", "shelly.update": "firmware_update", "shelly.factoryreset": "factory_reset"}
SETTINGS = {"sys.setconfig", "switch.resetcounters", "shelly.setauth", "wifi.setconfig", "shelly.resetwificonfig",
            "mqtt.setconfig", "cloud.setconfig", "ble.setconfig", "ws.setconfig", "input.setconfig",
            "light.setconfig", "cover.setconfig", "sys.settime"}
COVER = {"cover.open": "open", "cover.close": "close", "cover.stop": "stop"}


def channel_of(params: dict[str, Any]) -> int | None:
    value = params.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def set_output(params: dict[str, Any]) -> list[Action]:
    """Switch.Set / Light.Set: `on` now, and the opposite `toggle_after` seconds later."""
    on, toggle_after, channel = params.get("on"), params.get("toggle_after"), channel_of(params)
    actions: list[Action] = []
    if isinstance(on, bool):
        actions.append(Action("output_on" if on else "output_off", channel=channel))
    elif "on" in params or "brightness" not in params:
        return [unknown(f"on={on!r}")]
    if "brightness" in params:
        brightness = number(params["brightness"])
        actions.append(Action("set_brightness", brightness, channel) if brightness is not None
                       else unknown(f"brightness={params['brightness']!r}"))
    if toggle_after is not None:
        delay = number(toggle_after)
        if delay is None or delay <= 0 or not isinstance(on, bool):
            return actions + [unknown(f"toggle_after={toggle_after!r}")]
        actions.append(Action(OPPOSITE[actions[0].name], channel=channel, after_s=delay))
    return actions


def set_config(params: dict[str, Any]) -> list[Action]:
    """Switch.SetConfig: auto_on switches the output on after auto_on_delay whenever it goes off; an `on` initial
    state switches it on at every power-up."""
    config, channel = params.get("config"), channel_of(params)
    if not isinstance(config, dict):
        return [unknown(f"config={config!r}")]
    actions = [Action("configure", "switch")]
    if config.get("auto_on") is True:
        actions.append(Action("output_on", channel=channel, after_s=number(config.get("auto_on_delay"))))
    if config.get("initial_state") == "on":
        actions.append(Action("output_on", "at power-up", channel))
    return actions


def method_actions(method: str, params: dict[str, Any]) -> list[Action]:
    name = method.casefold()  # a device lenient about case must not slip past
    component, _, verb = name.partition(".")
    if verb.startswith(("get", "list", "check")):
        return [Action("read")]
    if name in ("switch.set", "light.set"):
        return set_output(params)
    if name in ("switch.toggle", "light.toggle"):
        return [Action("output_toggle", channel=channel_of(params))]
    if name == "switch.setconfig":
        return set_config(params)
    if name in WHOLE_DEVICE:
        return [Action(WHOLE_DEVICE[name])]
    if name in COVER:
        return [Action(COVER[name], channel=channel_of(params))]
    if name == "cover.gotoposition":
        return [Action("set_position", number(params.get("pos")), channel_of(params))]
    if name in SETTINGS:
        return [Action("configure", component)]
    return [unknown(method)]


def read(call: Operation, device: Device, doc: DeviceDoc | None, memory: dict[str, Any]) -> Reading:
    if call.rpc is not None:
        return Reading(method_actions(call.rpc, call.params))
    rpc_root = (doc.rpc_path if doc else "/rpc").rstrip("/").casefold()
    if call.method == "POST" and (call.path or "").rstrip("/").casefold() == rpc_root:
        return Reading([])  # a body that is no request frame (no method): the device refuses it
    # Outside the RPC endpoint a Gen2 device has only what GET reads (/shelly, the WebSocket upgrade).
    return Reading([Action("read")] if call.method == "GET" else [unknown(call.summary())])
