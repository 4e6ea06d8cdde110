"""SQLite store (WAL): tasks, their steps, the audit trail of every handle call, devices, skills, automations.

Each write commits at once, so a crash loses at most the step being written, never a finished task. The store
holds every command, answer and device call: its files (with SQLite's -wal and -shm) are the gateway user's
alone (mode 600), and so is the data dir it lives in (mode 700: the API token, skills every job loads, device
docs), created so or tightened when opened.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 5
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    origin TEXT NOT NULL,
    status TEXT NOT NULL,
    answer TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    turns INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    model TEXT,
    sandbox_layers TEXT,
    processed_locally INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE TABLE IF NOT EXISTS steps (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    turn INTEGER NOT NULL,
    thought TEXT NOT NULL DEFAULT '',
    code TEXT,
    observation TEXT,
    llm_ms REAL,
    exec_ms REAL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    prompt_estimate INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    PRIMARY KEY (task_id, turn)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    task_id TEXT,
    device_id TEXT,
    method TEXT NOT NULL,
    target TEXT,
    args TEXT,
    outcome TEXT NOT NULL,
    detail TEXT,
    duration_ms REAL
);
CREATE INDEX IF NOT EXISTS audit_task ON audit(task_id);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    removed INTEGER NOT NULL DEFAULT 0,
    record TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS skills (
    name TEXT PRIMARY KEY,
    task_id TEXT,
    created_at REAL NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    last_run_at REAL,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS automations (
    name TEXT PRIMARY KEY,
    definition TEXT,
    skill TEXT,
    stopped TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
"""

FINISHED = ("done", "failed", "timeout", "cancelled", "interrupted", "needs_input")

# Statements that bring a store of version N-1 to version N.
MIGRATIONS = {2: ["ALTER TABLE tasks ADD COLUMN sandbox_layers TEXT"], 3: [],  # 3: the devices table
              4: ["ALTER TABLE tasks ADD COLUMN processed_locally INTEGER NOT NULL DEFAULT 0"],
              5: []}  # 5: the skills and automations tables


@dataclass
class TaskRecord:
    id: str
    text: str
    origin: str
    status: str
    created_at: float
    answer: str | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str | None = None
    sandbox_layers: str | None = None
    processed_locally: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at) * 1000, 1)


@dataclass
class StepRecord:
    task_id: str
    turn: int
    thought: str = ""
    code: str | None = None
    observation: str | None = None
    llm_ms: float | None = None
    exec_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_estimate: int = 0
    created_at: float = field(default_factory=time.time)


@dataclass
class AuditRecord:
    task_id: str | None
    device_id: str | None
    method: str
    outcome: str
    target: str | None = None
    args: Any = None
    detail: str | None = None
    duration_ms: float | None = None
    ts: float = field(default_factory=time.time)


def make_private_dir(path: Path) -> None:
    """Create directory `path` for its owner alone, or tighten it to that."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    _tighten(path, PRIVATE_DIR)


def make_private_file(path: Path) -> None:
    """Create file `path` readable and writable by its owner alone, or tighten it to that."""
    os.close(os.open(path, os.O_CREAT | os.O_RDONLY, PRIVATE_FILE))
    _tighten(path, PRIVATE_FILE)


def _tighten(path: Path, private: int) -> None:
    """Take group and other users' access away (logged; with the fix when the gateway may not)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & 0o077:
        return
    try:
        path.chmod(private)
    except OSError as error:
        log.warning("%s is mode %03o and cannot be tightened (%s); run `chmod %o %s`", path, mode, error, private,
                    path)
        return
    log.info("%s was mode %03o; now %o (the gateway's user alone)", path, mode, private)


def new_task_id() -> str:
    return secrets.token_hex(6)


class Store:
    def __init__(self, path: Path) -> None:
        make_private_dir(path.parent)
        self.path = path
        make_private_file(path)  # before SQLite opens it: its -wal and -shm files take the database file's mode
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        for suffix in ("-wal", "-shm"):  # left by an older version, with a wider mode
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                make_private_file(companion)
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        fresh = not self._db.execute("SELECT name FROM sqlite_master WHERE name = 'tasks'").fetchone()
        if fresh:
            self._db.executescript(SCHEMA)
        else:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(target, []):
                    self._db.execute(statement)
            self._db.executescript(SCHEMA)  # new tables and indexes
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # tasks
    def create_task(self, text: str, origin: str, task_id: str | None = None) -> TaskRecord:
        record = TaskRecord(id=task_id or new_task_id(), text=text, origin=origin, status="queued",
                            created_at=time.time())
        self._db.execute("INSERT INTO tasks (id, text, origin, status, created_at) VALUES (?, ?, ?, ?, ?)",
                         (record.id, record.text, record.origin, record.status, record.created_at))
        return record

    def update_task(self, task_id: str, **fields: Any) -> None:
        allowed = set(TaskRecord.__dataclass_fields__) - {"id", "text", "origin", "created_at"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not task fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (*fields.values(), task_id))

    def get_task(self, task_id: str) -> TaskRecord | None:
        """Exact id, or a unique prefix of one (as typed at the command line)."""
        row = self._db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None and task_id:  # compared as text: no LIKE, whose % and _ would match other tasks
            rows = self._db.execute("SELECT * FROM tasks WHERE substr(id, 1, ?) = ? LIMIT 2",
                                    (len(task_id), task_id)).fetchall()
            row = rows[0] if len(rows) == 1 else None
        return TaskRecord(**dict(row)) if row else None

    def list_tasks(self, limit: int = 20, offset: int = 0) -> list[TaskRecord]:
        rows = self._db.execute("SELECT * FROM tasks ORDER BY created_at DESC LIMIT ? OFFSET ?",
                                (limit, offset)).fetchall()
        return [TaskRecord(**dict(row)) for row in rows]

    def unfinished_task_ids(self) -> list[str]:
        """Tasks whose end is not recorded: queued or running."""
        rows = self._db.execute("SELECT id FROM tasks WHERE status IN ('queued', 'running')").fetchall()
        return [row[0] for row in rows]

    def mark_interrupted(self) -> int:
        """Tasks left queued or running by a crash; called at start-up."""
        cursor = self._db.execute(
            "UPDATE tasks SET status = 'interrupted', finished_at = ? WHERE status IN ('queued', 'running')",
            (time.time(),))
        return cursor.rowcount

    # steps
    def add_step(self, step: StepRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO steps (task_id, turn, thought, code, observation, llm_ms, exec_ms,"
            " prompt_tokens, completion_tokens, prompt_estimate, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (step.task_id, step.turn, step.thought, step.code, step.observation, step.llm_ms, step.exec_ms,
             step.prompt_tokens, step.completion_tokens, step.prompt_estimate, step.created_at))

    def steps(self, task_id: str) -> list[StepRecord]:
        rows = self._db.execute("SELECT * FROM steps WHERE task_id = ? ORDER BY turn", (task_id,)).fetchall()
        return [StepRecord(**dict(row)) for row in rows]

    # devices: every id ever given stays tied to its key, so it is never reused for another device
    def save_devices(self, records: list[tuple[str, str, bool, str]]) -> None:
        """(id, key, removed, record JSON) rows, written in one transaction."""
        now = time.time()
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO devices (id, key, removed, record, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET key = excluded.key, removed = excluded.removed,"
                " record = excluded.record, updated_at = excluded.updated_at",
                [(device_id, key, int(removed), record, now) for device_id, key, removed, record in records])

    def load_devices(self) -> list[tuple[str, str, bool, str]]:
        rows = self._db.execute("SELECT id, key, removed, record FROM devices ORDER BY id").fetchall()
        return [(row["id"], row["key"], bool(row["removed"]), row["record"]) for row in rows]

    # audit
    def audit(self, record: AuditRecord) -> None:
        args = None if record.args is None else json.dumps(record.args, default=str)[:2000]
        self._db.execute(
            "INSERT INTO audit (ts, task_id, device_id, method, target, args, outcome, detail, duration_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.ts, record.task_id, record.device_id, record.method, record.target, args, record.outcome,
             record.detail, record.duration_ms))

    def audit_rows(self, task_id: str | None = None) -> list[AuditRecord]:
        params: tuple[str, ...]
        query, params = "SELECT * FROM audit ORDER BY id", ()
        if task_id is not None:
            query, params = "SELECT * FROM audit WHERE task_id = ? ORDER BY id", (task_id,)
        records = []
        for row in self._db.execute(query, params).fetchall():
            data = dict(row)
            data.pop("id")
            data["args"] = json.loads(data["args"]) if data["args"] else None
            records.append(AuditRecord(**data))
        return records

    # skills: the source lives in <data_dir>/skills/<name>.py; the store keeps where it came from and how it runs
    def record_skill(self, name: str, task_id: str | None) -> None:
        self._db.execute("INSERT INTO skills (name, task_id, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE"
                         " SET task_id = excluded.task_id, created_at = excluded.created_at, runs = 0, failures = 0,"
                         " last_error = NULL", (name, task_id, time.time()))

    def skill_ran(self, name: str, error: str | None) -> None:
        now = time.time()
        self._db.execute("INSERT INTO skills (name, created_at, runs, failures, last_run_at, last_error)"
                         " VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET runs = runs + 1,"
                         " failures = failures + excluded.failures, last_run_at = excluded.last_run_at,"
                         " last_error = excluded.last_error", (name, now, int(error is not None), now, error))

    def skill_records(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: dict(row) for row in self._db.execute("SELECT * FROM skills").fetchall()}

    def forget_skill(self, name: str) -> None:
        self._db.execute("DELETE FROM skills WHERE name = ?", (name,))

    # automations: definitions made through the API, and every automation's compiled skill and state
    def save_automation(self, name: str, **fields: Any) -> None:
        allowed = {"definition", "skill", "stopped", "runs"}
        if set(fields) - allowed:
            raise ValueError(f"not automation fields: {sorted(set(fields) - allowed)}")
        columns = ", ".join(["name", "updated_at", *fields])
        updates = "".join(f", {field} = excluded.{field}" for field in fields)
        self._db.execute(f"INSERT INTO automations ({columns}) VALUES ({', '.join('?' * (len(fields) + 2))})"
                         f" ON CONFLICT(name) DO UPDATE SET updated_at = excluded.updated_at{updates}",
                         (name, time.time(), *fields.values()))

    def automation_records(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: dict(row) for row in self._db.execute("SELECT * FROM automations").fetchall()}

    def forget_automation(self, name: str) -> None:
        self._db.execute("DELETE FROM automations WHERE name = ?", (name,))
