"""Sandbox latency with every layer this machine supports on, as the gateway sees it, all measured in one run.

  (a) a trivial execution in a warm job (a later turn of a task)
  (b) a new task's first execution (a job forked from the warm zygote, locked down)
  (c) spawning `python -I -S -c` (what a fresh interpreter per execution would cost, without any layer)
  (d) in-process exec() (no isolation at all; the floor)
  (e) an HTTP GET to a simulated Shelly through a handle: job -> channel -> broker (policy, audit) -> aiohttp
  (f) the same GET made directly with the gateway's aiohttp session
Rounds are interleaved (every round runs every mechanism once) so machine-load drift hits all rows alike.
Prints a table and one JSON line. Targets: (a) median <= 2 ms, (b) <= 10 ms, (e) - (f) <= 2 ms.

    python bench/sandbox_latency.py [--runs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time

from gateway.app import Gateway
from gateway.config import Config, DeviceEntry
from simulators.shelly import ShellySwitch
from common import machine, percentile

TARGETS_MS = {"warm_exec": 2.0, "first_exec": 10.0}
BROKER_OVERHEAD_TARGET_MS = 2.0
CODE = "1 + 1"
TIMED_GET = ('import time\nplug = devices["plug"]\nstarted = time.perf_counter()\nplug.get("/shelly")\n'
             'print((time.perf_counter() - started) * 1000)')



async def measure(runs: int) -> tuple[dict[str, list[float]], list[str]]:
    samples: dict[str, list[float]] = {name: [] for name in (
        "warm_exec", "first_exec", "spawn_python_IS", "inprocess_exec", "brokered_get", "direct_get")}
    with tempfile.TemporaryDirectory() as tmp:
        async with ShellySwitch("plug") as plug:
            config = Config.model_validate({"gateway": {"data_dir": tmp},
                                            "policy": {"rate_limit_per_minute": 10**6}})
            config.devices = [DeviceEntry(id="plug", name="Plug", kind="shelly_switch", host=plug.host,
                                          port=plug.port)]
            async with Gateway(config) as gateway:
                doc = gateway.docs.get("shelly_switch")
                doc.rate_limit_per_minute = None  # a benchmark is a runaway loop by design
                layers = gateway.sandbox.layers
                warm = gateway.session("warm")
                assert (await warm.execute(CODE)).output == "2\n"
                compiled = compile(CODE, "<bench>", "eval")
                for index in range(runs):
                    started = time.perf_counter()
                    result = await warm.execute(CODE)
                    samples["warm_exec"].append((time.perf_counter() - started) * 1000)
                    assert result.output == "2\n", result

                    fresh = gateway.session(f"t{index}")
                    started = time.perf_counter()
                    result = await fresh.execute(CODE)
                    samples["first_exec"].append((time.perf_counter() - started) * 1000)
                    assert result.output == "2\n", result
                    await fresh.close()

                    started = time.perf_counter()
                    output = subprocess.run([sys.executable, "-I", "-S", "-c", f"print({CODE})"],
                                            capture_output=True, check=True).stdout
                    samples["spawn_python_IS"].append((time.perf_counter() - started) * 1000)
                    assert output == b"2\n"

                    started = time.perf_counter()
                    assert eval(compiled, {}) == 2
                    samples["inprocess_exec"].append((time.perf_counter() - started) * 1000)

                    result = await warm.execute(TIMED_GET)
                    assert result.status == "ok", result.output
                    samples["brokered_get"].append(float(result.output))

                    started = time.perf_counter()
                    reply = await gateway.http.request("GET", plug.host, plug.port, "/shelly")
                    samples["direct_get"].append((time.perf_counter() - started) * 1000)
                    assert reply.ok
                await warm.close()
    return samples, layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    samples, layers = asyncio.run(measure(args.runs))
    stats = {name: {"median": round(statistics.median(values), 3), "p95": round(percentile(values, 0.95), 3)}
             for name, values in samples.items()}
    labels = {"warm_exec": "(a) warm job, later turn", "first_exec": "(b) new task, fork from zygote",
              "spawn_python_IS": "(c) spawn python -I -S -c", "inprocess_exec": "(d) in-process exec",
              "brokered_get": "(e) HTTP GET through the broker", "direct_get": "(f) HTTP GET, direct aiohttp"}
    print(f"layers: {', '.join(layers)}")
    print(f"{'mechanism':<34} {'median ms':>10} {'p95 ms':>10} {'target':>10}")
    for name, values in stats.items():
        target = f"<= {TARGETS_MS[name]}" if name in TARGETS_MS else ""
        print(f"{labels[name]:<34} {values['median']:>10.3f} {values['p95']:>10.3f} {target:>10}")
    fork_ratio = stats["spawn_python_IS"]["median"] / stats["first_exec"]["median"]
    overhead = stats["brokered_get"]["median"] - stats["direct_get"]["median"]
    broker_ratio = stats["brokered_get"]["median"] / stats["direct_get"]["median"]
    print(f"fresh interpreter / zygote fork: {fork_ratio:.1f}x")
    print(f"broker overhead on a GET: +{overhead:.3f} ms ({broker_ratio:.2f}x direct; target <= "
          f"+{BROKER_OVERHEAD_TARGET_MS} ms)")
    met = (all(stats[name]["median"] <= limit for name, limit in TARGETS_MS.items())
           and overhead <= BROKER_OVERHEAD_TARGET_MS)
    print(json.dumps({"bench": "sandbox_latency", "runs": args.runs, "layers": layers, "stats_ms": stats,
                      "spawn_over_fork": round(fork_ratio, 2), "broker_overhead_ms": round(overhead, 3),
                      "broker_over_direct": round(broker_ratio, 2), "targets_met": met,
                      "machine": machine()}))


if __name__ == "__main__":
    main()
