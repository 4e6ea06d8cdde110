"""Who holds what: the topic filters, HTTP addresses and serial ports each device's handle may use.

What one device holds no other may hold; a topic filter clashes with another when some topic matches both, so
held filters are kept as a tree of topic levels and the overlapping ones are found by walking it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from gateway.devices.model import Device


def claims(device: Device) -> list[str]:
    """The topic filters a device holds: its topics, and everything below its base topic when that is one of them
    (a Zigbee2MQTT device owns `zigbee2mqtt/<friendly name>` and below, not only the topics its doc uses)."""
    below = [f"{device.base_topic}/#"] if device.base_topic and device.base_topic in device.topics else []
    return device.topics + below


@dataclass
class _Level:
    children: dict[str, _Level] = field(default_factory=dict)
    holders: dict[str, str] = field(default_factory=dict)  # key -> the filter it holds that ends here


class TopicTree:
    """Topic filters and who holds them, as a tree of topic levels: the holders that overlap a filter are found by
    walking the levels it shares with them, not by comparing it with every filter held."""

    def __init__(self) -> None:
        self._root = _Level()

    def add(self, topic_filter: str, holder: str) -> None:
        node = self._root
        for level in topic_filter.split("/"):
            node = node.children.setdefault(level, _Level())
        node.holders[holder] = topic_filter

    def discard(self, topic_filter: str, holder: str) -> None:
        path = [self._root]
        for level in topic_filter.split("/"):
            if level not in path[-1].children:
                return
            path.append(path[-1].children[level])
        path[-1].holders.pop(holder, None)
        for parent, level, node in reversed(list(zip(path, topic_filter.split("/"), path[1:]))):
            if node.holders or node.children:
                break
            del parent.children[level]  # prune, or forged devices that come and go would grow the tree for good

    def overlapping(self, topic_filter: str) -> Iterator[tuple[str, str]]:
        """(holder, filter held) for every held filter that some topic matches along with this one."""
        return _overlapping(self._root, topic_filter.split("/"))


def _overlapping(node: _Level, levels: list[str]) -> Iterator[tuple[str, str]]:
    if "#" in node.children:  # `a/#` matches `a` itself and everything below it
        yield from node.children["#"].holders.items()
    if not levels:
        yield from node.holders.items()
        return
    first, rest = levels[0], levels[1:]
    if first == "#":
        yield from _everything(node)
        return
    for name, child in node.children.items():
        if name != "#" and (first == "+" or name in (first, "+")):
            yield from _overlapping(child, rest)


def _everything(node: _Level) -> Iterator[tuple[str, str]]:
    yield from node.holders.items()
    for child in node.children.values():
        yield from _everything(child)


class Holdings:
    """What devices hold, by device key: topic filters, HTTP addresses and serial ports."""

    def __init__(self) -> None:
        self.topics = TopicTree()
        self.addresses: dict[tuple[str, int], str] = {}
        self.ports: dict[str, str] = {}

    def hold(self, device: Device) -> None:
        for topic_filter in claims(device):
            self.topics.add(topic_filter, device.key)
        if device.host and device.port:
            self.addresses[(device.host, device.port)] = device.key
        if device.serial_port:
            self.ports[_port(device.serial_port)] = device.key

    def release(self, device: Device) -> None:
        for topic_filter in claims(device):
            self.topics.discard(topic_filter, device.key)
        if device.host and device.port and self.addresses.get((device.host, device.port)) == device.key:
            del self.addresses[(device.host, device.port)]
        if device.serial_port and self.ports.get(_port(device.serial_port)) == device.key:
            del self.ports[_port(device.serial_port)]

    def clash(self, device: Device, ignored: Collection[str]) -> tuple[str, str, str] | None:
        """(what it names, the holder's key, what the holder holds) for the first thing another device holds."""
        for topic_filter in claims(device):
            for holder, held in self.topics.overlapping(topic_filter):
                if holder not in ignored:
                    return f"topic {topic_filter!r}", holder, held
        address = (device.host, device.port) if device.host and device.port else None
        if address and self.addresses.get(address, device.key) not in ignored:
            return f"address {device.host}:{device.port}", self.addresses[address], f"{device.host}:{device.port}"
        port = _port(device.serial_port) if device.serial_port else None
        if port and self.ports.get(port, device.key) not in ignored:
            return f"serial port {device.serial_port}", self.ports[port], port
        return None


def _port(path: str) -> str:
    """One name per serial port, whichever link to it the config or discovery used."""
    return os.path.realpath(path)
