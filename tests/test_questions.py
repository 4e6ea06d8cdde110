"""Questions as a step of a task: the fast path asks which device an ambiguous command means and goes on with the
answer, through the API, MQTT and the CLI's daemon client; the model's ask() does the same; nobody to ask, or no
answer in time, ends the task needing input with the question as its answer. Real simulators, broker and sandbox."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from conftest import code_reply, make_config, mqtt_listener, shelly_entry
from event_stream import events_of
from test_web import COMMAND as COMMAND_BOX
from test_web import assert_accessible, browser, expect, open_tab, screenshot  # noqa: F401 (fixtures)

from gateway.api.auth import TOKEN_FILE
from gateway.console import Console
from gateway.daemon import Daemon
from gateway.questions import Question
from gateway.remote import DaemonClient
from gateway.tasks import automation_origin, ignore_events
from simulators.shelly import ShellySwitch

COMMAND = "turn on the reading lamp"  # two reading lamps: which one?


@pytest.fixture
async def lamps() -> AsyncIterator[dict[str, ShellySwitch]]:
    async with ShellySwitch("bedroom_lamp") as bedroom, ShellySwitch("office_lamp") as office:
        yield {"bedroom": bedroom, "office": office}


# Tests without a broker must not reach for one on the default port.
NO_MQTT: dict[str, dict[str, Any]] = {"api": {"mqtt_intake": False}, "discovery": {"mqtt": False}}


def lamp_entries(lamps: dict[str, ShellySwitch]) -> list[Any]:
    return [shelly_entry(device, name=f"{area.title()} Reading Lamp", area=area) for area, device in lamps.items()]


def signed_in(http: aiohttp.ClientSession, daemon: Daemon) -> str:
    token = (daemon.config.gateway.data_dir / TOKEN_FILE).read_text().strip()
    http.headers["Authorization"] = f"Bearer {token}"
    return daemon.server.url


async def answer_over_api(http: aiohttp.ClientSession, base: str, task_id: str, answer: str | None,
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Follow a task's events; answer its question (when `answer` is given); (the question, the finished event)."""
    asked: dict[str, Any] = {}
    async with http.get(f"{base}/api/tasks/{task_id}/events") as response:
        async for kind, data in events_of(response):
            if kind == "question" and data["state"] == "asked":
                asked = data
                if answer is not None:
                    async with http.get(f"{base}/api/questions") as listed:
                        assert [item["id"] for item in await listed.json()] == [data["id"]]
                    async with http.post(f"{base}/api/questions/{data['id']}", json={"answer": answer}) as reply:
                        assert reply.status == 200, await reply.text()
            elif kind == "finished":
                return asked, data
    raise AssertionError("the event stream ended before the task finished")


async def test_an_ambiguous_command_asks_which_one_over_the_api_and_switches_the_chosen_lamp(
        tmp_path, lamps, daemon_factory):
    daemon = await daemon_factory(make_config(tmp_path, devices=lamp_entries(lamps), **NO_MQTT))  # no model
    async with aiohttp.ClientSession() as http:
        base = signed_in(http, daemon)
        async with http.post(f"{base}/api/tasks", json={"text": COMMAND}) as response:
            task = await response.json()
        question, finished = await answer_over_api(http, base, task["id"], "Office Reading Lamp")

        assert question["choices"] == ["Bedroom Reading Lamp", "Office Reading Lamp"]
        assert "Which one" in question["question"]
        assert finished["status"] == "done" and "Office Reading Lamp" in finished["answer"]
        assert lamps["office"].output is True and lamps["bedroom"].output is False

        # An answer that is none of the choices is refused, and the question stays open for a good one.
        async with http.post(f"{base}/api/tasks", json={"text": COMMAND}) as response:
            second = await response.json()
        async with asyncio.timeout(10):
            while not daemon.gateway.pending_questions("api"):
                await asyncio.sleep(0.02)
        pending = daemon.gateway.pending_questions("api")[0]
        async with http.post(f"{base}/api/questions/{pending.id}", json={"answer": "the kitchen one"}) as reply:
            assert reply.status == 422 and "Bedroom Reading Lamp" in (await reply.json())["error"]["message"]
        async with http.post(f"{base}/api/questions/{pending.id}", json={"answer": "1"}) as reply:
            assert (reply.status, (await reply.json())["answer"]) == (200, "Bedroom Reading Lamp")  # by number
        _, finished = await answer_over_api(http, base, second["id"], None)
        assert finished["status"] == "done" and lamps["bedroom"].output is True


async def test_a_question_over_mqtt_is_answered_on_the_reply_topic_it_names(tmp_path, lamps, mqtt_broker,
                                                                              daemon_factory):
    daemon = await daemon_factory(make_config(tmp_path, devices=lamp_entries(lamps), broker=mqtt_broker))
    prefix = f"pyuse/{daemon.config.gateway.id}"
    with mqtt_listener(mqtt_broker, f"{prefix}/#") as (client, received):
        async with asyncio.timeout(10):
            while (await received.get())[0] != f"{prefix}/status":
                pass
        client.publish(f"{prefix}/task", json.dumps({"text": COMMAND, "id": "q1"}))
        async with asyncio.timeout(15):
            while True:
                topic, payload = await received.get()
                if topic.startswith(f"{prefix}/ask/"):
                    assert topic == f"{prefix}/ask/{payload['task_id']}"
                    assert payload["choices"] == ["Bedroom Reading Lamp", "Office Reading Lamp"]
                    client.publish(payload["reply_to"], "Bedroom Reading Lamp")
                if topic.endswith("/result"):
                    break
        assert payload["id"] == "q1" and payload["status"] == "done", payload
        assert lamps["bedroom"].output is True and lamps["office"].output is False


async def test_the_cli_answers_a_daemons_question_at_its_terminal(tmp_path, lamps, daemon_factory):
    """`pyuse ask` through a running daemon: the question reaches the CLI's asker, its answer goes back."""
    daemon = await daemon_factory(make_config(tmp_path, devices=lamp_entries(lamps), **NO_MQTT))
    client = DaemonClient(daemon.config)
    client.base_url = daemon.server.url
    asked: list[Question] = []

    async def terminal(question: Question) -> str:
        asked.append(question)
        return question.choices[1]

    task = await client.call("POST", "/api/tasks", {"text": COMMAND, "origin": "cli"})
    result = await client.follow_task(task["id"], ignore_events, None, terminal)

    assert result.status == "done" and [question.choices for question in asked] == [
        ["Bedroom Reading Lamp", "Office Reading Lamp"]]
    assert lamps["office"].output is True and lamps["bedroom"].output is False


async def test_the_terminal_numbers_the_choices_and_takes_the_number_typed(tmp_path, lamps, gateway_factory,
                                                                            monkeypatch):
    gateway = await gateway_factory(make_config(tmp_path, devices=lamp_entries(lamps), **NO_MQTT))
    read_end, write_end = os.pipe()
    os.write(write_end, b"2\n")
    out = io.StringIO()
    stdin = os.fdopen(read_end, encoding="utf-8")  # a pipe, as a piped `pyuse ask` has
    monkeypatch.setattr(sys, "stdin", stdin)
    console = Console(out)
    await console.start()
    try:
        result = await gateway.run_task(COMMAND, origin="cli", confirm=console.confirm, ask=console.ask)
    finally:
        os.close(write_end)

    assert "1. Bedroom Reading Lamp\n  2. Office Reading Lamp\n> " in out.getvalue()
    assert result.status == "done" and lamps["office"].output is True and lamps["bedroom"].output is False


async def test_with_nobody_to_ask_the_task_needs_input_and_its_answer_is_the_question(tmp_path, lamps,
                                                                                     gateway_factory):
    gateway = await gateway_factory(make_config(tmp_path, devices=lamp_entries(lamps), **NO_MQTT))

    result = await gateway.run_task(COMMAND, origin=automation_origin("evening"))

    assert result.status == "needs_input"
    assert "Bedroom Reading Lamp" in result.answer and "Office Reading Lamp" in result.answer
    assert "nobody can be asked" in result.error
    assert gateway.task(result.task_id).status == "needs_input"
    assert not lamps["bedroom"].output and not lamps["office"].output


async def test_an_unanswered_question_expires_and_the_task_needs_input(tmp_path, lamps, daemon_factory):
    daemon = await daemon_factory(make_config(tmp_path, devices=lamp_entries(lamps),
                                              policy={"confirm_timeout_s": 0.5}, **NO_MQTT))
    async with aiohttp.ClientSession() as http:
        base = signed_in(http, daemon)
        async with http.post(f"{base}/api/tasks", json={"text": COMMAND}) as response:
            task = await response.json()
        question, finished = await answer_over_api(http, base, task["id"], None)
        async with http.post(f"{base}/api/questions/{question['id']}", json={"answer": "1"}) as reply:
            assert reply.status == 404  # too late: nothing waits for it any more

    assert finished["status"] == "needs_input" and finished["answer"] == question["question"]
    assert "no answer within 0.5 s" in finished["error"]
    assert daemon.gateway.pending_questions("api") == []
    assert not lamps["bedroom"].output and not lamps["office"].output


async def test_model_code_asks_and_its_time_limit_stands_still_while_the_person_thinks(
        tmp_path, scripted_llm, shelly, daemon_factory):
    llm = await scripted_llm({"conversations": [{"match": "plug", "replies": [code_reply(
        'pick = ask("On or off?", choices=["on", "off"])\n'
        'devices["desk_plug"].rpc("Switch.Set", id=0, on=pick == "on")\nfinal_answer("turned " + pick)')]}]})
    daemon = await daemon_factory(make_config(tmp_path, llm, [shelly_entry(shelly)],
                                              sandbox={"exec_timeout_s": 1.0}, **NO_MQTT))
    async with aiohttp.ClientSession() as http:
        base = signed_in(http, daemon)
        async with http.post(f"{base}/api/tasks", json={"text": "do something with the plug"}) as response:
            task = await response.json()

        async def answer_late() -> None:
            async with asyncio.timeout(10):
                while not daemon.gateway.pending_questions("api"):
                    await asyncio.sleep(0.02)
            await asyncio.sleep(1.5)  # longer than the execution may run
            question = daemon.gateway.pending_questions("api")[0]
            assert (question.question, question.choices) == ("On or off?", ["on", "off"])
            async with http.post(f"{base}/api/questions/{question.id}", json={"answer": "On"}) as reply:
                assert reply.status == 200

        answering = asyncio.ensure_future(answer_late())
        _, finished = await answer_over_api(http, base, task["id"], None)
        await answering

    assert finished["status"] == "done" and finished["answer"] == "turned on", finished
    assert shelly.output is True


async def test_model_code_with_nobody_to_ask_gets_no_answer_and_can_say_so(tmp_path, scripted_llm, shelly,
                                                                          gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "colour", "replies": [code_reply(
        'try:\n    ask("Which colour?", ["red", "blue"])\nexcept NoAnswer as error:\n'
        '    final_answer(f"Which colour? ({error})")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)], **NO_MQTT))

    result = await gateway.run_task("pick a colour", origin=automation_origin("nightly"))

    assert result.status == "done" and result.answer.startswith("Which colour? (nobody can be asked"), result


async def test_the_page_offers_a_button_per_lamp_and_the_chosen_one_goes_on(tmp_path, lamps, daemon_factory,
                                                                         open_tab):  # noqa: F811
    daemon = await daemon_factory(make_config(tmp_path, devices=lamp_entries(lamps), **NO_MQTT))
    tab = await open_tab(daemon)
    page = tab.page

    await page.get_by_label(COMMAND_BOX).fill(COMMAND)
    await page.keyboard.press("Enter")
    dialog = page.locator("#question-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#question-text")).to_contain_text("Which one")
    await expect(dialog.get_by_role("button")).to_have_text(["Bedroom Reading Lamp", "Office Reading Lamp"])
    assert not lamps["bedroom"].output and not lamps["office"].output  # nothing before the answer
    await assert_accessible(page)
    await screenshot(page, "web-question-phone.png", full_page=False)

    await dialog.get_by_role("button", name="Office Reading Lamp").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#task-status")).to_have_text("done")
    assert lamps["office"].output is True and lamps["bedroom"].output is False
    tab.assert_clean()



async def test_a_command_that_names_a_light_but_no_level_asks_how_bright_and_sets_the_answer(tmp_path):
    """The demo's world: "set the floor lamp" asks how bright (a question without choices); "30" sets it to 30%.
    With nobody to ask, the task ends needs_input with that question."""
    from gateway.demo import demo_world

    asked: list[Question] = []

    async def thirty(question: Question) -> str:
        asked.append(question)
        return "30"

    async with demo_world(make_config(tmp_path, api={"port": 0})) as (daemon, home):
        result = await daemon.gateway.run_task("set the floor lamp", origin="demo", ask=thirty)
        dimmer = home.state()["living_room_floor_lamp"]
        unanswered = await daemon.gateway.run_task("把落地灯调一下", origin="demo")

    assert [(question.question, question.choices) for question in asked] == [
        ("How bright should Living Room Floor Lamp be (0-100%)?", [])]
    assert (result.status, result.answer) == ("done", "Living Room Floor Lamp is at 30%.")
    assert dimmer["dimmer"] == 30 and dimmer["power"] is True
    assert (unanswered.status, unanswered.answer) == ("needs_input", "Living Room Floor Lamp要调到多少（0-100%）？")
