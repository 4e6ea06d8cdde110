"""The web page in headless Chromium (Debian's, driven by Playwright) against a real in-process daemon on
127.0.0.1, the scripted model and the device simulators: what a person sees and does, and what the devices do.

Screenshots go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import code_reply, make_config, psu_entry
from gateway.api import auth as auth_module
from gateway.config import AutomationEntry, AutomationTrigger
from gateway.daemon import Daemon
from simulators.base import SimContext
from simulators.runner import running_home
from simulators.scenario import load_scenario
from simulators.tasmota import TasmotaPlug

try:
    from axe_playwright_python.async_playwright import Axe
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # the test extra is not installed
    async_playwright = None

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
# Playwright gives each launch a fresh temporary profile. This one talks to nobody but the gateway: no background
# services, and no host name resolves (the page is opened by its 127.0.0.1 address).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]  # a microphone that beeps
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
                         "has_touch": True}
DESKTOP = {"width": 1440, "height": 900}
COMMAND = "What should the gateway do?"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if async_playwright is None:
        pytest.skip("needs Playwright for Python and axe-playwright-python: pip install -e '.[test]'")
    if CHROMIUM is None:
        pytest.skip("needs Debian's Chromium: apt-get install chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@dataclass
class Tab:
    """A phone's browser tab on the gateway, noting console errors and any request that would leave 127.0.0.1."""

    page: Page
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def assert_clean(self, expected_error: str | None = None) -> None:
        assert [error for error in self.errors if not (expected_error and expected_error in error)] == []
        assert self.outside == []


@pytest.fixture
async def open_tab(browser: Browser, daemon_factory: Any) -> AsyncIterator[Callable[..., Awaitable[Tab]]]:
    # Depends on daemon_factory so that the tabs, and their open event streams, close before the daemons stop.
    contexts = []

    async def open_(daemon: Daemon, init_script: str | None = None, **options: Any) -> Tab:
        context = await browser.new_context(**PHONE, **options)
        contexts.append(context)
        if init_script:
            await context.add_init_script(init_script)
        page = await context.new_page()
        tab = Tab(page)

        def note_request(request: Any) -> None:
            if urlsplit(request.url).hostname not in (None, "127.0.0.1"):  # None: data: and blob: URLs
                tab.outside.append(request.url)

        page.on("console", lambda message: tab.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: tab.errors.append(str(error)))
        page.on("request", note_request)
        await page.goto(f"{daemon.server.url}/")
        return tab

    yield open_
    for context in contexts:
        await context.close()


@pytest.fixture
async def kettle(mqtt_broker: Any) -> AsyncIterator[TasmotaPlug]:
    """A Tasmota plug the gateway finds on MQTT, whose state changes reach the registry."""
    plug = TasmotaPlug("kettle", "tasmota_0A0B0C", name="Kitchen Kettle")
    await plug.start(SimContext(mqtt_port=mqtt_broker.port))
    yield plug
    await plug.stop()


async def assert_accessible(page: Page) -> None:
    """axe-core's rules (names and labels, contrast, ARIA, landmarks...) hold in the dark and the light scheme."""
    for scheme in ("dark", "light"):
        await page.emulate_media(color_scheme=scheme)
        results = await Axe().run(page)
        assert results.violations_count == 0, f"{scheme} scheme: {results.generate_report()}"


async def screenshot(page: Page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / name, full_page=full_page)


KETTLE_CODE = ('kettle = devices["kitchen_kettle"]  # found on MQTT\n'
               't = kettle.base_topic\n'
               'print(kettle.request(f"cmnd/{t}/Power", "ON", reply_topic=f"stat/{t}/RESULT"))\n'
               'print("<img src=x onerror=alert(1)>", 42)')


async def test_a_typed_command_streams_its_trace_and_the_device_list_follows_the_plug(
        tmp_path, scripted_llm, mqtt_broker, kettle, psu, daemon_factory, open_tab):
    llm = await scripted_llm({"conversations": [{"match": "kettle", "replies": [
        code_reply(KETTLE_CODE, "The kettle is a Tasmota plug."), "FINAL ANSWER: The kettle is on."]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [psu_entry(psu)], broker=mqtt_broker))
    tab = await open_tab(daemon)
    page = tab.page
    card = page.locator('.device[data-id="kitchen_kettle"]')
    power = card.locator('[data-key="power"] dd')
    await expect(power).to_have_text("off")
    await expect(card.get_by_role("switch", name="Kitchen Kettle power")).to_have_attribute("aria-checked", "false")
    await expect(card.locator(".badge")).to_have_count(0)  # only "offline" is worth a badge

    await page.get_by_label(COMMAND).fill("put the kettle on for tea")
    await page.get_by_role("button", name="Send").click()

    step = page.locator("#trace .step")
    await expect(step.locator(".thought")).to_have_text("The kettle is a Tasmota plug.")
    await expect(step.locator("pre.code")).to_have_text(KETTLE_CODE)  # highlighted, and still exactly the code
    await expect(step.locator(".tok-string").first).to_have_text('"kitchen_kettle"')
    await expect(step.locator(".tok-comment")).to_have_text("# found on MQTT")
    await expect(step.locator(".tok-number")).to_have_text("42")
    await expect(step.locator(".tok-builtin").first).to_have_text("devices")
    await expect(step.locator(".observation pre")).to_have_text("{'POWER': 'ON'}\n<img src=x onerror=alert(1)> 42")
    await expect(page.locator("#answer")).to_have_text("The kettle is on.")
    await expect(page.locator("#task-status")).to_have_text("done")
    await expect(page.locator("#writing")).to_be_hidden()
    assert await page.locator("#trace img").count() == 0  # the observation's markup stayed text
    assert kettle.power is True
    await expect(power).to_have_text("on")  # the plug's report reached the page through /api/events

    kettle.set_value("power", False)  # someone presses the button on the plug
    await expect(power).to_have_text("off")
    kettle.apply({"fault": "offline"})
    await expect(card.locator(".badge")).to_have_text("offline")
    await expect(card.get_by_role("switch")).to_have_count(0)  # nothing to tap on a device that does not answer
    kettle.apply({"fault": "none"})
    await expect(card.locator(".badge")).to_have_count(0)

    devices = page.locator(".device .device-name")
    lab = page.get_by_role("button", name="lab", exact=True)
    await lab.click()
    await expect(lab).to_have_attribute("aria-pressed", "true")
    await expect(devices).to_have_text(["Bench Supply"])
    await page.get_by_role("button", name="All", exact=True).click()
    await expect(devices).to_have_text(["Kettle", "Bench Supply"])  # by room, kitchen then lab, named by it
    await page.get_by_label("Search devices").fill("kett")
    await expect(devices).to_have_text(["Kettle"])

    await page.reload()  # the recent tasks keep the trace
    task = page.locator(".history-item", has_text="put the kettle on for tea")
    await expect(task.locator(".chip")).to_have_text("done")
    await task.click()
    await expect(page.locator("#trace pre.code")).to_have_text(KETTLE_CODE)
    await expect(page.locator("#answer")).to_have_text("The kettle is on.")
    await assert_accessible(page)
    await screenshot(page, "web-task-phone.png")
    await page.set_viewport_size({"width": 1280, "height": 900})
    await screenshot(page, "web-task-desktop.png")
    await page.emulate_media(color_scheme="dark")
    await screenshot(page, "web-task-desktop-dark.png")
    tab.assert_clean()


@pytest.mark.parametrize("button, output_on", [("Approve", True), ("Deny", False)])
async def test_a_dangerous_call_waits_for_the_answer_in_the_dialog(button, output_on, tmp_path, scripted_llm, psu,
                                                                    daemon_factory, open_tab):
    code = 'psu = devices["bench_psu"]\npsu.write("OUTP ON")\nfinal_answer(psu.query("OUTP?"))'
    llm = await scripted_llm({"conversations": [{"match": "output on", "replies": [
        code_reply(code), "FINAL ANSWER: The output stays off: you said no."]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [psu_entry(psu)]))
    tab = await open_tab(daemon)
    page = tab.page
    await expect(page.locator(".device", has_text="Bench Supply")).to_be_visible()

    await page.get_by_label(COMMAND).fill("switch the bench supply output on")
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Allow this?")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#confirm-device")).to_have_text("Bench Supply (bench_psu)")
    await expect(dialog.locator("#confirm-action")).to_have_text("OUTP ON")
    await expect(dialog.locator("#confirm-reason")).to_have_text("switches the supply's output on")
    await expect(dialog.locator("#confirm-task")).to_have_text("switch the bench supply output on")
    assert psu.output is False  # nothing is switched before the person answers
    if output_on:
        await assert_accessible(page)
        await screenshot(page, "web-confirmation-phone.png", full_page=False)  # the modal covers the viewport

    await dialog.get_by_role("button", name=button).click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#task-status")).to_have_text("done")
    await expect(page.locator("#answer")).to_have_text(
        "1" if output_on else "The output stays off: you said no.\n"
                              "(Not done, refused: what was asked of bench_psu; see the trace.)")
    assert psu.output is output_on
    await expect(page.locator("#trace .note").last).to_have_text(
        f"OUTP ON on Bench Supply: {'approved' if output_on else 'not approved'}")
    tab.assert_clean()


async def test_off_loopback_the_page_asks_for_the_token_once_and_keeps_it_in_a_cookie_no_script_reads(
        tmp_path, scripted_llm, psu, monkeypatch, daemon_factory, open_tab):
    monkeypatch.setattr(auth_module, "page_receives_token", lambda host: False)  # as on a LAN address, on 127.0.0.1
    llm = await scripted_llm({"conversations": [{"match": "hello",
                                                  # a greeting reads no device: said twice, it is taken
                                                  "replies": [code_reply('final_answer("Hello, token holder.")')] * 2}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [psu_entry(psu)]))
    assert daemon.token_to_show == daemon.access.token  # `pyuse run` prints it, since the page is not given it
    tab = await open_tab(daemon)
    page = tab.page
    supply = page.locator(".device", has_text="Bench Supply")
    dialog = page.get_by_role("dialog", name="This gateway needs its API token")
    await expect(dialog).to_be_visible()
    assert await supply.count() == 0
    await assert_accessible(page)

    await dialog.get_by_label("API token").fill("not-the-token")
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog.get_by_role("alert")).to_have_text("That token was not accepted. Check it and try again.")
    await dialog.get_by_label("API token").fill(daemon.access.token)
    await dialog.get_by_role("button", name="Save").click()
    await expect(supply).to_be_visible()  # the fetches and the event stream carry the cookie by themselves
    [cookie] = await page.context.cookies()
    assert (cookie["name"], cookie["value"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        daemon.access.cookie, daemon.access.token, True, "Strict", "/api/")
    assert await page.evaluate("document.cookie + JSON.stringify(localStorage)") == "{}"  # no script can read it

    await page.reload()
    await expect(supply).to_be_visible()
    await page.get_by_label(COMMAND).fill("say hello")
    await page.keyboard.press("Enter")
    await expect(page.locator("#answer")).to_have_text("Hello, token holder.")
    await expect(dialog).to_be_hidden()
    tab.assert_clean(expected_error="status of 401")  # the refused requests before the token was known


def recogniser(then: str) -> str:
    """An init script giving the page a stand-in for the browser's speech recognition, which would need a service
    on the internet: it hears nothing but does `then` (JavaScript, `this` being the recognition) when started."""
    return (f"class StandIn {{ start() {{ setTimeout(() => {{ {then}; this.onend(); }}); }} stop() {{}} }}\n"
            "window.SpeechRecognition = window.webkitSpeechRecognition = StandIn;")


async def test_a_command_heard_by_the_browser_runs_like_a_typed_one(tmp_path, scripted_llm, daemon_factory, open_tab):
    llm = await scripted_llm({"conversations": [{"match": "hello",
                                                  # a greeting reads no device: said twice, it is taken
                                                  "replies": [code_reply('final_answer("Hello, speaker.")')] * 2}]})
    daemon = await daemon_factory(make_config(tmp_path, llm))
    tab = await open_tab(daemon, init_script=recogniser(
        'this.onresult({ results: [[{ transcript: "say " }], [{ transcript: "hello" }]] })'))
    page = tab.page

    await page.get_by_role("button", name="Speak a command").click()
    await expect(page.locator("#task-title")).to_have_text("say hello")
    await expect(page.locator("#answer")).to_have_text("Hello, speaker.")
    tab.assert_clean()


async def test_without_recognition_the_microphone_records_for_the_gateway_which_says_how_to_set_up_voice(
        tmp_path, daemon_factory, open_tab):
    daemon = await daemon_factory(make_config(tmp_path))
    # Debian's Chromium has no recognition service to reach: it fails with "network", and the page records instead.
    tab = await open_tab(daemon, init_script=recogniser('this.onerror({ error: "network" })'),
                         permissions=["microphone"])
    page = tab.page
    await expect(page.locator("#notice")).not_to_contain_text("model")  # none, but nothing failed for want of one
    mic = page.get_by_role("button", name="Speak a command")
    await mic.click()
    await expect(page.locator("#command-hint")).to_contain_text("tap the microphone again to record")

    await mic.click()
    stop = page.get_by_role("button", name="Stop listening")
    async with page.expect_request("**/api/voice") as upload:
        await stop.click()
    assert (await upload.value).headers["content-type"].startswith("audio/")
    hint = page.locator("#command-hint")  # an empty body would have been refused (400) before this answer (501)
    await expect(hint).to_contain_text("Voice is not set up on this gateway")
    await expect(hint).to_contain_text("[stt] base_url")
    await assert_accessible(page)
    await expect(mic).to_be_visible()  # listening no more
    tab.assert_clean(expected_error="status of 501")


async def test_a_running_task_can_be_stopped_from_the_page(tmp_path, scripted_llm, daemon_factory, open_tab):
    llm = await scripted_llm({"conversations": [{"match": "nap", "replies": [code_reply("sleep(20)")]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, sandbox={"exec_timeout_s": 30}))
    tab = await open_tab(daemon)
    page = tab.page

    await page.get_by_label(COMMAND).fill("take a long nap")
    await page.keyboard.press("Enter")
    await expect(page.locator("#trace pre.code")).to_have_text("sleep(20)")
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(page.locator("#task-status")).to_have_text("cancelled")
    await expect(page.locator(".history-item", has_text="take a long nap").locator(".chip")).to_have_text("cancelled")
    [task_id] = daemon.runner.tasks
    assert daemon.gateway.task(task_id).status == "cancelled"
    tab.assert_clean()


KETTLE_POWER = '''TRIGGERS = ["kettle power {on}"]


def kettle_power(on: bool) -> str:
    """Switch the kitchen kettle on or off."""
    kettle = devices["kitchen_kettle"]
    t = kettle.base_topic
    kettle.request(f"cmnd/{t}/Power", "ON" if on else "OFF", reply_topic=f"stat/{t}/RESULT")
    return "The kettle is on." if on else "The kettle is off."
'''
BOIL_CODE = ('kettle = devices["kitchen_kettle"]\nt = kettle.base_topic\n'
             'print(kettle.request(f"cmnd/{t}/Power", "ON", reply_topic=f"stat/{t}/RESULT"))')
BOIL_WATER = '''TRIGGERS = ["boil water for tea", "boil water"]


def boil_water() -> str:
    """Switch the kitchen kettle on to boil water."""
    kettle = devices["kitchen_kettle"]
    t = kettle.base_topic
    kettle.request(f"cmnd/{t}/Power", "ON", reply_topic=f"stat/{t}/RESULT")
    return "The water is on its way."
'''


async def test_skills_and_automations_run_without_the_model_and_a_solved_task_becomes_a_skill(
        tmp_path, scripted_llm, mqtt_broker, kettle, daemon_factory, open_tab):
    # The skill writer's request also says "boil water": its conversation has to come first.
    llm = await scripted_llm({"conversations": [
        {"match": "save as a skill", "replies": [f"Here is the skill.\n```python\n{BOIL_WATER}```"]},
        {"match": "boil water", "replies": [code_reply(BOIL_CODE), "FINAL ANSWER: The water is on its way."]}]})
    config = make_config(tmp_path, llm, broker=mqtt_broker)
    config.automations = [AutomationEntry(name="kettle-off", trigger=AutomationTrigger(every="1h"),
                                          skill="kettle_power", args={"on": False})]
    skills = tmp_path / "data" / "skills"
    skills.mkdir(parents=True)
    (skills / "kettle_power.py").write_text(KETTLE_POWER)
    (skills / "broken.py").write_text("x = 1\n")
    daemon = await daemon_factory(config)
    tab = await open_tab(daemon)
    page = tab.page
    power = page.locator('.device[data-id="kitchen_kettle"] [data-key="power"] dd')
    await expect(power).to_have_text("off")

    # A skill, run from its panel with its parameter: no model, and the trace says so.
    skill = page.locator("#skills .item", has_text="kettle_power")
    await expect(skill.locator(".item-name")).to_have_text("kettle_power(on: bool)")
    await expect(skill).to_contain_text("Switch the kitchen kettle on or off.")
    await expect(skill).to_contain_text("Says: “kettle power {on}”")
    await expect(page.locator("#skill-errors li")).to_contain_text(["broken.py"])
    await skill.get_by_label("on (bool)").check()
    await skill.get_by_role("button", name="Run").click()
    await expect(page.locator("#answer")).to_have_text("The kettle is on.")
    await expect(page.locator("#task-status")).to_have_text("done")
    await expect(page.locator("#task-marks")).to_have_text("processed locally")
    await expect(page.locator("#save-skill")).to_be_hidden()  # nothing to save: no model wrote it
    await expect(power).to_have_text("on")
    assert kettle.power is True
    await expect(skill.locator(".count")).to_have_text("1 run")
    run = page.locator(".history-item", has_text="skill kettle_power(on=True)")
    await expect(run.locator(".marks")).to_have_text("processed locally")
    await skill.get_by_text("Source").click()
    await expect(skill.locator("pre.code")).to_have_text(KETTLE_POWER)

    # An automation from the config: run now, counted, its last run's trace one tap away.
    automation = page.locator("#automations .item", has_text="kettle-off")
    await expect(automation.locator(".badge")).to_have_text("on")
    await expect(automation).to_contain_text("every 1h")
    await expect(automation).to_contain_text("the skill kettle_power(on=false)")
    await expect(automation.get_by_role("button", name="Delete")).to_have_count(0)  # only the config removes it
    await expect(automation.get_by_role("button", name="Recompile")).to_have_count(0)  # no words to compile
    await automation.get_by_role("button", name="Run now").click()
    await expect(power).to_have_text("off")
    await expect(automation).to_contain_text("1 run · 0 dropped")
    last = automation.get_by_role("button", name="show its trace")
    await expect(last.locator(".chip")).to_have_text("done")
    await last.click()
    await expect(page.locator("#task-title")).to_have_text("skill kettle_power(on=False)")
    await expect(page.locator("#task-marks")).to_have_text("processed locally by automation kettle-off")
    await expect(page.locator(".history-item", has_text="by automation kettle-off")).to_have_count(1)

    # Stopped by the gateway: shown live, with the reason, until resumed from the page.
    daemon.automations.stop(daemon.automations.get("kettle-off"), "it was triggered too often: a loop?")
    await expect(automation.locator(".badge")).to_have_text("stopped")
    await expect(automation.locator(".item-alert")).to_have_text("Stopped: it was triggered too often: a loop?")
    await automation.get_by_role("button", name="Resume").click()
    await expect(automation.locator(".badge")).to_have_text("on")
    await expect(automation.locator(".item-alert")).to_have_count(0)
    assert daemon.automations.get("kettle-off").stopped is None

    # Adding one: the gateway's objection shows by the form; one made here can be deleted here.
    await page.get_by_text("Add an automation").click()
    form = page.locator("#automation-form")
    await form.get_by_label("Name").fill("kettle-button")
    await form.get_by_label("Trigger", exact=True).select_option("every")
    await form.get_by_label("Topic, device, interval or time").fill("soon")
    await form.get_by_label("Do, in words").fill("turn the kettle off")
    await form.get_by_role("button", name="Add").click()
    await expect(page.locator("#automation-error")).to_contain_text("'soon' is not an interval")
    await form.get_by_label("Trigger", exact=True).select_option("mqtt")
    await form.get_by_label("Topic, device, interval or time").fill("kitchen/button")
    await form.get_by_label("Only when").fill('action == "single"')
    await form.get_by_role("button", name="Add").click()
    added = page.locator("#automations .item", has_text="kettle-button")
    await expect(added).to_contain_text('mqtt kitchen/button when action == "single"')
    await expect(added).to_contain_text("“turn the kettle off”")
    await expect(page.locator("#automation-error")).to_be_empty()
    await expect(added.get_by_role("button", name="Recompile")).to_be_visible()
    await added.get_by_role("button", name="Delete").click()
    await page.get_by_role("dialog", name="Delete the automation kettle-button?").get_by_role(
        "button", name="Delete").click()
    await expect(added).to_have_count(0)
    assert "kettle-button" not in daemon.automations.automations

    # A command the model solved: saved as a skill from the trace, listed at once.
    await page.get_by_label(COMMAND).fill("boil water for tea")
    await page.keyboard.press("Enter")
    await expect(page.locator("#answer")).to_have_text("The water is on its way.")
    await expect(page.locator("#task-marks")).to_be_hidden()
    await page.get_by_role("button", name="Save as skill").click()
    await expect(page.locator("#save-skill-result")).to_have_text(
        "Saved as the skill boil_water(), which runs without the model when you say “boil water for tea”, "
        "“boil water”.")
    await expect(page.get_by_role("button", name="Save as skill")).to_be_hidden()
    await expect(page.locator("#skills .item-name")).to_have_text(["boil_water()", "kettle_power(on: bool)"])
    assert (skills / "boil_water.py").read_text() == BOIL_WATER
    await assert_accessible(page)
    await screenshot(page, "web-skills-phone.png")
    await page.set_viewport_size({"width": 1280, "height": 900})
    await screenshot(page, "web-skills-desktop.png")

    # Deleting a skill asks first; once it is gone, the task may be saved again.
    saved = page.locator("#skills .item", has_text="boil_water")
    await saved.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete the skill boil_water?")
    await dialog.get_by_role("button", name="Keep").click()
    await expect(saved).to_be_visible()
    await saved.get_by_role("button", name="Delete").click()
    await dialog.get_by_role("button", name="Delete").click()
    await expect(saved).to_have_count(0)
    assert not (skills / "boil_water.py").exists()
    await expect(page.get_by_role("button", name="Save as skill")).to_be_visible()
    await expect(page.locator("#save-skill-result")).to_be_empty()
    tab.assert_clean(expected_error="status of 400")  # the refused interval


async def test_the_page_says_when_the_mqtt_broker_is_unreachable_and_shows_its_devices_offline(
        tmp_path, restartable_broker, daemon_factory, open_tab):
    plug = TasmotaPlug("kettle", "tasmota_0A0B0C", name="Kitchen Kettle")
    await plug.start(SimContext(mqtt_port=restartable_broker.address.port))
    try:
        daemon = await daemon_factory(make_config(tmp_path, broker=restartable_broker.address))
        tab = await open_tab(daemon)
        page = tab.page
        badge = page.locator('.device[data-id="kitchen_kettle"] .badge')
        await expect(page.locator('.device[data-id="kitchen_kettle"]')).to_be_visible()
        await expect(badge).to_have_count(0)  # online
        await expect(page.locator("#notice")).not_to_contain_text("MQTT broker")

        restartable_broker.stop()
        await expect(page.locator("#notice")).to_contain_text(
            f"The MQTT broker 127.0.0.1:{restartable_broker.address.port} is unreachable", timeout=10_000)
        await expect(badge).to_have_text("offline")

        await restartable_broker.start()
        await expect(badge).to_have_count(0, timeout=40_000)
        await expect(page.locator("#notice")).not_to_contain_text("MQTT broker")
        tab.assert_clean()
    finally:
        await plug.stop()


# Part of the demo's home: two rooms of Zigbee and Tasmota devices, found on MQTT as the gateway finds them.
HOME_PART = ["kitchen_ceiling_light", "kitchen_window", "living_room_floor_lamp", "living_room_tv",
             "living_room_radiator"]


async def test_the_home_shows_room_by_room_in_words_and_a_tap_switches_or_dims_a_device(
        tmp_path, mqtt_broker, psu, daemon_factory, open_tab):
    specs = [spec for spec in load_scenario("home").devices if spec.id in HOME_PART]
    async with running_home(specs, mqtt_broker.host, mqtt_broker.port, mdns=False) as home:
        # No model: the taps, like typed commands the fast path knows, need none.
        daemon = await daemon_factory(make_config(tmp_path, None, [psu_entry(psu)], broker=mqtt_broker))
        tab = await open_tab(daemon)
        page = tab.page
        rooms = page.locator(".room")
        await expect(rooms.locator(".device-name")).to_have_count(6)
        await expect(rooms.locator("h3")).to_have_text(["Kitchen", "Lab", "Living room"])
        await expect(rooms.nth(0).locator(".device-name")).to_have_text(["Ceiling Light", "Window"])  # in the kitchen

        def reading(device_id: str, label: str) -> Any:
            return page.locator(f'.device[data-id="{device_id}"] .state-item[data-key="{label}"] dd')

        # The Zigbee devices report when the bridge has announced them: slow on a busy machine.
        await expect(reading("kitchen_ceiling_light", "brightness")).to_have_text("100 %", timeout=15_000)  # 254/254
        await expect(reading("living_room_radiator", "target")).to_have_text("21 °C", timeout=15_000)
        await expect(reading("living_room_radiator", "room")).to_contain_text("°C")
        await expect(reading("living_room_tv", "power")).to_have_text("off")
        home.apply("kitchen_window", {"contact": False})  # someone opens it
        await expect(reading("kitchen_window", "contact")).to_have_text("open")
        home.apply("kitchen_window", {"contact": True})
        await expect(reading("kitchen_window", "contact")).to_have_text("closed")
        await expect(page.locator("#notice")).to_be_hidden()  # no model, and nothing yet failed for want of one
        await expect(page.get_by_label(COMMAND)).not_to_have_attribute("placeholder", "")

        # A tap is a command like a typed one, through the fast path; the card follows the device's report.
        tv = page.get_by_role("switch", name="Living Room TV power")
        await expect(tv).to_have_attribute("aria-checked", "false")
        await tv.click()
        await expect(page.locator("#task-title")).to_have_text("turn on the living room tv")
        await expect(page.locator("#task-status")).to_have_text("done")
        await expect(tv).to_have_attribute("aria-checked", "true")
        await expect(reading("living_room_tv", "power")).to_have_text("on")
        assert home.state()["living_room_tv"]["power"] is True
        await tv.click()
        await expect(tv).to_have_attribute("aria-checked", "false")
        assert home.state()["living_room_tv"]["power"] is False
        await expect(page.locator(".observation:empty, .observation pre:empty")).to_have_count(0)  # no empty boxes

        lamp = page.get_by_label("Living Room Floor Lamp brightness")
        await lamp.fill("30")
        await expect(reading("living_room_floor_lamp", "brightness")).to_have_text("30 %")
        assert home.state()["living_room_floor_lamp"]["dimmer"] == 30
        await page.get_by_role("switch", name="Living Room TV power").focus()  # the keyboard works the switch too
        await page.keyboard.press("Enter")
        await expect(tv).to_have_attribute("aria-checked", "true")

        await assert_accessible(page)
        await page.emulate_media(color_scheme="light")
        await page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
        await screenshot(page, "web-home-phone.png", full_page=False)
        await screenshot(page, "web-home-phone-full.png")
        await page.set_viewport_size(DESKTOP)
        await assert_accessible(page)
        await page.emulate_media(color_scheme="light")
        await page.evaluate("window.scrollTo(0, 0)")
        await screenshot(page, "web-home-desktop.png", full_page=False)
        await page.emulate_media(color_scheme="dark")
        await screenshot(page, "web-home-desktop-dark.png", full_page=False)

        # Without a model, a command the gateway does not know by itself is refused, and then the banner says why.
        await page.get_by_label(COMMAND).fill("tell me a story about the lamp")
        await page.keyboard.press("Enter")
        await expect(page.locator("#task-status")).to_have_text("failed")
        await expect(page.locator("#notice")).to_contain_text("No model is configured")
        tab.assert_clean()
