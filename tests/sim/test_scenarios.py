"""Scenarios run as a whole: every device answers its own protocol, the admin API grades and steers them by
state, `pyuse sim` runs them as a process, and a large home starts quickly."""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import serial
from zeroconf import NonUniqueNameException
from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

from gateway.agent.retrieval import vocabulary
from gateway.devices.registry import infer_area, slugify
from gateway.transports.embedded_broker import free_port
from sim.http_support import until
from sim.mqtt_probe import MqttProbe
from simulators.admin import AdminServer
from simulators.base import ManualClock, SimContext
from simulators.httpdevice import HttpDevice
from simulators.runner import SIMULATORS, SimHome, build, running_home
from simulators.scenario import DeviceSpec, large_home, load_scenario
from simulators.scpi import LineInstrument
from simulators.tasmota import TasmotaPlug

HOME_AND_LAB = load_scenario("home").devices + load_scenario("lab").devices


@pytest.fixture
async def home(mqtt_broker) -> AsyncIterator[SimHome]:
    async with running_home(HOME_AND_LAB, mqtt_broker.host, mqtt_broker.port) as running:
        yield running


@pytest.fixture
async def probe(mqtt_broker) -> AsyncIterator[MqttProbe]:
    client = MqttProbe(mqtt_broker.host, mqtt_broker.port)
    yield client
    client.close()


async def scpi_query(host: str, command: str) -> str:
    reader, writer = await asyncio.open_connection(host, 5025)
    try:
        writer.write(command.encode() + b"\n")
        return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    finally:
        writer.close()


def korad_query(port: str, command: str) -> str:
    with serial.Serial(port, timeout=1) as link:
        link.write(command.encode())
        return link.read(64).decode()


async def test_every_device_of_the_home_and_the_lab_answers_its_protocol(home, probe):
    specs = {spec.id: spec for spec in HOME_AND_LAB}
    assert set(home.devices) == set(specs) | {"zigbee2mqtt"}
    assert {spec.kind for spec in specs.values()} == set(SIMULATORS)  # every kind of every family

    async with aiohttp.ClientSession() as http:
        for device_id, device in home.devices.items():
            path, name_of = {"shelly_switch": ("/rpc/Shelly.GetDeviceInfo", lambda body: body["name"]),
                             "wled_strip": ("/json/info", lambda body: body["name"]),
                             "elgato_light": ("/elgato/accessory-info", lambda body: body["displayName"]),
                             }.get(device.kind, (None, None))
            if path:
                async with http.get(device.address() + path) as response:
                    assert name_of(await response.json()) == specs[device_id].name

    await probe.subscribe("stat/#")
    for device in home.devices.values():
        if isinstance(device, TasmotaPlug):
            reply = await probe.request(f"cmnd/{device.topic}/Status", "", f"stat/{device.topic}/STATUS")
            assert reply.json()["Status"]["DeviceName"] == device.name

    await probe.subscribe("zigbee2mqtt/#")
    inventory = await probe.expect("zigbee2mqtt/bridge/devices")
    zigbee = {spec.name for spec in specs.values() if spec.kind.startswith("zigbee_")}
    assert {entry["friendly_name"] for entry in inventory.json()} == zigbee | {"Coordinator"}
    for name in zigbee:
        availability = await probe.expect(f"zigbee2mqtt/{name}/availability")
        assert availability.retain and availability.json() == {"state": "online"}
    await probe.request("zigbee2mqtt/Kitchen Ceiling Light/set", {"state": "ON", "brightness": 100},
                        "zigbee2mqtt/Kitchen Ceiling Light", lambda m: m.json()["state"] == "ON")
    assert home.state()["kitchen_ceiling_light"]["brightness"] == 100

    supply, meter = home.device("lab_bench_supply"), home.device("lab_multimeter")
    assert isinstance(supply, LineInstrument) and isinstance(meter, LineInstrument)
    assert (await scpi_query(supply.host, "*IDN?")).startswith("PYUSE,SIM-PSU2,")
    assert await scpi_query(supply.host, "VOLT 5;:CURR 1;:OUTP ON;:MEAS:VOLT?") == "+5.00000000E+00"
    assert float(await scpi_query(meter.host, "MEAS:CURR:DC?")) == pytest.approx(0.5)  # 5 V across 10 ohm
    korad = home.device("lab_korad_supply").address()
    assert await asyncio.to_thread(korad_query, korad, "*IDN?") == "KORADKA3005PV2.0"


async def test_the_http_devices_are_announced_over_mdns_on_loopback(home):
    # By name, not by count: another process on this machine may announce devices of its own on 127.0.0.1.
    wanted = {name for device in home.devices.values() if isinstance(device, HttpDevice)
              for name in device.mdns_names()}
    assert len(wanted) == 9  # 3 Shelly and 1 WLED, each on its own type and on _http._tcp; 1 Elgato
    found: set[str] = set()
    browser_zeroconf = AsyncZeroconf(interfaces=["127.0.0.1"])

    def on_change(zeroconf: object, service_type: str, name: str, state_change: object) -> None:
        found.add(name)

    types = sorted({name.split(".", 1)[1] for name in wanted})
    browser = AsyncServiceBrowser(browser_zeroconf.zeroconf, types, handlers=[on_change])
    try:
        await until(lambda: wanted <= found)
    finally:
        await browser.async_cancel()
        await browser_zeroconf.async_close()


async def settle_and_advance(clock: ManualClock, seconds: float) -> None:
    """Move simulated time once the simulators' timers are asleep on it again: a timer that is still
    publishing its last report over the broker would start its next wait after the move and miss it."""
    await asyncio.sleep(0.2)
    await clock.advance(seconds)


async def test_the_lab_heater_warms_the_air_the_climate_sensor_reads(mqtt_broker, probe):
    clock = ManualClock()
    async with running_home(load_scenario("lab").devices, mqtt_broker.host, mqtt_broker.port, clock,
                            mdns=False) as lab:
        await probe.subscribe("zigbee2mqtt/Lab Climate Sensor")
        lab.apply("lab_heater", {"output": True})
        await settle_and_advance(clock, 3600)
        # Newton's law towards outside (8 °C) + heat / loss (4 / 0.15 per hour) = 34.67 °C, for one hour.
        warmed = 8 + 4 / 0.15 + (19 - 8 - 4 / 0.15) * math.exp(-0.15)
        report = await probe.expect("zigbee2mqtt/Lab Climate Sensor",
                                    lambda m: m.json()["temperature"] == round(warmed, 2))
        assert lab.state()["lab_climate_sensor"]["temperature"] == report.json()["temperature"] == 21.18

        lab.apply("lab_heater", {"output": False})
        await settle_and_advance(clock, 3600)
        cooled = 8 + (warmed - 8) * math.exp(-0.15)
        await probe.expect("zigbee2mqtt/Lab Climate Sensor",
                           lambda m: m.json()["temperature"] == round(cooled, 2))
        assert lab.state()["lab_climate_sensor"]["temperature"] == 19.35


@pytest.fixture
async def admin(home) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the home's admin endpoint."""
    server = AdminServer(home)
    await server.start()
    async with aiohttp.ClientSession(server.url) as session:
        yield session
    await server.close()


async def test_the_admin_api_reads_and_steers_devices_by_state(home, admin, probe):
    async with admin.get("/state") as response:
        states = await response.json()
    assert set(states) == set(home.devices)
    assert states["lab_heater"]["output"] is False and states["kitchen_climate_sensor"]["online"] is True
    async with admin.get("/devices") as response:
        counter = (await response.json())["kitchen_counter_lights"]
    assert counter == {"kind": "wled_strip", "name": "Kitchen Counter Lights", "area": "kitchen",
                       "address": home.device("kitchen_counter_lights").address()}

    sensor_topic = "zigbee2mqtt/Kitchen Climate Sensor"
    await probe.subscribe(sensor_topic)
    mark = probe.mark()
    async with admin.post("/state/kitchen_climate_sensor", json={"temperature": 25.5}) as response:
        assert response.status == 200 and (await response.json())["temperature"] == 25.5
    await probe.expect(sensor_topic, lambda m: m.json()["temperature"] == 25.5, after=mark)

    tv = home.device("living_room_tv")
    assert isinstance(tv, TasmotaPlug)
    await probe.subscribe(f"tele/{tv.topic}/LWT")
    mark = probe.mark()
    async with admin.post("/state/living_room_tv", json={"fault": "offline"}) as response:
        assert (await response.json())["online"] is False
    await probe.expect(f"tele/{tv.topic}/LWT", lambda m: m.text == "Offline", after=mark)
    async with admin.get("/state/living_room_tv") as response:
        assert (await response.json())["fault"] == "offline"

    async with admin.post("/state/garage_ceiling_light", json={"fault": "offline"}) as response:
        assert response.status == 200
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as client:
            await client.get(home.device("garage_ceiling_light").address() + "/shelly")

    before = home.context.clock.now()
    async with admin.post("/clock", json={"speed": 3600}) as response:
        assert (await response.json())["speed"] == 3600
    await asyncio.sleep(0.1)
    assert home.context.clock.now() - before >= 300


async def test_the_admin_api_names_what_it_rejects_and_changes_nothing(home, admin):
    async with admin.post("/state/lab_heater", json={"output": "on"}) as response:
        assert response.status == 400
        assert await response.json() == {"error": "output: expected bool, got 'on'", "key": "output"}
    async with admin.post("/state/lab_heater", json={"output": True, "fault": "broken"}) as response:
        assert response.status == 400 and (await response.json())["key"] == "fault"
    async with admin.post("/state/hallway_front_door_lock", json={"lock_state": "unlocked"}) as response:
        assert response.status == 400 and (await response.json())["key"] == "lock_state"
    async with admin.post("/state/kitchen_climate_sensor", data=b'{"temperature": NaN}') as response:
        assert response.status == 400 and (await response.json())["key"] == "temperature"
    async with admin.post("/state/lab_heater", data=b"[1, 2]") as response:
        assert response.status == 400 and "JSON object" in (await response.json())["error"]
    async with admin.get("/state/attic_fan") as response:
        assert response.status == 404 and await response.json() == {"error": "no device 'attic_fan'"}
    async with admin.post("/clock", json={"speed": -1}) as response:
        assert response.status == 400 and (await response.json())["key"] == "speed"

    heater = home.state()["lab_heater"]
    assert heater["output"] is False and heater["fault"] == "none"
    assert home.state()["kitchen_climate_sensor"]["temperature"] == 19.0
    assert home.context.clock.speed == 1.0


async def test_pyuse_sim_prints_every_address_and_serves_the_state():
    admin_port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "sim", "home", "--admin-port", str(admin_port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None and process.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not lines or not lines[-1].startswith("running"):
                line = (await process.stdout.readline()).decode()
                assert line, f"pyuse sim ended early: {(await process.stderr.read()).decode()}"
                lines.append(line.rstrip())
        rows = {line.split()[0]: line for line in lines if line.startswith("  ")}
        home_ids = {spec.id for spec in load_scenario("home").devices}
        assert set(rows) == home_ids | {"zigbee2mqtt"}
        assert re.search(r" http://127\.0\.\d+\.\d+:80$", rows["kitchen_counter_lights"])  # WLED's own port
        assert "(embedded)" in lines[0]
        assert f"admin: http://127.0.0.1:{admin_port}/state" in "\n".join(lines)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{admin_port}/state") as response:
            states = await response.json()
        assert set(states) == home_ids | {"zigbee2mqtt"} and states["zigbee2mqtt"]["online"] is True
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_large_home_of_200_devices_starts_within_seconds(mqtt_broker, probe):
    specs = large_home(200)
    started = time.monotonic()
    async with running_home(specs, mqtt_broker.host, mqtt_broker.port) as home:
        elapsed = time.monotonic() - started
        states = home.state()
        assert elapsed < 10
        bridges = [device_id for device_id, device in home.devices.items()
                   if device.kind == "zigbee2mqtt_bridge"]
        assert bridges == ["zigbee2mqtt", "zigbee2mqtt_2"]
        assert len(states) == 200 + len(bridges)
        assert all(state["online"] for state in states.values() if "online" in state)
        await probe.subscribe("+/bridge/devices")
        first = await probe.expect("zigbee2mqtt/bridge/devices")
        second = await probe.expect("zigbee2mqtt_2/bridge/devices")
        zigbee = sum(spec.kind.startswith("zigbee_") for spec in specs)
        assert len(first.json()) - 1 == 100 and len(second.json()) - 1 == zigbee - 100
        assert len(first.payload) < 256 * 1024  # what the gateway's MQTT discovery accepts in one message


@pytest.mark.parametrize(("spec", "message"), [
    (DeviceSpec("attic_fan", "ceiling_fan", "Attic Fan", "attic"), "attic_fan: unknown kind 'ceiling_fan'"),
    (DeviceSpec("lamp", "shelly_switch", "Lamp", "", options={"colour": "red"}), "lamp: options: .*colour"),
    (DeviceSpec("meter", "scpi_dmm", "Meter", "", options={"source": "lamp"}),
     "meter: options.source: 'lamp' is no scpi_psu"),
    (DeviceSpec("fire", "shelly_switch", "Fire", "", options={"heating_c_per_hour": "lots"}),
     "fire: options.heating_c_per_hour: expected a number"),
])
def test_a_scenario_mistake_is_named_before_anything_starts(spec, message):
    lamp = DeviceSpec("lamp", "shelly_switch", "Lamp", "")
    with pytest.raises(ValueError, match=message):
        build([lamp, spec] if spec.id != "lamp" else [spec], SimContext())


def test_the_scenario_files_name_devices_as_the_gateway_will():
    """The gateway's registry gives a discovered device the slug of its name as id, and reads its area from
    the start of its name."""
    for spec in HOME_AND_LAB:
        assert spec.id == slugify(spec.name), spec
        assert infer_area(spec.name, vocabulary()["areas"]) == spec.area, spec


def test_every_device_has_a_serial_and_mac_of_its_own_that_survives_a_restart():
    """What the gateway and the real client libraries identify a device by (a MAC, an Elgato or instrument serial,
    an IEEE address) comes from its id: distinct between the devices of a home, the same in every run."""
    def identities(specs: list[DeviceSpec]) -> dict[str, list[str]]:
        devices = [device for root in build(specs, SimContext()) for device in (root, *root.children())]
        return {attribute: [getattr(device, attribute) for device in devices if hasattr(device, attribute)]
                for attribute in ("mac", "serial", "identity", "ieee")}

    for specs, counts in ((HOME_AND_LAB, (9, 1, 2, 10)), (large_home(1000), (384, 75, 74, 542))):
        found = identities(specs)
        assert tuple(len(values) for values in found.values()) == counts
        assert all(len(set(values)) == len(values) for values in found.values())
        assert identities(specs) == found


async def test_a_device_that_does_not_start_says_why_in_one_line(monkeypatch):
    home = SimHome([DeviceSpec("lamp", "shelly_switch", "Lamp", "")], SimContext())

    async def refuse() -> None:
        raise NonUniqueNameException  # as zeroconf raises it: without a message

    monkeypatch.setattr(home.device("lamp"), "serve", refuse)
    with pytest.raises(RuntimeError, match=r"^lamp \(shelly_switch\) did not start: NonUniqueNameException$"):
        await home.start()
