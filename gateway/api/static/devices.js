// Devices: grouped by room, named ones first, each with its readings as people read them ("power on",
// "brightness 40 %", worked out by the gateway) and, where its kind has them, a switch and a brightness slider.
// A tap is a command like a typed one ("turn off the kitchen kettle"): the same fast path, policy and
// confirmations; the card changes when the device reports its new state.

import { api } from "./api.js";
import { submit } from "./command.js";
import { $, el, renderKeyed } from "./dom.js";
import { trace } from "./trace.js";
import { LIVE } from "./words.js";

const devices = new Map();
let area = ""; // "" shows every area
const SETTLE_MS = 600; // a slider stays put this long before its level is sent
const listeners = []; // called with the devices after each change (the command's examples)

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

export function onDevices(listener) {
  listeners.push(listener);
}

/** A name a person gave, not one made from an id ("koradka3005pv2_0"): those devices come first. */
export function named(device) {
  return device.name !== device.id && /[A-Z\s]/.test(device.name);
}

function renderAreas() {
  const areas = [...new Set([...devices.values()].map((device) => device.area).filter(Boolean))].sort();
  const container = $("areas");
  if (container.dataset.areas === areas.join("\n")) return; // rebuilding would lose the focused chip
  container.dataset.areas = areas.join("\n");
  container.hidden = areas.length < 2;
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

function stateValue(value) {
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function readings(device) {
  const shown = device.display.length ? el("dl", { class: "state readings" },
    ...device.display.map(({ label, value }) => el("div", { class: "state-item", "data-key": label },
      el("dt", {}, label), el("dd", {}, value)))) : null;
  // Everything the device reported, for whoever needs the raw fields (a lab instrument's, uptime, heap…).
  const keys = Object.keys(device.state);
  const raw = keys.length ? el("details", { class: "more-state" }, el("summary", {}, `All ${keys.length} fields`),
    el("dl", { class: "state" }, ...keys.map((key) => el("div", { class: "state-item" },
      el("dt", {}, key), el("dd", {}, stateValue(device.state[key])))))) : null;
  return [shown, raw];
}

/** Runs `command`, its control busy until the device reports a change (a new card) or the task ends. */
async function tap(control, command) {
  control.setAttribute("aria-busy", "true");
  const settled = () => {
    if (LIVE.has(trace.task.status)) return;
    control.removeAttribute("aria-busy");
    $("task").removeEventListener("status", settled);
  };
  if (await submit(command)) $("task").addEventListener("status", settled);
  else control.removeAttribute("aria-busy");
}

/** Commands that work on these devices, for when the gateway cannot say (GET /api/help). */
export function examplesFor(known) {
  const usable = known.filter((device) => named(device) && device.online);
  const switchable = usable.find((device) => device.controls.switch);
  const dimmable = usable.find((device) => device.controls.dimmable);
  return [switchable && `turn on the ${switchable.name.toLowerCase()}`,
    dimmable && `set the ${dimmable.name.toLowerCase()} to 50%`].filter(Boolean);
}

function controls(device) {
  const { switch: switchable, is_on: on, dimmable, level } = device.controls;
  if (!device.online || !(switchable || dimmable)) return null;
  const name = device.name.toLowerCase();
  const power = switchable ? el("button", {
    type: "button", role: "switch", class: "switch", "data-control": "power", "aria-checked": on === true,
    "aria-label": `${device.name} power`,
    onclick: (event) => tap(event.currentTarget, `turn ${on ? "off" : "on"} the ${name}`),
  }, el("span", { class: "switch-track", "aria-hidden": "true" }), on ? "On" : "Off") : null;
  const slider = dimmable ? el("input", {
    type: "range", class: "level", "data-control": "level", min: 0, max: 100, step: 5, value: level ?? 50,
    "aria-label": `${device.name} brightness`, "aria-valuetext": `${level ?? 50} %`,
    oninput: (event) => event.currentTarget.setAttribute("aria-valuetext", `${event.currentTarget.value} %`),
    onchange: (event) => { // arrow keys change it step by step: one command for where it comes to rest
      const slider = event.currentTarget;
      clearTimeout(slider.settling);
      slider.settling = setTimeout(() => tap(slider, `set the ${name} to ${slider.value}%`), SETTLE_MS);
    },
  }) : null;
  return el("div", { class: "controls" }, power, slider);
}

/** Under its room's heading, "Living Room TV" reads "TV". */
function shortName(device) {
  const prefix = `${device.area} `;
  const rest = device.name.slice(prefix.length);
  return device.area && device.name.toLowerCase().startsWith(prefix.toLowerCase()) && rest.trim() ? rest
    : device.name;
}

function card(device) {
  return el("li", { class: "device", "data-id": device.id, "data-online": device.online },
    el("div", { class: "device-head" },
      el("span", { class: "device-name" }, shortName(device)),
      device.online ? null : el("span", { class: "badge" }, "offline")),
    el("div", { class: "device-meta" }, device.kind.replaceAll("_", " ")),
    ...readings(device),
    controls(device));
}

function roomSection(room) {
  const heading = `room-${room || "none"}`.replace(/\W+/g, "-");
  return el("section", { class: "room", "data-room": room, "aria-labelledby": heading },
    el("h3", { id: heading }, room ? room[0].toUpperCase() + room.slice(1) : "No room"),
    el("ul", { class: "devices" }));
}

function byRoom(shown) {
  const rooms = new Map();
  for (const device of shown) rooms.set(device.area, [...(rooms.get(device.area) ?? []), device]);
  return [...rooms.entries()].sort(([a], [b]) => (!a) - (!b) || a.localeCompare(b)); // no room: last
}

function renderDevices() {
  renderAreas();
  for (const button of $("areas").children) button.setAttribute("aria-pressed", button.dataset.area === area);
  const words = $("device-search").value.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = [...devices.values()]
    .filter((device) => (!area || device.area === area) && matchesSearch(device, words))
    .sort((a, b) => named(b) - named(a) || a.name.localeCompare(b.name));
  // Only the cards of devices that changed are rebuilt, so a slider being dragged or a fold left open elsewhere
  // stay as they are; a rebuilt card keeps its open fold and its focused control.
  const open = new Set([...$("devices").querySelectorAll("details[open]")]
    .map((fold) => fold.closest("li").dataset.name));
  const focused = document.activeElement?.closest?.(".device");
  const control = document.activeElement?.dataset?.control;
  const container = $("devices");
  const sections = byRoom(shown).map(([room, inRoom]) => {
    const section = [...container.children].find((child) => child.dataset.room === room) ?? roomSection(room);
    // Keyed by id (renderKeyed keys by `name`): two rooms may each have a "Ceiling Light".
    renderKeyed(section.querySelector("ul"), inRoom.map((device) => ({ ...device, name: device.id })), (entry) => {
      const item = card(devices.get(entry.name));
      if (open.has(entry.name)) item.querySelector("details")?.setAttribute("open", "");
      return item;
    });
    return section;
  });
  sections.forEach((section, index) => {
    if (container.children[index] !== section) container.insertBefore(section, container.children[index] ?? null);
  });
  while (container.children.length > sections.length) container.lastElementChild.remove();
  if (focused && control && !focused.isConnected) {
    container.querySelector(`.device[data-name="${CSS.escape(focused.dataset.name)}"] [data-control="${control}"]`)
      ?.focus();
  }
  $("device-count").textContent = devices.size ? `${shown.length} of ${devices.size}` : "";
  $("devices-empty").hidden = shown.length > 0;
  $("devices-empty").textContent = devices.size ? "No device matches." : "No devices known yet.";
  for (const listener of listeners) listener([...devices.values()]);
}

$("device-search").addEventListener("input", renderDevices);
