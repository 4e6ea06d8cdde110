"""How fast the gateway discovers a large home: `pyuse sim large` and `pyuse run` as two real processes on one
mosquitto broker, the gateway with no device in its config.

Two orders, each timed from the simulators being up (every device serving, connected and announced):
`gateway-first`, the gateway already running as a service when the home comes up (it discovers while the
devices start), and `sim-first`, the gateway started on a home that is up (its own start-up counts). The gateway's
device list (GET /api/devices) is read until it holds every simulated device: when each family (Zigbee through
its bridges, Tasmota, HTTP devices over mDNS, SCPI instruments over mDNS and *IDN?) was complete, and when all
were. Prints a table (medians over the runs) per order and one JSON line.
Target: every device known within 10 s of the simulators being up.

    python bench/discovery_scale.py [--devices 1000] [--runs 3] [--limit 60] [--order both|gateway-first|sim-first]

Run it in a network namespace of its own so its mDNS traffic and ports stay out of other programs' way:
    unshare -rn bash -c 'ip link set lo up; .venv/bin/python bench/discovery_scale.py'
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from common import machine
from sim_scale import MOSQUITTO, broker

from gateway.transports.embedded_broker import free_port
from simulators.scenario import large_home

PYUSE = [sys.executable, "-m", "gateway"]
TARGET_S = 10.0
ORDERS = ("gateway-first", "sim-first")
# Simulator kind -> the family that finds it, for the per-family times.
FAMILIES = {"zigbee": "Zigbee via Zigbee2MQTT", "tasmota": "Tasmota", "ha_": "Home Assistant MQTT",
            "scpi": "SCPI over mDNS", "": "HTTP over mDNS"}


def family(kind: str) -> str:
    return next(name for prefix, name in FAMILIES.items() if kind.startswith(prefix))


@asynccontextmanager
async def process(args: list[str], ready: str, limit_s: float, log: Path) -> AsyncIterator[None]:
    """A child process, once a line of its output starts with `ready` (its stderr goes to `log`); interrupted and
    awaited at the end."""
    with log.open("wb") as errors:
        child = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=errors,
                                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert child.stdout is not None
    try:
        async with asyncio.timeout(limit_s):
            while not (line := (await child.stdout.readline()).decode()).startswith(ready):
                if not line:
                    raise RuntimeError(f"{' '.join(args[3:5])} exited early: {log.read_text()[-2000:]}")
        yield
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(child.wait(), 20)
            except TimeoutError:
                child.kill()
                await child.wait()


def gateway_config(folder: Path, host: str, port: int, api_port: int, suffix: str) -> Path:
    path = folder / "pyuse.toml"
    path.write_text(f"""[gateway]
data_dir = "{folder / 'data'}"

[mqtt]
embedded = false
host = "{host}"
port = {port}

[api]
port = {api_port}
mqtt_intake = false

[discovery]
mdns_names = ["*-{suffix}"]
""")
    return path


async def known_kinds(http: aiohttp.ClientSession, api_port: int, token_file: Path) -> collections.Counter[str]:
    try:
        token = token_file.read_text().strip()
        async with http.get(f"http://127.0.0.1:{api_port}/api/devices",
                            headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 200:
                return collections.Counter()
            body = await response.json()
    except (OSError, aiohttp.ClientError):
        return collections.Counter()
    devices = body["devices"] if isinstance(body, dict) else body
    return collections.Counter(device["kind"] for device in devices)


async def measure(devices: int, limit_s: float, gateway_first: bool) -> dict[str, Any]:
    expected = collections.Counter(spec.kind for spec in large_home(devices))
    suffix = secrets.token_hex(2)
    found: dict[str, float] = {}
    known: collections.Counter[str] = collections.Counter()
    async with broker("mosquitto" if MOSQUITTO else "embedded") as (host, port), aiohttp.ClientSession() as http:
        with tempfile.TemporaryDirectory() as tmp:
            folder, api_port = Path(tmp), free_port()
            sim = process([*PYUSE, "sim", "large", "--devices", str(devices), "--broker", f"{host}:{port}",
                           "--admin-port", str(free_port()), "--mdns-suffix", suffix], "running", 120,
                          folder / "sim.log")
            gateway = process([*PYUSE, "run", "--config", str(gateway_config(folder, host, port, api_port, suffix))],
                              "pyuse gateway", limit_s, folder / "gateway.log")
            async with contextlib.AsyncExitStack() as running:
                await running.enter_async_context(gateway if gateway_first else sim)
                started = time.monotonic()
                await running.enter_async_context(sim if gateway_first else gateway)
                up = started if not gateway_first else time.monotonic()
                found["simulators starting" if gateway_first else "gateway API answering"] = time.monotonic() - started
                while time.monotonic() - up < limit_s:
                    known = await known_kinds(http, api_port, folder / "data" / "api_token")
                    now = time.monotonic() - up
                    for name in set(map(family, expected)) - set(found):
                        if all(known[kind] >= count for kind, count in expected.items() if family(kind) == name):
                            found[name] = now
                    if all(known[kind] >= count for kind, count in expected.items()):
                        found["all devices"] = now
                        break
                    await asyncio.sleep(0.2)
    return {"times": found, "known": sum(min(known[kind], count) for kind, count in expected.items()),
            "missing": {kind: count - known[kind] for kind, count in expected.items() if known[kind] < count}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds to wait for every device")
    parser.add_argument("--order", choices=("both", *ORDERS), default="both",
                        help="which starts first: the gateway (a service already running) or the simulators")
    args = parser.parse_args()
    orders = ORDERS if args.order == "both" else (args.order,)
    kinds = collections.Counter(map(family, (spec.kind for spec in large_home(args.devices))))
    print(f"{args.devices} devices: {', '.join(f'{count} {name}' for name, count in kinds.most_common())}")
    print(f"median of {args.runs} run(s), seconds from the simulators being up; {machine()}")
    results: dict[str, Any] = {}
    for order in orders:
        runs = [asyncio.run(measure(args.devices, args.limit, order == "gateway-first")) for _ in range(args.runs)]
        names = {name for run in runs for name in run["times"]}
        medians = {name: statistics.median(run["times"].get(name, math.inf) for run in runs) for name in names}
        print(f"{order}:")
        for name in sorted(medians, key=medians.__getitem__):
            target = f"  target <= {TARGET_S:g}: {'ok' if medians[name] <= TARGET_S else 'MISSED'}"
            print(f"  {name:<28} {medians[name]:>7.2f} s{target if name == 'all devices' else ''}")
        for number, run in enumerate(runs, 1):
            if run["missing"]:
                print(f"  run {number}: {run['known']} of {args.devices} known after {args.limit:g} s; missing "
                      f"{run['missing']}")
        results[order] = {"all_devices_s": round(medians.get("all devices", math.inf), 2),
                          "medians": {name: round(value, 2) for name, value in medians.items()},
                          "known": [run["known"] for run in runs]}
    print(json.dumps({"benchmark": "discovery_scale", "devices": args.devices, "runs": args.runs, **results,
                      "machine": machine()}))
    return 0 if all(result["all_devices_s"] <= TARGET_S for result in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
