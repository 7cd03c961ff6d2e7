import { api } from "./api.js";
import { h, link, table, barChart, lineChart, fmtDur } from "./ui.js";

const ended = ["complete", "error", "timeout", "killed", "cancelled"];

export async function overview(page) {
  const { main } = page;
  let window = new URLSearchParams(location.search).get("window") === "day" ? "day" : "hour";
  const body = h("div", { id: "overview" });
  const pick = (w) => h("button", {
    type: "button", class: w === window ? "" : "secondary", id: "window-" + w,
    onclick: () => { window = w; history.replaceState(null, "", w === "day" ? "/?window=day" : "/"); draw(); },
  }, w === "hour" ? "Last hour" : "Last day");
  const head = h("div", { class: "row" });
  main.append(h("h1", {}, "Overview"), head, body);

  let last = null;
  async function load() {
    last = await api("GET", "/overview?window=" + window, undefined, page.signal);
    draw();
  }
  function draw() {
    head.replaceChildren(h("div", { class: "pager" }, pick("hour"), pick("day")));
    if (!last) return;
    const o = last;
    const rows = o.codes.map((c) => {
      const n = (s) => c.counts[s] || 0;
      return [link("/tasks?code_name=" + encodeURIComponent(c.code_name), c.code_name),
        n("queued"), n("preparing") + n("running"), ...ended.map(n)];
    });
    // Fill the window with empty buckets, so the x axis is time.
    const bucketMs = o.bucket * 1000, since = new Date(o.since).getTime();
    const count = Math.round((o.window * 1000) / bucketMs);
    const at = new Map(o.series.map((p) => [Math.round((new Date(p.time).getTime() - since) / bucketMs), p]));
    const labels = [], ok = [], err = [], other = [], avg = [], max = [];
    for (let i = 0; i < count; i++) {
      const t = new Date(since + i * bucketMs);
      labels.push(t.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", hour12: false }));
      const p = at.get(i);
      const e = (p && p.ended) || {};
      ok.push(e.complete || 0);
      err.push(e.error || 0);
      other.push((e.timeout || 0) + (e.killed || 0) + (e.cancelled || 0));
      avg.push(p && p.started ? p.wait_avg_ms : null);
      max.push(p && p.started ? p.wait_max_ms : null);
    }
    const total = (a) => a.reduce((x, y) => x + y, 0);
    body.replaceChildren(
      h("div", { class: "card" }, h("h2", {}, "Tasks per code"),
        h("p", { class: "muted" }, `Queued and running now; ended in the ${window === "day" ? "last day" : "last hour"}.`),
        table(["Code", "#Queued", "#Running", "#Complete", "#Error", "#Timeout", "#Killed", "#Cancelled"], rows, "No tasks yet.")),
      h("div", { class: "row" },
        h("div", { class: "card" }, h("h2", {}, `Throughput (tasks ended per ${fmtDur(bucketMs)})`),
          h("div", { class: "legend" }, h("span", { class: "l-ok" }, `complete ${total(ok)}`), h("span", { class: "l-err" }, `error ${total(err)}`),
            h("span", { class: "l-other" }, `timeout, killed, cancelled ${total(other)}`)),
          barChart(labels, [{ label: "complete", values: ok, color: "#16a34a" }, { label: "error", values: err, color: "#dc2626" },
            { label: "other", values: other, color: "#d97706" }])),
        h("div", { class: "card" }, h("h2", {}, "Queue wait (due to start)"),
          h("div", { class: "legend" }, h("span", { class: "l-avg" }, "average"), h("span", { class: "l-max" }, "longest")),
          lineChart(labels, [{ values: avg, color: "#2563eb" }, { values: max, color: "#7c3aed" }], fmtDur))),
    );
  }
  await load();
  page.every(5000, load);
}
