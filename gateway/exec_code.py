"""Code written by a person (`pyuse exec`, the red-team tests), run in a fresh job under the same sandbox, policy
and audit as model code, and recorded as a one-turn task with origin "exec"."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from gateway.policy import Confirmer, ScopeError
from gateway.sandbox.manager import SandboxUnavailable
from gateway.sandbox.session import Execution, SandboxSession
from gateway.store import StepRecord
from gateway.tasks import unexpected

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)


async def run_code(gateway: Gateway, code: str, label: str, device_ids: list[str] | None = None,
                   confirm: Confirmer | None = None) -> tuple[str, Execution]:
    """Returns the task's id and what the job did; raises ScopeError or SandboxUnavailable when it cannot run."""
    assert gateway.store is not None
    record = gateway.store.create_task(label, "exec")
    gateway.store.update_task(record.id, status="running", started_at=time.time(),
                              sandbox_layers=",".join(gateway.sandbox.layers))
    status, error, execution = "failed", None, None
    session: SandboxSession | None = None
    try:
        session = gateway.session(record.id, gateway.scope(device_ids), confirm, "exec")
        execution = await session.execute(code)
        gateway.store.add_step(StepRecord(record.id, 1, code=code, observation=execution.output,
                                          exec_ms=round(execution.duration_ms, 1)))
        status = "done" if execution.status in ("ok", "final") else "failed"
        return record.id, execution
    except (ScopeError, SandboxUnavailable) as exc:
        error = str(exc)
        raise
    except Exception as exc:
        log.exception("code %r failed unexpectedly", label)
        error = unexpected(exc)
        raise
    finally:
        if session is not None:
            await asyncio.shield(session.close())
        gateway.store.update_task(record.id, status=status, error=error, turns=1, finished_at=time.time(),
                                  answer=execution.answer if execution else None)
