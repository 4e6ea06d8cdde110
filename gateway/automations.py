"""Automations: a trigger (an MQTT message, a schedule, a device's state changing) runs an action (a saved skill,
or a task in words that the model compiles into a skill on its first run) as a task with origin
`automation:<name>`.

Runs go through the task runner, so each is a task in the store and on the web page, under the same sandbox and
policy as any other; nobody can answer a confirmation for them, so a dangerous call is denied. Triggers that
come too soon (debounce) or while max_concurrent runs are going are dropped and counted. Two guards stop a
loop: the broker refuses an automation's publish to a topic its own trigger listens on, and an automation
starting more than max_runs_per_minute times is stopped; either way it is reported (log, store, listeners)
and stays stopped until resumed. Times (debounce, schedules, the rate window, timeout_s) follow the gateway
clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.agent.llm import LLMError
from gateway.clock import parse_interval, parse_time_of_day
from gateway.conditions import Condition
from gateway.config import AutomationEntry
from gateway.devices.registry import DeviceEvent
from gateway.errors import GatewayError
from gateway.listeners import Listeners
from gateway.runner import Busy, TaskRunner
from gateway.tasks import (
    AUTOMATION_PREFIX,
    AutomationOrigin,
    SkillArgumentError,
    TaskOptions,
    TaskResult,
    automation_origin,
)
from gateway.transports.mqtt_message import Message
from gateway.untrusted import topic_matches

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

RATE_WINDOW_S = 60.0  # gateway-clock seconds over which max_runs_per_minute counts


class AutomationError(GatewayError, ValueError):
    """A request about automations that cannot be met; the message says why."""


@dataclass
class Automation:
    entry: AutomationEntry
    source: str  # config | api
    skill: str | None = None  # the skill its words were compiled into
    skill_failed: bool = False  # that skill's last run failed: recompile on the next trigger
    stopped: str | None = None  # why it was stopped; None while it runs
    runs: int = 0
    dropped: int = 0
    last_task: str | None = None
    last_status: str | None = None
    last_error: str | None = None
    condition: Condition | None = None
    active: set[asyncio.Task[None]] = field(default_factory=set)
    starts: deque[float] = field(default_factory=deque)  # clock times of recent starts, for the rate guard
    last_start: float = float("-inf")
    condition_held: bool = False  # device triggers run as their condition becomes true
    cancel_trigger: Callable[[], object] | None = None  # what it returns (Task.cancel: a bool) is not used

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def origin(self) -> AutomationOrigin:
        return automation_origin(self.entry.name)

    def summary(self) -> dict[str, Any]:
        entry = self.entry
        return {"name": entry.name, "source": self.source, "enabled": entry.enabled, "stopped": self.stopped,
                "trigger": entry.trigger.model_dump(exclude_none=True), "describe": entry.trigger.describe(),
                "action": entry.action, "skill": entry.skill or self.skill, "args": entry.args, "runs": self.runs,
                "dropped": self.dropped, "running": len(self.active), "last_task": self.last_task,
                "last_status": self.last_status, "last_error": self.last_error}




class Automations:
    def __init__(self, gateway: Gateway, runner: TaskRunner) -> None:
        self.gateway = gateway
        self.runner = runner
        self.clock = gateway.clock
        self.automations: dict[str, Automation] = {}
        # told (what happened: ran | stopped | resumed | removed, the automation)
        self.listeners: Listeners[str, Automation] = Listeners("automation")
        self._schedules: set[asyncio.Task[None]] = set()

    # lifecycle
    async def start(self) -> None:
        store = self.gateway.store
        assert store is not None
        self.gateway.policy.publish_checks.append(self._refuse_publish)
        records = store.automation_records()
        for entry in self.gateway.config.automations:
            self._install(entry, "config", records.get(entry.name))
        for name, record in records.items():
            if record["definition"] and name not in self.automations:
                try:
                    entry = AutomationEntry.model_validate_json(record["definition"])
                except ValueError as error:
                    log.error("automation %s in the store is no longer valid and is skipped: %s", name, error)
                    continue
                self._install(entry, "api", record)

    async def close(self) -> None:
        for automation in self.automations.values():
            self._uninstall(automation)
        running = [task for automation in self.automations.values() for task in automation.active]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # management (API and CLI)
    def get(self, name: str) -> Automation:
        automation = self.automations.get(name)
        if automation is None:
            raise KeyError(f"no automation named {name!r}")
        return automation

    def add(self, entry: AutomationEntry) -> Automation:
        if entry.name in self.automations:
            raise AutomationError(f"an automation named {entry.name!r} exists already; delete it first or choose "
                                  "another name")
        assert self.gateway.store is not None
        self.gateway.store.save_automation(entry.name, definition=entry.model_dump_json(), skill=None, stopped=None,
                                           runs=0)
        return self._install(entry, "api", None)

    async def remove(self, name: str) -> None:
        automation = self.get(name)
        if automation.source == "config":
            raise AutomationError(f"automation {name!r} is defined in the config file; remove it there")
        self._uninstall(automation)
        for task in list(automation.active):
            task.cancel()
        await asyncio.gather(*automation.active, return_exceptions=True)
        await self.gateway.close_warm_jobs(automation.origin)
        del self.automations[name]
        assert self.gateway.store is not None
        self.gateway.store.forget_automation(name)
        self.listeners("removed", automation)

    def resume(self, name: str) -> Automation:
        automation = self.get(name)
        automation.stopped = None
        automation.starts.clear()
        self._save(automation, stopped=None)
        self.listeners("resumed", automation)
        return automation

    def recompile(self, name: str) -> Automation:
        """The next run goes through the model again, and its skill replaces the compiled one."""
        automation = self.get(name)
        if not automation.entry.action:
            raise AutomationError(f"automation {name!r} runs the skill {automation.entry.skill!r}; there are no "
                                  "words to compile")
        automation.skill_failed = automation.skill is not None
        return automation

    # triggers
    def _install(self, entry: AutomationEntry, source: str, record: dict[str, Any] | None) -> Automation:
        automation = Automation(entry, source, condition=Condition(entry.trigger.when) if entry.trigger.when else None)
        if record:
            automation.skill, automation.stopped, automation.runs = record["skill"], record["stopped"], record["runs"]
        self.automations[entry.name] = automation
        trigger = entry.trigger
        if trigger.mqtt is not None:
            subscription = self.gateway.mqtt.subscribe_soon(trigger.mqtt, lambda message: self._on_message(
                automation, message))
            automation.cancel_trigger = subscription.cancel
        elif trigger.device is not None:
            automation.cancel_trigger = self.gateway.registry.subscribe(lambda event: self._on_device(
                automation, event))
        else:
            schedule = asyncio.create_task(self._schedule(automation), name=f"automation-{entry.name}")
            self._schedules.add(schedule)
            schedule.add_done_callback(self._schedules.discard)
            automation.cancel_trigger = schedule.cancel
        return automation

    def _uninstall(self, automation: Automation) -> None:
        if automation.cancel_trigger is not None:
            automation.cancel_trigger()
            automation.cancel_trigger = None

    def _on_message(self, automation: Automation, message: Message) -> None:
        if message.retain:  # a retained message is old state replayed on subscribing, not something happening
            return
        payload = message.decoded()
        if automation.condition is None or automation.condition(payload):
            self.fire(automation, {"topic": message.topic, "payload": payload})

    def _on_device(self, automation: Automation, event: DeviceEvent) -> None:
        if event.type != "state" or event.device.id != automation.entry.trigger.device:
            return
        if automation.condition is None:
            self.fire(automation, {"device": event.device.id, "state": event.device.state})
            return
        holds = automation.condition(event.device.state)
        if holds and not automation.condition_held:
            self.fire(automation, {"device": event.device.id, "state": event.device.state})
        automation.condition_held = holds

    async def _schedule(self, automation: Automation) -> None:
        trigger = automation.entry.trigger
        while True:
            if trigger.every is not None:
                await self.clock.sleep(parse_interval(trigger.every))
            else:
                assert trigger.at is not None
                await self.clock.sleep(self.clock.until(*parse_time_of_day(trigger.at)))
            self.fire(automation, {"time": self.clock.now()})

    # runs
    def fire(self, automation: Automation, event: dict[str, Any]) -> bool:
        """A trigger happened: start a run unless disabled, stopped, debounced or at its concurrency limit."""
        entry = automation.entry
        if not entry.enabled or automation.stopped:
            return False
        now = self.clock.now()
        if now - automation.last_start < entry.debounce_s or len(automation.active) >= entry.max_concurrent:
            automation.dropped += 1
            return False
        while automation.starts and now - automation.starts[0] > RATE_WINDOW_S:
            automation.starts.popleft()
        if entry.max_runs_per_minute and len(automation.starts) >= entry.max_runs_per_minute:
            self.stop(automation, f"it was triggered more than {entry.max_runs_per_minute} times in a minute "
                                  "(max_runs_per_minute): a loop?")
            return False
        automation.starts.append(now)
        automation.last_start = now
        run = asyncio.create_task(self._run(automation, event), name=f"automation-{entry.name}-run")
        automation.active.add(run)
        run.add_done_callback(automation.active.discard)
        return True

    def stop(self, automation: Automation, reason: str) -> None:
        if automation.stopped:
            return
        automation.stopped = reason
        log.error("automation %s stopped: %s", automation.name, reason)
        self._save(automation, stopped=reason)
        self.listeners("stopped", automation)

    async def _run(self, automation: Automation, event: dict[str, Any]) -> None:
        entry = automation.entry
        timeout = entry.timeout_s / self.clock.speed
        log.debug("automation %s triggered by %s", entry.name, json.dumps(event, default=str)[:200])
        try:
            if entry.skill:
                result = await self._run_skill(automation, entry.skill, dict(entry.args), timeout)
            elif automation.skill and not automation.skill_failed and self.gateway.skills.get(automation.skill):
                result = await self._run_compiled(automation, automation.skill, timeout)
            else:
                result = await self._compile(automation, timeout)
        except Busy as error:
            automation.dropped += 1
            log.warning("automation %s dropped a run: %s", entry.name, error)
            return
        except (KeyError, SkillArgumentError, LLMError) as error:
            message = error.args[0] if error.args else str(error)
            automation.last_status, automation.last_error = "failed", message
            log.error("automation %s could not run: %s", entry.name, message)
            self.listeners("ran", automation)
            return
        automation.runs += 1
        automation.last_task, automation.last_status, automation.last_error = (result.task_id, result.status,
                                                                              result.error)
        self._save(automation, runs=automation.runs)
        if result.status != "done":
            log.error("automation %s: run %s %s: %s", entry.name, result.task_id, result.status, result.error)
        self.listeners("ran", automation)

    async def _compile(self, automation: Automation, timeout: float) -> TaskResult:
        """Run the action's words as a task; when the model solved it, save its code as the automation's skill.

        After the compiled skill failed, the model gets the words again (not the fast path or saved skills, which
        would find that skill) and its new skill replaces the old one."""
        replaces = automation.skill if automation.skill_failed else None
        options = TaskOptions(plan=replaces is None, timeout_s=timeout, save_skill=True, replaces_skill=replaces)
        result = await self._submit(automation.entry.action, automation, options)
        if result.skill and not result.processed_locally:
            automation.skill, automation.skill_failed = result.skill, False
            self._save(automation, skill=result.skill)
            log.info("automation %s compiled into skill %s", automation.name, result.skill)
        return result

    async def _run_compiled(self, automation: Automation, skill: str, timeout: float) -> TaskResult:
        compiled = self.gateway.skills.get(skill)
        arguments = (compiled.match(automation.entry.action) if compiled else None) or {}
        result = await self._run_skill(automation, skill, arguments, timeout)
        if result.status != "done":  # reported by _run; not retried now, recompiled on the next trigger
            automation.skill_failed = True
            log.warning("automation %s: its skill %s failed; the next run compiles the words again",
                        automation.name, skill)
        return result

    async def _run_skill(self, automation: Automation, skill: str, arguments: dict[str, Any],
                         timeout: float) -> TaskResult:
        """A skill in one of the warm jobs the gateway keeps for the automation's runs."""
        text, work = self.gateway.skill_work(skill, arguments)
        return await self._submit(text, automation, TaskOptions(work=work, warm=True, timeout_s=timeout))

    async def _submit(self, text: str, automation: Automation, options: TaskOptions) -> TaskResult:
        task = self.runner.submit(text, automation.origin, confirm=None, options=options)
        return await self.runner.wait(task.id)

    # the loop guard, a policy check before any task publishes
    def _refuse_publish(self, origin: str, topic: str, payload: Any) -> str | None:
        if not origin.startswith(AUTOMATION_PREFIX):
            return None
        automation = self.automations.get(origin[len(AUTOMATION_PREFIX):])
        trigger = automation.entry.trigger.mqtt if automation else None
        if automation is None or trigger is None or not topic_matches(trigger, topic):
            return None
        if automation.condition is not None and not automation.condition(_decoded(payload)):
            return None
        self.stop(automation, f"its action publishes to {topic!r}, which its own trigger ({trigger}) listens on: "
                              "a loop")
        return (f"publishing to {topic!r} would trigger automation {automation.name!r} again (a loop); "
                "the automation is stopped")

    def _save(self, automation: Automation, **fields: Any) -> None:
        assert self.gateway.store is not None
        self.gateway.store.save_automation(automation.name, **fields)


def _decoded(payload: Any) -> Any:
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except (ValueError, RecursionError):  # nested past what Python parses: text, like any other non-JSON
            return payload
    return payload
