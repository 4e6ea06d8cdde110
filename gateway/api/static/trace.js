// The task panel: the trace of one task, live from its event stream or as the gateway stored it, with its answer.
// Its section announces changes as DOM events ("shown": another task; "status": its status), so that the panels
// which follow it need no import back: recent tasks mark the shown one, the skills offer to save it.

import { api, stream } from "./api.js";
import { $, chip, el, say } from "./dom.js";
import { highlightPython } from "./highlight.js";
import { AUTOMATION, LIVE } from "./words.js";

// What an answer stands on: each device call of a step, with how it ended.
function callList(calls) {
  if (!calls.length) return null;
  return el("ul", { class: "calls" }, ...calls.map((call) => el("li", {},
    el("code", {}, `${call.device}.${call.method}${call.target ? " " + call.target : ""}`), " ", chip(call.outcome))));
}

/** What a task ran without (the model) and who started it, when that is not a person. */
export function taskMarks(task) {
  const marks = [
    task.processed_locally ? el("span", { class: "chip local" }, "processed locally") : null,
    task.origin?.startsWith(AUTOMATION) ? el("span", {}, `by automation ${task.origin.slice(AUTOMATION.length)}`)
      : null,
  ].filter(Boolean);
  return marks.flatMap((mark, index) => (index ? [" ", mark] : [mark])); // a space, so they read as two
}

export const trace = {
  steps: new Map(), // turn -> its list item, where its observation goes
  task: {}, // id, origin, status and processed_locally of the task on screen, as far as known

  reset(id, text, origin) {
    this.steps.clear();
    this.task = { id, origin };
    $("task").hidden = false;
    $("task-title").textContent = text;
    $("trace").replaceChildren();
    for (const id of ["answer", "task-error", "writing"]) $(id).hidden = true;
    $("save-skill-result").textContent = "";
    this.status("queued");
    this.marks();
    $("task").dispatchEvent(new Event("shown"));
  },

  marks() {
    const marks = taskMarks(this.task);
    $("task-marks").replaceChildren(...marks);
    $("task-marks").hidden = marks.length === 0;
  },

  status(status) {
    this.task.status = status;
    $("task").dispatchEvent(new Event("status"));
    const shown = $("task-status");
    shown.textContent = status;
    shown.dataset.status = status;
    $("task-stop").hidden = !LIVE.has(status);
  },

  writing(on) {
    $("writing").hidden = !on;
  },

  step(turn, thought, code) {
    const item = el("li", { class: "step" },
      el("div", { class: "turn" }, `Turn ${turn}`),
      thought ? el("p", { class: "thought" }, thought) : null,
      code ? el("pre", { class: "code" }, el("code", {}, highlightPython(code))) : null);
    this.steps.set(turn, item);
    $("trace").append(item);
    return item;
  },

  observation(turn, text, status, calls = []) {
    if (!text && !calls.length) return; // nothing printed, no device called: no empty box
    const label = el("div", { class: "observation-head" }, "Observation", status ? chip(status) : null);
    (this.steps.get(turn) ?? this.step(turn)).append(el("div", { class: "observation" }, label, callList(calls),
      text ? el("pre", {}, text) : null));
  },

  calls(calls) {
    if (calls.length) $("trace").append(el("li", { class: "note" }, "Device calls", callList(calls)));
  },

  note(text, tone = "info") {
    $("trace").append(el("li", { class: "note", "data-tone": tone }, text));
  },

  answer(text) {
    $("answer").textContent = text;
    $("answer").hidden = false;
  },

  finish(status, error, processedLocally) {
    this.writing(false);
    this.task.processed_locally = processedLocally;
    this.marks();
    this.status(status);
    if (error && status !== "done") {
      $("task-error").textContent = error;
      $("task-error").hidden = false;
    }
  },
};

let following = null; // the event stream of the task on screen

export function follow(id, text) {
  following?.source.close();
  trace.reset(id, text);
  const { source, on } = stream(`/api/tasks/${encodeURIComponent(id)}/events`);
  following = { source, id };
  // After a dropped connection the browser reconnects and the gateway replays everything from "queued": start over.
  on("queued", (data) => trace.reset(id, data.text ?? text, data.origin));
  on("started", () => trace.status("running"));
  on("delta", () => trace.writing(true));
  on("retry", (data) => trace.note(`The model server failed (${data.error}); trying again in ${data.delay_s} s.`,
    "warning"));
  on("code", (data) => {
    trace.writing(false);
    trace.step(data.turn, data.thought, data.code);
  });
  on("observation", (data) => trace.observation(data.turn, data.observation, data.status, data.calls ?? []));
  // The dialog itself follows /api/events, which has only live questions; this replay may hold settled ones.
  on("confirmation", (data) => trace.note(data.state === "asked"
    ? `Needs a yes: ${data.action} on ${data.device_name} (${data.reason})`
    : `${data.action} on ${data.device_name}: ${data.approved ? "approved" : "not approved"}`,
  data.approved === false ? "warning" : "info"));
  on("answer", (data) => {
    trace.writing(false);
    trace.answer(data.answer);
  });
  on("finished", (data) => {
    source.close();
    following = null;
    trace.finish(data.status, data.error, data.processed_locally);
    if (data.answer) trace.answer(data.answer);
  });
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED || following?.source !== source) return;
    following = null; // refused or gone: show what the gateway stored instead
    showStoredTask(id).catch((error) => say(error.message, "error"));
  };
}

export async function showStoredTask(id) {
  following?.source.close();
  following = null;
  const task = await api(`/api/tasks/${encodeURIComponent(id)}`);
  trace.reset(task.id, task.text, task.origin);
  for (const step of task.steps) {
    if (step.thought || step.code) trace.step(step.turn, step.thought, step.code);
    if (step.observation !== null) trace.observation(step.turn, step.observation);
  }
  trace.calls(task.calls ?? []);
  trace.finish(task.status, task.error, task.processed_locally);
  if (task.answer !== null) trace.answer(task.answer);
}

$("task-stop").addEventListener("click", () => {
  api(`/api/tasks/${encodeURIComponent(trace.task.id)}/cancel`, { method: "POST" })
    .catch((error) => say(error.message, "error"));
});
