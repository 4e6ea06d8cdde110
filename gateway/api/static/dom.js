// What every panel builds the page with. Untrusted text only ever becomes text nodes: `el` takes no markup.

export const $ = (id) => document.getElementById(id);

/** An element with attributes and children; string children become text nodes, never markup. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== ""));
  return node;
}

export function chip(status) {
  return el("span", { class: "chip", "data-status": status }, status);
}

export function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

export function clock(seconds) {
  const date = new Date(seconds * 1000);
  const today = date.toDateString() === new Date().toDateString();
  return date.toLocaleString([], today ? { hour: "2-digit", minute: "2-digit" }
    : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** The line under the command: what the page has to say that belongs to no panel, errors included. */
export function say(message, tone = "info") {
  const hint = $("command-hint");
  hint.textContent = message;
  hint.dataset.tone = tone;
}

/**
 * Fill `list` with one item per entry, keyed by name. Items whose entry did not change stay as they are, so a
 * live update does not wipe what someone typed into one, close its folds or take its focus.
 */
const rendered = new WeakMap(); // item -> the JSON of the entry it shows
export function renderKeyed(list, entries, build) {
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
export function confirmDelete(question, detail) {
  const dialog = $("delete-dialog");
  $("delete-title").textContent = question;
  $("delete-detail").textContent = detail;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "delete"), { once: true });
  });
}
