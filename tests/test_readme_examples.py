"""Issue 15: every command the README shows for the demo, and every example `help` gives, works on the demo's own
world (the simulated home and lab, found by discovery, no model); a person's no reads as an answer."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from conftest import make_config

from gateway.demo import demo_world
from gateway.policy import ConfirmationRequest
from gateway.questions import Question

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[str]:
    """The quoted commands of the demo's paragraph ("Without a model, simple commands work — … —") and of the
    fast path's description, up to its counter-examples ("It never guesses"). Answers and words that are not
    commands are written in italics there, not in quotes."""
    text = README.read_text("utf-8")
    demo = re.search(r"simple commands work —(.*?)—", text, re.DOTALL)
    fast_path = re.search(r"\*\*The fast path\.\*\*(.*?)It never guesses", text, re.DOTALL)
    assert demo and fast_path, "the README's demo paragraph or fast path section moved: update this test"
    quoted = re.findall(r'"([^"]+)"', demo.group(1) + fast_path.group(1))
    return list(dict.fromkeys(" ".join(command.split()) for command in quoted))


def test_the_readme_shows_commands_to_try():
    commands = readme_commands()

    assert len(commands) >= 15 and "打开卧室的灯" in commands and "turn off all the lights" in commands


async def test_every_readme_and_help_example_works_on_the_demo_without_a_model(tmp_path):
    async with demo_world(make_config(tmp_path, api={"port": 0})) as (daemon, _):
        gateway = daemon.gateway
        assert gateway.llm is None
        help_examples = (await gateway.help()).examples
        assert "turn off all the lights" in help_examples and "关掉所有的灯" in help_examples
        async with (aiohttp.ClientSession(headers=token_header(daemon)) as http,
                    http.get(f"{server_url(daemon)}/api/help") as reply):
            page_help = await reply.json()
        assert reply.status == 200 and page_help["examples"] == help_examples and page_help["text"]

        asked: list[str] = []

        async def first_choice(question: Question) -> str:
            """A person at the prompt, answering a question the command leaves open with its first choice."""
            asked.append(question.question)
            return question.choices[0] if question.choices else "50"

        outcomes = {}
        for command in [*readme_commands(), *help_examples]:
            result = await gateway.run_task(command, origin="demo", ask=first_choice)
            outcomes[command] = (result.status, result.answer, result.error)

    # Each is done: at once, or once the person has answered what it asked.
    not_working = {command: outcome for command, outcome in outcomes.items() if outcome[0] != "done"}
    assert not_working == {}, asked


async def test_a_no_to_a_confirmation_ends_the_task_with_that_as_its_answer(tmp_path):
    async def say_no(request: ConfirmationRequest) -> bool:
        return False

    async with demo_world(make_config(tmp_path, api={"port": 0})) as (daemon, home):
        result = await daemon.gateway.run_task("unlock the front door", origin="demo", confirm=say_no)
        lock_state = home.state()["hallway_front_door_lock"]

    assert result.answer == "Not done: you declined unlock on Hallway Front Door Lock."
    assert result.status == "cancelled" and result.error is None
    assert "UNLOCK" not in str(lock_state).upper().replace("LOCK_STATE", "")


def server_url(daemon) -> str:
    assert daemon.server is not None
    return daemon.server.url


def token_header(daemon) -> dict[str, str]:
    from gateway.api.auth import read_token

    return {"Authorization": f"Bearer {read_token(daemon.gateway.config.gateway.data_dir)}"}
