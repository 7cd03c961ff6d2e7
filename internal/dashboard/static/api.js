// The dashboard talks to the project's own /2/ API with the session
// cookie; every change carries the session's X-Mayfly-CSRF value.

export const session = { project_id: "", project_name: "", kind: "", csrf: "" };

export class ApiError extends Error {
  constructor(status, msg) {
    super(msg || "HTTP " + status);
    this.status = status;
  }
}

async function send(method, url, body, signal) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-Mayfly-CSRF"] = session.csrf;
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(url, { method, headers, body: payload, credentials: "same-origin", signal });
  if (!res.ok) {
    let msg = "";
    try { msg = (await res.json()).msg; } catch { /* not JSON */ }
    throw new ApiError(res.status, msg || res.statusText);
  }
  return res;
}

// api calls a route of the signed-in project: api("GET", "/tasks?page=1").
export async function api(method, path, body, signal) {
  const res = await send(method, "/2/projects/" + encodeURIComponent(session.project_id) + path, body, signal);
  return res.json();
}

// global calls a route outside the project (/2/runners, /2/stacks).
export async function global(method, path) {
  return (await send(method, path)).json();
}

// stream reads a text answer as it arrives and calls onText with each
// piece; it resolves when the answer ends.
export async function stream(path, onText, signal) {
  const res = await send("GET", "/2/projects/" + encodeURIComponent(session.project_id) + path, undefined, signal);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    onText(dec.decode(value, { stream: true }));
  }
  onText(dec.decode());
}

export async function loadSession() {
  const res = await fetch("/dashboard/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (res.status === 401) return false;
  if (!res.ok) {
    let msg = "";
    try { msg = (await res.json()).msg; } catch { /* not JSON */ }
    throw new ApiError(res.status, msg);
  }
  Object.assign(session, await res.json());
  return true;
}

export async function signIn(token, projectID) {
  const res = await fetch("/dashboard/session", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ token, project_id: projectID }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, body.msg);
  Object.assign(session, body);
}

export async function signOut() {
  await send("DELETE", "/dashboard/session");
  Object.assign(session, { project_id: "", project_name: "", kind: "", csrf: "" });
}
