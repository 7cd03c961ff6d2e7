import { api } from "./api.js";
import { h, table, field, message, fmtTime, badge, navigate } from "./ui.js";

// nextRuns lists the next few starts of a run_every schedule (a cron
// schedule shows the one the server computed).
function nextRuns(s, n = 3) {
  if (s.status !== "scheduled" || !s.next_start) return [];
  const out = [new Date(s.next_start)];
  if (!s.run_every) return out;
  const left = s.run_times ? s.run_times - s.run_count : Infinity;
  const end = s.end_at ? new Date(s.end_at) : null;
  while (out.length < Math.min(n, left)) {
    const t = new Date(out[out.length - 1].getTime() + s.run_every * 1000);
    if (end && t > end) break;
    out.push(t);
  }
  return out;
}

export async function schedules(page) {
  const { main } = page;
  const out = h("div", { id: "schedule-msg" });
  const list = h("div", { id: "schedules" });
  const code = h("input", { id: "s-code", required: true, placeholder: "code name" });
  const every = h("input", { type: "number", min: 60, id: "s-every", placeholder: "seconds, 60 or more" });
  const cron = h("input", { id: "s-cron", placeholder: "or cron: */5 * * * *" });
  const times = h("input", { type: "number", min: 1, id: "s-times", placeholder: "no limit" });
  const label = h("input", { id: "s-label", placeholder: "label" });
  const payload = h("textarea", { id: "s-payload", placeholder: "payload" });
  const form = h("form", {
    class: "inline", id: "new-schedule",
    onsubmit: async (ev) => {
      ev.preventDefault();
      const s = { code_name: code.value.trim(), payload: payload.value, label: label.value };
      if (every.value) s.run_every = Number(every.value);
      if (cron.value.trim()) s.cron = cron.value.trim();
      if (times.value) s.run_times = Number(times.value);
      try {
        await api("POST", "/schedules", { schedules: [s] });
        message(out, "Scheduled.", true);
        form.reset();
        await load();
      } catch (e) { message(out, e.message); }
    },
  }, field("Code", code), field("Run every (s)", every), field("Cron", cron), field("Run times", times), field("Label", label),
  field("Payload", payload), h("button", { type: "submit" }, "Create"));
  main.append(h("h1", {}, "Schedules"), list, h("div", { class: "card" }, h("h2", {}, "New schedule"), form, out));

  const q = new URLSearchParams(location.search);
  const pageNo = Math.max(0, Number(q.get("page")) || 0);
  async function load() {
    const r = await api("GET", `/schedules?per_page=30&page=${pageNo}`, undefined, page.signal);
    list.replaceChildren(table(["Code", "Status", "Every", "#Runs", "Label", "Next runs", "Last run", ""],
      r.schedules.map((s) => [s.code_name, badge(s.status), s.cron ? `cron ${s.cron}` : s.run_every ? `${s.run_every} s` : "once",
        s.run_times ? `${s.run_count} / ${s.run_times}` : s.run_count, s.label || "",
        h("div", {}, nextRuns(s).map((t) => h("div", {}, fmtTime(t)))), fmtTime(s.last_run_time),
        s.status === "scheduled" ? h("button", {
          type: "button", class: "danger", "data-id": s.id,
          onclick: async () => {
            try { await api("POST", `/schedules/${encodeURIComponent(s.id)}/cancel`, {}); await load(); } catch (e) { message(out, e.message); }
          },
        }, "Cancel") : ""]),
      "No schedules."),
    h("div", { class: "pager" },
      h("button", { type: "button", class: "secondary", disabled: pageNo === 0, onclick: () => navigate(`/schedules?page=${pageNo - 1}`) }, "Newer"),
      h("span", { class: "muted" }, `page ${pageNo + 1}`),
      h("button", { type: "button", class: "secondary", disabled: r.schedules.length < 30, onclick: () => navigate(`/schedules?page=${pageNo + 1}`) }, "Older")));
  }
  await load();
  page.every(10000, load);
}
