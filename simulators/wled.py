"""A WLED light strip: the JSON API over HTTP and WebSocket, as the WLED firmware serves it.

Merge rules follow the firmware's `deserializeState`/`deserializeSegment` (json.cpp): partial updates,
`"on":"t"` toggles, `bri` 0 turns off and keeps the last brightness, segments addressed by `id`, effects and
palettes by index, `"~"` steps. Replies are the ones `wled_server.cpp` and `ws.cpp` give: `{"success":true}`,
the state with `"v":true`, HTTP 400 `{"error":9}` for JSON it cannot parse, and `{"state","info"}` pushed to
every WebSocket client on a change. One module, as the firmware is one: the HTTP and WebSocket channels both
apply the merge rules to one state.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

from aiohttp import web

from simulators.httpdevice import HttpDevice, mac_for, parse_json
from simulators.mdns import MdnsService

# A prefix of WLED 0.15's effect list (index = effect id), with each effect's metadata as /json/fxdata has it.
EFFECTS: tuple[tuple[str, str], ...] = (
    ("Solid", ""), ("Blink", "!,Duty cycle;!,!;!;01"), ("Breathe", "!;!,!;!;01"), ("Wipe", "!,!;!,!;!"),
    ("Wipe Random", "!;;!"), ("Random Colors", "!,Fade time;;!;01"), ("Sweep", "!,!;!,!;!"),
    ("Dynamic", "!,!,,,,Smooth;;!"), ("Colorloop", "!,Saturation;;!;01"), ("Rainbow", "!,Size;;!"),
    ("Scan", "!,# of dots,,,,,Overlay;!,!,!;!"), ("Scan Dual", "!,# of dots,,,,,Overlay;!,!,!;!"),
    ("Fade", "!;!,!;!;01"), ("Theater", "!,Gap size;!,!;!"), ("Theater Rainbow", "!,Gap size;,!;!"),
    ("Running", "!,Wave width;!,!;!"), ("Saw", "!,Width;!,!;!"), ("Twinkle", "!,!;!,!;!;;m12=0"))
# A prefix of WLED 0.15's palette list (index = palette id).
PALETTES: tuple[str, ...] = (
    "Default", "* Random Cycle", "* Color 1", "* Colors 1&2", "* Color Gradient", "* Colors Only", "Party",
    "Cloud", "Lava", "Ocean", "Forest", "Rainbow", "Rainbow Bands", "Sunset", "Rivendell", "Breeze",
    "Red & Blue", "Yellowout", "Analogous", "Splash", "Pastel", "Sunset 2", "Beach")
VERSION, BUILD = "0.15.0", 2412100
WLED_OUI = "A4CF12"
MAX_SEGMENTS = 32
LED_MILLIAMPS, MAX_MILLIAMPS = 55, 850  # per LED at full white; the power supply's limit
ERR_NOT_IMPLEMENTED, ERR_JSON = 4, 9
BOOL_FIELDS = ("on", "frz", "sel", "rev", "mi", "o1", "o2", "o3")
BYTE_FIELDS = {"sx": 255, "ix": 255, "c1": 255, "c2": 255, "c3": 31, "cct": 255, "set": 3, "si": 3, "m12": 4,
               "bm": 15}  # field -> largest value the firmware keeps


@dataclass
class Segment:
    """One segment of the strip, with the firmware's field names."""

    id: int
    start: int
    stop: int
    grp: int = 1
    spc: int = 0
    of: int = 0
    on: bool = True
    frz: bool = False
    bri: int = 255
    cct: int = 127
    set: int = 0
    col: list[list[int]] = field(default_factory=lambda: [[255, 160, 0], [0, 0, 0], [0, 0, 0]])
    fx: int = 0
    sx: int = 128
    ix: int = 128
    pal: int = 0
    c1: int = 128
    c2: int = 128
    c3: int = 16
    sel: bool = True
    rev: bool = False
    mi: bool = False
    o1: bool = False
    o2: bool = False
    o3: bool = False
    si: int = 0
    m12: int = 0
    bm: int = 0
    n: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        name = data.pop("n")
        data = {"id": self.id, "start": self.start, "stop": self.stop, "len": self.stop - self.start, **data,
                "lc": 1}
        return {**data, "n": name} if name is not None else data


@dataclass
class Nightlight:
    on: bool = False
    dur: int = 60  # minutes
    mode: int = 1
    tbri: int = 0
    ends_at: float | None = None  # simulated time, while on


class WledStrip(HttpDevice):
    kind = "wled_strip"

    def __init__(self, device_id: str = "strip", name: str = "", area: str = "", mac: str | None = None,
                 host: str | None = None, port: int = 80, leds: int = 30) -> None:
        super().__init__(device_id, name, area, host, port)
        self.mac = (mac or mac_for(device_id, WLED_OUI)).lower()
        self.leds = leds
        self.on, self.bri, self.transition = True, 128, 7
        self.preset, self.playlist, self.main_segment, self.live_override = -1, -1, 0, 0
        self.segments: list[Segment] = [Segment(0, 0, leds)]
        self.nightlight = Nightlight()
        self.udp_sync = {"send": False, "recv": True, "sgrp": 1, "rgrp": 1}
        self.presets: dict[str, dict[str, Any]] = {
            "0": {},
            "1": {"n": "Warm White", "on": True, "bri": 200, "transition": 7, "mainseg": 0,
                  "seg": [{"id": 0, "col": [[255, 172, 68], [0, 0, 0], [0, 0, 0]], "fx": 0, "pal": 0}]},
            "2": {"n": "Rainbow", "on": True, "bri": 128, "transition": 7, "mainseg": 0,
                  "seg": [{"id": 0, "fx": 9, "sx": 128, "ix": 128, "pal": 0}]}}
        self.presets_modified = 0
        self._boot = self.context.clock.now()
        self._random = random.Random(device_id)

    # --- the Simulator contract -----------------------------------------------------------------------------

    async def serve(self) -> None:
        await super().serve()
        self._boot = self.context.clock.now()

    def state(self) -> dict[str, Any]:
        return {"on": self.on, "bri": self.bri, "transition": self.transition, "ps": self.preset,
                "nightlight": self.nightlight.on,
                "segments": [{"id": seg.id, "start": seg.start, "stop": seg.stop, "on": seg.on,
                              "bri": seg.bri, "col": [list(colour) for colour in seg.col], "fx": seg.fx,
                              "effect": EFFECTS[seg.fx][0], "pal": seg.pal, "palette": PALETTES[seg.pal],
                              "sx": seg.sx, "ix": seg.ix} for seg in self.segments],
                "fault": self.fault}

    def settable(self) -> dict[str, type]:
        return {"on": bool, "bri": int}  # the device's own button, or a synced controller

    def set_value(self, key: str, value: Any) -> None:
        self.update({key: value})

    # --- the JSON API ---------------------------------------------------------------------------------------

    def update(self, root: dict[str, Any]) -> bool:
        """Merge a partial state object as the firmware does. When something changed, the new state goes to
        every WebSocket client and this returns True."""
        before = self._comparable_state()
        self._merge(root)
        changed = self._comparable_state() != before
        if changed:
            self._push()
        return changed

    def _comparable_state(self) -> dict[str, Any]:
        state = self.state_json()
        del state["nl"]["rem"]  # counts down on its own
        return state

    def state_json(self) -> dict[str, Any]:
        now = self.context.clock.now()
        remaining = (int(self.nightlight.ends_at - now) if self.nightlight.on and self.nightlight.ends_at
                     else -1)
        return {"on": self.on, "bri": self.bri, "transition": self.transition, "bs": 0, "ps": self.preset,
                "pl": self.playlist, "ledmap": 0,
                "nl": {"on": self.nightlight.on, "dur": self.nightlight.dur, "mode": self.nightlight.mode,
                       "tbri": self.nightlight.tbri, "rem": remaining},
                "udpn": dict(self.udp_sync), "lor": self.live_override, "mainseg": self.main_segment,
                "seg": [segment.to_json() for segment in self.segments]}

    def info_json(self) -> dict[str, Any]:
        now = self.context.clock.now()
        return {"ver": VERSION, "vid": BUILD, "cn": "Kōsen", "release": "ESP32", "repo": "wled/WLED",
                "leds": {"count": self.leds, "pwr": self._milliamps(), "fps": 42, "maxpwr": MAX_MILLIAMPS,
                         "maxseg": MAX_SEGMENTS, "bootps": 0, "seglc": [1 for _ in self.segments], "lc": 1,
                         "rgbw": False, "wv": 0, "cct": 0},
                "str": False, "name": self.name, "udpport": 21324, "simplifiedui": False, "live": False,
                "liveseg": -1, "lm": "", "lip": "", "ws": len(self.websockets), "fxcount": len(EFFECTS),
                "palcount": len(PALETTES), "cpalcount": 0, "maps": [{"id": 0}],
                "wifi": {"bssid": "02:00:00:00:00:01", "rssi": -52, "signal": 96, "channel": 6, "ap": False},
                "fs": {"u": 12, "t": 983, "pmt": self.presets_modified}, "ndc": 0, "arch": "esp32",
                "core": "v4.4.7-dirty", "clock": 240, "flash": 4, "lwip": 0, "freeheap": 180364,
                "uptime": int(self._uptime_s()), "time": _wled_time(now), "opt": 79, "brand": "WLED",
                "product": "FOSS", "mac": self.mac, "ip": self.host or ""}

    def config_json(self) -> dict[str, Any]:
        """The part of /json/cfg clients read: identity and the LED setup."""
        return {"rev": [1, 0], "vid": BUILD, "id": {"mdns": self.mdns_hostname(), "name": self.name},
                "hw": {"led": {"total": self.leds, "maxpwr": MAX_MILLIAMPS, "ledma": LED_MILLIAMPS,
                               "cct": False, "cr": False, "cb": 0, "fps": 42, "rgbwm": 255,
                               "ins": [{"start": 0, "len": self.leds, "pin": [2], "order": 0, "rev": False,
                                        "skip": 0, "type": 22, "ref": False, "rgbwm": 0, "freq": 0}]}}}

    def serve_json(self, path: str) -> tuple[int, Any]:
        """GET /json/... as `serveJson` picks what to send: by the first keyword found in the path."""
        targets: tuple[tuple[str, Callable[[], Any] | None], ...] = (
            ("state", self.state_json), ("info", self.info_json), ("si", self._state_and_info),
            ("nodes", lambda: {"nodes": []}), ("eff", lambda: [name for name, _ in EFFECTS]),
            ("palx", None), ("fxda", lambda: [data for _, data in EFFECTS]),
            ("net", lambda: {"networks": []}), ("cfg", self.config_json), ("live", self._live),
            ("pal", lambda: list(PALETTES)))
        for keyword, build in targets:
            if keyword in path[1:]:
                return (200, build()) if build else (501, {"error": ERR_NOT_IMPLEMENTED})
        if len(path) > len("/json"):
            return 501, {"error": ERR_NOT_IMPLEMENTED}
        return 200, {**self._state_and_info(), "effects": [name for name, _ in EFFECTS],
                     "palettes": list(PALETTES)}

    def _uptime_s(self) -> float:
        return self.context.clock.now() - self._boot

    def _state_and_info(self) -> dict[str, Any]:
        return {"state": self.state_json(), "info": self.info_json()}

    def _live(self) -> dict[str, Any]:
        """The colour every LED shows, as hex: a static picture of the primary colours at their brightness."""
        colours = ["000000"] * self.leds
        for segment in self.segments:
            scale = (self.bri / 255) * (segment.bri / 255) if self.on and segment.on else 0.0
            colour = "".join(f"{round(channel * scale):02X}" for channel in segment.col[0][:3])
            colours[segment.start:segment.stop] = [colour] * (segment.stop - segment.start)
        return {"leds": colours, "n": 1}

    def _milliamps(self) -> int:
        if not self.on:
            return 0
        total = sum((segment.stop - segment.start) * sum(segment.col[0][:3]) / 765 * segment.bri / 255
                    for segment in self.segments if segment.on)
        return min(MAX_MILLIAMPS, round(total * LED_MILLIAMPS * self.bri / 255))

    # --- merging a state object -------------------------------------------------------------------------

    def _merge(self, root: dict[str, Any]) -> None:
        was_on = self.on
        live = self.bri if self.on else 0  # the firmware's `bri`; self.bri is its `briLast`
        live = _byte(root.get("bri"), live)
        if live:
            self.bri = live
        on = root.get("on")
        wanted = on if isinstance(on, bool) else live > 0
        if wanted != (live > 0):
            live = 0 if live else self.bri
        if isinstance(on, str) and on.startswith("t") and (was_on or not live):
            live = 0 if live else self.bri  # `"on":"t"` toggles, but not off again when `bri` turned it on
        self.on = live > 0
        if _is_int(root.get("transition")) and root["transition"] >= 0:
            self.transition = min(root["transition"], 655)
        self._merge_nightlight(root.get("nl"))
        if isinstance(udpn := root.get("udpn"), dict):
            self.udp_sync["send"] = _bool(udpn.get("send"), bool(self.udp_sync["send"]))
            for key in ("sgrp", "rgrp"):
                self.udp_sync[key] = _byte(udpn.get(key), self.udp_sync[key])
            self.udp_sync["recv"] = self.udp_sync["rgrp"] != 0
        if root.get("rb") is True:
            self._boot = self.context.clock.now()
        if _is_int(root.get("mainseg")) and 0 <= root["mainseg"] < len(self.segments):
            self.main_segment = root["mainseg"]
        if _is_int(root.get("lor")) and root["lor"] >= 0:
            self.live_override = min(root["lor"], 2)
        changed = self._merge_segments(root.get("seg"))
        if changed or "bri" in root or "on" in root:
            self.preset = -1  # a manual change leaves the preset
        self._merge_presets(root)

    def _merge_segments(self, segments: Any) -> bool:
        before = [segment.to_json() for segment in self.segments]
        if isinstance(segments, dict):
            if _is_int(segments.get("id")) and segments["id"] >= 0:
                self._merge_segment(segments, segments["id"])
            else:  # without an id it applies to every selected segment
                for segment in [segment for segment in self.segments if segment.sel]:
                    self._merge_segment(segments, segment.id)
        elif isinstance(segments, list):
            for index, item in enumerate(segments):
                if isinstance(item, dict):  # an id that is no byte counts as missing: the position decides
                    self._merge_segment(item, item["id"] if _is_int(item.get("id")) and 0 <= item["id"] < 256
                                        else index)
        return [segment.to_json() for segment in self.segments] != before

    def _merge_segment(self, item: dict[str, Any], segment_id: int) -> None:
        if segment_id >= MAX_SEGMENTS:
            return
        stop = item["stop"] if _is_int(item.get("stop")) else -1
        segment = next((segment for segment in self.segments if segment.id == segment_id), None)
        if segment is None:
            if stop <= 0:
                return  # a segment that does not exist is only created with a stop
            segment = Segment(len(self.segments), 0, self.leds)
            self.segments.append(segment)
        start = item["start"] if _is_int(item.get("start")) else segment.start
        if stop < 0:
            length = item.get("len")
            stop = start + length if _is_int(length) and length > 0 else segment.stop
        if stop == 0:
            self._delete_segment(segment)
            return
        start, stop = max(0, min(start, self.leds - 1)), max(1, min(stop, self.leds))
        if start < stop:
            segment.start, segment.stop = start, stop
        if isinstance(item.get("n"), str):
            segment.n = item["n"] or None
        for key in ("grp", "spc"):
            if _is_int(item.get(key)) and item[key] >= 0:
                setattr(segment, key, min(item[key], 255))
        if _is_byte(item.get("bri")):
            opacity = _byte(item["bri"], segment.bri)
            if opacity:
                segment.bri = opacity
            segment.on = opacity > 0
        for key in BOOL_FIELDS:
            setattr(segment, key, _bool(item.get(key), getattr(segment, key)))
        if isinstance(colours := item.get("col"), list):
            for slot, value in enumerate(colours[:3]):
                if (colour := _colour(value, segment.col[slot])) is not None:
                    segment.col[slot] = colour
        for key, highest in BYTE_FIELDS.items():
            setattr(segment, key, min(highest, _byte(item.get(key), getattr(segment, key), 0, highest)))
        effect = _byte(item.get("fx"), segment.fx, 0, len(EFFECTS) - 1, self._random)
        segment.fx = effect if effect < len(EFFECTS) else 0
        palette = _byte(item.get("pal"), segment.pal, 0, len(PALETTES) - 1, self._random)
        segment.pal = palette if palette < len(PALETTES) else 0
        if "i" in item:
            segment.frz = True  # individually set LEDs freeze the segment

    def _delete_segment(self, segment: Segment) -> None:
        if len(self.segments) == 1:
            return
        self.segments.remove(segment)
        for index, remaining in enumerate(self.segments):
            remaining.id = index
        if self.main_segment >= len(self.segments):
            self.main_segment = 0

    def _merge_nightlight(self, nightlight: Any) -> None:
        if not isinstance(nightlight, dict):
            return
        light = self.nightlight
        was_on = light.on
        light.on = _bool(nightlight.get("on"), light.on)
        for key in ("dur", "mode", "tbri"):
            setattr(light, key, _byte(nightlight.get(key), getattr(light, key)))
        if light.on and not was_on:
            light.ends_at = self.context.clock.now() + light.dur * 60
            if self.serving:
                self.spawn(self._nightlight_ends(light.ends_at))
        elif not light.on:
            light.ends_at = None

    async def _nightlight_ends(self, deadline: float) -> None:
        clock = self.context.clock
        while (remaining := deadline - clock.now()) > 0:
            await clock.sleep(min(remaining, clock.speed))  # at most a real second, to follow speed changes
        if self.nightlight.on and self.nightlight.ends_at == deadline:
            self.nightlight.on, self.nightlight.ends_at = False, None
            self.update({"bri": self.nightlight.tbri})

    def _merge_presets(self, root: dict[str, Any]) -> None:
        save = _byte(root.get("psave"), 0)
        if 0 < save < 251:
            name = root.get("n") if isinstance(root.get("n"), str) else f"Preset {save}"
            self.presets[str(save)] = {"n": name, "on": self.on, "bri": self.bri,
                                       "transition": self.transition, "mainseg": self.main_segment,
                                       "seg": [{key: value for key, value in segment.to_json().items()
                                                if key != "len"} for segment in self.segments]}
            self.presets_modified = int(self.context.clock.now())
        delete = _byte(root.get("pdel"), 0)
        if 0 < delete < 251 and self.presets.pop(str(delete), None) is not None:
            self.presets_modified = int(self.context.clock.now())
        chosen = _byte(root.get("ps"), 0, 1, 250, self._random)
        if "ps" in root and 0 < chosen < 251 and str(chosen) in self.presets and chosen != self.preset:
            preset = self.presets[str(chosen)]
            self._merge({key: value for key, value in preset.items()
                         if key not in ("n", "ps", "psave", "pdel")})
            self.preset = chosen

    # --- HTTP and WebSocket -------------------------------------------------------------------------------

    def routes(self) -> Iterable[web.RouteDef]:
        return [web.get("/json", self._get_json), web.get("/json/{path:.*}", self._get_json),
                web.post("/json", self._post_json), web.post("/json/{path:.*}", self._post_json),
                web.get("/presets.json", self._get_presets), web.get("/ws", self._websocket),
                web.get("/version", self._plain(lambda: str(BUILD))),
                web.get("/uptime", self._plain(lambda: str(int(self._uptime_s() * 1000)))),
                web.get("/freeheap", self._plain(lambda: "180364")), web.get("/reset", self._reset)]

    def mdns_hostname(self) -> str:
        return f"wled-{self.mac[-6:]}"

    def mdns_services(self) -> list[MdnsService]:
        return [MdnsService("_wled._tcp.local.", self.mdns_hostname(), {"mac": self.mac}),
                MdnsService("_http._tcp.local.", self.mdns_hostname())]

    async def _get_json(self, request: web.Request) -> web.Response:
        status, body = self.serve_json(request.path)
        return web.json_response(body, status=status)

    async def _post_json(self, request: web.Request) -> web.Response:
        try:
            root = parse_json(await request.read())
        except ValueError:
            root = None
        if not isinstance(root, dict):
            return web.json_response({"error": ERR_JSON}, status=400)
        if "cfg" in request.path:
            return web.json_response({"success": True})  # settings are accepted and not simulated
        self.update(root)
        if root.get("v") is True:
            status, body = self.serve_json(request.path)
            return web.json_response(body, status=status)
        return web.json_response({"success": True})

    async def _get_presets(self, request: web.Request) -> web.Response:
        return web.json_response(self.presets)

    async def _reset(self, request: web.Request) -> web.Response:
        self._boot = self.context.clock.now()
        return web.Response(text="<h2>Rebooting now...</h2>Please wait ~10 seconds.",
                            content_type="text/html")

    def _plain(self, text: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(text=text())
        return handler

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        async def on_open(socket: web.WebSocketResponse) -> None:
            await self.send_text(socket, json.dumps(self._state_and_info()))

        async def on_text(socket: web.WebSocketResponse, text: str) -> None:
            if 0 < len(text) < 10 and text.startswith("p"):
                await self.send_text(socket, "pong")  # the UI's application-level heartbeat
                return
            try:
                root = parse_json(text)
            except ValueError:
                return  # ws.cpp drops what it cannot parse
            if not isinstance(root, dict):
                return
            if root.get("v") and len(root) == 1:
                await self.send_text(socket, json.dumps(self._state_and_info()))
                return
            if "lv" in root or not self.update(root):  # a change was pushed to every client already
                reply = self._state_and_info() if root.get("v") is True else {"success": True}
                await self.send_text(socket, json.dumps(reply))

        return await self.websocket(request, on_text, on_open=on_open)

    def _push(self) -> None:
        sockets = self.websockets
        if sockets:
            self.spawn(self._send_all(sockets, json.dumps(self._state_and_info())))

    async def _send_all(self, sockets: list[web.WebSocketResponse], text: str) -> None:
        for socket in sockets:
            await self.send_text(socket, text)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _bool(value: Any, current: bool) -> bool:
    """getBoolVal(): a JSON boolean, or a string starting with "t" to toggle; anything else keeps it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.startswith("t"):
        return not current
    return current


def _is_byte(value: Any) -> bool:
    """Whether getVal() takes the value: a non-negative JSON integer or a short string."""
    return _is_int(value) and value >= 0 or isinstance(value, str) and 0 < len(value) <= 10


def _byte(value: Any, current: int, low: int = 0, high: int = 255, rng: random.Random | None = None) -> int:
    """getVal(): a JSON integer read as a byte (out of range reads as 0), or a string: "~"/"~-" step by one
    with wrap-around, "~N"/"~-N" step by N within [low, high], "r" random, or digits. Else: `current`."""
    if not _is_byte(value):
        return current
    if _is_int(value):
        return value if value <= 255 else 0
    if value[0] == "r":
        return (rng or random).randint(low, high or 255)
    wrap = value[0] == "w" and len(value) > 1
    text = value[1:] if wrap else value
    if text[0] != "~":
        return _atoi(text) & 0xFF
    step = _atoi(text[1:])
    if step == 0:
        if text[1:2] == "0":
            return current
        if text[1:2] == "-":
            return high if current - 1 < low else min(high, current - 1)
        return low if current + 1 > high else max(low, current + 1)
    if wrap and current == high and step > 0:
        return low
    if wrap and current == low and step < 0:
        return high
    return max(low, min(high, current + step))


def _atoi(text: str) -> int:
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def _colour(value: Any, current: list[int]) -> list[int] | None:
    """One entry of a segment's `col`: [r,g,b(,w)], "RRGGBB"/"WWRRGGBB", {"r":..}, or a Kelvin number."""
    if isinstance(value, list):
        if not value:
            return None
        channels = [int(item) if isinstance(item, (int, float)) and not isinstance(item, bool)
                    and math.isfinite(item) else 0 for item in value[:3]]
        return [max(0, min(255, channel)) for channel in channels + [0] * (3 - len(channels))]
    if isinstance(value, dict):
        return [max(0, min(255, value[key])) if _is_int(value.get(key)) else old
                for key, old in zip("rgb", current, strict=True)]
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9a-fA-F]{6}|[0-9a-fA-F]{8}", value):
            return None
        rgb = int(value[-6:], 16)
        return [rgb >> 16, (rgb >> 8) & 0xFF, rgb & 0xFF]
    if _is_int(value) and value >= 0:
        return _kelvin_to_rgb(value) if value else [0, 0, 0]
    return None


def _kelvin_to_rgb(kelvin: int) -> list[int]:
    """colorKtoRGB(): the firmware's approximation of a black body's colour."""
    temp = kelvin / 100
    if temp <= 66:
        red, green = 255.0, 99.4708025861 * math.log(temp) - 161.1195681661
        blue = 0.0 if temp <= 19 else 138.5177312231 * math.log(temp - 10) - 305.0447927307
    else:
        red = 329.698727446 * (temp - 60) ** -0.1332047592
        green, blue = 288.1221695283 * (temp - 60) ** -0.0755148492, 255.0
    return [max(0, min(255, round(channel))) for channel in (red, green, blue)]


def _wled_time(now: float) -> str:
    moment = time.gmtime(now)
    return (f"{moment.tm_year}-{moment.tm_mon}-{moment.tm_mday}, "
            f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d}")
