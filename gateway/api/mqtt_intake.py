"""The MQTT command topic, for Node-RED, Home Assistant automations and anything else on the broker.

  pyuse/<id>/task                  in:  a command as text, or JSON {"text", "reply_to"?, "id"?}
  pyuse/<id>/task/<task>/event     out: each step of tasks that came this way
  pyuse/<id>/task/<task>/result    out: the result (or on reply_to), with the caller's "id" echoed
  pyuse/<id>/confirm/<request>     out: a dangerous call of such a task waits for a yes or no
  pyuse/<id>/confirm/<request>/set in:  yes | no | true | false | {"approve": bool}
  pyuse/<id>/ask/<task>            out: such a task asks {"id", "question", "choices", "reply_to", ...}
  pyuse/<id>/answer/<question>     in:  the answer (its reply_to): a choice, its number, or {"answer": "..."}
The gateway's availability is pyuse/<id>/status (retained online, will offline). Whoever may publish on the
broker may start tasks: use the broker's ACLs to decide who that is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.policy import ConfirmationRequest, answered_elsewhere
from gateway.questions import Question
from gateway.runner import Busy, RunningTask, TaskRunner
from gateway.tasks import TaskEvent
from gateway.transports.mqtt import MqttTransport, Subscription
from gateway.transports.mqtt_message import Message
from gateway.untrusted import topic_matches, valid_topic

log = logging.getLogger(__name__)

PUBLISHED_EVENTS = ("queued", "started", "code", "observation", "confirmation", "question", "answer", "finished")


class MqttTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000)
    reply_to: str | None = Field(None, max_length=256)
    id: str | int | None = None


class MqttIntake:
    def __init__(self, mqtt: MqttTransport, runner: TaskRunner, gateway_id: str) -> None:
        self.mqtt = mqtt
        self.runner = runner
        self.prefix = f"pyuse/{gateway_id}"
        self._replies: dict[str, tuple[str, Any]] = {}  # task id -> (result topic, caller's id)
        self._subscriptions: list[Subscription] = []
        self._pending: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        self._subscriptions = [await self.mqtt.subscribe(f"{self.prefix}/task", self._task),
                               await self.mqtt.subscribe(f"{self.prefix}/confirm/+/set", self._answer),
                               await self.mqtt.subscribe(f"{self.prefix}/answer/+", self._reply)]
        self.runner.listeners.append(self._task_event)
        self.runner.gateway.watch_confirmations(self._confirmation)
        self.runner.gateway.watch_questions(self._question)

    def stop(self) -> None:
        for subscription in self._subscriptions:
            subscription.cancel()
        if self._task_event in self.runner.listeners:
            self.runner.listeners.remove(self._task_event)
        for pending in self._pending:
            pending.cancel()

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        pending = asyncio.ensure_future(self.mqtt.publish(topic, json.dumps(payload, default=str), qos=1))
        self._pending.add(pending)
        pending.add_done_callback(self._pending.discard)

    def _task(self, message: Message) -> None:
        text = message.payload.decode("utf-8", "replace").strip()
        try:
            request = MqttTask.model_validate_json(text) if text.startswith("{") else MqttTask(text=text)
        except ValidationError as exc:
            log.warning("ignored a malformed task on %s: %s", message.topic, str(exc).splitlines()[0])
            return
        reply_to = request.reply_to
        if reply_to is not None and (not valid_topic(reply_to) or self._owned_by_a_device(reply_to)):
            log.warning("ignored a task whose reply_to %r is not a topic the gateway may publish on", reply_to)
            return
        try:
            task = self.runner.submit(request.text, "mqtt", confirm=answered_elsewhere, ask=answered_elsewhere)
        except Busy as exc:
            self._publish(reply_to or f"{self.prefix}/task/busy/result",
                          {"id": request.id, "status": "busy", "error": str(exc)})
            return
        self._replies[task.id] = (reply_to or f"{self.prefix}/task/{task.id}/result", request.id)

    def _owned_by_a_device(self, topic: str) -> bool:
        """Results must not land on a device's topics, where they would be taken as commands."""
        return any(topic_matches(owned, topic) for device in self.runner.gateway.devices()
                   for owned in device.topics)

    def _task_event(self, task: RunningTask, event: TaskEvent) -> None:
        if task.origin != "mqtt" or event.kind not in PUBLISHED_EVENTS:
            return
        self._publish(f"{self.prefix}/task/{task.id}/event", {"event": event.kind, **event.data})
        if event.kind == "finished":
            topic, caller_id = self._replies.pop(task.id, (f"{self.prefix}/task/{task.id}/result", None))
            self._publish(topic, {"id": caller_id, "task_id": task.id, **event.data})

    def _confirmation(self, what: str, request: ConfirmationRequest, approved: bool | None) -> None:
        if what == "asked" and request.origin == "mqtt":
            self._publish(f"{self.prefix}/confirm/{request.id}", asdict(request))

    def _answer(self, message: Message) -> None:
        request_id = message.topic.split("/")[-2]
        value = message.decoded()
        if isinstance(value, dict):
            value = value.get("approve")
        elif isinstance(value, str):
            value = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}.get(
                value.strip().casefold())
        if not isinstance(value, bool):
            log.warning("ignored an answer on %s: expected yes, no or {\"approve\": true|false}", message.topic)
            return
        self.runner.gateway.answer_confirmation(request_id, value, channel="mqtt")

    def _question(self, what: str, question: Question, answer: str | None) -> None:
        if what == "asked" and question.origin == "mqtt":
            self._publish(f"{self.prefix}/ask/{question.task_id}",
                          asdict(question) | {"reply_to": f"{self.prefix}/answer/{question.id}"})

    def _reply(self, message: Message) -> None:
        value = message.decoded()
        if isinstance(value, dict):
            value = value.get("answer")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            log.warning("ignored an answer on %s: expected text or {\"answer\": \"...\"}", message.topic)
            return
        try:
            self.runner.gateway.answer_question(message.topic.split("/")[-1], value, channel="mqtt")
        except ValueError as exc:
            log.warning("ignored an answer on %s: %s", message.topic, exc)
