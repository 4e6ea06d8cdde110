"""Work without a model: the local fast path, a saved skill, and MQTT-triggered automations.

The gateway runs in this process with no model configured; a WLED strip simulator (HTTP) runs in a process of
its own, and MQTT triggers come from a paho publisher in a third process, through Mosquitto when it is
installed (the embedded broker otherwise). Every command and run goes through the real sandbox, broker, policy
and store. Latency is from the text (or the MQTT publish) to the task being finished, which is after the
strip answered the call that changed its state:

- fast path: "turn on/off the desk lamp" (hassil and the doc's intent template), one task each, in turn;
- skill: "desk lamp at 20/80" matching a saved skill's trigger;
- automation: one MQTT message, wait for its run to finish, the next;
- sustained: messages published at --rate for --seconds; runs per second and p99 latency (each run is matched
  to the message that started it, in order; triggers dropped by the concurrency limit are counted).

Targets: fast path and skill at most 30 ms median; at least 200 automation runs/s with p99 at most 100 ms.

    python bench/fastpath.py [--commands 200] [--rate 250] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from gateway.app import Gateway
from gateway.automations import Automations
from gateway.config import AutomationEntry, AutomationTrigger, Config, DeviceEntry
from gateway.runner import TaskRunner
from gateway.transports.embedded_broker import EmbeddedBroker, free_port
from common import machine, percentile

SKILL = '''TRIGGERS = ["desk lamp at {level}"]


def desk_lamp_level(level: int) -> str:
    """Set the desk lamp's brightness, in percent."""
    devices["desk_lamp"].post("/json/state", json={"on": True, "bri": max(1, round(level * 255 / 100))})
    return f"The desk lamp is at {level}%."
'''


def serve_strip(pipe: Connection) -> None:
    """The simulated WLED strip, in its own process so that it does not share the gateway's CPU time slice."""
    from simulators.wled import WledStrip

    async def run() -> None:
        async with WledStrip("desk_lamp", "Desk Lamp", "office", host="127.0.0.1", port=0) as strip:
            pipe.send(strip.port)
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until told to stop

    asyncio.run(run())


def publish(pipe: Connection, port: int, topic: str, rate: float, seconds: float) -> None:
    """Publish `rate` messages a second for `seconds`; sends back each publish's time.time()."""
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    pipe.send("connected")
    pipe.recv()
    stamps, started = [], time.monotonic()
    for index in range(int(rate * seconds)):
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamps.append(time.time())
        client.publish(topic, str(index), qos=0)
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()
    pipe.send(stamps)


class Broker:
    """Mosquitto on a free loopback port, or the embedded broker when it is not installed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.kind = "mosquitto" if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists() else "amqtt"
        self._process: subprocess.Popen[bytes] | None = None
        self._embedded: EmbeddedBroker | None = None

    async def start(self, directory: Path) -> None:
        if self.kind == "mosquitto":
            conf = directory / "mosquitto.conf"
            conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            self._process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)
            await asyncio.sleep(0.3)
        else:
            self._embedded = EmbeddedBroker("127.0.0.1", self.port)
            await self._embedded.start()

    async def close(self) -> None:
        if self._process:
            self._process.terminate()
            self._process.wait(5)
        if self._embedded:
            await self._embedded.close()


def summary(name: str, values: list[float], target_ms: float | None = None) -> dict[str, object]:
    row: dict[str, object] = {"path": name, "n": len(values), "median_ms": round(statistics.median(values), 2),
                              "p95_ms": round(percentile(values, 0.95), 2),
                              "p99_ms": round(percentile(values, 0.99), 2)}
    if target_ms is not None:
        row["target_median_ms"] = target_ms
    return row


async def commands(gateway: Gateway, texts: list[str], count: int) -> list[float]:
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        result = await gateway.run_task(texts[index % len(texts)])
        if result.status != "done" or not result.processed_locally:
            raise RuntimeError(f"{texts[index % len(texts)]!r}: {result.status} {result.error}")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def sequential_triggers(gateway: Gateway, automations: Automations, count: int) -> list[float]:
    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", gateway.config.mqtt.port)
    client.loop_start()
    automation = automations.get("lamp")
    latencies = []
    try:
        for index in range(count):
            runs = automation.runs
            sent = time.time()
            client.publish("bench/lamp", str(index), qos=0)
            while automation.runs == runs:
                await asyncio.sleep(0.0005)
            task = gateway.task(automation.last_task)
            if task is None or task.status != "done":
                raise RuntimeError(f"automation run failed: {automation.last_error}")
            latencies.append((task.finished_at - sent) * 1000)
    finally:
        client.disconnect()
        client.loop_stop()
    return latencies


async def sustained(gateway: Gateway, automations: Automations, rate: float, seconds: float) -> dict[str, object]:
    automation = automations.get("lamp")
    automation.runs, automation.dropped = 0, 0
    accepted: list[int] = []  # the messages that started a run, in order (a dropped one started none)
    fire = automations.fire

    def counting_fire(target: object, event: dict[str, object]) -> bool:
        started = fire(target, event)  # type: ignore[arg-type]
        if started and target is automation:
            accepted.append(int(str(event["payload"])))
        return started

    automations.fire = counting_fire  # type: ignore[method-assign]
    first_task = gateway.store.list_tasks(limit=1)[0].created_at
    ours, theirs = multiprocessing.Pipe()
    publisher = multiprocessing.Process(target=publish, args=(theirs, gateway.config.mqtt.port, "bench/lamp", rate,
                                                              seconds))
    publisher.start()
    ours.recv()
    ours.send("go")
    stamps = await asyncio.to_thread(ours.recv)
    publisher.join()
    deadline = time.monotonic() + 30
    while automation.runs + automation.dropped < len(stamps) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    while automation.active:
        await asyncio.sleep(0.01)
    automations.fire = fire  # type: ignore[method-assign]
    runs = [task for task in gateway.store.list_tasks(limit=len(stamps) + 10) if task.created_at > first_task
            and task.origin == "automation:lamp"]
    runs.sort(key=lambda task: task.created_at)
    failed = [task for task in runs if task.status != "done"]
    if failed or len(runs) != len(accepted):
        raise RuntimeError(f"{len(accepted)} runs started, {len(runs)} recorded, {len(failed)} failed"
                           + (f", e.g. {failed[0].error}" if failed else ""))
    latencies = [(task.finished_at - stamps[index]) * 1000 for task, index in zip(runs, accepted)]
    elapsed = max(task.finished_at for task in runs) - stamps[0]
    return {"published": len(stamps), "runs": len(runs), "dropped": len(stamps) - len(runs),
            "runs_per_s": round(len(runs) / elapsed, 1), "median_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2)}


async def main(count: int, rate: float, seconds: float) -> None:
    strip_pipe, strip_end = multiprocessing.Pipe()
    strip = multiprocessing.Process(target=serve_strip, args=(strip_end,), daemon=True)
    strip.start()
    strip_port = strip_pipe.recv()
    with tempfile.TemporaryDirectory() as data:
        broker = Broker()
        await broker.start(Path(data))
        config = Config.model_validate({
            "gateway": {"data_dir": data, "log_level": "warning"},
            "mqtt": {"port": broker.port}, "discovery": {"mdns": False},
            "policy": {"rate_limit_per_minute": 10**7},  # the per-device limit would be what is measured
            "api": {"max_concurrent_tasks": 32, "max_queued_tasks": 1000}})
        config.devices = [DeviceEntry(id="desk_lamp", name="Desk Lamp", area="office", kind="wled_strip",
                                      host="127.0.0.1", port=strip_port)]
        config.automations = [AutomationEntry(name="lamp", skill="desk_lamp_level", args={"level": 50},
                                              trigger=AutomationTrigger(mqtt="bench/lamp"), max_concurrent=32,
                                              max_runs_per_minute=0)]
        (Path(data) / "skills").mkdir()
        (Path(data) / "skills" / "desk_lamp_level.py").write_text(SKILL)
        gateway = Gateway(config)
        await gateway.start()
        runner = TaskRunner(gateway, config.api.max_concurrent_tasks, config.api.max_queued_tasks)
        automations = Automations(gateway, runner)
        await automations.start()
        try:
            await commands(gateway, ["turn on the desk lamp", "desk lamp at 30"], 20)  # warm-up
            rows = [summary("fast path", await commands(gateway, ["turn on the desk lamp",
                                                                   "turn off the desk lamp"], count), 30),
                    summary("skill", await commands(gateway, ["desk lamp at 20", "desk lamp at 80"], count), 30)]
            await sequential_triggers(gateway, automations, 20)  # warm-up
            rows.append(summary("automation", await sequential_triggers(gateway, automations, count)))
            load = await sustained(gateway, automations, rate, seconds)
        finally:
            await automations.close()
            await runner.close()
            await gateway.close()
            await broker.close()
            strip_pipe.send("stop")
            strip.join(5)
    print(f"{'path':<12} {'n':>5} {'median ms':>10} {'p95 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(f"{row['path']:<12} {row['n']:>5} {row['median_ms']:>10} {row['p95_ms']:>8} {row['p99_ms']:>8}")
    print(f"sustained: {load['published']} MQTT triggers at {rate:g}/s → {load['runs_per_s']} runs/s "
          f"({load['dropped']} dropped), median {load['median_ms']} ms, p99 {load['p99_ms']} ms "
          f"(broker: {broker.kind})")
    met = {"fast_path_median_le_30ms": rows[0]["median_ms"] <= 30, "skill_median_le_30ms": rows[1]["median_ms"] <= 30,
           "runs_per_s_ge_200": load["runs_per_s"] >= 200 and load["dropped"] == 0, "p99_le_100ms": load["p99_ms"] <= 100}
    print(json.dumps({"bench": "fastpath", "rows": rows, "sustained": load, "rate": rate, "seconds": seconds,
                      "broker": broker.kind, "targets_met": met, "machine": machine()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200, help="commands per path")
    parser.add_argument("--rate", type=float, default=250.0, help="MQTT triggers a second, sustained")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to sustain them")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.commands, arguments.rate, arguments.seconds))
    sys.exit(0)
