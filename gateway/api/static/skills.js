// Saved skills: each with its parameters to run it by, its source and a delete; the offer to save the task on
// screen as one; and the skills an automation may run.

import { api } from "./api.js";
import { $, confirmDelete, el, plural, renderKeyed } from "./dom.js";
import { highlightPython } from "./highlight.js";
import { follow, trace } from "./trace.js";
import { SAVABLE } from "./words.js";

const skills = new Map(); // name -> skill

function signature(skill) {
  return `${skill.name}(${Object.entries(skill.params).map(([name, kind]) => `${name}: ${kind}`).join(", ")})`;
}

function quoted(phrases) {
  return phrases.map((phrase) => `“${phrase}”`).join(", ");
}

export async function loadSkills() {
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
  offerSkill();
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

/** After the model solved a person's command, its code can become a skill that runs without the model. */
function offerSkill() {
  const { id, status, origin, processed_locally: local } = trace.task;
  const saved = [...skills.values()].find((skill) => skill.task_id === id);
  $("save-skill").hidden = !saved && !(status === "done" && !local && SAVABLE.has(origin));
  $("save-skill-button").hidden = Boolean(saved);
  const result = $("save-skill-result");
  if (saved) {
    result.textContent = `Saved as the skill ${signature(saved)}, which runs without the model when you say `
      + `${quoted(saved.triggers)}.`;
    result.dataset.tone = "info";
  } else if (trace.task.saved) {
    result.textContent = ""; // its skill was deleted since
  }
  trace.task.saved = Boolean(saved);
}

$("task").addEventListener("status", offerSkill);

$("save-skill-button").addEventListener("click", async () => {
  const { id } = trace.task;
  const [button, result] = [$("save-skill-button"), $("save-skill-result")];
  button.disabled = true;
  result.textContent = "The model is writing the skill…";
  result.dataset.tone = "info";
  try {
    await api("/api/skills", { method: "POST", json: { task_id: id } });
    await loadSkills(); // which shows it as saved
  } catch (error) {
    if (trace.task.id === id) {
      result.textContent = error.message;
      result.dataset.tone = "error";
    }
  } finally {
    button.disabled = false;
  }
});
