"""Home Assistant over MQTT: the gateway announces itself by MQTT discovery as one device, so that a dashboard, an
automation or a voice pipeline can give it commands and answer its questions.

  <prefix>/<component>/pyuse_<id>/<entity>/config  out: retained discovery configs (below), again whenever Home
                                                         Assistant comes online or the broker connection returns
  <prefix>/status                                  in:  Home Assistant's birth message, online
  pyuse/<id>/ha/command                            in:  a command set on the text entity: it runs as a task
  pyuse/<id>/ha/task                               out: retained {"task_id", "text", "status", "answer", "error"}
                                                         of the latest such task, read by the sensors
  pyuse/<id>/ha/confirmation                       out: retained {"waiting": bool, ...}: the question shown
  pyuse/<id>/ha/confirmation/set                   in:  approve | deny, from the buttons: answers that question
Availability is the gateway's own pyuse/<id>/status (retained online, will offline). A retained command or button
press is ignored: it would come again on every restart and reconnect.

The buttons answer through the "homeassistant" channel, so only questions of tasks that came from Home Assistant:
a task from the API or the MQTT command topic is confirmed where it came from. As with the MQTT command topic,
whoever may publish on the broker may start tasks and answer these questions: the broker's ACLs decide who.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from gateway.policy import ConfirmationRequest, answered_elsewhere
from gateway.runner import Busy, RunningTask, TaskRunner
from gateway.tasks import TaskEvent
from gateway.transports.mqtt import MqttTransport, Subscription
from gateway.transports.mqtt_message import Message
from gateway.untrusted import one_line

log = logging.getLogger(__name__)

ORIGIN = "homeassistant"  # the tasks' origin, and the channel their confirmations are answered on
ORIGIN_NAME = "pyuse"  # the discovery configs' origin: the gateway's own discovery skips configs of this origin
MAX_STATE = 255  # Home Assistant's limit on an entity's state; longer text goes into the attributes
MAX_COMMAND = 2000  # as long as a task from the MQTT command topic may be
TASK_EVENTS = ("queued", "started", "finished")
ANSWERS = {"approve": True, "deny": False}


def _version() -> str:
    try:
        return version("pyuse-gateway")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def discovery_configs(gateway_id: str, prefix: str) -> dict[str, dict[str, Any]]:
    """The discovery config topic and payload of each entity, in Home Assistant's long key names."""
    base = f"pyuse/{gateway_id}"
    node = f"pyuse_{gateway_id}"
    task, question = f"{base}/ha/task", f"{base}/ha/confirmation"
    software = _version()
    common = {
        "availability_topic": f"{base}/status", "payload_available": "online", "payload_not_available": "offline",
        "device": {"identifiers": [node], "name": gateway_id, "manufacturer": "pyuse",
                   "model": "pyuse gateway", "sw_version": software},
        "origin": {"name": ORIGIN_NAME, "sw_version": software},
    }
    entities: dict[tuple[str, str], dict[str, Any]] = {
        ("text", "command"): {"name": "Command", "icon": "mdi:message-text", "command_topic": f"{base}/ha/command",
                              "max": MAX_STATE, "state_topic": task,
                              "value_template": f"{{{{ (value_json.text or '')[:{MAX_STATE}] }}}}"},
        ("sensor", "task_status"): {"name": "Task status", "icon": "mdi:progress-check", "state_topic": task,
                                    "value_template": "{{ value_json.status }}"},
        ("sensor", "answer"): {"name": "Answer", "icon": "mdi:message-reply-text", "state_topic": task,
                               "value_template": "{{ (value_json.answer or value_json.error or '')"
                                                 f"[:{MAX_STATE}] }}}}",
                               "json_attributes_topic": task},
        ("binary_sensor", "confirmation"): {"name": "Waiting for confirmation", "icon": "mdi:help-rhombus",
                                            "state_topic": question,
                                            "value_template": "{{ 'ON' if value_json.waiting else 'OFF' }}",
                                            "json_attributes_topic": question},
        ("button", "approve"): {"name": "Approve", "icon": "mdi:check-circle", "command_topic": f"{question}/set",
                                "payload_press": "approve"},
        ("button", "deny"): {"name": "Deny", "icon": "mdi:close-circle", "command_topic": f"{question}/set",
                             "payload_press": "deny"},
    }
    return {f"{prefix}/{component}/{node}/{name}/config": {"unique_id": f"{node}_{name}", **entity, **common}
            for (component, name), entity in entities.items()}


class HomeAssistant:
    def __init__(self, mqtt: MqttTransport, runner: TaskRunner, gateway_id: str, prefix: str) -> None:
        self.mqtt = mqtt
        self.runner = runner
        self.prefix = prefix.rstrip("/")
        self.configs = discovery_configs(gateway_id, self.prefix)
        self.topics = {name: f"pyuse/{gateway_id}/ha/{name}" for name in ("command", "task", "confirmation")}
        self.latest: dict[str, Any] | None = None  # the state of the latest task from Home Assistant
        self.questions: dict[str, ConfirmationRequest] = {}  # its open questions, oldest (the one shown) first
        self._subscriptions: list[Subscription] = []
        self._pending: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        self._subscriptions = [
            await self.mqtt.subscribe(self.topics["command"], self._command),
            await self.mqtt.subscribe(f"{self.topics['confirmation']}/set", self._answer),
            await self.mqtt.subscribe(f"{self.prefix}/status", self._home_assistant_status),
            await self.mqtt.subscribe(self.topics["task"], self._restore)]
        self.runner.listeners.append(self._task_event)
        self.runner.gateway.watch_confirmations(self._confirmation)
        self.mqtt.on_connect.append(self._announce)
        if self.mqtt.connected:
            self._announce()

    def stop(self) -> None:
        for subscription in self._subscriptions:
            subscription.cancel()
        self.runner.listeners.remove(self._task_event)
        self.mqtt.on_connect.remove(self._announce)
        for pending in self._pending:
            pending.cancel()

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        pending = asyncio.ensure_future(self._send(topic, payload))
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)

    async def _send(self, topic: str, payload: dict[str, Any]) -> None:
        try:
            await self.mqtt.publish(topic, json.dumps(payload, default=str), qos=1, retain=True)
        except ConnectionError as exc:  # the broker is away: everything is published again when it is back
            log.debug("not published to %s: %s", topic, exc)

    def _announce(self) -> None:
        """Discovery configs and current states, all retained: Home Assistant may (re)start at any time."""
        for topic, config in self.configs.items():
            self._publish(topic, config)
        if self.latest is not None:
            self._publish(self.topics["task"], self.latest)
        self._show_question()

    def _home_assistant_status(self, message: Message) -> None:
        if message.payload.strip() == b"online":  # Home Assistant's birth message, as its docs ask devices to do
            self._announce()

    def _restore(self, message: Message) -> None:
        """The latest task as an earlier run left it (retained), shown as the store has it now: a task that a
        restart cut off reads interrupted, not running for ever. Only a task from Home Assistant is shown."""
        left = message.decoded()
        if not message.retain or self.latest is not None or not isinstance(left, dict):
            return
        record = self.runner.gateway.task(str(left.get("task_id")))
        if record is not None and record.origin == ORIGIN and record.status != left.get("status"):
            self._show_task({"task_id": record.id, "text": record.text, "status": record.status,
                             "answer": record.answer, "error": record.error})

    def _command(self, message: Message) -> None:
        if message.retain:  # it would run again on every restart and reconnect
            log.warning("ignored a retained Home Assistant command on %s; publish commands unretained",
                        message.topic)
            return
        text = message.payload.decode("utf-8", "replace").strip()
        if not text or len(text) > MAX_COMMAND:
            log.warning("ignored a Home Assistant command of %d characters (1 to %d expected)", len(text),
                        MAX_COMMAND)
            return
        try:
            task = self.runner.submit(text, ORIGIN, confirm=answered_elsewhere)
        except Busy as exc:
            self._show_task({"task_id": None, "text": text, "status": "failed", "answer": None, "error": str(exc)})
            return
        self._show_task({"task_id": task.id, "text": text, "status": "queued", "answer": None, "error": None})

    def _task_event(self, task: RunningTask, event: TaskEvent) -> None:
        if task.origin != ORIGIN or event.kind not in TASK_EVENTS or self.latest is None:
            return
        if task.id != self.latest["task_id"]:  # an earlier task ending late: the sensors show the latest one
            return
        if event.kind == "started":
            self._show_task(self.latest | {"status": "running"})
        elif event.kind == "finished":
            self._show_task(self.latest | {"status": event.data.get("status", "failed"),
                                           "answer": event.data.get("answer"), "error": event.data.get("error")})

    def _show_task(self, state: dict[str, Any]) -> None:
        self.latest = state
        self._publish(self.topics["task"], state)

    def _confirmation(self, what: str, request: ConfirmationRequest, approved: bool | None) -> None:
        if request.origin != ORIGIN:
            return
        if what == "asked":
            self.questions[request.id] = request
        else:
            self.questions.pop(request.id, None)
        self._show_question()

    def _show_question(self) -> None:
        shown = next(iter(self.questions.values()), None)
        if shown is None:
            self._publish(self.topics["confirmation"], {"waiting": False})
            return
        self._publish(self.topics["confirmation"], {
            "waiting": True, "question": shown.prompt(), "task_id": shown.task_id, "device": shown.device_name,
            "device_id": shown.device_id, "action": shown.action, "reason": shown.reason,
            "expires_at": shown.expires_at, "questions_waiting": len(self.questions)})

    def _answer(self, message: Message) -> None:
        """A button press answers the question shown on the binary sensor; the oldest waits longest."""
        if message.retain:  # an old press must not answer a new question
            return
        approved = ANSWERS.get(message.payload.decode("utf-8", "replace").strip().casefold())
        if approved is None:
            log.warning("ignored an answer on %s: expected approve or deny, got %r", message.topic,
                        one_line(message.payload.decode("utf-8", "replace"), 40))
            return
        shown = next(iter(self.questions), None)
        if shown is None or not self.runner.gateway.answer_confirmation(shown, approved, channel=ORIGIN):
            log.info("a Home Assistant %s button was pressed with no question waiting",
                     "approve" if approved else "deny")
