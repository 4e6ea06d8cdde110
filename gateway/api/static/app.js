// The gateway's web page: a command (typed or spoken), the live trace of the task it starts, the devices with their
// live state, confirmations of dangerous calls, and recent tasks.
// Device names, states, model output and observations are untrusted: they only ever become text nodes.

import { highlightPython } from "./highlight.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "pyuse.token";
const LIVE = new Set(["queued", "running"]);
// Origins whose confirmations this page may answer (the gateway refuses the others: they have their own channel).
const ANSWERED_HERE = new Set(["api", "voice", "web"]);
const RECORDING_LIMIT_MS = 30_000;

/** An element with attributes and children; string children become text nodes, never markup. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== ""));
  return node;
}

function chip(status) {
  return el("span", { class: "chip", "data-status": status }, status);
}

function clock(seconds) {
  const date = new Date(seconds * 1000);
  const today = date.toDateString() === new Date().toDateString();
  return date.toLocaleString([], today ? { hour: "2-digit", minute: "2-digit" }
    : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function say(message, tone = "info") {
  const hint = $("command-hint");
  hint.textContent = message;
  hint.dataset.tone = tone;
}

// ---- the API, with the token when the gateway asks for one -------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let tokenQuestion = null; // one question at a time, however many requests were refused together

function askForToken(refused) {
  tokenQuestion ??= new Promise((resolve, reject) => {
    const dialog = $("token-dialog");
    $("token-error").textContent = refused ? "That token was not accepted. Check it and try again." : "";
    $("token-input").value = "";
    dialog.addEventListener("close", () => {
      tokenQuestion = null;
      const token = $("token-input").value.trim();
      if (dialog.returnValue === "save" && token) {
        localStorage.setItem(TOKEN_KEY, token);
        resolve();
      } else {
        reject(new ApiError(401, "unauthorized", "This gateway needs its API token (see `pyuse token`)."));
      }
    }, { once: true });
    dialog.showModal();
  });
  return tokenQuestion;
}

async function api(path, { method = "GET", json, body, type } = {}) {
  for (;;) {
    const token = localStorage.getItem(TOKEN_KEY);
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (json !== undefined) headers["Content-Type"] = "application/json";
    if (type) headers["Content-Type"] = type;
    const response = await fetch(path, { method, headers, body: json !== undefined ? JSON.stringify(json) : body });
    if (response.status === 401) {
      // Another request may have stored a new token meanwhile; only a token that was just refused needs asking.
      if (localStorage.getItem(TOKEN_KEY) === token) await askForToken(Boolean(token));
      continue;
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      throw new ApiError(response.status, data?.error?.code ?? "http", data?.error?.message ?? response.statusText);
    }
    return data;
  }
}

/** EventSource cannot send headers, so the token rides in the query string. */
function stream(path) {
  const token = localStorage.getItem(TOKEN_KEY);
  const source = new EventSource(token ? `${path}?token=${encodeURIComponent(token)}` : path);
  const on = (kind, handle) => source.addEventListener(kind, (event) => handle(JSON.parse(event.data)));
  return { source, on };
}

// ---- the gateway: health and its event stream --------------------------------------------------------------------

async function checkHealth() {
  const health = await api("/api/health");
  $("gateway-name").textContent = health.gateway;
  const problems = [];
  if (!health.model_configured) {
    problems.push("No model is configured, so commands cannot run yet: set [llm] base_url.");
  }
  if (health.sandbox_refusal) problems.push(`Model code is refused here: ${health.sandbox_refusal}`);
  $("notice").textContent = problems.join(" ");
  $("notice").hidden = problems.length === 0;
}

function setConnected(connected) {
  const indicator = $("connection");
  indicator.textContent = connected ? "live" : "reconnecting…";
  indicator.dataset.connected = connected;
}

function watchGateway() {
  const { source, on } = stream("/api/events");
  on("hello", () => { // a (re)connection: catch up on whatever happened while away
    setConnected(true);
    Promise.all([loadDevices(), loadHistory(), loadConfirmations()]).catch((error) => say(error.message, "error"));
  });
  on("device", ({ event, device }) => {
    if (event === "removed") devices.delete(device.id);
    else devices.set(device.id, device);
    renderDevices();
  });
  on("task", taskChanged);
  on("confirmation", confirmationChanged);
  source.onerror = () => {
    setConnected(false);
    if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // Refused (a missing token) or the gateway restarting: ask for health, which asks for a token if needed.
    setTimeout(() => checkHealth().catch(() => {}).finally(watchGateway), 2000);
  };
}

// ---- devices -----------------------------------------------------------------------------------------------------

const devices = new Map();
let area = ""; // "" shows every area

async function loadDevices() {
  const known = await api("/api/devices");
  devices.clear();
  for (const device of known) devices.set(device.id, device);
  renderDevices();
}

function renderAreas() {
  const areas = [...new Set([...devices.values()].map((device) => device.area).filter(Boolean))].sort();
  const container = $("areas");
  if (container.dataset.areas === areas.join("\n")) return; // rebuilding would lose the focused chip
  container.dataset.areas = areas.join("\n");
  if (!areas.includes(area)) area = "";
  container.replaceChildren(...["", ...areas].map((name) => el("button", {
    type: "button", class: "filter", "data-area": name, "aria-pressed": name === area,
    onclick: () => { area = name; renderDevices(); },
  }, name || "All")));
}

function matchesSearch(device, words) {
  const text = [device.name, device.id, device.kind, device.area, ...device.aliases].join(" ").toLowerCase();
  return words.every((word) => text.includes(word));
}

function stateList(device) {
  // The fields the device's doc calls telling come first; the rest (uptime, heap…) are folded away.
  const keys = Object.keys(device.state);
  const telling = device.state_keys.filter((key) => key in device.state);
  const shown = telling.length ? telling : keys.slice(0, 3);
  const folded = keys.filter((key) => !shown.includes(key));
  const item = (key) => {
    const value = device.state[key];
    return el("div", { class: "state-item", "data-key": key },
      el("dt", {}, key), el("dd", {}, typeof value === "object" ? JSON.stringify(value) : String(value)));
  };
  return [
    shown.length ? el("dl", { class: "state" }, ...shown.map(item)) : null,
    folded.length ? el("details", { class: "more-state" }, el("summary", {}, `${folded.length} more`),
      el("dl", { class: "state" }, ...folded.map(item))) : null,
  ];
}

function renderDevices() {
  renderAreas();
  for (const button of $("areas").children) button.setAttribute("aria-pressed", button.dataset.area === area);
  const words = $("device-search").value.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = [...devices.values()]
    .filter((device) => (!area || device.area === area) && matchesSearch(device, words))
    .sort((a, b) => a.area.localeCompare(b.area) || a.name.localeCompare(b.name));
  // Keep the open "more" folds open across live updates.
  const open = new Set([...$("devices").querySelectorAll("details[open]")]
    .map((fold) => fold.closest("li").dataset.id));
  $("devices").replaceChildren(...shown.map((device) => {
    const card = el("li", { class: "device", "data-id": device.id, "data-online": device.online },
      el("div", { class: "device-head" },
        el("span", { class: "device-name" }, device.name),
        el("span", { class: "badge" }, device.online ? "online" : "offline")),
      el("div", { class: "device-meta" }, [device.kind, device.area].filter(Boolean).join(" · ")),
      ...stateList(device));
    if (open.has(device.id)) card.querySelector("details")?.setAttribute("open", "");
    return card;
  }));
  $("device-count").textContent = devices.size ? `${shown.length} of ${devices.size}` : "";
  $("devices-empty").hidden = shown.length > 0;
  $("devices-empty").textContent = devices.size ? "No device matches." : "No devices known yet.";
}

// ---- recent tasks ------------------------------------------------------------------------------------------------

const RECENT = 20;
let recent = new Map(); // id -> task summary, newest first
let shownTask = null; // id of the task in the trace panel

async function loadHistory() {
  const page = await api(`/api/tasks?limit=${RECENT}`);
  recent = new Map(page.tasks.map((task) => [task.id, task]));
  renderHistory();
}

function taskChanged({ id, event, text, ...data }) {
  const task = recent.get(id) ?? { id, text, status: "queued", created_at: Date.now() / 1000 };
  if (event === "started") task.status = "running";
  if (event === "finished") task.status = data.status;
  if (!recent.has(id)) recent = new Map([[id, task], ...recent].slice(0, RECENT));
  renderHistory();
}

function renderHistory() {
  $("history").replaceChildren(...[...recent.values()].map((task) => el("li", {},
    el("button", { type: "button", class: "history-item", "aria-current": task.id === shownTask,
                   onclick: () => showTask(task.id) },
      el("span", { class: "history-text" }, task.text),
      chip(task.status),
      el("time", { datetime: new Date(task.created_at * 1000).toISOString() }, clock(task.created_at))))));
  $("history-empty").hidden = recent.size > 0;
}

function showTask(id) {
  const task = recent.get(id);
  if (task && LIVE.has(task.status)) follow(id, task.text);
  else showStoredTask(id).catch((error) => say(error.message, "error"));
  $("task").scrollIntoView({ block: "start" });
}

// ---- the trace of one task ---------------------------------------------------------------------------------------

const trace = {
  steps: new Map(), // turn -> its list item, where its observation goes

  reset(id, text) {
    shownTask = id;
    this.steps.clear();
    $("task").hidden = false;
    $("task-title").textContent = text;
    $("trace").replaceChildren();
    for (const id of ["answer", "task-error", "writing"]) $(id).hidden = true;
    this.status("queued");
    renderHistory();
  },

  status(status) {
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

  observation(turn, text, status) {
    const label = el("div", { class: "observation-head" }, "Observation", status ? chip(status) : null);
    (this.steps.get(turn) ?? this.step(turn)).append(el("div", { class: "observation" }, label, el("pre", {}, text)));
  },

  note(text, tone = "info") {
    $("trace").append(el("li", { class: "note", "data-tone": tone }, text));
  },

  answer(text) {
    $("answer").textContent = text;
    $("answer").hidden = false;
  },

  finish(status, error) {
    this.writing(false);
    this.status(status);
    if (error && status !== "done") {
      $("task-error").textContent = error;
      $("task-error").hidden = false;
    }
  },
};

let following = null; // the event stream of the task on screen

function follow(id, text) {
  following?.source.close();
  trace.reset(id, text);
  const { source, on } = stream(`/api/tasks/${encodeURIComponent(id)}/events`);
  following = { source, id };
  // After a dropped connection the browser reconnects and the gateway replays everything from "queued": start over.
  on("queued", (data) => trace.reset(id, data.text ?? text));
  on("started", () => trace.status("running"));
  on("delta", () => trace.writing(true));
  on("retry", (data) => trace.note(`The model server failed (${data.error}); trying again in ${data.delay_s} s.`,
    "warning"));
  on("code", (data) => {
    trace.writing(false);
    trace.step(data.turn, data.thought, data.code);
  });
  on("observation", (data) => trace.observation(data.turn, data.observation, data.status));
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
    trace.finish(data.status, data.error);
    if (data.answer) trace.answer(data.answer);
  });
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED || following?.source !== source) return;
    following = null; // refused or gone: show what the gateway stored instead
    showStoredTask(id).catch((error) => say(error.message, "error"));
  };
}

async function showStoredTask(id) {
  following?.source.close();
  following = null;
  const task = await api(`/api/tasks/${encodeURIComponent(id)}`);
  trace.reset(task.id, task.text);
  for (const step of task.steps) {
    if (step.thought || step.code) trace.step(step.turn, step.thought, step.code);
    if (step.observation !== null) trace.observation(step.turn, step.observation);
  }
  trace.finish(task.status, task.error);
  if (task.answer !== null) trace.answer(task.answer);
}

$("task-stop").addEventListener("click", () => {
  api(`/api/tasks/${encodeURIComponent(shownTask)}/cancel`, { method: "POST" })
    .catch((error) => say(error.message, "error"));
});

// ---- confirmations -----------------------------------------------------------------------------------------------

const pending = new Map(); // id -> request this page may answer, oldest first
let asking = null; // the request in the dialog
let expiryTimer = 0;

async function loadConfirmations() {
  const waiting = await api("/api/confirmations");
  const ids = new Set(waiting.map((request) => request.id));
  for (const id of pending.keys()) if (!ids.has(id)) confirmationChanged({ id, state: "resolved" });
  for (const request of waiting) confirmationChanged({ ...request, state: "asked" });
}

function confirmationChanged(request) {
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
  $("confirm-task").textContent = recent.get(asking.task_id)?.text ?? asking.task_id;
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

// ---- the command: typed or spoken ---------------------------------------------------------------------------------

async function run(text) {
  $("send").disabled = true;
  try {
    const created = await api("/api/tasks", { method: "POST", json: { text } });
    $("command-text").value = "";
    say("");
    follow(created.id, text);
  } catch (error) {
    say(error.message, "error");
  } finally {
    $("send").disabled = false;
  }
}

$("command-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("command-text").value.trim();
  if (text) run(text);
});

const Recognition = window.SpeechRecognition ?? window.webkitSpeechRecognition;
let recognitionWorks = Boolean(Recognition);
let stopListening = null; // set while the microphone is on

function listening(on) {
  const mic = $("mic");
  mic.dataset.listening = on;
  mic.setAttribute("aria-label", on ? "Stop listening" : "Speak a command");
  if (!on) stopListening = null;
}

/** The browser's own speech recognition; the final transcript runs as a command. */
function recognise() {
  const recognition = new Recognition();
  recognition.lang = navigator.language;
  recognition.interimResults = true;
  let heard = "";
  recognition.onresult = (event) => {
    heard = [...event.results].map((result) => result[0].transcript).join("");
    $("command-text").value = heard;
  };
  recognition.onerror = (event) => {
    if (event.error === "not-allowed") say("The microphone was not allowed.", "error");
    else if (event.error !== "no-speech" && event.error !== "aborted") {
      // No recognition service here (offline, or a browser without one): record for the gateway instead.
      recognitionWorks = false;
      say("This browser cannot recognise speech here; tap the microphone again to record for the gateway.");
    }
  };
  recognition.onend = () => {
    listening(false);
    if (heard.trim()) run(heard.trim());
  };
  recognition.start();
  stopListening = () => recognition.stop();
  listening(true);
}

/** Record, then let the gateway transcribe it (POST /api/voice). */
async function record() {
  if (!navigator.mediaDevices?.getUserMedia || !window.MediaRecorder) {
    say("Voice needs the microphone, which browsers only give to pages over HTTPS or on localhost.", "error");
    return;
  }
  let microphone;
  try {
    microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch {
    say("The microphone was not allowed.", "error");
    return;
  }
  const recorder = new MediaRecorder(microphone);
  const chunks = [];
  const limit = setTimeout(() => recorder.stop(), RECORDING_LIMIT_MS);
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = () => {
    clearTimeout(limit);
    microphone.getTracks().forEach((track) => track.stop());
    listening(false);
    upload(new Blob(chunks, { type: recorder.mimeType }));
  };
  recorder.start();
  stopListening = () => recorder.stop();
  listening(true);
  say("Listening… tap the microphone again when you are done.");
}

async function upload(audio) {
  say("Sending what you said…");
  try {
    const created = await api("/api/voice", { method: "POST", body: audio, type: audio.type || "audio/webm" });
    say("");
    follow(created.id, "(spoken command)");
  } catch (error) {
    say(error.code === "voice_not_configured" ? `Voice is not set up on this gateway: ${error.message}` : error.message,
      "error");
  }
}

$("mic").addEventListener("click", () => {
  if (stopListening) stopListening();
  else if (recognitionWorks) recognise();
  else record();
});

// ---- start -------------------------------------------------------------------------------------------------------

$("device-search").addEventListener("input", renderDevices);
checkHealth()
  .catch((error) => say(error.message, "error"))
  .finally(watchGateway);
