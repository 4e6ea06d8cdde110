"""`pyuse doctor`: what this machine and config give the gateway, and why anything is missing."""

from __future__ import annotations

from typing import TextIO

from gateway.agent.llm import LLMClient, LLMError
from gateway.config import Config
from gateway.agent.skills import SkillLibrary
from gateway.devices.docs import DocLibrary
from gateway.sandbox.manager import Sandbox
from gateway.transports.mqtt import MqttTransport, unique_client_id


async def run_doctor(config: Config, source: str, out: TextIO) -> int:
    """Print a report; exit status 0 when model code may run here, 1 when the sandbox refuses it."""
    out.write(f"config: {source}\ndata:   {config.gateway.data_dir}\n\nsandbox\n")
    sandbox = Sandbox(config.sandbox, config.gateway.data_dir)
    probe = await sandbox.start()
    await sandbox.close()
    out.write(f"  python for jobs: {probe.python}\n")
    for name, reason in probe.layers.items():
        out.write(f"  {name:<9} {'on' if reason is None else 'off: ' + reason}\n")
    for note in probe.notes:
        out.write(f"  note: {note}\n")
    out.write(f"  => {'model code REFUSED: ' + sandbox.refusal if sandbox.refusal else 'model code may run'}\n")

    docs = DocLibrary.load([config.gateway.data_dir / "device_docs"])
    out.write(f"\ndevice docs: {', '.join(docs.kinds())}\n")
    for error in docs.errors:
        out.write(f"  skipped: {error}\n")
    out.write(f"devices in the config: {len(config.devices)}\n")
    skills = SkillLibrary(config.gateway.data_dir / "skills")
    out.write(f"saved skills: {', '.join(skill.name for skill in skills.load()) or 'none'}\n")
    for error in skills.errors:
        out.write(f"  skipped: {error}\n")
    out.write(f"automations in the config: {len(config.automations)}\n")

    mqtt = config.mqtt
    if mqtt.embedded:
        out.write(f"\nmqtt: the embedded broker will listen on {mqtt.host}:{mqtt.port}\n")
    else:
        transport = MqttTransport(mqtt.host, mqtt.port, unique_client_id(f"pyuse-{config.gateway.id}-doctor"),
                                  username=mqtt.username, password=mqtt.password.get_secret_value())
        await transport.start(wait_s=3.0)
        state = "reachable" if transport.connected else "NOT reachable (MQTT devices will not work)"
        await transport.close()
        out.write(f"\nmqtt broker {mqtt.host}:{mqtt.port}: {state}\n")

    out.write(f"\nmodel: {await _model_status(config)}\n")
    return 1 if sandbox.refusal else 0


async def _model_status(config: Config) -> str:
    if not config.llm.configured:
        return "not configured ([llm] base_url and model; see config.reference.toml)"
    client = LLMClient(config.llm)
    try:
        models = await client.list_models(timeout_s=min(config.llm.timeout_s, 15))
    except LLMError as exc:
        return str(exc)
    finally:
        await client.close()
    listed = "listed" if config.llm.model in models else f"NOT listed (it offers: {', '.join(models[:10])})"
    return f"{config.llm.base_url}: reachable; model {config.llm.model!r} {listed}"
