// Devices: every known device with its live state, filtered by area and by the words searched for.

import { api } from "./api.js";
import { $, el } from "./dom.js";

const devices = new Map();
let area = ""; // "" shows every area

export async function loadDevices() {
  const known = await api("/api/devices");
  devices.clear();
  for (const device of known) devices.set(device.id, device);
  renderDevices();
}

export function deviceChanged({ event, device }) {
  if (event === "removed") devices.delete(device.id);
  else devices.set(device.id, device);
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

$("device-search").addEventListener("input", renderDevices);
