import { api, stream, ApiError } from "./api.js";
import { h, link, badge, fmtTime, fmtDur, message, navigate } from "./ui.js";

const unfinished = new Set(["queued", "preparing", "running"]);
const phases = ["queue", "prepare", "start", "run", "logs"];

// pollMs is how often the page looks at an unfinished task: 1 s, or what
// localStorage "mayfly.pollMs" says (200 ms to 10 min), read as the page
// opens. A long one leaves the status to what the page does on the task's
// first output and at the end of its log, which is how the browser test
// proves those bring it up to date.
function pollMs() {
  let v = NaN;
  try { v = Number(localStorage.getItem("mayfly.pollMs")); } catch { /* storage refused: the default */ }
  return Number.isInteger(v) && v >= 200 && v <= 600000 ? v : 1000;
}

export async function task(page, id) {
  const { main } = page;
  const path = "/tasks/" + encodeURIComponent(id);
  let t = await api("GET", path, undefined, page.signal);

  const head = h("div");
  const fields = h("dl", { class: "fields", id: "task-fields" });
  const timeline = h("div", { id: "timeline" });
  const payload = h("pre", { class: "payload", id: "payload" });
  const log = h("pre", { id: "log" });
  const logNote = h("span", { class: "muted", id: "log-state" });
  const out = h("div", { id: "task-msg" });
  main.append(head, out,
    h("div", { class: "row" },
      h("div", { class: "card" }, h("h2", {}, "Fields"), fields),
      h("div", { class: "card" }, h("h2", {}, "Timeline"), timeline, h("h2", {}, "Payload"), payload)),
    h("div", { class: "card" }, h("h2", {}, "Log ", logNote), log));

  const act = (what, fn) => h("button", {
    type: "button", id: what.toLowerCase(), class: what === "Cancel" ? "danger" : "",
    onclick: async (ev) => {
      ev.target.disabled = true;
      try { await fn(); } catch (e) { message(out, e.message); ev.target.disabled = false; }
    },
  }, what);

  function draw() {
    const st = t.phase || t.status;
    const buttons = [];
    if (unfinished.has(st)) {
      buttons.push(act("Cancel", async () => {
        await api("POST", path + "/cancel", {});
        t = await api("GET", path, undefined, page.signal);
        draw();
      }));
    } else if (!t.retry_at) {
      buttons.push(act("Retry", async () => {
        const r = await api("POST", path + "/retry", {});
        navigate("/tasks/" + encodeURIComponent(r.tasks[0].id));
      }));
    }
    head.replaceChildren(h("h1", {}, "Task ", h("span", { class: "mono" }, t.id), " ", h("span", { id: "status" }, badge(st)),
      h("span", { class: "actions" }, ...buttons)));
    const rows = [
      ["code", link("/codes/" + encodeURIComponent(t.code_id), t.code_name)], ["revision", t.code_rev], ["status", st],
      ["message", t.msg || "—"], ["exit code", t.exit_code ?? "—"], ["label", t.label || "—"], ["cluster", t.cluster || "default"],
      ["priority", t.priority], ["timeout", t.timeout + " s"], ["progress", t.percent + "%"], ["attempt", t.attempt],
      ["runner", t.runner_id || "—"], ["created", fmtTime(t.created_at)], ["due", fmtTime(t.due_at)], ["started", fmtTime(t.start_time)],
      ["ended", fmtTime(t.end_time)], ["duration", t.duration ? fmtDur(t.duration) : "—"], ["log size", t.log_size + " bytes"],
      ["retry of", t.retry_of ? link("/tasks/" + encodeURIComponent(t.retry_of), t.retry_of) : "—"],
      ["retried as", t.retry_at ? link("/tasks/" + encodeURIComponent(t.retry_at), t.retry_at) : "—"],
      ["schedule", t.schedule_id || "—"],
    ];
    fields.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    payload.textContent = t.payload_base64 ? "(binary, base64) " + t.payload_base64 : t.payload || "";
    drawTimeline();
  }

  function drawTimeline() {
    const tm = t.timings || {};
    const total = phases.reduce((a, p) => a + (tm[p] || 0), 0);
    const rows = phases.filter((p) => tm[p] !== undefined).map((p) => h("tr", {}, h("td", {}, p), h("td", { class: "num" }, fmtDur(tm[p]))));
    const bar = h("div", { class: "timeline" }, phases.filter((p) => tm[p]).map((p) =>
      h("div", { class: "seg seg-" + p, title: `${p} ${fmtDur(tm[p])}`, "data-w": String(tm[p] / total) })));
    // Widths are set through the DOM, not a style attribute the policy
    // would refuse.
    for (const seg of bar.children) seg.style.flexGrow = seg.getAttribute("data-w");
    const marks = [["queued", t.created_at], ["due", t.due_at], ["started", t.start_time], ["ended", t.end_time]]
      .map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, fmtTime(v))));
    timeline.replaceChildren(total ? bar : h("p", { class: "muted" }, "No timings recorded yet."),
      h("table", {}, h("tbody", {}, marks, rows)));
  }

  // The log streams from GET .../log?follow=1 until the task ends; a
  // broken stream is picked up again from the start.
  let text = "";
  async function follow() {
    for (let round = 0; !page.signal.aborted; round++) {
      logNote.textContent = "(streaming)";
      text = "";
      log.textContent = "";
      try {
        await stream(path + "/log?follow=1", (piece) => {
          text += piece;
          log.textContent = text;
          log.scrollTop = log.scrollHeight;
          // Output means the task has started: a page still showing it
          // queued is brought up to date now, not at the next poll.
          if ((t.phase || t.status) === "queued") refresh();
        }, page.signal);
        logNote.textContent = text ? "(complete)" : "(no output)";
        // The stream ends once the task has ended: show how it ended now,
        // not at the next poll. A refresh already under way may have read
        // the task before its end, so this one comes after it.
        await refreshing;
        await refresh();
        return;
      } catch (e) {
        if (page.signal.aborted) return;
        if (e instanceof ApiError && e.status === 404) { logNote.textContent = "(no log)"; return; }
        logNote.textContent = "(stream broken, retrying)";
        await new Promise((r) => setTimeout(r, Math.min(5000, 500 * (round + 1))));
      }
    }
  }

  let refreshing = null;
  function refresh() {
    refreshing ??= api("GET", path, undefined, page.signal)
      .then((got) => { t = got; draw(); })
      .catch(() => {})
      .finally(() => { refreshing = null; });
    return refreshing;
  }

  draw();
  follow();
  page.every(pollMs(), async () => {
    if (!unfinished.has(t.phase || t.status)) return;
    await refresh();
  });
}
