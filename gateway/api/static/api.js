// The gateway's API: JSON requests and event streams. The gateway's token rides in an HttpOnly cookie this page
// never sees; off loopback the person pastes it once, when a request is refused.

import { $ } from "./dom.js";

export class ApiError extends Error {
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

export async function api(path, { method = "GET", json, body, type } = {}) {
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
export function stream(path) {
  const source = new EventSource(path);
  const on = (kind, handle) => source.addEventListener(kind, (event) => handle(JSON.parse(event.data)));
  return { source, on };
}
