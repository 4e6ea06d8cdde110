// Automations: each with its trigger, what it does, its runs and its actions; and the form that adds one.

import { api } from "./api.js";
import { $, chip, confirmDelete, el, plural, renderKeyed } from "./dom.js";
import { showTask } from "./history.js";

const automations = new Map(); // name -> summary, in the gateway's order

export async function loadAutomations() {
  const listing = await api("/api/automations");
  automations.clear();
  for (const automation of listing.automations) automations.set(automation.name, automation);
  renderAutomations();
}

export function automationChanged({ event, automation }) {
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
