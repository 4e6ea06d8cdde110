"""Saved skills as the intakes use them: listed with how they ran, looked up by name with why one is missing,
given arguments checked against their parameters, turned into a task's work, saved from a task, deleted.

The one place that knows a skill is a file in the library and a row of run records in the store: the API, the
CLI and automations all come here, so they name a missing skill and read a bad argument the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.agent.llm import LLMClient
from gateway.agent.skill_writer import SkillWriteError, write_skill
from gateway.agent.skills import FALSE_WORDS, TRUE_WORDS, Skill, SkillLibrary, convert_parameter
from gateway.config import Config
from gateway.devices.docs import DocLibrary
from gateway.errors import GatewayError
from gateway.store import Store
from gateway.tasks import ModelFree, SkillArgumentError


class SkillNotFound(GatewayError, KeyError):
    """No skill by that name checks out; args[0] says why (the file's problem, or that there is none)."""

    def __str__(self) -> str:  # the message itself, not KeyError's quoted repr of it
        return str(self.args[0])


@dataclass
class SkillEntry:
    """A skill with its run records."""

    skill: Skill
    runs: int = 0
    failures: int = 0
    task_id: str | None = None  # the task it was saved from
    last_error: str | None = None


def convert_arguments(skill: Skill, given: dict[str, Any]) -> dict[str, Any]:
    """`given` (strings from a command line, or JSON values) converted to the skill's parameter types; raises
    SkillArgumentError naming the parameter (an unknown yes/no word among them)."""
    unknown = sorted(set(given) - set(skill.params))
    if unknown:
        raise SkillArgumentError(f"{skill.name}() has no parameter {unknown[0]!r}; its parameters: "
                                 f"{', '.join(skill.params) or 'none'}")
    missing = [name for name in skill.params if name not in given]
    if missing:
        raise SkillArgumentError(f"{skill.name}() needs {', '.join(missing)} (pass --arg {missing[0]}=...)")
    return {name: _convert(skill.name, name, kind, given[name]) for name, kind in skill.params.items()}


def _convert(skill: str, name: str, kind: str, value: Any) -> Any:
    try:
        return convert_parameter(value, kind)
    except ValueError:
        accepted = f" ({', '.join(TRUE_WORDS + FALSE_WORDS)})" if kind == "bool" else ""
        raise SkillArgumentError(f"{skill}(): {name} must be {kind}{accepted}, got {value!r:.80}") from None


def skill_call(skill: Skill, arguments: dict[str, Any]) -> ModelFree:
    """The work that runs `skill` with `arguments` (already converted) in a job, without a model."""
    call = ", ".join(f"{name}={value!r}" for name, value in arguments.items())
    return ModelFree(f"The saved skill {skill.name} matches; run without a model.",
                     f"final_answer({skill.name}({call}))", str, skill.name)


class SavedSkills:
    """The skills folder and the store's run records; `store` is None when a data dir has no store yet. `docs`
    gives the device docs a skill is written against, read only when one is saved."""

    def __init__(self, library: SkillLibrary, store: Store | None, docs: Callable[[], DocLibrary]) -> None:
        self.library = library
        self.store = store
        self.docs = docs

    @property
    def directory(self) -> Path:
        return self.library.directory

    def entries(self) -> tuple[list[SkillEntry], list[str]]:
        """Every skill that checks out with its records, and one problem per file that does not."""
        skills = self.library.load()
        records = self.store.skill_records() if self.store else {}
        return [self._entry(skill, records.get(skill.name, {})) for skill in skills], list(self.library.errors)

    def entry(self, skill: Skill) -> SkillEntry:
        return self._entry(skill, (self.store.skill_records() if self.store else {}).get(skill.name, {}))

    @staticmethod
    def _entry(skill: Skill, record: dict[str, Any]) -> SkillEntry:
        return SkillEntry(skill, record.get("runs", 0), record.get("failures", 0), record.get("task_id"),
                          record.get("last_error"))

    def get(self, name: str) -> Skill:
        """The skill named `name`; raises SkillNotFound with its file's problem, or saying there is none."""
        skill = self.library.get(name)
        if skill is None:
            problems = [error for error in self.library.errors if error.startswith(f"{name}.py")]
            raise SkillNotFound(problems[0] if problems else f"no skill named {name!r} (see `pyuse skills list`)")
        return skill

    def work(self, name: str, arguments: dict[str, Any]) -> tuple[str, ModelFree]:
        """The task text and work for running skill `name`; raises SkillNotFound or SkillArgumentError."""
        skill = self.get(name)
        arguments = convert_arguments(skill, arguments)
        call = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
        return f"skill {name}({call})", skill_call(skill, arguments)

    def delete(self, name: str) -> Path:
        """Delete the skill's file and its run records; returns the file; raises SkillNotFound."""
        if not self.library.delete(name):
            raise SkillNotFound(f"no skill named {name!r}")
        if self.store is not None:
            self.store.forget_skill(name)
        return self.directory / f"{name}.py"

    async def save(self, llm: LLMClient, task_id: str, replaces: str | None = None) -> tuple[Skill, int]:
        """Have the model turn finished task `task_id` into a saved skill; returns it and the tokens it took.
        Raises SkillWriteError or LLMError."""
        if self.store is None:
            raise SkillWriteError(f"no task {task_id!r}: there are no tasks yet")
        return await write_skill(llm, self.store, self.library, self.docs(), task_id, replaces)


@contextmanager
def skills_of(config: Config) -> Iterator[SavedSkills]:
    """The saved skills of `config`'s data dir, for a one-shot command with no gateway of its own."""
    store = Store(config.db_path) if config.db_path.exists() else None
    try:
        yield SavedSkills(SkillLibrary(config.gateway.data_dir / "skills"), store,
                          lambda: DocLibrary.load([config.gateway.data_dir / "device_docs"]))
    finally:
        if store is not None:
            store.close()
