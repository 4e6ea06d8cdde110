"""The API's route table: each route's method, path, handler, bodies, limits and answers. The router is built
from it (server.py) and so is the OpenAPI document (openapi.py), so the two cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from gateway.api import models
from gateway.config import AutomationEntry

JSON = "application/json"
JSON_LIMIT = 64 * 1024
AUDIO_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str  # name of an Api method
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    stream: bool = False
    many: bool = False  # the response is a list of `response`
    body_limit: int = JSON_LIMIT
    query: type[BaseModel] | None = None  # the query parameters, each a field
    upload: str | None = None  # the media type of a body that is not JSON (a pattern such as audio/*)
    public: bool = False  # answered without the token
    errors: tuple[tuple[str, str], ...] = ()  # (status, meaning): answers of this route besides the common ones

    @property
    def media_type(self) -> str | None:
        """What the body must be sent as; None when the route takes no body."""
        return JSON if self.body is not None else self.upload


ROUTES = [
    Route("POST", "/api/tasks", "create_task", "Start a task from a command", models.TaskRequest,
          models.TaskCreated, 202),
    Route("GET", "/api/tasks", "list_tasks", "Recent tasks, newest first", response=models.TaskPage,
          query=models.TaskQuery),
    Route("GET", "/api/tasks/{id}", "get_task", "One task with its steps (by its id, or a unique prefix of it)",
          response=models.Task),
    Route("POST", "/api/tasks/{id}/cancel", "cancel_task", "Cancel a queued or running task",
          response=models.Cancelled),
    Route("GET", "/api/tasks/{id}/events", "task_events", "The task's trace as Server-Sent Events: queued, "
          "started, delta, retry, code, observation, confirmation, question, answer, finished", stream=True),
    Route("POST", "/api/prompt", "preview_prompt", "The exact messages a command would send to the model, without "
          "running it (`pyuse prompt`)", models.PromptRequest, models.PromptPreview),
    Route("GET", "/api/help", "help", "What works without a model on this home, with example commands made from "
          "the devices present", response=models.HelpText),
    Route("GET", "/api/devices", "list_devices", "Every device the gateway knows", response=models.Device,
          many=True),
    Route("GET", "/api/devices/{id}", "get_device", "One device", response=models.Device),
    Route("GET", "/api/confirmations", "list_confirmations", "Dangerous calls waiting for a yes or no",
          response=models.Confirmation, many=True),
    Route("POST", "/api/confirmations/{id}", "answer_confirmation", "Approve or refuse a dangerous call",
          models.ConfirmationAnswer, models.Answered),
    Route("GET", "/api/questions", "list_questions", "Questions of tasks waiting for an answer (which device, "
          "what value)", response=models.Question, many=True),
    Route("POST", "/api/questions/{id}", "answer_question", "Answer a task's question: the task goes on with it",
          models.QuestionAnswer, models.QuestionAnswered,
          errors=(("422", "the answer is none of the question's choices"),)),
    Route("GET", "/api/events", "events", "Device changes and task progress for the web page, as Server-Sent "
          "Events", stream=True),
    Route("POST", "/api/voice", "voice", "Upload audio (any format the transcription server takes); its "
          "transcript runs as a task", response=models.TaskCreated, status=202, body_limit=AUDIO_LIMIT,
          upload="audio/*", errors=(("422", "nothing was heard in the audio"),
                                    ("501", "no transcription server is configured ([stt] base_url)"))),
    Route("GET", "/api/skills", "list_skills", "Saved skills, and files in the skills folder that do not check "
          "out", response=models.SkillList),
    Route("POST", "/api/skills", "save_skill", "Have the model turn a task it solved into a skill (takes a model "
          "call)", models.SkillSave, models.Skill, 201,
          errors=(("422", "the task cannot become a skill: the message says why"),
                  ("503", "no model is configured, or it cannot be reached"))),
    Route("GET", "/api/skills/{name}", "get_skill", "One skill with its source", response=models.Skill),
    Route("POST", "/api/skills/{name}/run", "run_skill", "Run a skill as a task", models.SkillRun,
          models.TaskCreated, 202),
    Route("DELETE", "/api/skills/{name}", "delete_skill", "Delete a skill's file", response=models.Deleted),
    Route("GET", "/api/automations", "list_automations", "Automations, with their state and last run",
          response=models.AutomationList),
    Route("POST", "/api/automations", "add_automation", "Add an automation (kept in the store; the same fields "
          "as [[automations]] in the config)", AutomationEntry, models.Automation, 201,
          errors=(("409", "an automation with this name exists"),)),
    Route("GET", "/api/automations/{name}", "get_automation", "One automation", response=models.Automation),
    Route("DELETE", "/api/automations/{name}", "delete_automation", "Delete an automation made through the API",
          response=models.Deleted, errors=(("409", "it is defined in the config file: remove it there"),)),
    Route("POST", "/api/automations/{name}/resume", "resume_automation", "Let a stopped automation run again",
          response=models.Automation),
    Route("POST", "/api/automations/{name}/recompile", "recompile_automation", "Have the model compile the "
          "action's words again on the next run", response=models.Automation,
          errors=(("409", "it runs a skill, not words: there is nothing to compile"),)),
    Route("POST", "/api/automations/{name}/trigger", "trigger_automation", "Run it now, as if triggered",
          response=models.Fired, status=202),
    Route("GET", "/api/health", "health", "Whether the gateway is ready, and what it runs under",
          response=models.Health),
    Route("GET", "/api/openapi.json", "openapi", "This document"),
    Route("POST", "/api/session", "start_session", "Trade the API token for this browser's cookie (the page on a "
          "gateway bound to a non-loopback address asks for the token once)", models.SessionStart, status=204,
          public=True, errors=(("401", "that is not this gateway's API token"),)),
]
