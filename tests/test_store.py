"""The store keeps tasks, steps and audit rows, and survives a crash mid-task."""

import sqlite3

from gateway.store import AuditRecord, StepRecord, Store


def test_tasks_steps_and_audit_round_trip(tmp_path):
    store = Store(tmp_path / "pyuse.db")
    task = store.create_task("turn on the lamp", "cli")
    store.update_task(task.id, status="done", answer="on", turns=1, prompt_tokens=10, completion_tokens=5)
    store.add_step(StepRecord(task.id, 1, thought="t", code="c", observation="o", llm_ms=1.0, exec_ms=2.0))
    store.audit(AuditRecord(task.id, "lamp", "rpc", "ok", target="Switch.Set", args={"on": True}))

    loaded = store.get_task(task.id[:4])
    assert loaded.status == "done" and loaded.answer == "on" and loaded.tokens == 15
    assert [(s.turn, s.code) for s in store.steps(task.id)] == [(1, "c")]
    assert store.audit_rows(task.id)[0].args == {"on": True}
    assert sqlite3.connect(tmp_path / "pyuse.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_tasks_left_running_by_a_crash_become_interrupted(tmp_path):
    store = Store(tmp_path / "pyuse.db")
    running = store.create_task("a", "cli")
    store.update_task(running.id, status="running")
    finished = store.create_task("b", "cli")
    store.update_task(finished.id, status="done", answer="ok")
    del store  # no close: as if the process died

    reopened = Store(tmp_path / "pyuse.db")
    assert reopened.mark_interrupted() == 1
    assert reopened.get_task(running.id).status == "interrupted"
    assert reopened.get_task(finished.id).answer == "ok"


def test_an_ambiguous_prefix_finds_nothing(tmp_path):
    store = Store(tmp_path / "pyuse.db")
    store.create_task("a", "cli", task_id="abc111")
    store.create_task("b", "cli", task_id="abc222")
    assert store.get_task("abc") is None
    assert store.get_task("abc1").id == "abc111"


def test_a_version_1_store_is_migrated_and_keeps_its_tasks(tmp_path):
    path = tmp_path / "pyuse.db"
    old = sqlite3.connect(path)  # the first release's tasks table: no sandbox_layers, no processed_locally
    old.executescript("CREATE TABLE tasks (id TEXT PRIMARY KEY, text TEXT NOT NULL, origin TEXT NOT NULL,"
                      " status TEXT NOT NULL, answer TEXT, error TEXT, created_at REAL NOT NULL, started_at REAL,"
                      " finished_at REAL, turns INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,"
                      " completion_tokens INTEGER NOT NULL DEFAULT 0, model TEXT);"
                      "INSERT INTO tasks (id, text, origin, status, created_at) VALUES ('t1', 'old', 'cli', 'done', 1);"
                      "PRAGMA user_version=1;")
    old.close()

    store = Store(path)

    task = store.get_task("t1")
    assert task.text == "old" and task.processed_locally == 0 and task.sandbox_layers is None
    store.skill_ran("lights", None)
    store.skill_ran("lights", "DeviceError: offline")
    assert {key: store.skill_records()["lights"][key] for key in ("runs", "failures", "last_error")} == {
        "runs": 2, "failures": 1, "last_error": "DeviceError: offline"}
    store.save_automation("night", definition="{}", runs=1)
    store.save_automation("night", stopped="a loop")
    assert {key: store.automation_records()["night"][key] for key in ("definition", "runs", "stopped")} == {
        "definition": "{}", "runs": 1, "stopped": "a loop"}
    store.close()
