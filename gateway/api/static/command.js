// The command: typed, or spoken into the browser's speech recognition or, where it has none, recorded for the
// gateway to transcribe. Either way it starts a task that the task panel follows.

import { api } from "./api.js";
import { $, el, say } from "./dom.js";
import { follow } from "./trace.js";

const RECORDING_LIMIT_MS = 30_000;

/** Starts a task for `text` and follows it in the task panel; false (and the reason said) when it was refused. */
export async function submit(text) {
  try {
    const created = await api("/api/tasks", { method: "POST", json: { text } });
    say("");
    follow(created.id, text);
    return true;
  } catch (error) {
    say(error.message, "error");
    return false;
  }
}

async function run(text) {
  $("send").disabled = true;
  if (await submit(text)) $("command-text").value = "";
  $("send").disabled = false;
}

$("command-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("command-text").value.trim();
  if (text) run(text);
});

/** The placeholder and a few examples, from what works on the devices present (GET /api/help). A tap on one puts
 * it in the box, to send as it is or changed. */
export function showExamples(examples) {
  $("command-text").placeholder = examples[0] ?? "";
  $("examples").replaceChildren(...examples.slice(0, 4).map((example) => el("button", {
    type: "button", class: "example", onclick: () => {
      $("command-text").value = example;
      $("command-text").focus();
    },
  }, example)));
  $("examples").hidden = examples.length === 0;
}

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
