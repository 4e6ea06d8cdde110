// The gateway's web page: a command (typed or spoken), the live trace of the task it starts, the devices with their
// live state, confirmations of dangerous calls, recent tasks, saved skills and automations.
// Device names, states, model output, observations, skills and automations are untrusted: they only ever become
// text nodes.

import { highlightPython } from "./highlight.js";

const $ = (id) => document.getElementById(id);
const LIVE = new Set(["queued", "running"]);
// Origins whose confirmations this page may answer (the gateway refuses the others: they have their own channel).
const ANSWERED_HERE = new Set(["api", "voice", "web"]);
// Origins of commands a person gave, whose solution the page offers to save as a skill.
const SAVABLE = new Set(["api", "voice"]);
const AUTOMATION = "automation:"; // the origin's prefix of an automation's runs
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

// What an answer stands on: each device call of a step, with how it ended.
function callList(calls) {
  if (!calls.length) return null;
  return el("ul", { class: "calls" }, ...calls.map((call) => el("li", {},
    el("code", {}, `${call.device}.${call.method}${call.target ? " " + call.target : ""}`), " ", chip(call.outcome))));
}

function chip(status) {
  return el("span", { class: "chip", "data-status": status }, status);
}

/** What a task ran without (the model) and who started it, when that is not a person. */
function taskMarks(task) {
  const marks = [
    task.processed_locally ? el("span", { class: "chip local" }, "processed locally") : null,
    task.origin?.startsWith(AUTOMATION) ? el("span", {}, `by automation ${task.origin.slice(AUTOMATION.length)}`)
      : null,
  ].filter(Boolean);
  return marks.flatMap((mark, index) => (index ? [" ", mark] : [mark])); // a space, so they read as two
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

/**
 * Fill `list` with one item per entry, keyed by name. Items whose entry did not change stay as they are, so a
 * live update does not wipe what someone typed into one, close its folds or take its focus.
 */
const rendered = new WeakMap(); // item -> the JSON of the entry it shows
function renderKeyed(list, entries, build) {
  const names = new Set(entries.map((entry) => entry.name));
  const shown = new Map();
  for (const item of [...list.children]) {
    if (names.has(item.dataset.name)) shown.set(item.dataset.name, item);
    else item.remove();
  }
  entries.forEach((entry, index) => {
    const json = JSON.stringify(entry);
    let item = shown.get(entry.name);
    if (!item || rendered.get(item) !== json) {
      const fresh = build(entry);
      fresh.dataset.name = entry.name;
      rendered.set(fresh, json);
      item?.replaceWith(fresh);
      item = fresh;
    }
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] ?? null);
  });
}

/** A yes-or-no question before deleting something; resolves to true for yes. */
function confirmDelete(question, detail) {
  const dialog = $("delete-dialog");
  $("delete-title").textContent = question;
  $("delete-detail").textContent = detail;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "delete"), { once: true });
  });
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

// ---- the API: the gateway's token rides in an HttpOnly cookie this page never sees --------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let signingIn = null; // one question at a time, however many requests were refused together

/** Off loopback the gateway does not hand its token to whoever loads the page: the person pastes it once, and
 * the gateway trades it for the cookie (POST /api/session). */
function signIn() {
  signingIn ??= new Promise((resolve, reject) => {
    const dialog = $("token-dialog");
    $("token-error").textContent = "";
    $("token-input").value = "";
    dialog.onclose = async () => {
      const token = $("token-input").value.trim();
      if (dialog.returnValue !== "save" || !token) {
        signingIn = null;
        reject(new ApiError(401, "unauthorized", "This gateway needs its API token (see `pyuse token`)."));
        return;
      }
      const response = await fetch("/api/session", { method: "POST", headers: { "Content-Type": "application/json" },
                                                      body: JSON.stringify({ token }) }).catch(() => ({ ok: false }));
      if (response.ok) {
        signingIn = null;
        resolve();
        return;
      }
      $("token-input").value = "";
      $("token-error").textContent = "That token was not accepted. Check it and try again.";
      dialog.showModal();
    };
    dialog.showModal();
  });
  return signingIn;
}

async function api(path, { method = "GET", json, body, type } = {}) {
  for (;;) {
    const headers = {};
    if (json !== undefined) headers["Content-Type"] = "application/json";
    if (type) headers["Content-Type"] = type;
    const response = await fetch(path, { method, headers, body: json !== undefined ? JSON.stringify(json) : body });
    if (response.status === 401) {
      await signIn();
      continue;
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      throw new ApiError(response.status, data?.error?.code ?? "http", data?.error?.message ?? response.statusText);
    }
    return data;
  }
}

/** Same origin: the browser sends the cookie with the stream's request by itself. */
function stream(path) {
  const source = new EventSource(path);
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
  if (health.mqtt_broker && !health.mqtt_connected) {
    problems.push(`The MQTT broker ${health.mqtt_broker} is unreachable: MQTT devices show offline until it is back.`);
  }
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
    Promise.all([loadDevices(), loadHistory(), loadConfirmations(), loadSkills(), loadAutomations()])
      .catch((error) => say(error.message, "error"));
  });
  on("device", ({ event, device }) => {
    if (event === "removed") devices.delete(device.id);
    else devices.set(device.id, device);
    renderDevices();
  });
  on("task", taskChanged);
  on("confirmation", confirmationChanged);
  on("automation", automationChanged);
  on("health", () => checkHealth().catch(() => {})); // the MQTT broker came or went
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
  const task = recent.get(id) ?? { id, text, origin: data.origin, status: "queued", created_at: Date.now() / 1000 };
  if (event === "started") task.status = "running";
  if (event === "finished") {
    task.status = data.status;
    task.processed_locally = data.processed_locally;
    // Their counts changed: an automation's runs and last status, a skill's runs (skills run without the model).
    const reloads = [task.origin?.startsWith(AUTOMATION) ? loadAutomations() : null,
      data.processed_locally ? loadSkills() : null];
    Promise.all(reloads).catch((error) => say(error.message, "error"));
  }
  if (!recent.has(id)) recent = new Map([[id, task], ...recent].slice(0, RECENT));
  renderHistory();
}

function renderHistory() {
  $("history").replaceChildren(...[...recent.values()].map((task) => el("li", {},
    el("button", { type: "button", class: "history-item", "aria-current": task.id === shownTask,
                   onclick: () => showTask(task.id) },
      el("span", { class: "history-text" }, task.text),
      chip(task.status),
      el("time", { datetime: new Date(task.created_at * 1000).toISOString() }, clock(task.created_at)),
      task.processed_locally || task.origin?.startsWith(AUTOMATION)
        ? el("span", { class: "marks" }, ...taskMarks(task)) : null))));
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
  task: {}, // origin, status and processed_locally of the task on screen, as far as known

  reset(id, text, origin) {
    shownTask = id;
    this.steps.clear();
    this.task = { origin };
    $("task").hidden = false;
    $("task-title").textContent = text;
    $("trace").replaceChildren();
    for (const id of ["answer", "task-error", "writing"]) $(id).hidden = true;
    $("save-skill-result").textContent = "";
    this.status("queued");
    this.marks();
    renderHistory();
  },

  marks() {
    const marks = taskMarks(this.task);
    $("task-marks").replaceChildren(...marks);
    $("task-marks").hidden = marks.length === 0;
  },

  /** After the model solved a person's command, its code can become a skill that runs without the model. */
  offerSkill() {
    const saved = [...skills.values()].find((skill) => skill.task_id === shownTask);
    const { status, origin, processed_locally: local } = this.task;
    $("save-skill").hidden = !saved && !(status === "done" && !local && SAVABLE.has(origin));
    $("save-skill-button").hidden = Boolean(saved);
    const result = $("save-skill-result");
    if (saved) {
      result.textContent = `Saved as the skill ${signature(saved)}, which runs without the model when you say `
        + `${quoted(saved.triggers)}.`;
      result.dataset.tone = "info";
    } else if (this.task.saved) {
      result.textContent = ""; // its skill was deleted since
    }
    this.task.saved = Boolean(saved);
  },

  status(status) {
    this.task.status = status;
    this.offerSkill();
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

function follow(id, text) {
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

async function showStoredTask(id) {
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
  api(`/api/tasks/${encodeURIComponent(shownTask)}/cancel`, { method: "POST" })
    .catch((error) => say(error.message, "error"));
});

$("save-skill-button").addEventListener("click", async () => {
  const id = shownTask;
  const [button, result] = [$("save-skill-button"), $("save-skill-result")];
  button.disabled = true;
  result.textContent = "The model is writing the skill…";
  result.dataset.tone = "info";
  try {
    await api("/api/skills", { method: "POST", json: { task_id: id } });
    await loadSkills(); // which shows it as saved
  } catch (error) {
    if (shownTask === id) {
      result.textContent = error.message;
      result.dataset.tone = "error";
    }
  } finally {
    button.disabled = false;
  }
});

// ---- saved skills ------------------------------------------------------------------------------------------------

const skills = new Map(); // name -> skill

function signature(skill) {
  return `${skill.name}(${Object.entries(skill.params).map(([name, kind]) => `${name}: ${kind}`).join(", ")})`;
}

function quoted(phrases) {
  return phrases.map((phrase) => `“${phrase}”`).join(", ");
}

async function loadSkills() {
  const listing = await api("/api/skills");
  skills.clear();
  for (const skill of listing.skills) skills.set(skill.name, skill);
  renderKeyed($("skills"), listing.skills, skillItem);
  $("skill-count").textContent = skills.size || "";
  $("skills-empty").hidden = skills.size > 0;
  $("skill-errors").replaceChildren(...listing.errors.map((error) => el("li", {}, error)));
  $("skill-problems").hidden = listing.errors.length === 0;
  // An automation's skill runs without arguments, so only skills without parameters are offered there.
  const choice = $("automation-skill");
  const chosen = choice.value;
  choice.replaceChildren(el("option", { value: "" }, "none"), ...listing.skills
    .filter((skill) => Object.keys(skill.params).length === 0)
    .map((skill) => el("option", { value: skill.name }, skill.name)));
  choice.value = skills.has(chosen) ? chosen : "";
  trace.offerSkill();
}

function parameterField(skill, name, kind) {
  const id = `skill-${skill.name}-${name}`;
  const input = kind === "bool" ? el("input", { id, name, type: "checkbox" })
    : el("input", { id, name, type: "text", required: "", autocomplete: "off",
                    inputmode: { int: "numeric", float: "decimal" }[kind] ?? "text" });
  return el("div", { class: "parameter" }, el("label", { for: id }, `${name} (${kind})`), input);
}

function skillItem(skill) {
  const message = el("p", { class: "error", role: "alert" });
  const form = el("form", { class: "item-actions", onsubmit: (event) => {
    event.preventDefault();
    runSkill(skill, form, message);
  } },
  ...Object.entries(skill.params).map(([name, kind]) => parameterField(skill, name, kind)),
  el("button", { type: "submit", class: "primary", "aria-label": `Run ${skill.name}` }, "Run"),
  el("button", { type: "button", "aria-label": `Delete ${skill.name}`,
                 onclick: () => deleteSkill(skill.name, message) }, "Delete"));
  const failures = skill.failures ? `, ${skill.failures} failed` : "";
  return el("li", { class: "item" },
    el("div", { class: "item-head" },
      el("code", { class: "item-name" }, signature(skill)),
      el("span", { class: "count" }, plural(skill.runs, "run") + failures)),
    el("p", {}, skill.doc),
    skill.triggers.length ? el("p", { class: "item-meta" }, `Says: ${quoted(skill.triggers)}`) : null,
    skill.last_error ? el("p", { class: "item-error" }, `Last error: ${skill.last_error}`) : null,
    form,
    message,
    el("details", { class: "fold", ontoggle: (event) => showSource(skill.name, event.target, message) },
      el("summary", {}, "Source"), el("pre", { class: "code" })));
}

async function showSource(name, fold, message) {
  if (!fold.open) return;
  try {
    const skill = await api(`/api/skills/${encodeURIComponent(name)}`);
    fold.querySelector("pre").replaceChildren(el("code", {}, highlightPython(skill.source)));
  } catch (error) {
    message.textContent = error.message;
  }
}

async function runSkill(skill, form, message) {
  // Values go as typed; the gateway converts them to the parameters' types and says which one does not fit.
  const args = Object.fromEntries(Object.keys(skill.params).map((name) => {
    const input = form.elements.namedItem(name);
    return [name, input.type === "checkbox" ? String(input.checked) : input.value.trim()];
  }));
  message.textContent = "";
  try {
    const created = await api(`/api/skills/${encodeURIComponent(skill.name)}/run`, { method: "POST", json: { args } });
    follow(created.id, signature(skill));
    $("task").scrollIntoView({ block: "start" });
  } catch (error) {
    message.textContent = error.message;
  }
}

async function deleteSkill(name, message) {
  if (!await confirmDelete(`Delete the skill ${name}?`,
    "Its file is removed; commands that say its phrases go to the model again.")) return;
  try {
    await api(`/api/skills/${encodeURIComponent(name)}`, { method: "DELETE" });
    await loadSkills();
  } catch (error) {
    message.textContent = error.message;
  }
}

// ---- automations -------------------------------------------------------------------------------------------------

const automations = new Map(); // name -> summary, in the gateway's order

async function loadAutomations() {
  const listing = await api("/api/automations");
  automations.clear();
  for (const automation of listing.automations) automations.set(automation.name, automation);
  renderAutomations();
}

function automationChanged({ event, automation }) {
  if (event === "removed") automations.delete(automation.name);
  else automations.set(automation.name, automation);
  renderAutomations();
}

function renderAutomations() {
  renderKeyed($("automations"), [...automations.values()], automationItem);
  $("automation-count").textContent = automations.size || "";
  $("automations-empty").hidden = automations.size > 0;
}

function automationItem(automation) {
  const { name } = automation;
  const state = automation.stopped ? "stopped" : automation.enabled ? "on" : "off";
  const message = el("p", { class: "hint", role: "status" });
  const button = (label, onclick) => el("button", { type: "button", class: "quiet", "aria-label": `${label} ${name}`,
                                                    onclick }, label);
  const post = (verb, done) => () => automationAction(name, verb, message, done);
  const runs = [plural(automation.runs, "run"), `${automation.dropped} dropped`,
    automation.running ? `${automation.running} running` : null].filter(Boolean).join(" · ");
  const args = Object.entries(automation.args).map(([key, value]) => `${key}=${JSON.stringify(value)}`).join(", ");
  const does = automation.action
    ? `“${automation.action}”${automation.skill ? `, compiled into the skill ${automation.skill}` : ""}`
    : `the skill ${automation.skill}(${args})`;
  const last = automation.last_task
    ? el("button", { type: "button", class: "link", onclick: () => showTask(automation.last_task) },
      chip(automation.last_status), " show its trace")
    : chip(automation.last_status);
  return el("li", { class: "item", "data-state": state },
    el("div", { class: "item-head" },
      el("span", { class: "item-name" }, name),
      el("span", { class: "badge", "data-state": state }, state)),
    automation.stopped ? el("p", { class: "item-alert" }, `Stopped: ${automation.stopped}`) : null,
    el("dl", { class: "facts" },
      el("dt", {}, "When"), el("dd", {}, automation.describe),
      el("dt", {}, "Does"), el("dd", {}, does),
      el("dt", {}, "Runs"), el("dd", {}, runs),
      ...(automation.last_status ? [el("dt", {}, "Last run"), el("dd", {}, last)] : [])),
    automation.last_error ? el("p", { class: "item-error" }, automation.last_error) : null,
    el("div", { class: "item-actions" },
      button("Run now", post("trigger", (fired) => fired.started ? "Started."
        : "It did not start: it is off, stopped, or already running as often as it may.")),
      automation.stopped ? button("Resume", post("resume")) : null,
      automation.action ? button("Recompile", post("recompile", () => "The next run asks the model again.")) : null,
      automation.source === "api" ? button("Delete", () => deleteAutomation(name, message)) : null),
    message);
}

/** POST an action; `done` phrases its result, otherwise the result is the automation's new summary. */
async function automationAction(name, verb, message, done) {
  message.textContent = "";
  try {
    const result = await api(`/api/automations/${encodeURIComponent(name)}/${verb}`, { method: "POST" });
    if (done) {
      message.textContent = done(result);
      message.dataset.tone = "info";
    } else {
      automationChanged({ event: verb, automation: result });
    }
  } catch (error) {
    message.textContent = error.message;
    message.dataset.tone = "error";
  }
}

async function deleteAutomation(name, message) {
  if (!await confirmDelete(`Delete the automation ${name}?`, "Its trigger no longer runs anything.")) return;
  try {
    await api(`/api/automations/${encodeURIComponent(name)}`, { method: "DELETE" });
    automations.delete(name);
    renderAutomations();
  } catch (error) {
    message.textContent = error.message;
    message.dataset.tone = "error";
  }
}

const TRIGGER_EXAMPLES = { mqtt: "zigbee2mqtt/Hallway Motion Sensor", device: "kitchen_kettle", every: "5m",
                           at: "07:30" };
$("automation-kind").addEventListener("change", (event) => {
  $("automation-value").placeholder = TRIGGER_EXAMPLES[event.target.value];
});

$("automation-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const value = (name) => form.elements.namedItem(name).value.trim();
  // The same fields as [[automations]] in the config; the gateway checks them and says what is wrong.
  const entry = { name: value("name"), trigger: { [value("kind")]: value("value") } };
  if (value("when")) entry.trigger.when = value("when");
  if (value("action")) entry.action = value("action");
  if (value("skill")) entry.skill = value("skill");
  $("automation-add").disabled = true;
  $("automation-error").textContent = "";
  try {
    automationChanged({ event: "added", automation: await api("/api/automations", { method: "POST", json: entry }) });
    form.reset();
    $("automation-value").placeholder = TRIGGER_EXAMPLES.mqtt;
  } catch (error) {
    $("automation-error").textContent = error.message;
  } finally {
    $("automation-add").disabled = false;
  }
});

// ---- confirmations -----------------------------------------------------------------------------------------------

const pending = new Map(); // id -> request this page may answer, oldest first
let asking = null; // the request in the dialog
let expiryTimer = 0;

async function loadConfirmations() {
  // A question asked while the list is on its way arrives as an event; only those known before can have gone.
  const known = [...pending.keys()];
  const waiting = await api("/api/confirmations");
  const ids = new Set(waiting.map((request) => request.id));
  for (const id of known) if (!ids.has(id)) confirmationChanged({ id, state: "resolved" });
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
