"""Sandbox latency, as the gateway sees it, all mechanisms measured in one run.

  (a) a trivial execution in a warm job (a later turn of a task)
  (b) a new task's first execution (a job forked from the warm zygote)
  (c) spawning `python -I -S -c` (what a fresh interpreter per execution would cost)
  (d) in-process exec() (no isolation at all; the floor)

Rounds are interleaved (every round runs every mechanism once) so machine-load drift hits all rows alike.
Prints a table and one JSON line. Targets: (a) median <= 2 ms, (b) median <= 10 ms.

    python bench/sandbox_latency.py [--runs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.sandbox.messages import CallRequest
from gateway.sandbox.session import JobLimits, SandboxSession, ZygoteProcess

TARGETS_MS = {"warm_exec": 2.0, "first_exec": 10.0}
CODE = "1 + 1"


async def refuse(request: CallRequest) -> dict:
    return {"id": request.id, "ok": False, "error": {"type": "PermissionError", "message": "no devices"}}


def new_session(zygote: ZygoteProcess, root: Path, name: str) -> SandboxSession:
    scratch = root / name
    config = {"devices": [], "scratch_dir": str(scratch), "memory_mb": 512, "cpu_s": 30}
    return SandboxSession(zygote, config, JobLimits(10.0, 512, 30, 1 << 20), scratch, refuse, dict)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(runs: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"warm_exec": [], "first_exec": [], "spawn_python_IS": [], "inprocess_exec": []}
    zygote = ZygoteProcess()
    await zygote.start()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warm = new_session(zygote, root, "warm")
        assert (await warm.execute(CODE)).output == "2\n"
        compiled = compile(CODE, "<bench>", "eval")
        for index in range(runs):
            started = time.perf_counter()
            result = await warm.execute(CODE)
            samples["warm_exec"].append((time.perf_counter() - started) * 1000)
            assert result.output == "2\n", result

            fresh = new_session(zygote, root, f"t{index}")
            started = time.perf_counter()
            result = await fresh.execute(CODE)
            samples["first_exec"].append((time.perf_counter() - started) * 1000)
            assert result.output == "2\n", result
            await fresh.close()

            started = time.perf_counter()
            output = subprocess.run([sys.executable, "-I", "-S", "-c", f"print({CODE})"], capture_output=True,
                                    check=True).stdout
            samples["spawn_python_IS"].append((time.perf_counter() - started) * 1000)
            assert output == b"2\n"

            started = time.perf_counter()
            value = eval(compiled, {})
            samples["inprocess_exec"].append((time.perf_counter() - started) * 1000)
            assert value == 2
        await warm.close()
    await zygote.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    samples = asyncio.run(measure(args.runs))
    stats = {name: {"median": round(statistics.median(values), 3), "p95": round(percentile(values, 0.95), 3)}
             for name, values in samples.items()}
    labels = {"warm_exec": "(a) warm job, later turn", "first_exec": "(b) new task, fork from zygote",
              "spawn_python_IS": "(c) spawn python -I -S -c", "inprocess_exec": "(d) in-process exec"}
    print(f"{'mechanism':<34} {'median ms':>10} {'p95 ms':>10} {'target':>10}")
    for name, values in stats.items():
        target = f"<= {TARGETS_MS[name]}" if name in TARGETS_MS else ""
        print(f"{labels[name]:<34} {values['median']:>10.3f} {values['p95']:>10.3f} {target:>10}")
    ratio = stats["spawn_python_IS"]["median"] / stats["first_exec"]["median"]
    print(f"fresh interpreter / zygote fork: {ratio:.1f}x")
    met = all(stats[name]["median"] <= limit for name, limit in TARGETS_MS.items())
    print(json.dumps({"bench": "sandbox_latency", "runs": args.runs, "stats_ms": stats,
                      "spawn_over_fork": round(ratio, 2), "targets_met": met,
                      "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                  "platform": platform.platform()}}))


if __name__ == "__main__":
    main()
