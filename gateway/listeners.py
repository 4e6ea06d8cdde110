"""A list of callbacks told about one kind of event, where one broken callback must not break the teller.

`Listeners[DeviceEvent]` holds callables taking a DeviceEvent; `Listeners[str, Request]` ones taking both.
A listener that raises is logged and the others are still told: whoever emits (discovery, a task, a
confirmation) must go on whatever a subscriber does.
"""
import logging
from collections.abc import Callable
from typing import Generic, ParamSpec

P = ParamSpec("P")

log = logging.getLogger(__name__)


class Listeners(Generic[P]):
    def __init__(self, what: str) -> None:
        self.what = what  # names the event in the log line of a failing listener
        self._listeners: list[Callable[P, None]] = []

    def append(self, listener: Callable[P, None]) -> None:
        self._listeners.append(listener)

    def remove(self, listener: Callable[P, None]) -> None:
        """Forget a listener; forgetting one twice (or one never added) is harmless."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def __contains__(self, listener: object) -> bool:
        return listener in self._listeners

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Tell every listener, in the order they came; a listener may add or remove listeners meanwhile."""
        for listener in list(self._listeners):
            try:
                listener(*args, **kwargs)
            except Exception:
                log.exception("%s listener failed", self.what)
