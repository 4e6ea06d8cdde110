"""HTTP API under load: N concurrent clients each create tasks and follow them to their result.

`pyuse run` runs as its own process against the scripted model (zero delay). Each task is one model turn with
code (`final_answer(21 * 2)`, a real sandbox execution) — the model's share is nil, so this measures the
gateway. For N = 1, 10, 50: tasks per second, latency from the POST to the `finished` event (p50, p99), and
the daemon's RSS (the zygote and jobs are separate processes, shown apart). Prints a table and one JSON line.

    python bench/api_load.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from gateway.transports.embedded_broker import free_port
from simulators.llm import ScriptedLLM
from common import machine, percentile

CLIENTS = (1, 10, 50)
REPLY = "Thought: compute it.\n```python\nfinal_answer(21 * 2)\n```"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


async def one_task(http: aiohttp.ClientSession, base: str, index: int) -> float:
    started = time.perf_counter()
    async with http.post(f"{base}/api/tasks", json={"text": f"compute task {index}"}) as response:
        if response.status != 202:
            raise RuntimeError(f"POST answered {response.status}: {await response.text()}")
        created = await response.json()
    async with http.get(f"{base}{created['events']}") as stream:
        async for line in stream.content:
            if line.startswith(b"event: finished"):
                return (time.perf_counter() - started) * 1000
    raise RuntimeError("the stream ended without a result")


async def load(base: str, clients: int, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def client() -> None:
            while time.monotonic() < deadline:
                latencies.append(await one_task(http, base, next(counter)))

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.monotonic() - started
    return round(len(latencies) / elapsed, 1), latencies



async def main(seconds: float) -> None:
    llm = ScriptedLLM({"conversations": [{"match": "compute task", "replies": [REPLY]}]})
    await llm.start()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        config = Path(data) / "pyuse.toml"
        config.write_text(f'[gateway]\ndata_dir = "{data}"\nlog_level = "warning"\n[llm]\nbase_url = "{llm.base_url}"\n'
                          f'model = "scripted"\n[api]\nport = {port}\nmax_concurrent_tasks = 64\nmax_queued_tasks = 256\n'
                          '[discovery]\nmdns = false\nmqtt = false\n')
        daemon = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "run", "-c", str(config),
                                                      stdout=asyncio.subprocess.PIPE,
                                                      stderr=asyncio.subprocess.DEVNULL)
        assert daemon.stdout is not None
        await daemon.stdout.readline()  # "... is running"
        base = f"http://127.0.0.1:{port}"
        rows = []
        try:
            await load(base, 4, 2.0)  # warm-up
            for clients in CLIENTS:
                rate, latencies = await load(base, clients, seconds)
                others = sum(rss_mb(child) for child in children(daemon.pid))
                rows.append({"clients": clients, "tasks": len(latencies), "tasks_per_s": rate,
                             "p50_ms": round(statistics.median(latencies), 1),
                             "p99_ms": round(percentile(latencies, 0.99), 1),
                             "daemon_rss_mb": round(rss_mb(daemon.pid), 1),
                             "zygote_and_jobs_rss_mb": round(others, 1)})
        finally:
            daemon.terminate()
            await daemon.wait()
    await llm.close()
    print(f"{'clients':>8} {'tasks':>6} {'tasks/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'daemon MB':>10} {'zygote+jobs MB':>15}")
    for row in rows:
        print(f"{row['clients']:>8} {row['tasks']:>6} {row['tasks_per_s']:>8} {row['p50_ms']:>8} {row['p99_ms']:>8} "
              f"{row['daemon_rss_mb']:>10} {row['zygote_and_jobs_rss_mb']:>15}")
    print(json.dumps({"bench": "api_load", "seconds_per_level": seconds, "rows": rows,
                      "machine": machine()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args().seconds))
