"""The gateway's records as the API's response bodies (models.py), in the JSON the handlers send."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from gateway.api import models
from gateway.saved_skills import SkillEntry
from gateway.task_history import TaskRecord, TaskTrace
from gateway.views import DeviceView, Health


def task_json(record: TaskRecord, trace: TaskTrace | None = None) -> dict[str, Any]:
    """A task; with its steps and device calls when given its trace."""
    return models.Task(
        id=record.id, text=record.text, origin=record.origin, status=record.status, answer=record.answer,
        error=record.error, created_at=record.created_at, started_at=record.started_at,
        finished_at=record.finished_at, turns=record.turns, tokens=record.tokens, duration_ms=record.duration_ms,
        sandbox_layers=[layer for layer in (record.sandbox_layers or "").split(",") if layer],
        processed_locally=bool(record.processed_locally),
        steps=None if trace is None else [models.Step(
            turn=step.turn, thought=step.thought, code=step.code, observation=step.observation,
            llm_ms=step.llm_ms, exec_ms=step.exec_ms, prompt_tokens=step.prompt_tokens,
            completion_tokens=step.completion_tokens) for step in trace.steps],
        calls=None if trace is None else [models.Call(device=row.device_id, method=row.method, target=row.target,
                                                      outcome=row.outcome) for row in trace.calls]).model_dump()


def device_json(view: DeviceView) -> dict[str, Any]:
    device = view.device
    return models.Device(id=device.id, name=device.name, kind=device.kind, transport=device.transport,
                         area=device.area, aliases=device.aliases, online=device.online, exposed=view.exposed,
                         source=device.source, state=device.state, state_keys=view.state_keys,
                         display=[models.Reading(label=reading.label, value=reading.value) for reading in view.readings],
                         controls=models.DeviceControls(**asdict(view.controls))).model_dump()


def skill_json(entry: SkillEntry, source: bool = False) -> dict[str, Any]:
    """A skill with its run records; with its file's text when `source`."""
    skill = entry.skill
    return models.Skill(name=skill.name, doc=skill.doc, params=skill.params, triggers=skill.triggers,
                        runs=entry.runs, failures=entry.failures, task_id=entry.task_id,
                        last_error=entry.last_error, source=skill.source if source else None).model_dump()


def health_json(health: Health, running: int, queued: int) -> dict[str, Any]:
    return models.Health(
        status=health.status, gateway=health.gateway, sandbox_layers=health.sandbox_layers,
        sandbox_refusal=health.sandbox_refusal, mqtt_broker=health.mqtt_broker,
        mqtt_connected=health.mqtt_connected, mqtt_down_since=health.mqtt_down_since,
        model_configured=health.model_configured, devices=health.devices, tasks_running=running,
        tasks_queued=queued).model_dump()
