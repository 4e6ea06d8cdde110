"""One task run to its end: its device scope, a sandbox job (its own or a warm one kept for its origin), a plan
without a model (a saved skill, or the fast path, asking which device when a command fits several), else the
model's loop; then how it ended, recorded, and a skill saved from it when that is wanted."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from gateway.agent.intents import LocalPlan, Unclear
from gateway.agent.llm import NOT_CONFIGURED, LLMError
from gateway.agent.local import run_without_model
from gateway.agent.loop import AgentLoop
from gateway.agent.skill_writer import SkillWriteError
from gateway.devices.model import Device
from gateway.logs import current_task
from gateway.policy import Confirmer, ScopeError
from gateway.questions import Asker, NoAnswer
from gateway.sandbox.broker import JobContext
from gateway.sandbox.manager import SandboxUnavailable
from gateway.sandbox.pool import WarmJob
from gateway.sandbox.session import SandboxError, SandboxSession
from gateway.saved_skills import skill_call
from gateway.tasks import EventSink, ModelFree, Progress, TaskOptions, TaskResult, ignore_events, unexpected

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

DECLINED = "Not done: you declined {}."


async def run_task(gateway: Gateway, text: str, origin: str = "cli", device_ids: list[str] | None = None,
                   on_event: EventSink = ignore_events, confirm: Confirmer | None = None,
                   task_id: str | None = None, options: TaskOptions | None = None,
                   devices: list[Device] | None = None, ask: Asker | None = None) -> TaskResult:
    """Run one command to its end. `confirm` and `ask` ask the person behind `origin`; None means nobody can.
    `task_id` names a task already queued in the store; otherwise one is created. `devices` is the scope
    already resolved from `device_ids` (by scope(), when the task was submitted); otherwise it is resolved
    here."""
    options = options or TaskOptions()
    assert gateway.store is not None and gateway.prompts is not None
    record = (gateway.store.get_task(task_id) if task_id else None) or gateway.store.create_task(text, origin)
    current_task.set(record.id)
    log.info("task from %s: %s", origin, text)
    started = time.time()
    gateway.store.update_task(record.id, status="running", started_at=started,
                              model=gateway.config.llm.model or None,
                              sandbox_layers=",".join(gateway.sandbox.layers))
    progress = Progress()
    own_session: SandboxSession | None = None
    warm: WarmJob | None = None
    skill_name: str | None = None
    task_timeout = options.timeout_s or gateway.config.agent.task_timeout_s
    try:
        devices = gateway.scope(device_ids) if devices is None else devices
        if options.warm:
            warm = await gateway.pool.take(origin, lambda: gateway.start_warm_job(origin, devices,
                                                                                  options.timeout_s))
            warm.context = JobContext(record.id, {device.id: device for device in devices}, confirm, origin,
                                      warm.session.hold, ask)
            job = warm.session
        else:
            job = own_session = gateway.session(record.id, devices, confirm, origin, options.timeout_s, ask)
        async with asyncio.timeout(task_timeout):
            plan = options.work or (plan_without_model(gateway, text, devices)
                                    if options.plan and gateway.config.agent.fast_path else None)
            while (isinstance(plan, Unclear) and (plan.choices or plan.follow_up)
                   and (ask is not None or gateway.llm is None)):
                plan = await _clarify(gateway, record.id, origin, text, devices, plan, ask)
            if isinstance(plan, ModelFree):
                skill_name = plan.skill
                await run_without_model(record.id, plan.thought, plan.code, plan.answer, job, gateway.store,
                                        progress, on_event)
                if plan.skill:
                    gateway.store.skill_ran(plan.skill, progress.error)
            elif isinstance(plan, Unclear) and gateway.llm is None:
                raise NoAnswer(plan.question, "the command leaves this open, and no model is configured to "
                               "work it out")
            elif gateway.llm is None:
                raise LLMError("this is not a command the gateway understands without a model, and "
                               f"{NOT_CONFIGURED}")
            else:
                prompt = gateway.prompts.build(text, devices, gateway.skills.load())
                loop = AgentLoop(gateway.llm, gateway.store, gateway.config.agent)
                await loop.run(record.id, text, prompt, job, progress, on_event)
    except NoAnswer as exc:  # the question is the answer: asked again, with what it lacks, it can finish
        progress.status, progress.answer, progress.error = "needs_input", exc.question, exc.why
    except TimeoutError:
        progress.status = "timeout"
        progress.error = (f"the task ran longer than {task_timeout} s"
                          + ("" if options.timeout_s else " ([agent] task_timeout_s)"))
    except asyncio.CancelledError:
        progress.status = "cancelled"
        progress.error = "cancelled"
        raise
    except (LLMError, ScopeError, SandboxUnavailable, SandboxError) as exc:
        progress.status = "failed"
        progress.error = str(exc)
    except Exception as exc:  # a surprise anywhere must still end the task, say why, and leave its trace
        log.exception("task %s failed unexpectedly", record.id)
        progress.status = "failed"
        progress.error = unexpected(exc)
    finally:
        if own_session is not None:
            await asyncio.shield(own_session.close())
        if warm is not None:  # a job cancelled mid-run may be left in any state: never reused
            (gateway.pool.discard if progress.status == "cancelled" else gateway.pool.give_back)(origin, warm)
        declined = gateway.confirmations.declined.pop(record.id, None)
        # A person's no is an answer, not a failure: said so when no model answered it (the fast path, a skill).
        if declined is not None and progress.status == "failed":
            progress.status, progress.answer, progress.error = "cancelled", DECLINED.format(declined), None
        finished = time.time()
        gateway.store.update_task(record.id, status=progress.status, answer=progress.answer, error=progress.error,
                                  finished_at=finished, turns=progress.turns, prompt_tokens=progress.prompt_tokens,
                                  completion_tokens=progress.completion_tokens,
                                  processed_locally=int(progress.processed_locally))
    log.info("task %s after %d turn(s), %d tokens%s", progress.status, progress.turns, progress.tokens,
             f": {progress.error}" if progress.error else "")
    save_skill = options.save_skill
    if save_skill is None:
        save_skill = gateway.config.skills.auto_save == "always"
    if save_skill and progress.status == "done" and not progress.processed_locally:
        try:
            skill_name = (await gateway.save_skill(record.id, options.replaces_skill)).name
        except Exception as exc:  # saving is extra: it never changes how the task ended
            log.warning("task %s was not saved as a skill: %s", record.id, exc,
                        exc_info=not isinstance(exc, (SkillWriteError, LLMError)))
    return TaskResult(record.id, progress.status, progress.answer, progress.error, progress.turns,
                      progress.tokens, round((finished - started) * 1000, 1), progress.processed_locally,
                      skill_name, progress.calls)


async def _clarify(gateway: Gateway, task_id: str, origin: str, text: str, devices: list[Device],
                   unclear: Unclear, ask: Asker | None) -> ModelFree | Unclear | None:
    """Ask which of the devices the command fits it meant, and plan again without the others; or ask the value
    it lacks, and plan the command with it. Raises NoAnswer."""
    if unclear.follow_up is not None:
        answer = await gateway.questions.ask(task_id, origin, unclear.question, None, ask)
        return plan_without_model(gateway, unclear.follow_up.format(answer=answer.strip().rstrip("%").strip()),
                                  devices)
    labels = choice_labels(unclear.choices)
    chosen = labels[await gateway.questions.ask(task_id, origin, unclear.question, list(labels), ask)]
    others = {device.id for device in unclear.choices} - {chosen.id}
    return plan_without_model(gateway, text, [device for device in devices if device.id not in others])


def plan_without_model(gateway: Gateway, text: str, devices: list[Device]) -> ModelFree | Unclear | None:
    """A saved skill whose triggers the command says, else a fast-path match on `devices`, else None (the
    model's turn)."""
    found = gateway.skills.match(text)
    if found is not None:
        return skill_call(*found)
    local = gateway.local.match(text, devices)
    if isinstance(local, LocalPlan):
        return ModelFree(f"Handled locally, without a model: {local.action} on "
                         f"{', '.join(device.id for device in local.devices)}.", local.code, local.answer)
    return local


def choice_labels(devices: list[Device]) -> dict[str, Device]:
    """How the person is offered each device: its name, with its id where names repeat."""
    names = [device.name for device in devices]
    return {device.name if names.count(device.name) == 1 else f"{device.name} ({device.id})": device
            for device in devices}

