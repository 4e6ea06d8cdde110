"""Device docs are the only thing a new kind of device needs; a broken doc is reported and the rest still load."""

from __future__ import annotations

from aiohttp import web

from conftest import code_reply, make_config, serve_app
from gateway.config import DeviceEntry
from gateway.devices.docs import DocLibrary

AQUARIUM_DOC = '''+++
kind = "reef_aquarium"
title = "ReefPilot aquarium controller (REST)"
transport = "http"
keywords = ["aquarium", "fish tank", "reef", "water"]
state_keys = ["water_c"]

[[danger]]
when = "set_temperature > 29"
reason = "a reef above 29 °C bleaches"
action = "deny"

[[calls]]
does = "set_temperature"
method = "PUT"
path = "/api/v1/heater"
value = "/target_c"

[[calls]]
does = "set_brightness"
method = "PUT"
path = "/api/v1/light"
value = "/pct"

[methods.set_light]
doc = "The tank's light, in percent."
params = { percent = "int 0..100" }
does = ["set_brightness"]
code = 'self.put("/api/v1/light", json={"pct": percent})'

[methods.heat_to]
doc = "Switch the heater on with this target, in °C."
params = { celsius = "float 20..32" }
does = ["set_temperature"]
code = 'self.put("/api/v1/heater", json={"on": True, "target_c": celsius})'

[properties.water_c]
doc = "The water's temperature now."
type = "float"
unit = "°C"
code = 'self.get("/api/v1/status")["water_c"]'
+++
ReefPilot's REST API: `.get("/api/v1/status")` returns `{"water_c": float, "heater": {"on": bool,
"target_c": float}, "light_pct": int}`. `.put("/api/v1/heater", json={"on": bool, "target_c": 22-29})` sets the
heater; `.put("/api/v1/light", json={"pct": 0-100})` the light.

```python
tank = devices["reef_tank"]
tank.put("/api/v1/light", json={"pct": 60})
```
```python
tank.get("/api/v1/status")["water_c"]
```
'''


class ReefPilot:
    """A device nobody on this project has seen: the test's own tiny simulator."""

    def __init__(self) -> None:
        self.state = {"water_c": 24.5, "heater": {"on": False, "target_c": 24.0}, "light_pct": 0}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/status", self.status)
        app.router.add_put("/api/v1/light", self.light)
        app.router.add_put("/api/v1/heater", self.heater)
        return app

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.state)

    async def light(self, request: web.Request) -> web.Response:
        self.state["light_pct"] = int((await request.json())["pct"])
        return web.json_response(self.state)

    async def heater(self, request: web.Request) -> web.Response:
        self.state["heater"].update(await request.json())
        return web.json_response(self.state)


async def test_a_kind_nobody_has_seen_needs_only_a_doc(tmp_path, scripted_llm, gateway_factory):
    tank = ReefPilot()
    runner, port = await serve_app(tank.app())
    (tmp_path / "data" / "device_docs").mkdir(parents=True)
    (tmp_path / "data" / "device_docs" / "reef_aquarium.md").write_text(AQUARIUM_DOC)
    llm = await scripted_llm({"conversations": [{"match": "aquarium", "replies": [
        code_reply('tank = devices["reef_tank"]\ntank.set_light(60)\n'
                   'try:\n    tank.heat_to(30)\nexcept PermissionError as e:\n    print("refused:", e)\n'
                   'tank.heat_to(26)\nfinal_answer(f"light 60%, heater to 26 °C; water {tank.water_c} °C")')
    ]}]})
    device = DeviceEntry(id="reef_tank", name="Reef Tank", area="living room", kind="reef_aquarium",
                         host="127.0.0.1", port=port)
    try:
        gateway = await gateway_factory(make_config(tmp_path, llm, [device]))
        prompt = gateway.build_prompt("dim the aquarium light")
        assert ("class ReefAquarium:\n    set_light(percent: 0..100)  heat_to(celsius: 20..32)\n"
                "    water_c (°C)") in prompt.messages[0]["content"]

        result = await gateway.run_task("set the aquarium light to 60% and warm the water a little")

        assert result.status == "done", result.error
        assert tank.state["light_pct"] == 60
        assert tank.state["heater"] == {"on": True, "target_c": 26}
        observation = gateway.store.steps(result.task_id)[0].observation
        assert "refused: denied: PUT /api/v1/heater" in observation and "a reef above 29 °C bleaches" in observation
        assert result.answer == ("light 60%, heater to 26 °C; water 24.5 °C\n"
                                 "(Not done, refused: what was asked of reef_tank; see the trace.)")
    finally:
        await runner.cleanup()


def test_a_broken_doc_is_reported_by_file_and_line_and_the_others_load(tmp_path):
    (tmp_path / "good.md").write_text('+++\nkind = "mine"\ntitle = "Mine"\ntransport = "http"\n+++\nbody\n')
    (tmp_path / "bad_toml.md").write_text('+++\nkind = "broken"\ntitle = "Broken\ntransport = "http"\n+++\nbody\n')
    (tmp_path / "bad_field.md").write_text('+++\nkind = "wrong"\ntitle = "Wrong"\ntransport = "carrier pigeon"\n'
                                           '+++\nbody\n')
    (tmp_path / "no_front.md").write_text("just text\n")
    (tmp_path / "bad_method.md").write_text('+++\nkind = "dimmer"\ntitle = "Dimmer"\ntransport = "http"\n\n'
                                            '[methods.dim]\ndoc = "Dim it."\nparams = { level = "percent" }\n'
                                            'code = "pass"\n+++\nbody\n')

    library = DocLibrary.load([tmp_path])

    assert "mine" in library.kinds() and "shelly_switch" in library.kinds()
    assert not {"broken", "wrong", "dimmer"} & set(library.kinds())
    errors = sorted(library.errors)
    assert any(error.startswith(f"{tmp_path}/bad_field.md:4: transport:") for error in errors), errors
    assert any(error.startswith(f"{tmp_path}/bad_toml.md:3: front matter is not valid TOML") for error in errors)
    assert any(error.startswith(f"{tmp_path}/no_front.md:1: expected TOML front matter") for error in errors)
    assert f"{tmp_path}/bad_method.md:6: methods.dim.params: parameter 'level': expected a spec such as" in \
        "; ".join(errors)


def test_every_shipped_doc_is_valid_matches_a_kind_and_shows_examples():
    library = DocLibrary.load()
    assert library.errors == []
    for kind, doc in library.docs.items():
        assert doc.body.count("```python") >= 2, f"{kind}: the body needs two examples against the handles"
        assert doc.keywords, f"{kind}: retrieval needs keywords"
        assert doc.match, f"{kind}: discovery cannot find it"
