"""A soak of the daemon: `pyuse run` for N minutes against the simulated home and lab at ×60 simulated speed.

Load, all the while: commands over the API (fast path and model), commands over the MQTT intake, two automations
(a schedule and a motion trigger). Faults, one after another in a loop, each for FAULT_S seconds: a device offline,
slow or sending garbage (the simulators' own faults), the broker stopped and restarted, the model answering 429 or
500, the model hanging. Each fault is graded by what it should leave behind: the device's online state over the
API, and a line in the daemon's log.

At the end: tasks done / failed / stuck (a task still queued or running a minute after the load stopped), the
daemon's RSS, open files and threads at the first sample after warm-up and at the end, log lines at ERROR or above
(and tracebacks) that no fault explains, the faults seen, and one JSON line.

    python bench/soak.py [--minutes 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho

from common import machine
from gateway.transports.embedded_broker import free_port
from simulators.base import SimClock
from simulators.korad import KoradPowerSupply
from simulators.llm import ScriptedLLM
from simulators.runner import running_home
from simulators.scenario import load_scenario
from simulators.scpi import LineInstrument

SPEED = 60.0
FAULT_S = 40.0  # how long each fault lasts: longer than the gateway's 30 s poll of HTTP devices
SETTLE_S = 20.0  # after a fault, before the next: the gateway's poll and reconnect catch up
WARM_UP_S = 60.0  # resource samples before this are start-up, not growth
GATEWAY_ID = "soak"
MODEL_CODE = ('light = devices["kitchen_ceiling_light"]\n'
              'final_answer(f"the kitchen ceiling light is {\'on\' if light.is_on else \'off\'}")')
MODEL_COMMAND = "give me a short status of the kitchen ceiling light"  # the fast path leaves it to the model
# Spread over devices, so that no device sees more than its rate limit (60 calls a minute) from the load.
API_COMMANDS = ["turn on the living room ceiling light", MODEL_COMMAND, "turn off the living room ceiling light",
                "what is the temperature in the lab"]
MQTT_COMMANDS = ["turn on the bedroom ceiling light", "turn off the bedroom ceiling light"]
LOG_ERROR = re.compile(r" (ERROR|CRITICAL) |Traceback")


def logged_at(line: str) -> float:
    """The wall-clock time a daemon log line starts with (local time, as the formatter writes it); 0 if none."""
    try:
        return datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()
    except ValueError:
        return 0.0


def reply(code: str) -> str:
    return f"Thought: I read it.\n```python\n{code}\n```"


@dataclass
class Fault:
    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]
    # What the gateway should show: the device that goes offline (None: none), and a log line that says so.
    offline: str | None
    log: re.Pattern[str] | None  # None: a slow device is no error, nothing to log
    explains_errors: bool = False  # whether ERROR lines during it are the fault's own
    seen_offline: bool = False
    seen_log: bool = False
    runs: int = 0


@dataclass
class Tally:
    submitted: int = 0
    refused: int = 0  # the API said busy or bad request
    tasks: dict[str, str] = field(default_factory=dict)  # id -> last status seen


class Mosquitto:
    """A broker of the soak's own, persisted so its retained discovery survives a restart, as a home's does."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {directory}/\nautosave_interval 1\n")
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        await wait_for_port(self.port)

    async def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 5)
            self.process = None


async def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def config_text(data_dir: Path, llm_url: str, mqtt_port: int, api_port: int, instruments: list[dict[str, Any]]) -> str:
    devices = "".join(f'\n[[devices]]\nid = "{d["id"]}"\nname = "{d["name"]}"\nkind = "{d["kind"]}"\n'
                      f'area = "{d["area"]}"\nserial_port = "{d["port"]}"\n' for d in instruments)
    return f'''[gateway]
id = "{GATEWAY_ID}"
data_dir = "{data_dir}"
clock_speed = {SPEED}
log_level = "info"

[llm]
base_url = "{llm_url}"
model = "scripted"
timeout_s = 5
max_retries = 2

[mqtt]
port = {mqtt_port}

[api]
port = {api_port}

[discovery]
mdns_interfaces = ["127.0.0.1"]

[[automations]]
name = "kitchen-every-ten-minutes"
trigger = {{ every = "10m" }}
action = "turn off the kitchen ceiling light"

[[automations]]
name = "hallway-motion"
trigger = {{ mqtt = "zigbee2mqtt/Hallway Motion Sensor", when = "occupancy == true" }}
action = "turn on the living room floor lamp"
debounce_s = 5
{devices}'''


class Soak:
    def __init__(self, minutes: float, directory: Path) -> None:
        self.minutes = minutes
        self.directory = directory
        self.broker = Mosquitto(directory)
        self.llm = ScriptedLLM({"conversations": [
            {"match": MODEL_COMMAND, "replies": [reply(MODEL_CODE), "FINAL ANSWER: done"]}]})
        self.api_port = free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.log_path = directory / "daemon.log"
        self.tally = Tally()
        self.samples: list[dict[str, float]] = []
        self.fault_windows: list[tuple[float, float, Fault]] = []
        self.started = time.monotonic()

    # ---- the daemon -------------------------------------------------------------------------------------------

    async def start_daemon(self, config: Path) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        process = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)], stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        token_file = self.directory / "data" / "api_token"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if token_file.exists() and await self.get("/api/health") is not None:
                return process
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the daemon did not start; see {self.log_path}")

    @property
    def headers(self) -> dict[str, str]:
        token = (self.directory / "data" / "api_token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    async def get(self, path: str) -> Any:
        try:
            async with aiohttp.ClientSession(headers=self.headers) as http, http.get(self.base + path) as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            return None

    # ---- load ---------------------------------------------------------------------------------------------------

    async def api_load(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(headers=self.headers) as http:
            for number in range(10**9):
                if stop.is_set():
                    return
                text = API_COMMANDS[number % len(API_COMMANDS)]
                try:
                    async with http.post(f"{self.base}/api/tasks", json={"text": text}) as response:
                        body = await response.json(content_type=None)
                        if response.status == 202:
                            self.tally.submitted += 1
                            self.tally.tasks[body["id"]] = "queued"
                        else:
                            self.tally.refused += 1
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    self.tally.refused += 1
                await asyncio.sleep(1.5)

    async def mqtt_load(self, stop: asyncio.Event) -> None:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"soak-load-{os.getpid()}")
        client.connect_async("127.0.0.1", self.broker.port)
        client.loop_start()
        try:
            for number in range(10**9):
                if stop.is_set():
                    return
                client.publish(f"pyuse/{GATEWAY_ID}/task", MQTT_COMMANDS[number % 2])
                await asyncio.sleep(3.0)
        finally:
            client.disconnect()  # first: it wakes the network thread, which loop_stop() would wait for
            client.loop_stop()

    async def motion(self, home: Any, stop: asyncio.Event) -> None:
        sensor = home.devices["hallway_motion_sensor"]
        while not stop.is_set():
            sensor.apply({"occupancy": True})
            await asyncio.sleep(7.0)

    # ---- faults -------------------------------------------------------------------------------------------------

    def faults(self, home: Any) -> list[Fault]:
        def device_fault(device_id: str, fault: str) -> tuple[Callable[[], Awaitable[None]],
                                                              Callable[[], Awaitable[None]]]:
            async def start() -> None:
                home.devices[device_id].apply({"fault": fault})

            async def stop() -> None:
                home.devices[device_id].apply({"fault": "none"})
            return start, stop

        async def model_errors(codes: list[int]) -> None:
            for conversation in self.llm.conversations:
                conversation.errors = list(codes) * 50

        async def model_ok() -> None:
            for conversation in self.llm.conversations:
                conversation.errors = []
            self.llm.delay_s = 0.0

        async def model_hangs() -> None:
            self.llm.delay_s = 3600.0

        return [
            Fault("shelly offline", *device_fault("garage_ceiling_light", "offline"), "garage_ceiling_light",
                  re.compile(r"garage_ceiling_light is offline")),
            Fault("tasmota offline", *device_fault("living_room_tv", "offline"), "living_room_tv",
                  re.compile(r"living_room_tv is offline")),
            Fault("wled garbage", *device_fault("kitchen_counter_lights", "garbage"), None,
                  re.compile(r"kitchen_counter_lights answers, but its state cannot be read")),
            Fault("zigbee slow", *device_fault("living_room_ceiling_light", "slow"), None, None),
            Fault("broker restart", self.broker.stop, self.broker.start, "living_room_tv",
                  re.compile(r"MQTT broker .* unreachable"), explains_errors=True),
            Fault("model 429", lambda: model_errors([429]), model_ok, None, re.compile(r"429|rate limit|failed"),
                  explains_errors=True),
            Fault("model 500", lambda: model_errors([500]), model_ok, None, re.compile(r"500|failed"),
                  explains_errors=True),
            Fault("model hangs", model_hangs, model_ok, None, re.compile(r"timed out|timeout|failed"),
                  explains_errors=True),
        ]

    async def run_faults(self, faults: list[Fault], until: float) -> None:
        for fault in (faults[i % len(faults)] for i in range(10**9)):
            if time.monotonic() + FAULT_S + SETTLE_S > until:
                return
            fault.runs += 1
            log_from = self.log_path.stat().st_size
            began = time.time()
            await fault.start()
            deadline = time.monotonic() + FAULT_S
            while time.monotonic() < deadline:
                if fault.offline and not fault.seen_offline:
                    devices = await self.get("/api/devices") or []
                    fault.seen_offline = any(d["id"] == fault.offline and not d["online"] for d in devices)
                await asyncio.sleep(1.0)
            await fault.stop()
            await asyncio.sleep(SETTLE_S)
            self.fault_windows.append((began, time.time(), fault))
            with self.log_path.open("rb") as log:
                log.seek(log_from)
                text = log.read().decode("utf-8", "replace")
                fault.seen_log = fault.seen_log or fault.log is None or bool(fault.log.search(text))

    # ---- resources ----------------------------------------------------------------------------------------------

    async def sample(self, pid: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                fds = len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                return
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            self.samples.append({"t": time.monotonic() - self.started,
                                 "rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "fds": fds,
                                 "threads": int(fields["Threads"])})
            await asyncio.sleep(10.0)

    # ---- the run ------------------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        await self.broker.start()
        llm_url = await self.llm.start()
        specs = load_scenario("home").devices + load_scenario("lab").devices
        async with running_home(specs, "127.0.0.1", self.broker.port, clock=SimClock(SPEED)) as home:
            by_id = {spec.id: spec for spec in specs}
            instruments = [{"id": device_id, "name": by_id[device_id].name, "kind": by_id[device_id].kind,
                            "area": by_id[device_id].area, "port": device.port}
                           for device_id, device in home.devices.items()
                           if isinstance(device, (LineInstrument, KoradPowerSupply))]
            config = self.directory / "pyuse.toml"
            config.write_text(config_text(self.directory / "data", llm_url, self.broker.port, self.api_port,
                                          instruments))
            daemon = await self.start_daemon(config)
            stop = asyncio.Event()
            until = self.started + self.minutes * 60
            loads = [asyncio.create_task(job) for job in (self.api_load(stop), self.mqtt_load(stop),
                                                          self.motion(home, stop), self.sample(daemon.pid, stop))]
            try:
                await self.run_faults(self.faults(home), until)
                await asyncio.sleep(max(0.0, until - time.monotonic()))
            finally:
                stop.set()
                await asyncio.gather(*loads, return_exceptions=True)
            await asyncio.sleep(60.0)  # every task the load started has had its time to end
            await self.read_statuses()
            self.samples.append(self.samples[-1] if self.samples else {})
            os.killpg(daemon.pid, signal.SIGTERM)
            exit_code = await asyncio.to_thread(daemon.wait, 30)
        await self.llm.close()
        await self.broker.stop()
        return self.report(exit_code)

    async def read_statuses(self) -> None:
        for task_id in list(self.tally.tasks):
            task = await self.get(f"/api/tasks/{task_id}")
            self.tally.tasks[task_id] = task["status"] if task else "missing"
        page = await self.get("/api/tasks?limit=500") or []
        for task in page if isinstance(page, list) else page.get("tasks", []):
            self.tally.tasks.setdefault(task["id"], task["status"])

    def unexplained_errors(self) -> list[str]:
        """ERROR lines and tracebacks in the log, but for those logged during a fault that explains them (the
        model failing, the broker gone) or in the settling time after it."""
        explained = [(began, ended) for began, ended, fault in self.fault_windows if fault.explains_errors]
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [line for line in lines if LOG_ERROR.search(line)
                and not any(began - 1 <= logged_at(line) <= ended + 1 for began, ended in explained)]

    def report(self, exit_code: int) -> dict[str, Any]:
        statuses = Counter(self.tally.tasks.values())
        warm = [sample for sample in self.samples if sample.get("t", 0) >= WARM_UP_S] or self.samples
        first, last = (warm[0], warm[-1]) if warm else ({}, {})
        growth = {key: round(last[key] / first[key] - 1, 3) if first.get(key) else None
                  for key in ("rss_mb", "fds", "threads")}
        errors = self.unexplained_errors()
        faults = {fault.name: {"runs": fault.runs, "offline_shown": fault.seen_offline if fault.offline else None,
                               "logged": fault.seen_log}
                  for fault in {id(f): f for _, _, f in self.fault_windows}.values()}
        stuck = statuses.get("queued", 0) + statuses.get("running", 0)
        result = {
            "bench": "soak", "minutes": self.minutes, "speed": SPEED,
            "tasks": dict(statuses), "submitted_api": self.tally.submitted, "refused_api": self.tally.refused,
            "stuck": stuck, "unexpected_error_lines": len(errors), "first_errors": errors[:5],
            "rss_mb": [first.get("rss_mb"), last.get("rss_mb")], "fds": [first.get("fds"), last.get("fds")],
            "threads": [first.get("threads"), last.get("threads")], "growth": growth, "faults": faults,
            "daemon_exit": exit_code,
            "targets_met": {
                "no_stuck_tasks": stuck == 0, "no_unexpected_errors": not errors,
                "rss_growth_lt_10pct": growth["rss_mb"] is not None and growth["rss_mb"] < 0.10,
                "every_fault_shown": all((f["offline_shown"] is not False) and f["logged"] for f in faults.values()),
            },
            "machine": machine(),
        }
        print(f"{'tasks':<28}{dict(statuses)}  (stuck: {stuck})")
        print(f"{'api submitted / refused':<28}{self.tally.submitted} / {self.tally.refused}")
        for key, unit in (("rss_mb", "MB"), ("fds", ""), ("threads", "")):
            print(f"{key:<28}{first.get(key)} -> {last.get(key)} {unit}  ({growth[key]:+.1%})"
                  if growth[key] is not None else f"{key:<28}not sampled")
        print(f"{'unexpected error lines':<28}{len(errors)}")
        for line in errors[:5]:
            print(f"    {line[:160]}")
        for name, seen in faults.items():
            shown = {None: "-", True: "yes", False: "NO"}[seen["offline_shown"]]
            print(f"  fault {name:<22} runs {seen['runs']}  offline shown {shown:<4} logged "
                  f"{'yes' if seen['logged'] else 'NO'}")
        print(json.dumps(result))
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the load and faults run")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and the daemon's log")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="pyuse-soak-"))
    try:
        result = asyncio.run(Soak(args.minutes, directory).run())
    finally:
        if args.keep:
            print(f"kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 0 if all(result["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
