// Confirmations: a dangerous call of a task started here waits for a yes, asked one at a time in a dialog.

import { api } from "./api.js";
import { $, say } from "./dom.js";
import { commandOf } from "./history.js";
import { ANSWERED_HERE } from "./words.js";

const pending = new Map(); // id -> request this page may answer, oldest first
let asking = null; // the request in the dialog
let expiryTimer = 0;

export async function loadConfirmations() {
  // A question asked while the list is on its way arrives as an event; only those known before can have gone.
  const known = [...pending.keys()];
  const waiting = await api("/api/confirmations");
  const ids = new Set(waiting.map((request) => request.id));
  for (const id of known) if (!ids.has(id)) confirmationChanged({ id, state: "resolved" });
  for (const request of waiting) confirmationChanged({ ...request, state: "asked" });
}

export function confirmationChanged(request) {
  if (request.state === "resolved") {
    pending.delete(request.id);
    if (asking?.id === request.id) $("confirm-dialog").close("resolved");
    return;
  }
  if (request.origin && !ANSWERED_HERE.has(request.origin)) return;
  if (!pending.has(request.id)) pending.set(request.id, request);
  askNext();
}

function showExpiry() {
  const seconds = Math.max(0, Math.round(asking.expires_at - Date.now() / 1000));
  $("confirm-expiry").textContent = `No answer within ${seconds} s means no.`;
}

function askNext() {
  const dialog = $("confirm-dialog");
  if (dialog.open || pending.size === 0) return;
  asking = pending.values().next().value;
  $("confirm-device").textContent = `${asking.device_name} (${asking.device_id})`;
  $("confirm-action").textContent = asking.action;
  $("confirm-reason").textContent = asking.reason;
  $("confirm-task").textContent = commandOf(asking.task_id) ?? asking.task_id;
  showExpiry();
  expiryTimer = setInterval(showExpiry, 1000);
  dialog.returnValue = "";
  dialog.showModal();
}

$("confirm-dialog").addEventListener("close", () => {
  clearInterval(expiryTimer);
  const request = asking;
  const choice = $("confirm-dialog").returnValue;
  asking = null;
  pending.delete(request.id);
  if (choice !== "resolved") { // Escape counts as no, like an unanswered question
    const answer = { approve: choice === "approve" };
    api(`/api/confirmations/${encodeURIComponent(request.id)}`, { method: "POST", json: answer })
      .catch((error) => say(error.status === 404 ? "That question was already answered or had expired." : error.message,
        "error"));
  }
  askNext();
});
