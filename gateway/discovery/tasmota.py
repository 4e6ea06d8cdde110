"""Tasmota's discovery payload (`tasmota/discovery/<mac>/config`), validated, and the topics it lets a device own.

A Tasmota device owns `<full topic>#` for each of its three prefixes, where the full topic (`ft`,
`%prefix%/%topic%/` by default) must hold both the prefix and the device's own topic `t` as whole levels.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gateway.devices.registry import ClaimRefused
from gateway.untrusted import valid_topic

TOPIC_LEVEL = r"^[A-Za-z0-9_.-]+$"
TASMOTA_GROUP = "tasmotas"  # the GroupTopic Tasmota devices listen on by default


class TasmotaConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    mac: str = Field(pattern=r"^[0-9A-Fa-f]{12}$")
    t: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    dn: str = ""
    fn: list[str | None] = []
    md: str = ""
    hn: str = Field("", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")
    ft: str = Field("%prefix%/%topic%/", max_length=100)
    tp: list[Annotated[str, Field(min_length=1, max_length=32, pattern=TOPIC_LEVEL)]] = Field(
        ["cmnd", "stat", "tele"], min_length=3, max_length=3)
    onln: str = "Online"
    ofln: str = "Offline"
    lt_st: int = 0


def tasmota_topic(config: TasmotaConfig, prefix: str) -> str:
    """Its full topic for one prefix, e.g. `cmnd/tasmota_0A0B0C/` (Tasmota adds the final `/` when missing)."""
    topic = (config.ft.replace("%prefix%", prefix).replace("%topic%", config.t)
             .replace("%hostname%", config.hn).replace("%id%", config.mac))
    return topic if topic.endswith("/") else topic + "/"


def tasmota_topics(config: TasmotaConfig) -> list[str]:
    """What a Tasmota device owns: everything under its full topic for each of its prefixes."""
    if len(set(config.tp)) != len(config.tp):
        raise ClaimRefused(f"the prefixes {config.tp} of Tasmota topic {config.t!r} are not three different ones")
    topics = []
    for prefix in config.tp:
        full = tasmota_topic(config, prefix)
        levels = full[:-1].split("/")
        if not valid_topic(full) or prefix not in levels or config.t not in levels:
            raise ClaimRefused(f"full topic {config.ft!r} of Tasmota topic {config.t!r} gives {full!r}, which is "
                               "not one topic holding both its prefix and its own topic")
        topics.append(full + "#")
    return topics
