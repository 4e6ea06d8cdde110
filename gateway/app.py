"""Builds the gateway from its config, runs tasks, and shuts everything down in order.

Gateway is the front door of every intake (the API, the CLI, MQTT, automations): besides starting and stopping
its parts and running a task to its end, it offers what they need, so that none reaches inside: saved skills
(saved_skills.py), the task history (task_history.py), devices as shown, confirmations, health, the prompt
preview. Use cases longer than a few lines live in modules of their own (those two, exec_code.py, and
task_run.py, which runs a task to its end); what is left is one job, the parts started, wired to each other and
closed together, in one order.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import stat
import time
from collections.abc import Callable
from typing import Any, Self

from gateway.agent.examples import Help, help_for
from gateway.agent.intents import LocalIntents
from gateway.agent.llm import NOT_CONFIGURED, LLMClient, LLMError
from gateway.agent.prompt import Prompt, PromptBuilder
from gateway.agent.retrieval import vocabulary
from gateway.agent.skills import Skill, SkillLibrary
from gateway.clock import Clock
from gateway.config import Config, ConfigError, default_data_dir
from gateway.devices.display import controls, readings
from gateway.devices.docs import DocLibrary
from gateway.devices.model import Device
from gateway.devices.poller import StatePoller
from gateway.devices.registry import DeviceEvent, Registry
from gateway.discovery.instruments import InstrumentDiscovery
from gateway.discovery.mdns import MdnsDiscovery
from gateway.discovery.mqtt import MqttDiscovery
from gateway.discovery.serial import discover_serial
from gateway.exec_code import run_code
from gateway.lock import DataDirLock
from gateway.policy import (
    ANSWER_CHANNELS,
    ConfirmationListener,
    ConfirmationRequest,
    Confirmations,
    Confirmer,
    Policy,
)
from gateway.questions import Asker, Question, QuestionListener, Questions
from gateway.sandbox.broker import Broker, JobContext
from gateway.sandbox.manager import Sandbox
from gateway.sandbox.pool import SandboxPool, WarmJob
from gateway.sandbox.session import Execution, SandboxSession
from gateway.saved_skills import SavedSkills
from gateway.store import Store, TaskRecord
from gateway.task_history import TaskHistory
from gateway.task_run import run_task
from gateway.tasks import (
    EventSink,
    ModelFree,
    TaskOptions,
    TaskResult,
    ignore_events,
)
from gateway.transports.embedded_broker import EmbeddedBroker
from gateway.transports.http import HttpTransport
from gateway.transports.lines import TcpLines
from gateway.transports.mqtt import MqttTransport, unique_client_id
from gateway.transports.serial import SerialPorts
from gateway.views import DeviceView, Health

log = logging.getLogger(__name__)



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
        self.lines = TcpLines()  # SCPI instruments on the LAN
        self.mqtt = MqttTransport(
            config.mqtt.host, config.mqtt.port, client_id=unique_client_id(f"pyuse-{config.gateway.id}"),
            username=config.mqtt.username, password=config.mqtt.password.get_secret_value(),
            will=(f"pyuse/{config.gateway.id}/status", b"offline"))
        self.clock = Clock(config.gateway.clock_speed)
        self.sandbox = Sandbox(config.sandbox, config.gateway.data_dir, config.gateway.clock_speed)
        self.pool = SandboxPool()
        self.skills = SkillLibrary(config.gateway.data_dir / "skills")
        self.saved_skills = SavedSkills(self.skills, None, lambda: self.docs)
        self.llm: LLMClient | None = None
        self.broker: Broker | None = None
        self.prompts: PromptBuilder | None = None
        self.mqtt_discovery: MqttDiscovery | None = None
        self._restoring: asyncio.Task[None] | None = None
        self.poller: StatePoller | None = None
        self.mdns_discovery: MdnsDiscovery | None = None

    async def __aenter__(self) -> Self:
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
        self.saved_skills.store = self.store
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
        if (config.mqtt.embedded or config.discovery.mqtt or config.homeassistant.discovery
                or any(device.transport == "mqtt" for device in self.registry.all())):
            self.mqtt.on_disconnect.append(self.registry.mqtt_lost)
            await self.mqtt.start(wait_s=3.0)
            self.mqtt.on_connect.append(self._announce)
            self.mqtt.on_connect.append(self._mqtt_back)
            if self.mqtt.connected:
                self._announce()
        if config.discovery.mqtt:
            self.mqtt_discovery = MqttDiscovery(self.mqtt, self.registry, self.docs, config.discovery)
            await self.mqtt_discovery.start()
        if config.discovery.mdns:
            self.mdns_discovery = MdnsDiscovery(self.registry, self.docs, self.http, config.discovery.mdns_interfaces,
                                                config.discovery.mdns_names,
                                                InstrumentDiscovery(self.registry, self.docs, self.lines)
                                                if config.discovery.instruments else None)
            await self.mdns_discovery.start()
        if config.discovery.serial_ports:
            await discover_serial(config.discovery.serial_ports, self.serial, self.docs, self.registry)
        await self.sandbox.remove_leftovers()  # this gateway holds the data dir's lock: none of them is in use
        await self.sandbox.start()
        self.policy = Policy(config.policy, self.docs)
        self.confirmations = Confirmations(config.policy.confirm_timeout_s)
        self.questions = Questions(config.policy.confirm_timeout_s)
        self.broker = Broker(self.docs, self.policy, self.confirmations, self.store, self.http, self.mqtt,
                             self.serial, rpc_source=f"pyuse-{config.gateway.id}", questions=self.questions,
                             lines=self.lines)
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
        await self.pool.close()
        await self.sandbox.close()
        if self.mqtt.connected:
            await self.mqtt.publish(f"pyuse/{self.config.gateway.id}/status", "offline", qos=1, retain=True)
        await self.mqtt.close()
        await self.http.close()
        self.serial.close()
        self.lines.close()
        if self.embedded_broker:
            await self.embedded_broker.close()
        if self.store:
            self.store.close()
        if self.lock:
            self.lock.release()

    def scope(self, device_ids: list[str] | None = None) -> list[Device]:
        """The devices a task may use: those named (all exposed ones if None); raises ScopeError for any other."""
        return self.policy.devices_for_task(self.registry, device_ids)

    def _session(self, task_id: str, devices: list[Device], context: Callable[[], JobContext],
                 exec_timeout_s: float | None = None) -> SandboxSession:
        """A sandbox holding handles for exactly `devices`; its calls are checked and audited under `context()`."""
        assert self.broker is not None
        broker = self.broker

        def inventory() -> dict[str, Any]:
            return {"devices": [device.for_job() for device in devices],
                    "kinds": self.docs.job_specs({device.kind for device in devices}),
                    "skills": [{"name": skill.name, "source": skill.source} for skill in self.skills.load()]}

        return self.sandbox.session(task_id, inventory, lambda request: broker.handle(context(), request),
                                    exec_timeout_s)

    def session(self, task_id: str, devices: list[Device] | None = None, confirm: Confirmer | None = None,
                origin: str = "cli", exec_timeout_s: float | None = None, ask: Asker | None = None) -> SandboxSession:
        """A sandbox for one task (every exposed device if `devices` is None); `confirm` and `ask` ask its
        person."""
        devices = self.scope() if devices is None else devices
        context = JobContext(task_id, {device.id: device for device in devices}, confirm, origin, ask=ask)
        session = self._session(task_id, devices, lambda: context, exec_timeout_s)
        context.hold = session.hold
        return session

    def start_warm_job(self, origin: str, devices: list[Device], exec_timeout_s: float | None) -> WarmJob:
        job: WarmJob | None = None

        def context() -> JobContext:
            assert job is not None and job.context is not None
            return job.context

        job = WarmJob(self._session(f"warm-{time.monotonic_ns()}", devices, context, exec_timeout_s))
        return job

    async def close_warm_jobs(self, origin: str) -> None:
        """Close the idle warm jobs kept for `origin`'s tasks (an automation being removed)."""
        await self.pool.close(origin)

    async def help(self) -> Help:
        """What works without a model on this home: `help` at the demo's prompt and GET /api/help. Each example
        is matched against every device (about 0.3 s for the demo's home): in a thread, not on the loop."""
        return await asyncio.to_thread(help_for, self.local, self.scope(), self.llm is not None)

    async def run_task(self, text: str, origin: str = "cli", device_ids: list[str] | None = None,
                       on_event: EventSink = ignore_events, confirm: Confirmer | None = None,
                       task_id: str | None = None, options: TaskOptions | None = None,
                       devices: list[Device] | None = None, ask: Asker | None = None) -> TaskResult:
        """Run one command to its end (task_run.py); `confirm` and `ask` reach the person behind `origin`."""
        return await run_task(self, text, origin, device_ids, on_event, confirm, task_id, options, devices, ask)

    async def save_skill(self, task_id: str, replaces: str | None = None) -> Skill:
        """Have the model turn finished task `task_id` into a saved skill; raises SkillWriteError or LLMError."""
        if self.llm is None:
            raise LLMError(f"writing a skill needs a model, and {NOT_CONFIGURED}")
        skill, tokens = await self.saved_skills.save(self.llm, task_id, replaces)
        log.info("task %s saved as skill %s (%d tokens)", task_id, skill.name, tokens)
        return skill

    def skill_work(self, name: str, arguments: dict[str, Any]) -> tuple[str, ModelFree]:
        """The task text and work for running skill `name`; raises SkillNotFound (a KeyError) for an unknown skill
        (or one that does not check out, with why) and SkillArgumentError for arguments that do not fit."""
        return self.saved_skills.work(name, arguments)

    async def run_skill(self, name: str, arguments: dict[str, Any], origin: str = "cli",
                        confirm: Confirmer | None = None, on_event: EventSink = ignore_events) -> TaskResult:
        """Run a saved skill by name, as a task; raises like skill_work."""
        text, work = self.skill_work(name, arguments)
        return await self.run_task(text, origin, confirm=confirm, on_event=on_event, options=TaskOptions(work=work))

    def build_prompt(self, text: str, device_ids: list[str] | None = None) -> Prompt:
        """The messages a command would send to the model; raises ScopeError for devices it cannot have."""
        assert self.prompts is not None
        return self.prompts.build(text, self.scope(device_ids), self.skills.load())

    async def run_code(self, code: str, label: str, device_ids: list[str] | None = None,
                       confirm: Confirmer | None = None) -> tuple[str, Execution]:
        """Run code written by a person (exec_code.py); raises ScopeError or SandboxUnavailable when it cannot."""
        return await run_code(self, code, label, device_ids, confirm)

    def task(self, task_id: str) -> TaskRecord | None:
        return self.history.get(task_id)

    @property
    def history(self) -> TaskHistory:
        assert self.store is not None
        return TaskHistory(self.store)

    def health(self) -> Health:
        mqtt = self.mqtt
        return Health(self.config.gateway.id, self.sandbox.layers, self.sandbox.refusal,
                      f"{mqtt.host}:{mqtt.port}" if mqtt.in_use else None, mqtt.connected, mqtt.down_since,
                      self.llm is not None, len(self.registry.all()))

    # devices, as intakes show them
    def devices(self) -> list[Device]:
        return self.registry.all()

    def device(self, device_id: str) -> Device | None:
        return self.registry.get(device_id)

    def device_view(self, device: Device) -> DeviceView:
        doc = self.docs.get(device.kind)
        return DeviceView(device, self.policy.exposed(device), doc.state_keys if doc else [],
                          readings(doc, device.state), controls(doc, device.state))

    def watch_devices(self, listener: Callable[[DeviceEvent], None]) -> Callable[[], None]:
        """Tell `listener` of every device change; returns the call that stops it."""
        return self.registry.subscribe(listener)

    # dangerous calls waiting for a person
    def pending_confirmations(self, channel: str) -> list[ConfirmationRequest]:
        """The questions answered on `channel` ("api", "mqtt"): those of tasks whose origin answers there."""
        return [request for request, _ in self.confirmations.pending.values()
                if ANSWER_CHANNELS.get(request.origin) == channel]

    def answer_confirmation(self, request_id: str, approved: bool, channel: str) -> bool:
        """False when no question of that id waits for an answer from `channel`."""
        return self.confirmations.answer(request_id, approved, channel=channel)

    def watch_confirmations(self, listener: ConfirmationListener) -> None:
        self.confirmations.listeners.append(listener)

    # questions waiting for a person (questions.py)
    def pending_questions(self, channel: str) -> list[Question]:
        """The questions answered on `channel` ("api", "mqtt"): those of tasks whose origin answers there."""
        return [question for question, _ in self.questions.pending.values()
                if ANSWER_CHANNELS.get(question.origin) == channel]

    def answer_question(self, question_id: str, answer: str, channel: str) -> str | None:
        """The answer taken, or None when no question of that id waits for an answer from `channel`; raises
        ValueError for an answer that is none of its choices."""
        return self.questions.answer(question_id, answer, channel=channel)

    def watch_questions(self, listener: QuestionListener) -> None:
        self.questions.listeners.append(listener)
