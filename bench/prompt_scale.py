"""Prompt size as homes grow: our retrieved prompt against listing every device (the Home Assistant way).

For 10, 100, 1000 and 5000 devices of the generated home, over the labelled commands in
tests/data/commands.toml: median and max prompt tokens (estimated), the baseline's tokens, recall (the share
of commands whose needed devices are all in the prompt, over the commands whose devices exist at that size),
and the median time to build one prompt. Targets: <= 3000 tokens at every size, recall >= 98%, build <= 20 ms
at 5000. Prints a table and one JSON line.

    python bench/prompt_scale.py
"""

from __future__ import annotations

import json
import statistics
import time
import tomllib
from pathlib import Path

from gateway.agent.prompt import PromptBuilder
from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from simulators.scenario import large_home
from common import machine

SIZES = (10, 100, 1000, 5000)
BUDGET = 3000
COMMANDS = tomllib.loads((Path(__file__).parent.parent / "tests" / "data" / "commands.toml").read_text())["commands"]


def measure(docs: DocLibrary, size: int) -> dict[str, float]:
    devices = [Device(id=spec.id, name=spec.name, kind=spec.kind, area=spec.area,
                      transport=docs.get(spec.kind).transport) for spec in large_home(size)]
    ids = {device.id for device in devices}
    ours, baseline = PromptBuilder(docs, BUDGET), PromptBuilder(docs, 10**9)
    tokens, build_ms, hits, judged = [], [], 0, 0
    for command in COMMANDS:
        started = time.perf_counter()
        prompt = ours.build(command["text"], devices)
        build_ms.append((time.perf_counter() - started) * 1000)
        tokens.append(prompt.estimate)
        if set(command["devices"]) <= ids:
            judged += 1
            hits += set(command["devices"]) <= set(prompt.listed)
    everything = baseline.build("turn on the kitchen light", devices)
    return {"devices": size, "tokens_median": statistics.median(tokens), "tokens_max": max(tokens),
            "baseline_tokens": everything.estimate, "recall": round(hits / judged, 4) if judged else None,
            "commands_judged": judged, "build_ms_median": round(statistics.median(build_ms), 2),
            "build_ms_max": round(max(build_ms), 2)}


def main() -> None:
    docs = DocLibrary.load()
    rows = [measure(docs, size) for size in SIZES]
    print(f"{'devices':>8} {'tokens med':>11} {'tokens max':>11} {'list-all':>9} {'recall':>8} {'judged':>7} "
          f"{'build ms':>9}")
    for row in rows:
        recall = f"{row['recall']:.1%}" if row["recall"] is not None else "-"
        print(f"{row['devices']:>8} {row['tokens_median']:>11.0f} {row['tokens_max']:>11} "
              f"{row['baseline_tokens']:>9} {recall:>8} {row['commands_judged']:>7} {row['build_ms_median']:>9}")
    judged = [row for row in rows if row["recall"] is not None and row["commands_judged"] >= 50]
    met = (all(row["tokens_max"] <= BUDGET for row in rows) and all(row["recall"] >= 0.98 for row in judged)
           and rows[-1]["build_ms_median"] <= 20)
    print(json.dumps({"bench": "prompt_scale", "budget": BUDGET, "commands": len(COMMANDS), "rows": rows,
                      "targets_met": met, "machine": machine()}))


if __name__ == "__main__":
    main()
