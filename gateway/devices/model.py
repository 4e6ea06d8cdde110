"""What the gateway knows about one device."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Transport = Literal["http", "mqtt", "serial"]


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = ""  # stable, assigned by the registry
    key: str = ""  # identity from its source ("z2m:0x00158d...", "mdns:shellyplusplugs-...", "static:desk_plug")
    name: str
    kind: str
    transport: Transport
    area: str = ""
    aliases: list[str] = []
    host: str | None = None
    port: int | None = None
    base_topic: str | None = None
    topics: list[str] = []
    serial_port: str | None = None
    baudrate: int = 9600
    exposed: bool = True
    online: bool = True
    state: dict[str, Any] = {}
    api: dict[str, Any] = {}  # discovery details the model may need (topics, payloads, ranges): untrusted data
    source: str = "static"

    def for_job(self) -> dict[str, Any]:
        """The part a sandbox job may know: no addresses, the broker holds those."""
        info: dict[str, Any] = {"id": self.id, "name": self.name, "area": self.area, "kind": self.kind,
                                "aliases": self.aliases, "transport": self.transport, "online": self.online,
                                "state": self.state, "api": self.api}
        if self.transport == "mqtt":
            info |= {"base_topic": self.base_topic, "topics": self.topics}
        return info
