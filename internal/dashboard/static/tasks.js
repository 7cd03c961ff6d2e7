import { api } from "./api.js";
import { h, link, table, field, badge, fmtTime, fmtDur, navigate } from "./ui.js";

const statuses = ["queued", "preparing", "running", "complete", "error", "timeout", "killed", "cancelled"];

// localInput turns an RFC 3339 time into a datetime-local value and back.
function toLocal(v) {
  if (!v) return "";
  const d = new Date(v);
  if (isNaN(d)) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
function fromLocal(v) {
  if (!v) return "";
  const d = new Date(v);
  return isNaN(d) ? "" : d.toISOString().replace(/\.\d+Z$/, "Z");
}

export async function tasks(page) {
  const { main } = page;
  const q = new URLSearchParams(location.search);
  const pageNo = Math.max(0, Number(q.get("page")) || 0);
  const perPage = 30;

  const status = h("select", { id: "f-status" }, h("option", { value: "" }, "any"), statuses.map((s) => h("option", { value: s }, s)));
  status.value = q.get("status") || "";
  const code = h("input", { id: "f-code", value: q.get("code_name") || "", placeholder: "code name" });
  const label = h("input", { id: "f-label", value: q.get("label") || "", placeholder: "label" });
  const from = h("input", { type: "datetime-local", id: "f-from", value: toLocal(q.get("from_time")) });
  const to = h("input", { type: "datetime-local", id: "f-to", value: toLocal(q.get("to_time")) });
  const filters = h("form", {
    class: "inline card", id: "filters",
    onsubmit: (ev) => {
      ev.preventDefault();
      const n = new URLSearchParams();
      if (status.value) n.set("status", status.value);
      if (code.value.trim()) n.set("code_name", code.value.trim());
      if (label.value.trim()) n.set("label", label.value.trim());
      if (fromLocal(from.value)) n.set("from_time", fromLocal(from.value));
      if (fromLocal(to.value)) n.set("to_time", fromLocal(to.value));
      navigate("/tasks" + (n.toString() ? "?" + n : ""));
    },
  }, field("Status", status), field("Code", code), field("Label", label), field("Created from", from), field("Created before", to),
  h("button", { type: "submit" }, "Filter"));
  const list = h("div", { id: "tasks" });
  main.append(h("h1", {}, "Tasks"), filters, list);

  const query = new URLSearchParams({ per_page: String(perPage), page: String(pageNo) });
  for (const k of ["code_name", "label", "from_time", "to_time"]) if (q.get(k)) query.set(k, q.get(k));
  if (q.get("status")) query.set(q.get("status"), "1");
  const moveTo = (n) => {
    const p = new URLSearchParams(location.search);
    if (n) p.set("page", String(n)); else p.delete("page");
    navigate("/tasks" + (p.toString() ? "?" + p : ""));
  };

  async function load() {
    const r = await api("GET", "/tasks?" + query, undefined, page.signal);
    const rows = r.tasks.map((t) => [
      link("/tasks/" + encodeURIComponent(t.id), h("span", { class: "mono" }, t.id)),
      badge(t.phase || t.status), t.code_name, t.label || "", fmtTime(t.created_at),
      t.duration ? fmtDur(t.duration) : "", t.msg || "",
    ]);
    list.replaceChildren(table(["Task", "Status", "Code", "Label", "Created", "#Duration", "Message"], rows, "No tasks match."),
      h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", id: "newer", disabled: pageNo === 0, onclick: () => moveTo(pageNo - 1) }, "Newer"),
        h("span", { class: "muted" }, `page ${pageNo + 1} · updated ${new Date().toLocaleTimeString(undefined, { hour12: false })}`),
        h("button", { type: "button", class: "secondary", id: "older", disabled: r.tasks.length < perPage, onclick: () => moveTo(pageNo + 1) }, "Older")));
  }
  await load();
  page.every(2000, load);
}
