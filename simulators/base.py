"""What every simulated device offers tests and the scenario runner."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Simulator(ABC):
    id: str
    kind: str

    @abstractmethod
    async def start(self) -> None:
        """Begin serving (bind ports, connect to the broker, announce)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop serving and release everything."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """The device's state as JSON-able data, for grading tests and the admin API."""

    @abstractmethod
    def address(self) -> str:
        """Where a client reaches it, for people: a URL, a topic or a port path."""

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
