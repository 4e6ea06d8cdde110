// Questions: a task started here that needs the person's word ("which one?") waits for an answer, asked one at a
// time in a dialog: a button for each choice, or a text field when any answer will do.

import { api } from "./api.js";
import { $, el, say } from "./dom.js";
import { commandOf } from "./history.js";
import { ANSWERED_HERE } from "./words.js";

const pending = new Map(); // id -> question this page may answer, oldest first
let asking = null; // the question in the dialog

export async function loadQuestions() {
  const known = [...pending.keys()];
  const waiting = await api("/api/questions");
  const ids = new Set(waiting.map((question) => question.id));
  for (const id of known) if (!ids.has(id)) questionChanged({ id, state: "resolved" });
  for (const question of waiting) questionChanged({ ...question, state: "asked" });
}

export function questionChanged(question) {
  if (question.state === "resolved") {
    pending.delete(question.id);
    if (asking?.id === question.id) $("question-dialog").close("");
    return;
  }
  if (question.origin && !ANSWERED_HERE.has(question.origin)) return;
  if (!pending.has(question.id)) pending.set(question.id, question);
  askNext();
}

function askNext() {
  const dialog = $("question-dialog");
  if (dialog.open || pending.size === 0) return;
  asking = pending.values().next().value;
  $("question-text").textContent = asking.question;
  $("question-task").textContent = commandOf(asking.task_id) ?? "";
  $("question-choices").replaceChildren(...asking.choices.map((choice) => el("button", { value: choice }, choice)));
  $("question-free").hidden = asking.choices.length > 0;
  $("question-answer").value = "";
  dialog.returnValue = "";
  dialog.showModal();
}

$("question-free").addEventListener("submit", (event) => {
  event.preventDefault();
  $("question-dialog").close($("question-answer").value.trim());
});

$("question-dialog").addEventListener("close", () => {
  const question = asking;
  const answer = $("question-dialog").returnValue;
  asking = null;
  pending.delete(question.id);
  if (answer) { // Escape leaves it unanswered: the task ends needing input when it expires
    api(`/api/questions/${encodeURIComponent(question.id)}`, { method: "POST", json: { answer } })
      .catch((error) => say(error.status === 404 ? "That question was already answered or had expired." : error.message,
        "error"));
  }
  askNext();
});
