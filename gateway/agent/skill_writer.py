"""Turning a finished task into a saved skill, through the model: the code that worked becomes a function.

The model sees the task, the code that ran and what it printed, and writes the skill file; the gateway
checks it (gateway.agent.skills.check_skill) and that one of its triggers says the original command, and
tells the model what is wrong until it gets it right or the attempts run out.
"""

from __future__ import annotations

import ast
import json
import logging

from gateway.agent.llm import LLMClient
from gateway.agent.parse import parse_reply
from gateway.agent.prompt import class_stub, fence, prompt_file
from gateway.agent.skills import Skill, SkillError, SkillLibrary, check_skill
from gateway.devices.docs import DocLibrary
from gateway.errors import GatewayError
from gateway.store import Store

log = logging.getLogger(__name__)

ATTEMPTS = 3
REQUEST = "Save as a skill: {task}"


class SkillWriteError(GatewayError):
    """The task cannot become a skill; the message says why."""


def _conversation(text: str, steps: list[tuple[str, str]], answer: str) -> str:
    turns = "\n\n".join(f"Code (turn {number}):\n```python\n{code}\n```\nIt printed:\n"
                        + (fence(output) if output else "(nothing)")
                        for number, (code, output) in enumerate(steps, start=1))
    return f"{REQUEST.format(task=text)}\n\n{turns}\n\nAnswer given to the user: {answer}"


def _classes(store: Store, docs: DocLibrary, task_id: str) -> str:
    """The capability stubs of the kinds of device the task called."""
    used = {row.device_id for row in store.audit_rows(task_id)}
    kinds = {json.loads(record)["kind"] for device_id, _, _, record in store.load_devices() if device_id in used}
    return "\n".join(class_stub(doc) for doc in (docs.get(kind) for kind in sorted(kinds)) if doc) or "(none)"


def _name_of(source: str) -> str:
    """The skill's name: its one public top-level function."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        raise SkillError(f"line {error.lineno}: {error.msg}") from None
    public = [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]
    if len(public) != 1:
        raise SkillError(f"the file must define exactly one public function; it defines {len(public)}")
    return public[0]


async def write_skill(llm: LLMClient, store: Store, library: SkillLibrary, docs: DocLibrary, task_id: str,
                      replace: str | None = None) -> tuple[Skill, int]:
    """Ask the model for a skill from finished task `task_id`, check and save it; returns it and the tokens used.

    `replace` names a skill this one supersedes (an automation's that failed): it may reuse that name, and is
    deleted when the new one has another; any other existing name is refused, never overwritten."""
    task = store.get_task(task_id)
    if task is None:
        raise SkillWriteError(f"no task {task_id!r}")
    if task.status != "done":
        raise SkillWriteError(f"task {task.id} is {task.status}; only a task that succeeded can become a skill")
    if task.processed_locally:
        raise SkillWriteError(f"task {task.id} needed no model; it is already fast")
    steps = [(step.code, step.observation or "") for step in store.steps(task.id) if step.code]
    if not steps:
        raise SkillWriteError(f"task {task.id} ran no code; there is nothing to save")
    system = (prompt_file("skill.md").replace("{handles}", prompt_file("handles.pyi"))
              .replace("{classes}", _classes(store, docs, task.id)))
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": _conversation(task.text, steps, task.answer or "")}]
    existing = {skill.name for skill in library.load()}
    tokens = 0
    problem = ""
    for _ in range(ATTEMPTS):
        completion = await llm.complete(messages)
        tokens += completion.prompt_tokens + completion.completion_tokens
        source = parse_reply(completion.text).code
        try:
            if source is None:
                raise SkillError("the reply holds no ```python block")
            name = _name_of(source)
            if name in existing and name != replace:
                raise SkillError(f"a skill named {name} exists already; name the function differently")
            skill = check_skill(name, source + "\n", existing - {name})
            if skill.match(task.text) is None:
                raise SkillError(f"no phrase in TRIGGERS matches the original task {task.text!r}")
        except SkillError as error:
            problem = str(error)
            log.info("skill from task %s rejected: %s", task.id, problem)
            messages += [{"role": "assistant", "content": completion.text},
                         {"role": "user", "content": f"That file does not check out: {problem}. Reply with the "
                                                     "corrected file in one ```python block."}]
            continue
        library.save(skill)
        store.record_skill(skill.name, task.id)
        if replace and replace != skill.name and library.delete(replace):
            store.forget_skill(replace)
        log.info("skill %s saved from task %s", skill.name, task.id)
        return skill, tokens
    raise SkillWriteError(f"the model did not write a usable skill in {ATTEMPTS} attempts; last problem: {problem}")
