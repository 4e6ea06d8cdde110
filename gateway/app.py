"""Builds the gateway from its config, runs tasks, and shuts everything down in order."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.agent.intents import LocalIntents, LocalPlan, Unclear
from gateway.agent.llm import NOT_CONFIGURED, LLMClient, LLMError
from gateway.agent.local import run_without_model
from gateway.agent.loop import AgentLoop, EventSink, Progress, TaskEvent
from gateway.agent.prompt import Prompt, PromptBuilder
from gateway.agent.retrieval import vocabulary
from gateway.agent.skill_writer import SkillWriteError, write_skill
from gateway.agent.skills import Skill, SkillLibrary
from gateway.clock import Clock
from gateway.config import Config, ConfigError, default_data_dir
from gateway.devices.docs import DocLibrary
from gateway.devices.poller import StatePoller
from gateway.devices.registry import Registry
from gateway.discovery.mdns import MdnsDiscovery
from gateway.discovery.mqtt import MqttDiscovery
from gateway.discovery.serial import discover_serial
from gateway.lock import DataDirLock
from gateway.logs import current_task
from gateway.policy import Confirmations, Confirmer, Policy, ScopeError
from gateway.sandbox.broker import Broker, JobContext
from gateway.sandbox.manager import Sandbox, SandboxUnavailable
from gateway.sandbox.session import Execution, SandboxError, SandboxSession
from gateway.store import StepRecord, Store, TaskRecord
from gateway.transports.embedded_broker import EmbeddedBroker
from gateway.transports.http import HttpTransport
from gateway.transports.mqtt import MqttTransport, unique_client_id
from gateway.transports.serial import SerialPorts

log = logging.getLogger(__name__)

ERROR_LIMIT = 500  # characters of an unexpected exception's message kept as a task's error


@dataclass
class TaskResult:
    task_id: str
    status: str  # done | failed | timeout | cancelled
    answer: str | None
    error: str | None
    turns: int
    tokens: int
    duration_ms: float
    processed_locally: bool = False
    skill: str | None = None  # the saved skill that ran, or the one saved from this task
    calls: int = 0  # device calls that succeeded: what the answer stands on

    def summary(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "status": self.status, "answer": self.answer, "turns": self.turns,
                "tokens": self.tokens, "calls": self.calls, "duration_ms": self.duration_ms}


@dataclass
class ModelFree:
    """Work that needs no model: a fast-path match or a saved skill, as code and a way to phrase its result."""

    thought: str
    code: str
    answer: Callable[[Any], str]
    skill: str | None = None


@dataclass
class TaskOptions:
    """How a task runs beyond its command: for skills run by name and for automations."""

    work: ModelFree | None = None  # run this instead of planning
    plan: bool = True  # try saved skills and the fast path before the model
    session: tuple[SandboxSession, JobContext] | None = None  # a job to reuse, left open
    timeout_s: float | None = None  # replaces [agent] task_timeout_s and [sandbox] exec_timeout_s
    save_skill: bool | None = None  # replaces [skills] auto_save for a task the model solves
    replaces_skill: str | None = None  # the skill a newly saved one supersedes


class SkillArgumentError(ValueError):
    """Arguments that do not fit a skill's parameters; the message names the parameter."""


def _ignore(event: TaskEvent) -> None:
    pass


def unexpected(exc: BaseException) -> str:
    """A one-line reason for an exception nobody planned for: its type and message, capped."""
    message = " ".join(str(exc).split())
    reason = f"unexpected {type(exc).__name__}" + (f": {message}" if message else "")
    return reason if len(reason) <= ERROR_LIMIT else reason[:ERROR_LIMIT - 1] + "…"


class Gateway:
    def __init__(self, config: Config, config_source: str = "defaults", role: str = "cli") -> None:
        """`role` ("daemon" or "cli") is written into the data dir's lock, for whoever it turns away."""
        self.config = config
        self.config_source = config_source
        self.role = role
        self.lock: DataDirLock | None = None
        self.store: Store | None = None
        self.docs = DocLibrary()
        self.registry = Registry(self.docs)
        self.embedded_broker: EmbeddedBroker | None = None
        self.http = HttpTransport(config.sandbox.device_timeout)
        self.serial = SerialPorts()
        self.mqtt = MqttTransport(
            config.mqtt.host, config.mqtt.port, client_id=unique_client_id(f"pyuse-{config.gateway.id}"),
            username=config.mqtt.username, password=config.mqtt.password.get_secret_value(),
            will=(f"pyuse/{config.gateway.id}/status", b"offline"))
        self.clock = Clock(config.gateway.clock_speed)
        self.sandbox = Sandbox(config.sandbox, config.gateway.data_dir, config.gateway.clock_speed)
        self.skills = SkillLibrary(config.gateway.data_dir / "skills")
        self.llm: LLMClient | None = None
        self.broker: Broker | None = None
        self.prompts: PromptBuilder | None = None
        self.mqtt_discovery: MqttDiscovery | None = None
        self._restoring: asyncio.Task[None] | None = None
        self.poller: StatePoller | None = None
        self.mdns_discovery: MdnsDiscovery | None = None

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        config = self.config
        data_dir = config.gateway.data_dir
        if data_dir.is_dir() and data_dir.stat().st_mode & stat.S_IWOTH:  # /tmp: never made private, never used
            raise ConfigError([(f"{self.config_source}: gateway.data_dir: {data_dir} is writable by every user; "
                                f"point it at a directory of the gateway's own, such as {default_data_dir()}")])
        for warning in config.warnings:
            log.warning("%s", warning)
        # Before the store: a second gateway must not touch it, least of all mark the first one's tasks interrupted.
        self.lock = DataDirLock.acquire(data_dir, self.role)
        self.store = Store(config.db_path)  # the data dir becomes the gateway user's alone (700), the store 600
        own_docs = data_dir / "device_docs"
        if own_docs.exists() and not own_docs.is_dir():  # a doc problem is never fatal: the shipped docs still load
            log.error("device docs of your own skipped: %s is not a directory; move it away", own_docs)
        else:
            own_docs.mkdir(exist_ok=True)
        self.docs = DocLibrary.load([own_docs])
        for problem in self.docs.errors:
            log.error("device doc skipped: %s", problem)
        interrupted = self.store.mark_interrupted()
        if interrupted:
            log.warning("%d task(s) were cut off by a restart and are marked interrupted", interrupted)
        self.registry = Registry(self.docs, self.store, overrides=[entry for entry in config.devices
                                                                   if entry.is_override],
                                 areas=vocabulary()["areas"] + config.discovery.areas)
        self.registry.load()
        problems = self.registry.add_static(config.devices, self.config_source)
        if problems:
            raise ConfigError(problems)
        if config.mqtt.embedded:
            self.embedded_broker = EmbeddedBroker(config.mqtt.host, config.mqtt.port)
            await self.embedded_broker.start()
        await self.http.start()
        self.poller = StatePoller(self.registry, self.docs, self.http, config.discovery.poll_s)
        self.poller.start()
        if (config.mqtt.embedded or config.discovery.mqtt
                or any(device.transport == "mqtt" for device in self.registry.all())):
            self.mqtt.on_disconnect.append(self.registry.mqtt_lost)
            await self.mqtt.start(wait_s=3.0)
            self.mqtt.on_connect += [self._announce, self._mqtt_back]
            if self.mqtt.connected:
                self._announce()
        if config.discovery.mqtt:
            self.mqtt_discovery = MqttDiscovery(self.mqtt, self.registry, self.docs, config.discovery)
            await self.mqtt_discovery.start()
        if config.discovery.mdns:
            self.mdns_discovery = MdnsDiscovery(self.registry, self.docs, self.http, config.discovery.mdns_interfaces)
            await self.mdns_discovery.start()
        if config.discovery.serial_ports:
            await discover_serial(config.discovery.serial_ports, self.serial, self.docs, self.registry)
        await self.sandbox.remove_leftovers()  # this gateway holds the data dir's lock: none of them is in use
        await self.sandbox.start()
        self.policy = Policy(config.policy, self.docs)
        self.confirmations = Confirmations(config.policy.confirm_timeout_s)
        self.broker = Broker(self.docs, self.policy, self.confirmations, self.store, self.http, self.mqtt,
                             self.serial, rpc_source=f"pyuse-{config.gateway.id}")
        self.broker.change_listeners.append(self.poller.refresh_soon)
        self.prompts = PromptBuilder(self.docs, config.agent.prompt_budget_tokens)
        self.local = LocalIntents(self.docs)
        await asyncio.to_thread(self.local.warm_up)
        if config.llm.configured:
            self.llm = LLMClient(config.llm)
        # What start-up built (modules, the fast path's sentences, docs) lasts as long as the gateway: frozen, it
        # is no longer walked by every full collection, a pause of ~60 ms that delayed automation runs.
        gc.freeze()

    def _announce(self) -> None:
        asyncio.ensure_future(self.mqtt.publish(f"pyuse/{self.config.gateway.id}/status", "online", qos=1,
                                                retain=True))

    def _mqtt_back(self) -> None:
        self._restoring = asyncio.ensure_future(self._restore_online())

    async def _restore_online(self) -> None:
        """Retained availability messages come again on resubscribe; once they have, the registry settles what
        the MQTT devices that sent none are (Registry.mqtt_back)."""
        if self.mqtt_discovery is not None:
            await self.mqtt_discovery.settle()
        if self.mqtt.connected:
            self.registry.mqtt_back()

    async def settle_discovery(self) -> None:
        """For one-shot commands: let retained discovery messages arrive, and HTTP devices' states be read, before
        building a prompt."""
        if self.mqtt_discovery is not None:
            await self.mqtt_discovery.settle()
        if self.mdns_discovery is not None:
            await self.mdns_discovery.settle()
        if self.poller is not None:
            await self.poller.settle()

    async def close(self) -> None:
        if self.poller is not None:
            await self.poller.close()
        if self.mqtt_discovery is not None:
            self.mqtt_discovery.stop()
        if self._restoring is not None:
            self._restoring.cancel()
        if self.mdns_discovery is not None:
            await self.mdns_discovery.close()
        self.registry.flush()
        if self.llm:
            await self.llm.close()
        await self.sandbox.close()
        if self.mqtt.connected:
            await self.mqtt.publish(f"pyuse/{self.config.gateway.id}/status", "offline", qos=1, retain=True)
        await self.mqtt.close()
        await self.http.close()
        self.serial.close()
        if self.embedded_broker:
            await self.embedded_broker.close()
        if self.store:
            self.store.close()
        if self.lock:
            self.lock.release()

    def open_session(self, task_id: str, device_ids: list[str] | None = None, confirm: Confirmer | None = None,
                     origin: str = "cli", exec_timeout_s: float | None = None) -> tuple[SandboxSession, JobContext]:
        """A sandbox for one task, holding handles for exactly the devices it may use, and the context its calls
        are checked and audited under (an automation reuses both, moving the context to each run's task)."""
        assert self.broker is not None
        devices = self.policy.devices_for_task(self.registry, device_ids)
        context = JobContext(task_id, {device.id: device for device in devices}, confirm, origin)
        broker = self.broker

        def inventory() -> dict[str, Any]:
            return {"devices": [device.for_job() for device in devices],
                    "kinds": self.docs.job_specs({device.kind for device in devices}),
                    "skills": [{"name": skill.name, "source": skill.source} for skill in self.skills.load()]}

        session = self.sandbox.session(task_id, inventory, lambda request: broker.handle(context, request),
                                       exec_timeout_s)
        context.hold = session.hold
        return session, context

    def session(self, task_id: str, device_ids: list[str] | None = None, confirm: Confirmer | None = None,
                origin: str = "cli") -> SandboxSession:
        return self.open_session(task_id, device_ids, confirm, origin)[0]

    def plan_without_model(self, text: str, device_ids: list[str] | None = None) -> ModelFree | Unclear | None:
        """A saved skill whose triggers the command says, else a fast-path match, else None (the model's turn)."""
        found = self.skills.match(text)
        if found is not None:
            return self.skill_call(*found)
        local = self.local.match(text, self.policy.devices_for_task(self.registry, device_ids))
        if isinstance(local, LocalPlan):
            return ModelFree(f"Handled locally, without a model: {local.action} on "
                             f"{', '.join(device.id for device in local.devices)}.", local.code, local.answer)
        return local

    @staticmethod
    def skill_call(skill: Skill, arguments: dict[str, Any]) -> ModelFree:
        call = ", ".join(f"{name}={value!r}" for name, value in arguments.items())
        return ModelFree(f"The saved skill {skill.name} matches; run without a model.",
                         f"final_answer({skill.name}({call}))", str, skill.name)

    def skill_arguments(self, skill: Skill, given: dict[str, Any]) -> dict[str, Any]:
        """`given` (strings from a command line, or JSON values) converted to the skill's parameter types."""
        unknown = sorted(set(given) - set(skill.params))
        if unknown:
            raise SkillArgumentError(f"{skill.name}() has no parameter {unknown[0]!r}; its parameters: "
                                     f"{', '.join(skill.params) or 'none'}")
        missing = [name for name in skill.params if name not in given]
        if missing:
            raise SkillArgumentError(f"{skill.name}() needs {', '.join(missing)} (pass --arg {missing[0]}=...)")
        converted = {}
        for name, kind in skill.params.items():
            value = given[name]
            try:
                if kind == "bool" and isinstance(value, str):
                    if value.casefold() not in ("true", "false", "on", "off", "yes", "no", "1", "0"):
                        raise ValueError(value)
                    converted[name] = value.casefold() in ("true", "on", "yes", "1")
                else:
                    converted[name] = {"int": int, "float": float, "str": str, "bool": bool}[kind](value)
                if kind == "float" and not math.isfinite(converted[name]):  # "inf", "nan", "1e400"
                    raise ValueError(value)
            except (TypeError, ValueError, OverflowError):  # OverflowError: int(1e400)
                raise SkillArgumentError(f"{skill.name}(): {name} must be {kind}, got {value!r:.80}") from None
        return converted

    async def run_task(self, text: str, origin: str = "cli", device_ids: list[str] | None = None,
                       on_event: EventSink = _ignore, confirm: Confirmer | None = None,
                       task_id: str | None = None, options: TaskOptions | None = None) -> TaskResult:
        """Run one command to its end. `confirm` asks the person behind `origin`; None means nobody can.
        `task_id` names a task already queued in the store; otherwise one is created."""
        options = options or TaskOptions()
        assert self.store is not None and self.prompts is not None
        record = (self.store.get_task(task_id) if task_id else None) or self.store.create_task(text, origin)
        current_task.set(record.id)
        log.info("task from %s: %s", origin, text)
        started = time.time()
        self.store.update_task(record.id, status="running", started_at=started, model=self.config.llm.model or None,
                               sandbox_layers=",".join(self.sandbox.layers))
        progress = Progress()
        own_session: SandboxSession | None = None
        skill_name: str | None = None
        task_timeout = options.timeout_s or self.config.agent.task_timeout_s
        try:
            if options.session is None:
                own_session, _ = self.open_session(record.id, device_ids, confirm, origin, options.timeout_s)
                job = own_session
            else:
                job, context = options.session
                context.task_id = record.id
            async with asyncio.timeout(task_timeout):
                plan = options.work or (self.plan_without_model(text, device_ids)
                                        if options.plan and self.config.agent.fast_path else None)
                if isinstance(plan, ModelFree):
                    skill_name = plan.skill
                    await run_without_model(record.id, plan.thought, plan.code, plan.answer, job, self.store,
                                            progress, on_event)
                    if plan.skill:
                        self.store.skill_ran(plan.skill, progress.error)
                elif isinstance(plan, Unclear) and self.llm is None:
                    progress.status, progress.error = "failed", plan.question
                elif self.llm is None:
                    raise LLMError(f"this is not a command the gateway understands without a model, and {NOT_CONFIGURED}")
                else:
                    prompt = self.build_prompt(text, device_ids)
                    loop = AgentLoop(self.llm, self.store, self.config.agent)
                    await loop.run(record.id, text, prompt, job, progress, on_event)
        except TimeoutError:
            progress.status = "timeout"
            progress.error = (f"the task ran longer than {task_timeout} s"
                              + ("" if options.timeout_s else " ([agent] task_timeout_s)"))
        except asyncio.CancelledError:
            progress.status = "cancelled"
            progress.error = "cancelled"
            raise
        except (LLMError, ScopeError, SandboxUnavailable, SandboxError) as exc:
            progress.status = "failed"
            progress.error = str(exc)
        except Exception as exc:  # a surprise anywhere must still end the task, say why, and leave its trace
            log.exception("task %s failed unexpectedly", record.id)
            progress.status = "failed"
            progress.error = unexpected(exc)
        finally:
            if own_session is not None:
                await asyncio.shield(own_session.close())
            finished = time.time()
            self.store.update_task(record.id, status=progress.status, answer=progress.answer, error=progress.error,
                                   finished_at=finished, turns=progress.turns, prompt_tokens=progress.prompt_tokens,
                                   completion_tokens=progress.completion_tokens,
                                   processed_locally=int(progress.processed_locally))
        log.info("task %s after %d turn(s), %d tokens%s", progress.status, progress.turns, progress.tokens,
                 f": {progress.error}" if progress.error else "")
        save_skill = options.save_skill
        if save_skill is None:
            save_skill = self.config.skills.auto_save == "always"
        if save_skill and progress.status == "done" and not progress.processed_locally:
            try:
                skill_name = (await self.save_skill(record.id, options.replaces_skill)).name
            except Exception as exc:  # saving is extra: it never changes how the task ended
                log.warning("task %s was not saved as a skill: %s", record.id, exc,
                            exc_info=not isinstance(exc, (SkillWriteError, LLMError)))
        return TaskResult(record.id, progress.status, progress.answer, progress.error, progress.turns,
                          progress.tokens, round((finished - started) * 1000, 1), progress.processed_locally,
                          skill_name, progress.calls)

    async def save_skill(self, task_id: str, replaces: str | None = None) -> Skill:
        """Have the model turn finished task `task_id` into a saved skill; raises SkillWriteError or LLMError."""
        assert self.store is not None
        if self.llm is None:
            raise LLMError(f"writing a skill needs a model, and {NOT_CONFIGURED}")
        skill, tokens = await write_skill(self.llm, self.store, self.skills, self.docs, task_id, replaces)
        log.info("task %s saved as skill %s (%d tokens)", task_id, skill.name, tokens)
        return skill

    def skill_work(self, name: str, arguments: dict[str, Any]) -> tuple[str, ModelFree]:
        """The task text and work for running skill `name`; raises KeyError for an unknown skill (or one that does
        not check out, with why) and SkillArgumentError for arguments that do not fit."""
        skill = self.skills.get(name)
        if skill is None:
            problems = [error for error in self.skills.errors if error.startswith(f"{name}.py")]
            raise KeyError(problems[0] if problems else f"no skill named {name!r} (see `pyuse skills list`)")
        arguments = self.skill_arguments(skill, arguments)
        call = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
        return f"skill {name}({call})", self.skill_call(skill, arguments)

    async def run_skill(self, name: str, arguments: dict[str, Any], origin: str = "cli",
                        confirm: Confirmer | None = None, on_event: EventSink = _ignore) -> TaskResult:
        """Run a saved skill by name, as a task; raises like skill_work."""
        text, work = self.skill_work(name, arguments)
        return await self.run_task(text, origin, confirm=confirm, on_event=on_event, options=TaskOptions(work=work))

    def build_prompt(self, text: str, device_ids: list[str] | None = None) -> Prompt:
        """The messages a command would send to the model; raises ScopeError for devices it cannot have."""
        assert self.prompts is not None
        return self.prompts.build(text, self.policy.devices_for_task(self.registry, device_ids), self.skills.load())

    async def run_code(self, code: str, label: str, device_ids: list[str] | None = None,
                       confirm: Confirmer | None = None) -> tuple[str, Execution]:
        """Run code written by a person in a fresh job, under the same sandbox, policy and audit as model code.

        Recorded as a one-turn task with origin "exec". Raises ScopeError or SandboxUnavailable when it cannot run.
        """
        assert self.store is not None
        record = self.store.create_task(label, "exec")
        self.store.update_task(record.id, status="running", started_at=time.time(),
                               sandbox_layers=",".join(self.sandbox.layers))
        status, error, execution = "failed", None, None
        session: SandboxSession | None = None
        try:
            session = self.session(record.id, device_ids, confirm, "exec")
            execution = await session.execute(code)
            self.store.add_step(StepRecord(record.id, 1, code=code, observation=execution.output,
                                           exec_ms=round(execution.duration_ms, 1)))
            status = "done" if execution.status in ("ok", "final") else "failed"
            return record.id, execution
        except (ScopeError, SandboxUnavailable) as exc:
            error = str(exc)
            raise
        except Exception as exc:
            log.exception("code %r failed unexpectedly", label)
            error = unexpected(exc)
            raise
        finally:
            if session is not None:
                await asyncio.shield(session.close())
            self.store.update_task(record.id, status=status, error=error, turns=1, finished_at=time.time(),
                                   answer=execution.answer if execution else None)

    def task(self, task_id: str) -> TaskRecord | None:
        assert self.store is not None
        return self.store.get_task(task_id)
