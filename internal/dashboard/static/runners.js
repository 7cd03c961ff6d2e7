import { global, session, ApiError } from "./api.js";
import { h, table, ago, fmtTime } from "./ui.js";

export async function runners(page) {
  const { main } = page;
  const list = h("div", { id: "runners" });
  main.append(h("h1", {}, "Runners"), list);
  async function load() {
    let r;
    try {
      r = await global("GET", "/2/runners");
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) {
        list.replaceChildren(h("p", { class: "muted", id: "runners-admin-only" },
          `Runners serve every project, so only an admin token sees them (signed in with a ${session.kind} token).`));
        return false;
      }
      throw e;
    }
    let cap = 0, busy = 0;
    for (const x of r.runners) { cap += x.capacity; busy += x.busy; }
    list.replaceChildren(h("p", { class: "muted" }, `${r.runners.length} live runners, ${busy} of ${cap} slots busy.`),
      table(["Runner", "Host", "Clusters", "#Capacity", "#Busy", "Driver", "Stacks", "Version", "Last heartbeat"],
        r.runners.map((x) => [h("span", { class: "mono" }, x.id), x.host, x.clusters.length ? x.clusters.map((c) => c || "default").join(", ") : "default",
          x.capacity, x.busy, x.driver, x.stacks.join(", "), x.version, h("span", { title: fmtTime(x.last_heartbeat) }, ago(x.last_heartbeat))]),
        "No runner has been seen lately."));
    return true;
  }
  if (await load()) page.every(5000, load);
}
