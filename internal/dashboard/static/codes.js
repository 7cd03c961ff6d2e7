import { api } from "./api.js";
import { h, link, table, field, message, fmtTime, navigate, badge } from "./ui.js";

export async function codes(page) {
  const { main } = page;
  const list = h("div", { id: "codes" });
  const out = h("div", { id: "upload-msg" });
  const name = h("input", { name: "name", id: "up-name", required: true, placeholder: "hello" });
  const stack = h("input", { name: "stack", id: "up-stack", value: "busybox", list: "stacks" });
  const runtime = h("select", { name: "runtime", id: "up-runtime" }, ["sh", "python", "node", "ruby", "php", "binary"].map((r) => h("option", { value: r }, r)));
  const fileName = h("input", { name: "file_name", id: "up-file-name", value: "run.sh" });
  const file = h("input", { type: "file", name: "file", id: "up-file", accept: ".zip,application/zip", required: true });
  const maxc = h("input", { type: "number", min: 0, id: "up-max", value: 0 });
  const retries = h("input", { type: "number", min: 0, max: 100, id: "up-retries", value: 0 });
  const stacks = h("datalist", { id: "stacks" });
  const form = h("form", {
    class: "inline", id: "upload",
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (!file.files[0]) return message(out, "Choose a zip.");
      const fd = new FormData();
      fd.append("data", JSON.stringify({
        name: name.value.trim(), stack: stack.value.trim(), runtime: runtime.value, file_name: fileName.value.trim(),
        max_concurrency: Number(maxc.value), retries: Number(retries.value),
      }));
      fd.append("file", file.files[0], file.files[0].name);
      try {
        const r = await api("POST", "/codes", fd);
        message(out, `Uploaded ${name.value.trim()} (${r.id}).`, true);
        form.reset();
        await load();
      } catch (e) {
        message(out, e.message);
      }
    },
  }, field("Name", name), field("Zip", file), field("Runtime", runtime), field("File to run", fileName),
  field("Stack", stack), field("Max concurrency (0: no limit)", maxc), field("Retries", retries), h("button", { type: "submit" }, "Upload"));
  main.append(h("h1", {}, "Codes"), list, h("div", { class: "card" }, h("h2", {}, "Upload a code package"), form, stacks, out));
  fetch("/2/stacks", { credentials: "same-origin" }).then((r) => (r.ok ? r.json() : [])).then((names) => {
    stacks.replaceChildren(...(names || []).map((n) => h("option", { value: n })));
  }).catch(() => {});

  let page0 = 0;
  async function load() {
    const r = await api("GET", `/codes?per_page=50&page=${page0}`, undefined, page.signal);
    list.replaceChildren(table(["Name", "#Rev", "Stack / image", "#Max concurrency", "#Retries", "Queue", "Updated"],
      r.codes.map((c) => [link("/codes/" + encodeURIComponent(c.id), c.name), c.rev, c.image || c.stack,
        c.max_concurrency || "no limit", c.retries, c.paused ? badge("paused") : "running", fmtTime(c.updated_at)]),
      "No codes yet: upload one below."),
    h("div", { class: "pager" },
      h("button", { type: "button", class: "secondary", disabled: page0 === 0, onclick: () => { page0--; load(); } }, "Newer"),
      h("span", { class: "muted" }, `page ${page0 + 1}`),
      h("button", { type: "button", class: "secondary", disabled: r.codes.length < 50, onclick: () => { page0++; load(); } }, "Older")));
  }
  await load();
}

function envText(env) {
  return Object.entries(env || {}).map(([k, v]) => `${k}=${v}`).join("\n");
}

function parseEnv(text) {
  const env = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const i = line.indexOf("=");
    if (i <= 0) throw new Error(`env line "${line}" is not NAME=value`);
    env[line.slice(0, i).trim()] = line.slice(i + 1);
  }
  return env;
}

export async function code(page, id) {
  const { main } = page;
  const c = await api("GET", "/codes/" + encodeURIComponent(id), undefined, page.signal);
  const revs = await api("GET", `/codes/${encodeURIComponent(id)}/revisions?per_page=20`, undefined, page.signal);
  const out = h("div", { id: "code-msg" });

  const maxc = h("input", { type: "number", min: 0, id: "ed-max", value: c.max_concurrency });
  const retries = h("input", { type: "number", min: 0, max: 100, id: "ed-retries", value: c.retries });
  const delay = h("input", { type: "number", min: 0, id: "ed-delay", value: c.retries_delay });
  const env = h("textarea", { id: "ed-env", placeholder: "NAME=value, one a line" });
  env.value = envText(c.env_vars);
  const edit = h("form", {
    class: "inline", id: "edit",
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        // A body without a zip keeps the package and makes a new revision
        // with these settings.
        const fd = new FormData();
        fd.append("data", JSON.stringify({ name: c.name, max_concurrency: Number(maxc.value), retries: Number(retries.value),
          retries_delay: Number(delay.value), env_vars: parseEnv(env.value) }));
        await api("POST", "/codes", fd);
        navigate("/codes/" + encodeURIComponent(id));
      } catch (e) {
        message(out, e.message);
      }
    },
  }, field("Max concurrency (0: no limit)", maxc), field("Retries", retries), field("Retry delay (s)", delay),
  field("Env", env), h("button", { type: "submit" }, "Save as a new revision"));

  const pause = h("button", {
    type: "button", id: "pause", class: "secondary",
    onclick: async () => {
      try {
        await api("POST", `/codes/${encodeURIComponent(id)}/${c.paused ? "resume" : "pause"}_task_queue`, {});
        navigate("/codes/" + encodeURIComponent(id));
      } catch (e) { message(out, e.message); }
    },
  }, c.paused ? "Resume the queue" : "Pause the queue");

  const payload = h("textarea", { id: "q-payload", placeholder: "payload (any text, often JSON)" });
  const label = h("input", { id: "q-label", placeholder: "label" });
  const timeout = h("input", { type: "number", min: 0, id: "q-timeout", placeholder: "3600" });
  const delayQ = h("input", { type: "number", min: 0, id: "q-delay", placeholder: "0" });
  const queue = h("form", {
    class: "inline", id: "queue",
    onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const t = { code_name: c.name, payload: payload.value, label: label.value };
        if (timeout.value) t.timeout = Number(timeout.value);
        if (delayQ.value) t.delay = Number(delayQ.value);
        const r = await api("POST", "/tasks", { tasks: [t] });
        navigate("/tasks/" + encodeURIComponent(r.tasks[0].id));
      } catch (e) { message(out, e.message); }
    },
  }, field("Payload", payload), field("Label", label), field("Timeout (s)", timeout), field("Delay (s)", delayQ),
  h("button", { type: "submit", id: "queue-task" }, "Queue a task"));

  main.append(
    h("h1", {}, "Code ", h("span", { id: "code-name" }, c.name), " ", c.paused ? badge("paused") : ""),
    out,
    h("div", { class: "row" },
      h("div", { class: "card" }, h("h2", {}, "Fields"), h("dl", { class: "fields" },
        [["id", c.id], ["revision", c.rev], ["stack", c.stack], ["image", c.image || "—"], ["runtime", c.runtime], ["file", c.file_name],
          ["command", c.command || "—"], ["package size", c.package_size + " bytes"], ["checksum", c.latest_checksum || "—"],
          ["updated", fmtTime(c.updated_at)]].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("p", {}, link("/tasks?code_name=" + encodeURIComponent(c.name), "Tasks of this code"), " ", pause)),
      h("div", { class: "card" }, h("h2", {}, "Queue a task"), queue)),
    h("div", { class: "card" }, h("h2", {}, "Settings"), edit),
    h("div", { class: "card" }, h("h2", {}, "Revisions"),
      table(["#Rev", "Stack / image", "Runtime", "File", "#Size", "Created"],
        (revs.revisions || []).map((r) => [r.rev, r.image || r.stack, r.runtime, r.file_name, r.size, fmtTime(r.created_at)]))),
  );
}
