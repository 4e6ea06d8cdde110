"""Issue 7: saved skills. Checked on the way in, saved from a solved task by the scripted model, run without it."""

from __future__ import annotations

import json
import os

import pytest

from conftest import code_reply, make_config, shelly_entry
from gateway.agent.skills import SkillError, SkillLibrary, check_skill

BENCH_READY = '''TRIGGERS = ["get the bench ready", "bench ready"]


def get_bench_ready() -> str:
    """Switch the desk plug on for a bench session."""
    plug = devices["desk_plug"]
    plug.rpc("Switch.Set", id=0, on=True)
    return "The bench is ready: the desk plug is on."
'''

BLINK = '''TRIGGERS = ["blink the desk plug {times} times"]


def blink_desk_plug(times: int) -> str:
    """Switch the desk plug on and off `times` times, ending off."""
    plug = devices["desk_plug"]
    for _ in range(times):
        plug.rpc("Switch.Set", id=0, on=True)
        plug.rpc("Switch.Set", id=0, on=False)
    return f"Blinked {times} times."
'''


def skill_reply(source: str) -> str:
    return f"Here is the skill.\n```python\n{source}```"


# checking a skill's file
@pytest.mark.parametrize("source, problem", [
    ("def xx(): pass\nprint(1)\n", "only imports, TRIGGERS"),
    ("def other() -> str:\n    \"\"\"Doc.\"\"\"\n", "must be named xx() like its file"),
    ("TRIGGERS = ['say x']\n", "defines no function named xx()"),
    ("def xx(level) -> str:\n    \"\"\"Doc.\"\"\"\n", "parameter 'level' needs a type"),
    ("def xx(*args: int) -> str:\n    \"\"\"Doc.\"\"\"\n", "named parameters only"),
    ("def xx() -> str:\n    return 'no docstring'\n", "needs a docstring"),
    ("def xx() -> str:\n    \"\"\"Doc.\"\"\"\n    return secrets.token_hex()\n", "uses names a job does not have: secrets"),
    ("TRIGGERS = 'say x'\ndef xx() -> str:\n    \"\"\"Doc.\"\"\"\n", "TRIGGERS must be a list"),
    ("def xx( -> str:\n", "xx.py:1"),
])
def test_a_skill_that_does_not_check_out_is_refused_with_the_reason(source, problem):
    with pytest.raises(SkillError) as error:
        check_skill("xx", source)
    assert problem in str(error.value)


def test_a_skill_may_use_the_jobs_names_its_imports_helpers_and_other_skills():
    source = ('import json\n\n\ndef _level(value: int) -> int:\n    return max(0, min(100, value))\n\n\n'
              'def xx(level: int, note: str = "") -> str:\n    """Doc."""\n'
              '    sleep(0)\n    get_bench_ready()\n    return json.dumps([_level(level), note, len(devices)])\n')
    skill = check_skill("xx", source, {"get_bench_ready"})
    assert skill.params == {"level": "int", "note": "str"}
    assert skill.stub() == 'def xx(level: int, note: str) -> str:\n    """Doc."""'


@pytest.mark.parametrize("said, arguments", [
    ("blink the desk plug 3 times", {"times": 3}),
    ("Blink the desk plug three times!", {"times": 3}),
    ("blink the desk plug many times", None),  # not an int: no match, no guess
    ("blink the lamp 3 times", None),
])
def test_trigger_phrases_take_their_parameters_from_the_command(said, arguments):
    assert check_skill("blink_desk_plug", BLINK).match(said) == arguments


def test_the_library_skips_a_broken_file_and_rechecks_an_edited_one(tmp_path):
    library = SkillLibrary(tmp_path)
    (tmp_path / "get_bench_ready.py").write_text(BENCH_READY)
    (tmp_path / "broken.py").write_text("import os\nos.system('true')\n")
    assert [skill.name for skill in library.load()] == ["get_bench_ready"]
    assert library.errors and library.errors[0].startswith("broken.py:2")

    (tmp_path / "broken.py").write_text('def broken() -> str:\n    """Fixed."""\n    return "ok"\n')
    assert [skill.name for skill in library.load()] == ["broken", "get_bench_ready"] and library.errors == []


def test_two_skills_saying_the_same_command_are_not_guessed_between(tmp_path):
    library = SkillLibrary(tmp_path)
    (tmp_path / "get_bench_ready.py").write_text(BENCH_READY)
    (tmp_path / "other_bench.py").write_text(BENCH_READY.replace("get_bench_ready", "other_bench"))
    assert library.match("get the bench ready") is None


# end to end, with the scripted model and a real Shelly simulator
async def test_a_solved_task_becomes_a_skill_and_the_same_command_then_needs_no_model(tmp_path, scripted_llm,
                                                                                     shelly, gateway_factory):
    llm = await scripted_llm({"conversations": [
        {"match": "save as a skill", "replies": [skill_reply(BENCH_READY)]},
        {"match": "get the bench ready", "replies": [
            code_reply('devices["desk_plug"].rpc("Switch.Set", id=0, on=True)\n'
                       'final_answer("The bench is ready.")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)]))

    first = await gateway.run_task("get the bench ready")
    assert first.status == "done" and not first.processed_locally and shelly.output is True
    skill = await gateway.save_skill(first.task_id)
    assert skill.name == "get_bench_ready"
    assert (tmp_path / "data" / "skills" / "get_bench_ready.py").read_text() == BENCH_READY
    assert gateway.store.skill_records()["get_bench_ready"]["task_id"] == first.task_id
    saving = llm.requests[-1]["messages"][1]["content"]
    assert saving.startswith("Save as a skill: get the bench ready") and "Switch.Set" in saving
    shelly.output = False
    calls = len(llm.requests)

    again = await gateway.run_task("get the bench ready")

    assert len(llm.requests) == calls  # zero model calls
    assert again.status == "done" and again.processed_locally and again.skill == "get_bench_ready"
    assert shelly.output is True  # the same device effect
    assert again.answer == "The bench is ready: the desk plug is on."
    audit = gateway.store.audit_rows(again.task_id)
    assert [(row.device_id, row.target, row.outcome) for row in audit] == [("desk_plug", "Switch.Set", "ok")]
    assert gateway.store.skill_records()["get_bench_ready"]["runs"] == 1


async def test_auto_save_always_saves_a_parameterised_skill_and_its_arguments_come_from_the_words(
        tmp_path, scripted_llm, shelly, gateway_factory):
    broken_first = BLINK.replace("(times: int)", "(times)")
    llm = await scripted_llm({"conversations": [
        {"match": "save as a skill", "replies": [skill_reply(broken_first), skill_reply(BLINK)]},
        {"match": "blink the desk plug", "replies": [
            code_reply('p = devices["desk_plug"]\nfor _ in range(2):\n'
                       '    p.rpc("Switch.Set", id=0, on=True)\n    p.rpc("Switch.Set", id=0, on=False)\n'
                       'final_answer("Blinked twice.")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)],
                                                skills={"auto_save": "always"}))

    first = await gateway.run_task("blink the desk plug 2 times")

    assert first.status == "done" and first.skill == "blink_desk_plug"
    correction = llm.requests[-1]["messages"][-1]["content"]
    assert "parameter 'times' needs a type" in correction  # the gateway told the model what was wrong
    calls = len(llm.requests)

    again = await gateway.run_task("blink the desk plug three times")

    assert len(llm.requests) == calls
    assert again.status == "done" and again.answer == "Blinked 3 times."
    assert len(gateway.store.audit_rows(again.task_id)) == 6


async def test_the_model_sees_skills_as_stubs_and_its_code_can_call_them(tmp_path, scripted_llm, shelly,
                                                                         gateway_factory):
    llm = await scripted_llm({"conversations": [{"match": "prepare for soldering", "replies": [
        code_reply('final_answer(get_bench_ready() + " Iron heating.")')]}]})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)]))
    (tmp_path / "data" / "skills").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "skills" / "get_bench_ready.py").write_text(BENCH_READY)

    result = await gateway.run_task("prepare for soldering")

    system = llm.requests[0]["messages"][0]["content"]
    assert 'def get_bench_ready() -> str:\n    """Switch the desk plug on for a bench session."""' in system
    assert "devices[\"desk_plug\"].rpc" not in system  # a stub, not the source
    assert result.status == "done" and result.answer == "The bench is ready: the desk plug is on. Iron heating."
    assert shelly.output is True


async def test_a_failing_skill_is_reported_not_retried_and_an_edit_applies_to_the_next_job(
        tmp_path, scripted_llm, shelly, gateway_factory):
    llm = await scripted_llm({"conversations": []})
    gateway = await gateway_factory(make_config(tmp_path, llm, [shelly_entry(shelly)]))
    path = tmp_path / "data" / "skills" / "get_bench_ready.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BENCH_READY.replace('devices["desk_plug"]', 'devices["missing_plug"]'))

    failed = await gateway.run_task("get the bench ready")

    assert failed.status == "failed" and failed.skill == "get_bench_ready"
    assert "missing_plug" in failed.error
    assert llm.requests == []  # no fallback to the model, no silent retry
    assert gateway.store.skill_records()["get_bench_ready"]["failures"] == 1
    assert shelly.output is False

    path.write_text(BENCH_READY)
    os.utime(path, ns=(1, 1))  # a different mtime even within the clock's resolution
    fixed = await gateway.run_task("get the bench ready")
    assert fixed.status == "done" and shelly.output is True


async def test_pyuse_skills_lists_shows_runs_and_deletes(tmp_path, shelly):
    from test_cli import pyuse

    config = tmp_path / "pyuse.toml"
    config.write_text(f'[gateway]\ndata_dir = "{tmp_path / "data"}"\n[discovery]\nmdns = false\nmqtt = false\n'
                      f'[[devices]]\nid = "desk_plug"\nname = "Desk Plug"\nkind = "shelly_switch"\n'
                      f'host = "{shelly.host}"\nport = {shelly.port}\n')
    skills = tmp_path / "data" / "skills"
    skills.mkdir(parents=True)
    (skills / "blink_desk_plug.py").write_text(BLINK)
    (skills / "broken.py").write_text("x = 1\n")

    code, out, _ = await pyuse("skills", "list", "-c", str(config))
    assert code == 0 and "blink_desk_plug(times: int)" in out and '"blink the desk plug {times} times"' in out
    assert "skipped: broken.py:1" in out
    code, out, _ = await pyuse("skills", "list", "--json", "-c", str(config))
    listing = json.loads(out)
    assert listing["skills"][0]["params"] == {"times": "int"} and len(listing["errors"]) == 1

    code, out, err = await pyuse("skills", "run", "blink_desk_plug", "--arg", "times=two", "-c", str(config))
    assert code == 2 and "times must be int, got 'two'" in err
    code, out, _ = await pyuse("skills", "run", "blink_desk_plug", "--arg", "times=2", "-c", str(config))
    assert code == 0 and "Blinked 2 times." in out and "skill blink_desk_plug" in out

    code, out, _ = await pyuse("skills", "show", "blink_desk_plug", "-c", str(config))
    assert code == 0 and "def blink_desk_plug(times: int)" in out and "1 run(s), 0 failed" in out
    code, out, _ = await pyuse("skills", "delete", "blink_desk_plug", "-c", str(config))
    assert code == 0 and not (skills / "blink_desk_plug.py").exists()
    code, _, err = await pyuse("skills", "show", "blink_desk_plug", "-c", str(config))
    assert code == 1 and "no skill named 'blink_desk_plug'" in err
