// The dashboard's router: one HTML page, drawn by the module of the path.
import { loadSession, session, signIn, signOut, ApiError } from "./api.js";
import { h, field, message } from "./ui.js";
import { overview } from "./overview.js";
import { codes, code } from "./codes.js";
import { tasks } from "./tasks.js";
import { task } from "./task.js";
import { schedules } from "./schedules.js";
import { runners } from "./runners.js";

const routes = [
  [/^\/$/, overview],
  [/^\/codes$/, codes],
  [/^\/codes\/([^/]+)$/, code],
  [/^\/tasks$/, tasks],
  [/^\/tasks\/([^/]+)$/, task],
  [/^\/schedules$/, schedules],
  [/^\/runners$/, runners],
];

const main = document.getElementById("main");
let cleanup = null;

// page is what every page gets: where to draw, and what to stop once the
// user leaves (polls, streams).
function newPage() {
  const ctl = new AbortController();
  const timers = [];
  return {
    main, signal: ctl.signal,
    every(ms, fn) {
      let stopped = false, id = 0;
      const tick = async () => {
        if (stopped) return;
        try { await fn(); } catch (e) { if (!ctl.signal.aborted) console.warn(e); }
        if (!stopped) id = setTimeout(tick, ms);
      };
      timers.push(() => { stopped = true; clearTimeout(id); });
      id = setTimeout(tick, ms);
    },
    stop() { ctl.abort(); timers.forEach((f) => f()); },
  };
}

export function go(path) {
  history.pushState(null, "", path);
  render();
}

async function render() {
  if (cleanup) cleanup.stop();
  cleanup = null;
  const path = location.pathname;
  if (!session.project_id || path === "/signin") {
    showSignIn();
    return;
  }
  for (const a of document.querySelectorAll("#nav a")) {
    const href = a.getAttribute("href");
    a.classList.toggle("active", href === "/" ? path === "/" : path.startsWith(href));
  }
  for (const [re, fn] of routes) {
    const m = path.match(re);
    if (!m) continue;
    const page = newPage();
    cleanup = page;
    main.replaceChildren();
    try {
      await fn(page, ...m.slice(1).map(decodeURIComponent));
    } catch (e) {
      if (page.signal.aborted) return;
      if (e instanceof ApiError && e.status === 401) {
        session.project_id = "";
        showSignIn("Your session ended: sign in again.");
        return;
      }
      main.replaceChildren(h("h1", {}, e instanceof ApiError && e.status === 404 ? "Not found" : "Error"),
        h("div", { class: "msg err", id: "page-error" }, (e instanceof ApiError ? e.status + ": " : "") + e.message));
    }
    return;
  }
  main.replaceChildren(h("h1", {}, "Not found"), h("p", { class: "muted" }, "No page at this address."));
}

function chrome() {
  const signedIn = !!session.project_id;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn
    ? `${session.project_name || "project"} · ${session.project_id}${session.kind === "admin" ? " · admin" : ""}` : "";
}

function showSignIn(note) {
  chrome();
  const token = h("input", { type: "password", name: "token", id: "token", autocomplete: "current-password", required: true });
  const project = h("input", { name: "project_id", id: "project_id", placeholder: "only for an admin token", autocomplete: "off" });
  const out = h("div", { id: "signin-msg" });
  if (note) message(out, note);
  const form = h("form", {
    id: "signin",
    onsubmit: async (ev) => {
      ev.preventDefault();
      message(out, "");
      try {
        await signIn(token.value, project.value);
        // The browser keeps the cookie only if it accepts it here (a
        // Secure cookie over plain http to a host other than localhost
        // is dropped): ask again before going on.
        if (!(await loadSession())) {
          message(out, "Signed in, but the browser did not keep the session cookie: serve the dashboard over HTTPS (or from localhost).");
          return;
        }
        chrome();
        go(location.pathname === "/signin" ? "/" : location.pathname + location.search);
      } catch (e) {
        message(out, e.message || String(e));
      }
    },
  }, field("Token", token), field("Project id", project), h("button", { type: "submit" }, "Sign in"), out);
  main.replaceChildren(h("div", { class: "card signin" }, h("h1", {}, "Sign in to Mayfly"),
    h("p", { class: "muted" }, "A project token, or an admin token and a project id. The token is kept in an HttpOnly cookie for this site only."),
    form));
  token.focus();
}

document.addEventListener("click", (ev) => {
  const a = ev.target.closest("a[data-link]");
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", render);
document.getElementById("signout").addEventListener("click", async () => {
  try { await signOut(); } catch (e) { console.warn(e); }
  session.project_id = "";
  history.pushState(null, "", "/signin");
  render();
});

(async () => {
  try {
    await loadSession();
  } catch (e) {
    console.warn(e);
  }
  chrome();
  render();
})();
