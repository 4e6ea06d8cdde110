// The gateway's web page: a command (typed or spoken), the live trace of the task it starts, the devices with their
// live state, confirmations of dangerous calls, recent tasks, saved skills and automations; one module per panel.
// Device names, states, model output, observations, skills and automations are untrusted: they only ever become
// text nodes.
//
// This module wires them: the gateway's health, and its one event stream, whose events go to the panels they change.

import { api, stream } from "./api.js";
import { automationChanged, loadAutomations } from "./automations.js";
import { showExamples } from "./command.js";
import { confirmationChanged, loadConfirmations } from "./confirmations.js";
import { deviceChanged, examplesFor, loadDevices, onDevices } from "./devices.js";
import { $, say } from "./dom.js";
import { loadHistory, taskChanged } from "./history.js";
import { loadQuestions, questionChanged } from "./questions.js";
import { loadSkills } from "./skills.js";
import { AUTOMATION } from "./words.js";

let health = null; // the gateway's, as last asked
let modelMissed = false; // the last command finished refused for want of a model

async function checkHealth() {
  health = await api("/api/health");
  $("gateway-name").textContent = health.gateway;
  showProblems();
}

/** The banner, only about what cannot work: without a model, simple commands still run on the fast path. */
function showProblems() {
  const problems = [];
  if (!health.model_configured && modelMissed) {
    problems.push("No model is configured, so commands the gateway does not know by itself cannot run: set [llm] "
      + "base_url.");
  }
  if (health.sandbox_refusal) problems.push(`Model code is refused here: ${health.sandbox_refusal}`);
  if (health.mqtt_broker && !health.mqtt_connected) {
    problems.push(`The MQTT broker ${health.mqtt_broker} is unreachable: MQTT devices show offline until it is back.`);
  }
  $("notice").textContent = problems.join(" ");
  $("notice").hidden = problems.length === 0;
}

let examplesFrom = ""; // the device ids the examples were made for
onDevices((known) => {
  const ids = known.map((device) => device.id).sort().join("\n");
  if (ids === examplesFrom) return;
  examplesFrom = ids;
  api("/api/help").then((help) => showExamples(help.examples)).catch(() => showExamples(examplesFor(known)));
});

function setConnected(connected) {
  const indicator = $("connection");
  indicator.textContent = connected ? "live" : "reconnecting…";
  indicator.dataset.connected = connected;
}

function watchGateway() {
  const { source, on } = stream("/api/events");
  on("hello", () => { // a (re)connection: catch up on whatever happened while away
    setConnected(true);
    Promise.all([loadDevices(), loadHistory(), loadConfirmations(), loadQuestions(), loadSkills(), loadAutomations()])
      .catch((error) => say(error.message, "error"));
  });
  on("device", deviceChanged);
  on("task", (change) => {
    const task = taskChanged(change);
    if (change.event !== "finished") return;
    modelMissed = change.status === "failed" && /no model is configured/.test(change.error ?? "");
    if (health) showProblems();
    // Their counts changed: an automation's runs and last status, a skill's runs (skills run without the model).
    Promise.all([task.origin?.startsWith(AUTOMATION) ? loadAutomations() : null,
      task.processed_locally ? loadSkills() : null])
      .catch((error) => say(error.message, "error"));
  });
  on("confirmation", confirmationChanged);
  on("question", questionChanged);
  on("automation", automationChanged);
  on("health", () => checkHealth().catch(() => {})); // the MQTT broker came or went
  source.onerror = () => {
    setConnected(false);
    if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
    // Refused (a missing token) or the gateway restarting: ask for health, which asks for a token if needed.
    setTimeout(() => checkHealth().catch(() => {}).finally(watchGateway), 2000);
  };
}

checkHealth()
  .catch((error) => say(error.message, "error"))
  .finally(watchGateway);
