// The gateway's web page: a command (typed or spoken), the live trace of the task it starts, the devices with their
// live state, confirmations of dangerous calls, recent tasks, saved skills and automations; one module per panel.
// Device names, states, model output, observations, skills and automations are untrusted: they only ever become
// text nodes.
//
// This module wires them: the gateway's health, and its one event stream, whose events go to the panels they change.

import { api, stream } from "./api.js";
import { automationChanged, loadAutomations } from "./automations.js";
import "./command.js";
import { confirmationChanged, loadConfirmations } from "./confirmations.js";
import { deviceChanged, loadDevices } from "./devices.js";
import { $, say } from "./dom.js";
import { loadHistory, taskChanged } from "./history.js";
import { loadSkills } from "./skills.js";
import { AUTOMATION } from "./words.js";

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
  on("device", deviceChanged);
  on("task", (change) => {
    const task = taskChanged(change);
    if (change.event !== "finished") return;
    // Their counts changed: an automation's runs and last status, a skill's runs (skills run without the model).
    Promise.all([task.origin?.startsWith(AUTOMATION) ? loadAutomations() : null,
      task.processed_locally ? loadSkills() : null])
      .catch((error) => say(error.message, "error"));
  });
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

checkHealth()
  .catch((error) => say(error.message, "error"))
  .finally(watchGateway);
