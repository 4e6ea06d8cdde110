"""How well the model path controls the simulated home and lab: commands graded by what the devices did.

The home and lab scenarios (22 devices) run in this process next to the gateway, wired as `pyuse demo` wires
them: Zigbee2MQTT and Tasmota on an embedded MQTT broker of this run, the instruments on ptys, Shelly, WLED and
Elgato over HTTP. Only the HTTP devices differ from the demo: they are declared by address instead of found over
loopback mDNS, where another simulator running on this machine announces devices of the same names.

Each command of bench/agent_eval.toml runs as one task, in file order:
1. `setup_code` runs through the gateway as a person's code, with confirmations granted (for states that
   `apply` cannot set: a bulb on, the door unlocked, a supply's output on), then the `setup` patches go to the
   simulators (SimHome.apply: a reading, a fault, a switch's own button);
2. the devices' controlled state is read, the command runs (`Gateway.run_task`, nobody there to confirm, so
   dangerous actions are denied) and the state is read again once the expected values have arrived;
3. it passes when every `expect`ed value is there (numbers within TOLERANCE, in device units), nothing else
   controlled changed on any device, the task ended `done` (missing, offline and dangerous commands may also
   end `failed`, with their reason), and the answer (or that reason) matches the command's `answer` pattern.
   Faults from `setup` are cleared after the command.

Controlled keys are those a command can set (CONTROLLED); sensors have none, their readings drift.

`--mode model` sets [agent] fast_path = false, so every command goes to the model; `--mode default` keeps the
fast path and saved skills, and counts the commands they took and how many of those ended in a wrong state.
`--llm scripted` serves each command's `reference` code as the model's only reply (simulators/llm.py): a check
of the commands, the grading and the gateway, which must pass every command.

Printed: a line per command as it ends (on failure, why: the state diff or the answer), then the pass rate per
category and overall, median and p90 turns and median prompt and completion tokens over the tasks the model
ran, median and p90 seconds per task (`run_task`, setup not included) and the median of one-device commands,
and one JSON line with all of it, the load average and the machine. `--json-out` adds every command's outcome
with the code and observation of each turn.

Targets: model mode with Qwen2.5-Coder-1.5B-Instruct on a 2-core machine: >= 80% of commands pass, median turns
<= 2, median seconds of one-device commands <= 20; default mode: >= 90% and no wrong state from the fast path
or a skill; scripted: 100%.

    python bench/agent_eval.py --llm scripted [--mode default]
    python bench/agent_eval.py --llm-url http://127.0.0.1:8088/v1 --model qwen2.5-coder-1.5b-instruct
    options: --api-key KEY, --only CATEGORY, --filter TEXT, --limit N, --json-out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from common import machine, percentile
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.app import Gateway
from gateway.config import Config, DeviceEntry, LLMSection
from gateway.demo import demo_config
from gateway.policy import ConfirmationRequest
from gateway.tasks import TaskResult
from gateway.transports.embedded_broker import EmbeddedBroker
from simulators.httpdevice import HttpDevice
from simulators.llm import ScriptedLLM
from simulators.runner import SimHome, running_home
from simulators.scenario import DeviceSpec, load_scenario

COMMANDS_FILE = Path(__file__).with_suffix(".toml")
SCENARIOS = ("home", "lab")
Category = Literal["one_device", "several_devices", "chinese", "relative", "question", "condition", "alias",
                   "missing_device", "offline", "dangerous"]
CATEGORIES: tuple[str, ...] = get_args(Category)
REFUSALS = {"missing_device", "offline", "dangerous"}  # nothing may change, and the answer says why
ANSWERED = REFUSALS | {"question"}  # an answer pattern is required

# What a command can set on each kind, in device units. "chN.key" reads a channel of the SCPI supply.
CONTROLLED: dict[str, tuple[str, ...]] = {
    "zigbee_bulb": ("state", "brightness", "color_temp", "color"),
    "tasmota_dimmer": ("power", "dimmer"),
    "tasmota_plug": ("power",),
    "shelly_switch": ("output",),
    "wled_strip": ("on", "bri", "color"),
    "elgato_light": ("on", "brightness", "temperature"),
    "zigbee_lock": ("state", "lock_state"),
    "zigbee_thermostat": ("occupied_heating_setpoint", "system_mode"),
    "korad_psu": ("voltage_set", "current_set", "output"),
    "scpi_psu": tuple(f"ch{channel}.{key}" for channel in (1, 2)
                      for key in ("voltage_set", "current_set", "output")),
}
# Keys read other than by their path in the simulator's state.
READERS: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
    ("zigbee_bulb", "color"): lambda state: [state["color"]["x"], state["color"]["y"]],  # CIE x, y
    ("wled_strip", "color"): lambda state: state["segments"][0]["col"][0],  # red, green, blue
}
# Keys that change together: a bulb given a colour temperature reports the matching colour.
COUPLED: dict[str, tuple[frozenset[str], ...]] = {"zigbee_bulb": (frozenset({"color_temp", "color"}),)}
# Brightness, dimmer and mireds are whole device units that percent and kelvin round into; the rest (volts,
# amps, °C set points, CIE x/y) must be right to 0.01.
TOLERANCE: dict[str, float] = {"brightness": 1, "bri": 1, "dimmer": 1, "temperature": 1, "color_temp": 1}
DEFAULT_TOLERANCE = 0.01

DISCOVERY_S = 60.0  # for all 22 devices to be found
SETTLE_S = 3.0  # for a command's effect to reach the simulators (most calls wait for the device already)
QUIET_S = 0.1  # state unchanged this long counts as settled
OFFLINE_NOTICE_S = 2.0  # for the gateway to see a device go offline before the command
BACK_ONLINE_S = 40.0  # for it to see the device back; an HTTP device failing a call waits for a poll (30 s)
THOUGHT = "Thought: This is what the task needs."


class Range(BaseModel):
    """A number between min and max (inclusive): the expectation of a relative command such as "brighter"."""

    model_config = ConfigDict(extra="forbid")
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        return self

    def __str__(self) -> str:
        return f"{'' if self.min is None else self.min}..{'' if self.max is None else self.max}"


Expected = StrictBool | StrictInt | StrictFloat | StrictStr | list[StrictInt | StrictFloat] | Range


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    category: Category
    setup: dict[str, dict[str, Any]] = {}
    setup_code: str = ""
    expect: dict[str, dict[str, Expected]] = {}
    answer: str | None = None
    reference: str = Field(min_length=1)

    @field_validator("expect", mode="before")
    @classmethod
    def _expectations(cls, value: Any) -> Any:
        """One clear error for a value of no accepted shape, instead of one per member of Expected."""
        for device_id, keys in (value.items() if isinstance(value, dict) else ()):
            for key, expected in (keys.items() if isinstance(keys, dict) else ()):
                if isinstance(expected, dict):
                    try:
                        keys[key] = Range.model_validate(expected)
                    except ValidationError as error:
                        problem = error.errors()[0]
                        where = ".".join(map(str, (device_id, key, *problem["loc"])))
                        raise ValueError(f"{where}: {problem['msg'].removeprefix('Value error, ')}") from None
                elif not isinstance(expected, (bool, int, float, str, list)):
                    raise ValueError(f"{device_id}.{key}: expected a value, a list of numbers or "
                                     f"{{ min = .., max = .. }}, got {expected!r}")
        return value

    @field_validator("answer")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a regular expression: {error}") from None
        return value

    @model_validator(mode="after")
    def _category_rules(self) -> Command:
        if self.category in ANSWERED and self.answer is None:
            raise ValueError(f"a {self.category} command needs an answer pattern")
        if self.category in REFUSALS and self.expect:
            raise ValueError(f"a {self.category} command changes nothing: leave out expect")
        return self

    def answer_matches(self, text: str) -> bool:
        return self.answer is None or re.search(self.answer, text, re.IGNORECASE | re.DOTALL) is not None

    def faults(self) -> list[str]:
        """The devices that setup makes faulty, to be restored afterwards."""
        return [device_id for device_id, patch in self.setup.items() if patch.get("fault", "none") != "none"]


class CommandFileError(Exception):
    """The command file is unusable; the message names the command and the key."""


def load_commands(path: Path, kinds: dict[str, str]) -> list[Command]:
    try:
        rows = tomllib.loads(path.read_text(encoding="utf-8")).get("commands", [])
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CommandFileError(f"{path}: {error}") from None
    commands, problems = [], []
    for index, row in enumerate(rows):
        where = f"{path}: commands[{index}] ({row.get('text', '?')!r})"
        try:
            command = Command.model_validate(row)
        except ValidationError as error:
            problems += [f"{where}: {'.'.join(map(str, item['loc'])) or 'command'}: "
                         f"{item['msg'].removeprefix('Value error, ')}" for item in error.errors()]
            continue
        problems += [f"{where}: {problem}" for problem in _device_problems(command, kinds)]
        commands.append(command)
    texts = [command.text.casefold() for command in commands]
    problems += [f"{path}: {text!r} is there twice" for text in sorted({t for t in texts if texts.count(t) > 1})]
    if not rows:
        problems.append(f"{path}: no [[commands]]")
    if problems:
        raise CommandFileError("\n".join(problems))
    return commands


def _device_problems(command: Command, kinds: dict[str, str]) -> list[str]:
    problems = [f"{part}.{device_id}: no such device in the {' and '.join(SCENARIOS)} scenarios"
                for part, devices in (("setup", command.setup), ("expect", command.expect))
                for device_id in devices if device_id not in kinds]
    for device_id, keys in command.expect.items():
        if device_id in kinds:
            controlled = CONTROLLED.get(kinds[device_id], ())
            problems += [f"expect.{device_id}.{key}: not a controlled key of {kinds[device_id]} (those are: "
                         f"{', '.join(controlled) or 'none'})" for key in keys if key not in controlled]
    return problems


# --- grading ---------------------------------------------------------------------------------------------

def controlled_state(kind: str, state: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for key in CONTROLLED.get(kind, ()):
        reader = READERS.get((kind, key))
        if reader is not None:
            values[key] = reader(state)
        else:
            value: Any = state
            for part in key.split("."):
                value = value[part]
            values[key] = value
    return values


def matches(expected: Expected, actual: Any, tolerance: float) -> bool:
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if isinstance(expected, Range):
        return (number(actual) and (expected.min is None or actual >= expected.min)
                and (expected.max is None or actual <= expected.max))
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(actual) == len(expected)
                and all(number(a) and abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)))
    if number(expected):
        return number(actual) and abs(actual - expected) <= tolerance
    return type(actual) is type(expected) and actual == expected


def describe(expected: Expected) -> str:
    return str(expected) if isinstance(expected, Range) else repr(expected)


def may_change(kind: str, expected: dict[str, Expected]) -> set[str]:
    keys = set(expected)
    for group in COUPLED.get(kind, ()):
        if keys & group:
            keys |= group
    return keys


def state_problems(command: Command, kinds: dict[str, str], before: dict[str, dict[str, Any]],
                   after: dict[str, dict[str, Any]]) -> list[str]:
    problems = [f"{device_id}.{key} is {after[device_id][key]!r}, expected {describe(expected)}"
                for device_id, keys in command.expect.items() for key, expected in keys.items()
                if not matches(expected, after[device_id][key], TOLERANCE.get(key, DEFAULT_TOLERANCE))]
    for device_id, values in after.items():
        allowed = may_change(kinds[device_id], command.expect.get(device_id, {}))
        problems += [f"{device_id}.{key} changed: {before[device_id][key]!r} -> {value!r}"
                     for key, value in values.items() if key not in allowed and value != before[device_id][key]]
    return problems


def expected_present(command: Command, state: dict[str, dict[str, Any]]) -> bool:
    return all(matches(expected, state[device_id][key], TOLERANCE.get(key, DEFAULT_TOLERANCE))
               for device_id, keys in command.expect.items() for key, expected in keys.items())


# --- the world: simulators, broker, gateway --------------------------------------------------------------

@dataclass
class Endpoint:
    base_url: str
    model: str
    api_key: str = ""


@dataclass
class World:
    home: SimHome
    gateway: Gateway
    kinds: dict[str, str]  # the scenario's devices (the Zigbee2MQTT bridge is not one of them)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        state = self.home.state()
        return {device_id: controlled_state(kind, state[device_id]) for device_id, kind in self.kinds.items()}

    async def settled(self, done: Callable[[dict[str, dict[str, Any]]], bool] = lambda state: True,
                      limit_s: float = SETTLE_S) -> dict[str, dict[str, Any]]:
        """The controlled state once `done` holds and nothing changed for QUIET_S, or as it is after limit_s."""
        deadline = time.monotonic() + limit_s
        previous = self.snapshot()
        while True:
            await asyncio.sleep(QUIET_S)
            current = self.snapshot()
            if (current == previous and done(current)) or time.monotonic() > deadline:
                return current
            previous = current

    async def wait_online(self, device_ids: list[str], online: bool, limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            devices = [self.gateway.registry.get(device_id) for device_id in device_ids]
            if all(device is not None and device.online == online for device in devices):
                return True
            await asyncio.sleep(0.1)
        return False


def bench_config(data_dir: str, endpoint: Endpoint, mode: str, specs: list[DeviceSpec], home: SimHome,
                 broker: EmbeddedBroker) -> Config:
    base = Config.model_validate({
        "gateway": {"data_dir": data_dir, "log_level": "warning"},
        "llm": {"base_url": endpoint.base_url, "model": endpoint.model, "api_key": endpoint.api_key},
        "agent": {"fast_path": mode == "default"},
        # Setup code and a scripted model call the bench supply (three calls a method) more than the default
        # 60 times a minute; the rate limit is not what is measured.
        "policy": {"rate_limit_per_minute": 10**6}})
    config = demo_config(base, specs, home, broker)
    # The HTTP devices are declared where they listen: over loopback mDNS, as the demo finds them, the gateway
    # would also find the devices of the same names that another simulator on this machine announces.
    config.discovery.mdns = False
    http = {device_id: device for device_id, device in home.devices.items() if isinstance(device, HttpDevice)}
    declared = [DeviceEntry(id=spec.id, name=spec.name, kind=spec.kind, area=spec.area, aliases=list(spec.aliases),
                            host=http[spec.id].host, port=http[spec.id].port) for spec in specs if spec.id in http]
    config.devices = [entry for entry in config.devices if entry.id not in http] + declared
    return config


@contextlib.asynccontextmanager
async def open_world(endpoint: Endpoint, mode: str) -> AsyncIterator[World]:
    specs = [spec for name in SCENARIOS for spec in load_scenario(name).devices]
    kinds = {spec.id: spec.kind for spec in specs}
    broker = EmbeddedBroker("127.0.0.1")
    await broker.start()
    try:
        with tempfile.TemporaryDirectory(prefix="pyuse-agent-eval-") as data_dir:
            async with (running_home(specs, broker.host, broker.port, mdns=False) as home,
                        Gateway(bench_config(data_dir, endpoint, mode, specs, home, broker)) as gateway):
                await gateway.settle_discovery()
                world = World(home, gateway, kinds)
                if not await world.wait_online(list(kinds), True, DISCOVERY_S):
                    found = {device.id for device in gateway.registry.all() if device.online}
                    raise RuntimeError(f"after {DISCOVERY_S:g} s the gateway has not found (online): "
                                       f"{', '.join(sorted(set(kinds) - found))}")
                yield world
    finally:
        await broker.close()


# --- one command -----------------------------------------------------------------------------------------

@dataclass
class Outcome:
    index: int
    text: str
    category: str
    status: str
    answer: str
    turns: int
    seconds: float
    prompt_tokens: int
    completion_tokens: int
    processed_locally: bool
    problems: list[str]
    wrong_state: bool  # an expected value missing, or something else changed
    trace: list[dict[str, Any]]  # each turn's code and observation, for --json-out

    @property
    def passed(self) -> bool:
        return not self.problems


class SetupError(Exception):
    """A command's setup did not work: the command file or the gateway is wrong, not the model."""


async def approve(request: ConfirmationRequest) -> bool:
    return True


async def prepare(world: World, command: Command) -> None:
    if command.setup_code:
        _, execution = await world.gateway.run_code(command.setup_code, f"agent_eval setup: {command.text}",
                                                    confirm=approve)
        if execution.status not in ("ok", "final"):
            raise SetupError(f"{command.text!r}: setup_code ended {execution.status}: {execution.output.strip()}")
    for device_id, patch in command.setup.items():
        try:
            world.home.apply(device_id, patch)
        except ValueError as error:
            raise SetupError(f"{command.text!r}: setup.{device_id}: {error}") from None
    # Zigbee2MQTT and Tasmota tell the gateway at once that a device went offline (a call to it then fails at
    # once); an HTTP device or an instrument is only found out by a call, so this wait may run out.
    await world.wait_online(command.faults(), False, OFFLINE_NOTICE_S)


async def restore(world: World, command: Command) -> None:
    for device_id in command.faults():
        world.home.apply(device_id, {"fault": "none"})
    if not await world.wait_online(command.faults(), True, BACK_ONLINE_S):
        raise SetupError(f"{command.text!r}: {', '.join(command.faults())} still offline to the gateway "
                         f"{BACK_ONLINE_S:g} s after the fault was cleared")


async def run_command(world: World, index: int, command: Command) -> Outcome:
    await prepare(world, command)
    before = await world.settled()
    result = await world.gateway.run_task(command.text, origin="cli")
    after = await world.settled(lambda state: expected_present(command, state))
    await restore(world, command)
    said = result.answer or result.error or ""
    wrong = state_problems(command, world.kinds, before, after)
    problems = wrong + status_problems(command, result)
    if not command.answer_matches(said):
        problems.append(f"answer {said!r} does not match /{command.answer}/")
    record = world.gateway.task(result.task_id)
    assert record is not None and world.gateway.store is not None
    trace = [{"turn": step.turn, "code": step.code, "observation": step.observation}
             for step in world.gateway.store.steps(result.task_id)]
    return Outcome(index, command.text, command.category, result.status, said, result.turns,
                   result.duration_ms / 1000, record.prompt_tokens, record.completion_tokens,
                   result.processed_locally, problems, bool(wrong), trace)


def status_problems(command: Command, result: TaskResult) -> list[str]:
    if result.status == "done" or (result.status == "failed" and command.category in REFUSALS):
        return []
    return [f"ended {result.status}: {result.error}"]


# --- report ----------------------------------------------------------------------------------------------

def progress_line(outcome: Outcome, total: int) -> str:
    verdict = "pass" if outcome.passed else "FAIL"
    local = " local" if outcome.processed_locally else ""
    line = (f"{outcome.index:>3}/{total} {outcome.category:<15} {verdict} turns {outcome.turns} "
            f"{outcome.seconds:6.1f} s{local}  {outcome.text}")
    problems = list(outcome.problems)
    if outcome.wrong_state and not any(problem.startswith("answer ") for problem in problems):
        problems.append(f"answer: {outcome.answer!r}")
    return line + "".join(f"\n      - {problem}" for problem in problems)


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def p90(values: list[float]) -> float | None:
    return round(percentile(values, 0.9), 2) if values else None


def figures(outcomes: list[Outcome], mode: str, scripted: bool) -> dict[str, Any]:
    categories = {}
    for category in CATEGORIES:
        rows = [outcome for outcome in outcomes if outcome.category == category]
        if rows:
            passed = sum(outcome.passed for outcome in rows)
            categories[category] = {"n": len(rows), "passed": passed, "rate": round(passed / len(rows), 3)}
    passed = sum(outcome.passed for outcome in outcomes)
    modelled = [outcome for outcome in outcomes if not outcome.processed_locally]
    turns = [float(outcome.turns) for outcome in modelled]
    seconds = [outcome.seconds for outcome in outcomes]
    one_device = [outcome.seconds for outcome in outcomes if outcome.category == "one_device"]
    result: dict[str, Any] = {
        "commands": len(outcomes), "passed": passed, "pass_rate": round(passed / len(outcomes), 3),
        "categories": categories, "turns_median": median(turns), "turns_p90": p90(turns),
        "prompt_tokens_median": median([float(outcome.prompt_tokens) for outcome in modelled]),
        "completion_tokens_median": median([float(outcome.completion_tokens) for outcome in modelled]),
        "seconds_median": median(seconds), "seconds_p90": p90(seconds),
        "one_device_seconds_median": median(one_device)}
    if mode == "default":
        local = [outcome for outcome in outcomes if outcome.processed_locally]
        result["fast_path"] = {"taken": len(local), "wrong_state": sum(outcome.wrong_state for outcome in local)}
    result["targets_met"] = targets_met(result, mode, scripted)
    return result


def targets_met(result: dict[str, Any], mode: str, scripted: bool) -> dict[str, bool]:
    rate, turns, one_device = result["pass_rate"], result["turns_median"], result["one_device_seconds_median"]
    if scripted:
        met = {"pass_rate_100": rate == 1.0}
    elif mode == "default":
        met = {"pass_rate_ge_90": rate >= 0.9}
    else:
        met = {"pass_rate_ge_80": rate >= 0.8, "turns_median_le_2": turns is not None and turns <= 2,
               "one_device_seconds_median_le_20": one_device is not None and one_device <= 20}
    if mode == "default":
        met["no_wrong_state_from_fast_path"] = result["fast_path"]["wrong_state"] == 0
    return met


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{'category':<16} {'n':>4} {'passed':>7} {'rate':>7}")
    for category, row in result["categories"].items():
        print(f"{category:<16} {row['n']:>4} {row['passed']:>7} {row['rate']:>7.0%}")
    print(f"{'overall':<16} {result['commands']:>4} {result['passed']:>7} {result['pass_rate']:>7.0%}")
    print(f"turns (tasks the model ran): median {result['turns_median']}, p90 {result['turns_p90']}; tokens "
          f"per such task: prompt median {result['prompt_tokens_median']}, "
          f"completion median {result['completion_tokens_median']}")
    print(f"seconds per task: median {result['seconds_median']}, p90 {result['seconds_p90']}; "
          f"one-device commands: median {result['one_device_seconds_median']}")
    if "fast_path" in result:
        print(f"fast path and skills took {result['fast_path']['taken']} command(s); "
              f"{result['fast_path']['wrong_state']} of them ended in a wrong state")


# --- main ------------------------------------------------------------------------------------------------

def select(commands: list[Command], only: str | None, text: str | None, limit: int | None) -> list[Command]:
    chosen = [command for command in commands if (only is None or command.category == only)
              and (text is None or text.casefold() in command.text.casefold())]
    return chosen[:limit] if limit is not None else chosen


def scripted_llm(commands: list[Command]) -> ScriptedLLM:
    """Each command's reference as the model's reply. The server answers with the first conversation whose `match`
    is in the task, so the longest texts go first: "turn on X" is also in "turn on X and Y"."""
    ordered = sorted(commands, key=lambda command: len(command.text), reverse=True)
    return ScriptedLLM({"model": "scripted", "conversations": [
        {"match": command.text, "replies": [f"{THOUGHT}\n```python\n{command.reference.strip()}\n```"]}
        for command in ordered]})


async def evaluate(commands: list[Command], endpoint: Endpoint, mode: str) -> list[Outcome]:
    outcomes = []
    async with open_world(endpoint, mode) as world:
        for index, command in enumerate(commands, 1):
            outcome = await run_command(world, index, command)
            print(progress_line(outcome, len(commands)), flush=True)
            outcomes.append(outcome)
    return outcomes


async def main(arguments: argparse.Namespace) -> int:
    kinds = {spec.id: spec.kind for name in SCENARIOS for spec in load_scenario(name).devices}
    try:
        commands = select(load_commands(arguments.commands, kinds), arguments.only, arguments.filter,
                          arguments.limit)
    except CommandFileError as error:
        print(error, file=sys.stderr)
        return 2
    if not commands:
        print("no command matches --only/--filter", file=sys.stderr)
        return 2
    scripted = arguments.llm == "scripted"
    server = scripted_llm(commands) if scripted else None
    endpoint = (Endpoint(await server.start(), server.model) if server is not None
                else Endpoint(arguments.llm_url, arguments.model, arguments.api_key))
    load_before = os.getloadavg()
    started = time.monotonic()
    try:
        outcomes = await evaluate(commands, endpoint, arguments.mode)
    except SetupError as error:
        print(f"setup failed: {error}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            await server.close()
    result = {"bench": "agent_eval", "mode": arguments.mode, "llm": "scripted" if scripted else endpoint.base_url,
              "model": endpoint.model,
              "selection": {"only": arguments.only, "filter": arguments.filter, "limit": arguments.limit},
              **figures(outcomes, arguments.mode, scripted),
              "wall_s": round(time.monotonic() - started, 1),
              "load_avg": {"before": [round(value, 2) for value in load_before],
                           "after": [round(value, 2) for value in os.getloadavg()]},
              "machine": machine()}
    print_table(result)
    print(json.dumps(result, ensure_ascii=False))
    if arguments.json_out:
        arguments.json_out.write_text(json.dumps(result | {"outcomes": [asdict(outcome) for outcome in outcomes]},
                                                 ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    endpoint = parser.add_mutually_exclusive_group(required=True)
    endpoint.add_argument("--llm", choices=["scripted"], help="serve each command's reference code as the model")
    endpoint.add_argument("--llm-url", help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8088/v1")
    parser.add_argument("--model", help="the model to ask (with --llm-url)")
    parser.add_argument("--api-key", default="", help="bearer token for --llm-url, if it needs one")
    parser.add_argument("--mode", choices=["model", "default"], default="model",
                        help="model: every command goes to the model; default: fast path and skills first")
    parser.add_argument("--only", choices=CATEGORIES, help="run the commands of this category only")
    parser.add_argument("--filter", help="run the commands whose text contains this")
    parser.add_argument("--limit", type=int, help="run at most this many commands")
    parser.add_argument("--commands", type=Path, default=COMMANDS_FILE, help="the command file")
    parser.add_argument("--json-out", type=Path, help="also write the figures and every command's outcome here")
    arguments = parser.parse_args()
    if arguments.llm_url:
        if not arguments.model:
            parser.error("--llm-url needs --model")
        try:
            LLMSection(base_url=arguments.llm_url, model=arguments.model)
        except ValidationError as error:
            parser.error(f"--llm-url: {error.errors()[0]['msg']}")
    return arguments


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_arguments())))
