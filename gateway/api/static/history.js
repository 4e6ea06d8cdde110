// Recent tasks: the newest few, kept current by the gateway's task events; one opens in the task panel.

import { api } from "./api.js";
import { $, chip, clock, el, say } from "./dom.js";
import { follow, showStoredTask, taskMarks, trace } from "./trace.js";
import { AUTOMATION, LIVE } from "./words.js";

const RECENT = 20;
let recent = new Map(); // id -> task summary, newest first

export async function loadHistory() {
  const page = await api(`/api/tasks?limit=${RECENT}`);
  recent = new Map(page.tasks.map((task) => [task.id, task]));
  renderHistory();
}

/** A task event from the gateway; returns the task's summary as it now stands. */
export function taskChanged({ id, event, text, ...data }) {
  const task = recent.get(id) ?? { id, text, origin: data.origin, status: "queued", created_at: Date.now() / 1000 };
  if (event === "started") task.status = "running";
  if (event === "finished") {
    task.status = data.status;
    task.processed_locally = data.processed_locally;
  }
  if (!recent.has(id)) recent = new Map([[id, task], ...recent].slice(0, RECENT));
  renderHistory();
  return task;
}

/** The command of a recent task, for a question about one of its calls. */
export function commandOf(id) {
  return recent.get(id)?.text;
}

function renderHistory() {
  $("history").replaceChildren(...[...recent.values()].map((task) => el("li", {},
    el("button", { type: "button", class: "history-item", "aria-current": task.id === trace.task.id,
                   onclick: () => showTask(task.id) },
      el("span", { class: "history-text" }, task.text),
      chip(task.status),
      el("time", { datetime: new Date(task.created_at * 1000).toISOString() }, clock(task.created_at)),
      task.processed_locally || task.origin?.startsWith(AUTOMATION)
        ? el("span", { class: "marks" }, ...taskMarks(task)) : null))));
  $("history-empty").hidden = recent.size > 0;
}

export function showTask(id) {
  const task = recent.get(id);
  if (task && LIVE.has(task.status)) follow(id, task.text);
  else showStoredTask(id).catch((error) => say(error.message, "error"));
  $("task").scrollIntoView({ block: "start" });
}

$("task").addEventListener("shown", renderHistory);
