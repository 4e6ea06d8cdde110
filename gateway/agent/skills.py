"""Saved skills: code that solved a task once, kept as a named, parameterised function, reused without a model.

A skill is a file `<data_dir>/skills/<name>.py`:

    TRIGGERS = ["set the desk lamp to {level} percent", "desk lamp {level}%"]

    def desk_lamp_level(level: int) -> str:
        \"\"\"Set the desk lamp to `level` percent.\"\"\"
        ...
        return f"The desk lamp is at {level}%."

The gateway never runs a skill itself: it checks the file with ast and symtable (one public function named
like the file, typed parameters, a docstring, no statement that would run on load, and no global besides the
job's own: devices, sleep, DeviceError, builtins, its imports, other skills, its private helpers) and hands
the source to sandbox jobs, where it becomes a function every turn can call. Every job of every task loads every
skill, so nothing may run on load: the top level holds only imports, TRIGGERS (a literal list) and plain `def`s,
with no decorators, default values that are literals only (a number, a string, True, False or None) and
annotations that only name builtin types (`int`, `str | None`, `list[str]`), never an expression with calls.
Files are read again for each new job, so an edited skill takes effect at once; one that no longer checks out is
reported and skipped.
"""

from __future__ import annotations

import ast
import builtins
import logging
import math
import re
import symtable
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gateway.agent.numbers import normalize_numbers
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z][a-z0-9_]{1,60}$")
JOB_GLOBALS = {"devices", "sleep", "DeviceError", "final_answer", "ask", "NoAnswer"}
PARAMETER_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
TRUE_WORDS = ("true", "on", "yes", "1")
FALSE_WORDS = ("false", "off", "no", "0")
# Names an annotation may use: evaluating them when the def runs calls nothing.
ANNOTATION_NAMES = {*PARAMETER_TYPES, "list", "dict", "tuple", "set", "bytes", "object"}


class SkillError(GatewayError, ValueError):
    """A skill that does not check out; the message names the file and the problem."""


@dataclass
class Skill:
    name: str
    source: str
    doc: str
    params: dict[str, str]  # name -> int | float | str | bool
    triggers: list[str] = field(default_factory=list)

    def stub(self) -> str:
        signature = ", ".join(f"{name}: {kind}" for name, kind in self.params.items())
        return f"def {self.name}({signature}) -> str:\n    \"\"\"{self.doc}\"\"\""

    @cached_property
    def patterns(self) -> list[re.Pattern[str]]:
        """Each trigger as a regex on normalised text; {param} matches any words."""
        compiled = []
        for trigger in self.triggers:
            parts = [rf"(?P<{piece[1:-1]}>.+?)" if re.fullmatch(r"\{\w+\}", piece) else re.escape(_normalise(piece))
                     for piece in re.split(r"(\{\w+\})", trigger) if piece.strip()]
            compiled.append(re.compile("^" + " ?".join(parts) + "$"))
        return compiled

    def match(self, text: str) -> dict[str, Any] | None:
        """The arguments when `text` says one of the triggers, converted to the parameters' types."""
        spoken = _normalise(text)
        for pattern in self.patterns:
            found = pattern.match(spoken)
            if found:
                try:
                    return {name: convert_parameter(value.strip().rstrip("%"), self.params[name])
                            for name, value in found.groupdict().items()}
                except (KeyError, ValueError):
                    continue
        return None


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w%°.\-]+", " ", normalize_numbers(text).casefold()).split())


def convert_parameter(value: Any, kind: str) -> Any:
    """`value` (words from a command or a command line, or a JSON value) as a parameter of type `kind`; raises
    ValueError when it is none: an unknown yes/no word, a number that is not one or not finite."""
    if kind == "bool" and isinstance(value, str):
        word = value.strip().casefold()
        if word not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(f"expected one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
        return word in TRUE_WORDS
    try:
        converted = PARAMETER_TYPES[kind](value)
    except (TypeError, OverflowError) as exc:  # OverflowError: int(1e400)
        raise ValueError(str(exc)) from None
    if kind == "float" and not math.isfinite(converted):  # "inf", "nan", "1e400"
        raise ValueError("not a finite number")
    return converted


def check_skill(name: str, source: str, other_skills: Collection[str] = frozenset()) -> Skill:
    """Parse and vet a skill's source; raises SkillError saying what is wrong."""
    if not NAME.match(name):
        raise SkillError(f"{name!r}: a skill's name is lowercase letters, digits and _ (2-61 characters)")
    try:
        tree = ast.parse(source, f"{name}.py")
    except SyntaxError as error:
        raise SkillError(f"{name}.py:{error.lineno}: {error.msg}") from None
    triggers: list[str] = []
    function: ast.FunctionDef | None = None
    helpers, imported = set(), set()
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a docstring
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["TRIGGERS"]:
            triggers = _string_list(node.value, name)
        elif isinstance(node, ast.FunctionDef) and node.name == name:
            function = node
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("_"):
            helpers.add(node.name)
        elif isinstance(node, ast.FunctionDef):
            raise SkillError(f"{name}.py:{node.lineno}: defines {node.name}(); the skill's function must be named "
                             f"{name}() like its file, and helpers' names start with _")
        else:
            raise SkillError(f"{name}.py:{node.lineno}: only imports, TRIGGERS, the function {name}() and private "
                             "helpers may be at the top level (nothing may run when the skill is loaded)")
    if function is None:
        raise SkillError(f"{name}.py: defines no function named {name}()")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            _check_definition(node, name)
    doc = ast.get_docstring(function)
    if not doc:
        raise SkillError(f"{name}.py:{function.lineno}: {name}() needs a docstring saying what it does")
    params = _parameters(function, name)
    allowed = JOB_GLOBALS | set(dir(builtins)) | imported | helpers | set(other_skills) | {name}
    stray = sorted(_globals_used(source, name) - allowed)
    if stray:
        raise SkillError(f"{name}.py: uses names a job does not have: {', '.join(stray)}")
    return Skill(name=name, source=source, doc=doc.splitlines()[0], params=params, triggers=triggers)


def _string_list(node: ast.expr, name: str) -> list[str]:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise SkillError(f"{name}.py:{node.lineno}: TRIGGERS must be a list of phrases")
    return value


def _check_definition(function: ast.FunctionDef, name: str) -> None:
    """A `def` runs its decorators, default values and annotations when the skill loads, in every job, under
    whatever task that is: only inert ones pass."""
    where = f"{name}.py:{function.lineno}: {function.name}()"
    if function.decorator_list:
        raise SkillError(f"{where}: decorators are not allowed (they would run whenever a job loads the skill); "
                         "call the helper from inside the function instead")
    arguments = function.args
    for default in (*arguments.defaults, *arguments.kw_defaults):
        if default is not None and not _literal(default):
            raise SkillError(f"{where}: a default value must be a literal (a number, a string, True, False or None); "
                             "compute it inside the function instead")
    every = (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg)
    annotations = [argument.annotation for argument in every if argument is not None] + [function.returns]
    for annotation in annotations:
        if annotation is not None and not _inert_annotation(annotation, top=True):
            raise SkillError(f"{where}: an annotation may only name builtin types "
                             f"({', '.join(sorted(ANNOTATION_NAMES))}, None; e.g. `str | None`, `list[str]`)")


def _literal(node: ast.expr) -> bool:
    """A constant, or a signed number: nothing to run."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
        return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(
            node.value, bool)
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None)))


def _inert_annotation(node: ast.expr, top: bool = False) -> bool:
    """`int`, `None`, `str | None`, `list[str]`, `dict[str, float]`, or a string (never evaluated), at the top."""
    if isinstance(node, ast.Name):
        return node.id in ANNOTATION_NAMES
    if isinstance(node, ast.Constant):
        return node.value is None or (top and isinstance(node.value, str))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _inert_annotation(node.left) and _inert_annotation(node.right)
    if isinstance(node, ast.Subscript):
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return (isinstance(node.value, ast.Name) and node.value.id in ANNOTATION_NAMES
                and all(_inert_annotation(item) for item in items))
    return False


def _parameters(function: ast.FunctionDef, name: str) -> dict[str, str]:
    arguments = function.args
    if arguments.vararg or arguments.kwarg or arguments.posonlyargs:
        raise SkillError(f"{name}.py:{function.lineno}: {name}() takes named parameters only (no *args/**kwargs)")
    params = {}
    for argument in arguments.args + arguments.kwonlyargs:
        kind = getattr(argument.annotation, "id", None)
        if kind not in PARAMETER_TYPES:
            raise SkillError(f"{name}.py:{function.lineno}: parameter {argument.arg!r} needs a type: int, float, "
                             "str or bool")
        params[argument.arg] = kind
    return params


def _globals_used(source: str, name: str) -> set[str]:
    """Names the skill's functions read from the module or builtins (found by the compiler's own tables)."""
    used: set[str] = set()
    stack = [symtable.symtable(source, f"{name}.py", "exec")]
    while stack:
        table = stack.pop()
        if table.get_type() == "function":
            used |= {symbol.get_name() for symbol in table.get_symbols() if symbol.is_global()}
        stack.extend(table.get_children())
    return used


class SkillLibrary:
    """The skills in a directory, looked at whenever asked, so an edit applies to the next job.

    A file is checked again only when its size or modification time changed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.errors: list[str] = []
        self._checked: dict[str, tuple[tuple[int, int, frozenset[str]], Skill | str]] = {}

    def load(self) -> list[Skill]:
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = sorted(self.directory.glob("*.py"))
        names = frozenset(path.stem for path in paths)
        skills: list[Skill] = []
        errors: list[str] = []
        for path in paths:
            try:
                stat = path.stat()
            except FileNotFoundError:  # deleted while listing
                continue
            stamp = (stat.st_mtime_ns, stat.st_size, names)
            seen = self._checked.get(path.stem)
            if seen is None or seen[0] != stamp:
                seen = (stamp, self._check(path, names))
                if isinstance(seen[1], str):
                    log.warning("skill skipped: %s", seen[1])
                self._checked[path.stem] = seen
            if isinstance(seen[1], Skill):
                skills.append(seen[1])
            else:
                errors.append(seen[1])
        self.errors = errors
        return skills

    @staticmethod
    def _check(path: Path, names: frozenset[str]) -> Skill | str:
        try:
            return check_skill(path.stem, path.read_text(encoding="utf-8"), names - {path.stem})
        except (SkillError, UnicodeDecodeError, OSError) as error:
            return str(error)

    def get(self, name: str) -> Skill | None:
        return next((skill for skill in self.load() if skill.name == name), None)

    def save(self, skill: Skill) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{skill.name}.py"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(skill.source, encoding="utf-8")
        temporary.replace(path)  # atomic: a crash never leaves half a skill
        return path

    def delete(self, name: str) -> bool:
        path = self.directory / f"{name}.py"
        if NAME.match(name) and path.exists():
            path.unlink()
            return True
        return False

    def match(self, text: str) -> tuple[Skill, dict[str, Any]] | None:
        """The one skill whose triggers `text` says, with its arguments; when several do, none (never guess)."""
        found = [(skill, arguments) for skill in self.load() if (arguments := skill.match(text)) is not None]
        if len(found) > 1:
            log.warning("%r matches the triggers of %s; left to the model", text,
                        ", ".join(skill.name for skill, _ in found))
        return found[0] if len(found) == 1 else None
