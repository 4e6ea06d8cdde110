"""How the simulators scale: the large home with 1000 devices of every family, as `pyuse sim large` runs it.

Each run, in a fresh process, measures the start-up time (every device serving, connected and announced over
mDNS and MQTT), that process's memory (RSS after start-up, and its peak), and the MQTT messages per second the
home keeps publishing with the clock running fast so telemetry flows (Tasmota STATE/SENSOR every TelePeriod,
Zigbee reports). A paho subscriber in a process of its own counts them, so counting costs the simulators
nothing. Next to the count stand what the devices' periodic reports come to at that speed (roughly: state
changes such as a thermostat starting to heat add a few, and a bridge ticks 30 simulated seconds after its
last tick ended, so its reports drift a little later) and the event loop's lag (how late a 50 ms timer fires,
99th percentile), which shows whether the rate is sustained or the loop falls behind. Then the time to stop
everything. Prints a table (medians over the runs) and one JSON line.
Targets: 1000 devices up in under 10 s and under 300 MB.

    python bench/sim_scale.py [--devices 1000] [--runs 3] [--speed 600] [--seconds 10]
                              [--broker mosquitto|embedded]

With `mosquitto` (the default when it is installed) the broker is a process of its own; with `embedded` it is
amqtt inside the run's process, as `pyuse sim` runs without --broker, and its memory counts too.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.transports.embedded_broker import EmbeddedBroker, free_port
from simulators.base import SimClock
from simulators.runner import SimHome, running_home
from simulators.scenario import large_home
from simulators.tasmota import TasmotaPlug
from simulators.zigbee2mqtt import ZigbeeDevice

TARGETS = {"startup_s": 10.0, "peak_rss_mb": 300.0}
MOSQUITTO = shutil.which("mosquitto") or next(
    (path for path in ("/usr/sbin/mosquitto",) if os.path.exists(path)), None)


def memory_mb() -> tuple[float, float]:
    """This process's resident memory now, and its peak so far."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def reports_per_s(home: SimHome, speed: float) -> float:
    """The messages per real second the devices' periodic reports come to at this clock speed."""
    per_sim_s = 0.0
    for device in home.devices.values():
        if isinstance(device, TasmotaPlug):
            per_sim_s += (2 if device.metering else 1) / device.tele_period  # STATE, and SENSOR when metering
        elif isinstance(device, ZigbeeDevice):
            per_sim_s += 1 / device.report_every
    return per_sim_s * speed


def count_messages(host: str, port: int, seconds: float, result: Any) -> None:
    """In a child process: subscribe to everything and count what is published for `seconds`."""
    subscribed, count = threading.Event(), [0]

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not message.retain:  # a stored message a new subscriber receives is no telemetry
            count[0] += 1

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter")
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = on_message
    client.connect(host, port)
    client.subscribe("#")
    client.loop_start()
    subscribed.wait(10)
    first, started = count[0], time.monotonic()
    time.sleep(seconds)
    result.put((count[0] - first) / (time.monotonic() - started))
    client.disconnect()
    client.loop_stop()


async def loop_lags_ms(stop: asyncio.Event) -> list[float]:
    lags = []
    while not stop.is_set():
        started = time.monotonic()
        await asyncio.sleep(0.05)
        lags.append((time.monotonic() - started - 0.05) * 1000)
    return sorted(lags)


@asynccontextmanager
async def broker(kind: str) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    if kind == "embedded":
        embedded = EmbeddedBroker("127.0.0.1", port)
        await embedded.start()
        try:
            yield "127.0.0.1", port
        finally:
            await embedded.close()
        return
    if MOSQUITTO is None:
        raise SystemExit("mosquitto is not installed; use --broker embedded")
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            await asyncio.sleep(0.3)
            yield "127.0.0.1", port
        finally:
            process.terminate()
            process.wait(5)


def one_run(devices: int, speed: float, seconds: float, broker_kind: str, result: Any) -> None:
    """In a fresh process, so each run's memory is its own."""
    result.put(asyncio.run(measure(devices, speed, seconds, broker_kind)))


async def measure(devices: int, speed: float, seconds: float, broker_kind: str) -> dict[str, float]:
    spawn = multiprocessing.get_context("spawn")
    async with broker(broker_kind) as (host, port):
        before_mb, _ = memory_mb()
        started = time.monotonic()
        async with running_home(large_home(devices), host, port, SimClock(speed)) as home:
            startup_s = time.monotonic() - started
            rss_mb, _ = memory_mb()
            result = spawn.SimpleQueue()
            counter = spawn.Process(target=count_messages, args=(host, port, seconds, result))
            stop = asyncio.Event()
            lags = asyncio.create_task(loop_lags_ms(stop))
            counter.start()
            delivered = await asyncio.to_thread(result.get)
            stop.set()
            lag_samples = await lags
            lag_ms = lag_samples[int(0.99 * (len(lag_samples) - 1))]
            await asyncio.to_thread(counter.join)
            expected = reports_per_s(home, speed)
            stopping = time.monotonic()
        stop_s = time.monotonic() - stopping
    _, peak_mb = memory_mb()
    return {"startup_s": startup_s, "rss_mb": rss_mb, "peak_rss_mb": peak_mb, "rss_before_mb": before_mb,
            "reports_per_s": expected, "messages_per_s": delivered, "loop_lag_p99_ms": lag_ms,
            "stop_s": stop_s}


ROWS = (("start-up, every device serving", "startup_s", "s"), ("RSS after start-up", "rss_mb", "MB"),
        ("peak RSS", "peak_rss_mb", "MB"), ("RSS before (interpreter, imports)", "rss_before_mb", "MB"),
        ("periodic reports due", "reports_per_s", "/s"), ("MQTT messages delivered", "messages_per_s", "/s"),
        ("event-loop lag p99 meanwhile", "loop_lag_p99_ms", "ms"), ("stop", "stop_s", "s"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--speed", type=float, default=600.0, help="simulated seconds per real second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to count messages")
    parser.add_argument("--broker", choices=("mosquitto", "embedded"),
                        default="mosquitto" if MOSQUITTO else "embedded")
    args = parser.parse_args()
    spawn = multiprocessing.get_context("spawn")
    runs = []
    for _ in range(args.runs):
        result = spawn.SimpleQueue()
        run = spawn.Process(target=one_run,
                            args=(args.devices, args.speed, args.seconds, args.broker, result))
        run.start()
        run.join()
        if run.exitcode != 0:
            raise SystemExit(f"a run failed (exit code {run.exitcode})")
        runs.append(result.get())
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    kinds = collections.Counter(spec.kind for spec in large_home(args.devices))
    print(f"{args.devices} devices: {', '.join(f'{count} {kind}' for kind, count in kinds.most_common())}")
    print(f"broker {args.broker}, clock x{args.speed:g}, median of {args.runs} run(s); {cpu}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    for label, key, unit in ROWS:
        target = TARGETS.get(key)
        met = target is not None and medians[key] < target
        verdict = "" if target is None else f"  target < {target:g}: {'ok' if met else 'MISSED'}"
        print(f"  {label:<34} {medians[key]:>9.2f} {unit:<3}{verdict}")
    print(json.dumps({"benchmark": "sim_scale", "devices": args.devices, "broker": args.broker,
                      "speed": args.speed, "runs": args.runs, "cpu": cpu, "cpus": os.cpu_count(),
                      "python": platform.python_version(),
                      **{key: round(value, 2) for key, value in medians.items()},
                      "all_runs": [{key: round(value, 2) for key, value in run.items()} for run in runs]}))
    return 0 if all(medians[key] < target for key, target in TARGETS.items()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
