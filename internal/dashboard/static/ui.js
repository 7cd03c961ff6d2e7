// DOM helpers. Everything that comes from the server or the user goes into
// the document as text (text nodes, textContent, attribute values set one
// by one), never as markup.

// h makes an element: h("a", {href: "/x", class: "c", onclick: fn}, "text", child).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

// s makes an SVG element the same way.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value" && "value" in el) el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// link is an in-page link the router follows without a reload.
export function link(href, ...children) {
  return h("a", { href, "data-link": true }, ...children);
}

export function badge(status) {
  return h("span", { class: "badge st-" + String(status).replace(/[^a-z]/g, "") }, status);
}

export function fmtTime(v) {
  if (!v) return "—";
  const d = new Date(v);
  if (isNaN(d)) return "—";
  return d.toLocaleString(undefined, { hour12: false });
}

export function fmtDur(ms) {
  if (ms === undefined || ms === null || isNaN(ms)) return "—";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  if (ms < 3600000) return (ms / 60000).toFixed(1) + " min";
  return (ms / 3600000).toFixed(1) + " h";
}

export function ago(v) {
  if (!v) return "—";
  const s = Math.round((Date.now() - new Date(v)) / 1000);
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

// message shows an error or a note in place of el's content.
export function message(el, text, ok) {
  el.replaceChildren(text ? h("div", { class: "msg " + (ok ? "ok" : "err") }, text) : "");
}

// table builds a table from header labels and rows of cells.
export function table(headers, rows, empty) {
  const t = h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { class: x.startsWith("#") ? "num" : "" }, x.replace(/^#/, ""))))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: headers[i].startsWith("#") ? "num" : "" }, c))))));
  if (rows.length === 0 && empty) return h("div", {}, t, h("p", { class: "muted" }, empty));
  return t;
}

// field is a labelled input.
export function field(label, input) {
  return h("label", {}, label, input);
}

// barChart draws stacked bars: series is [{label, values:[], color}], x labels.
export function barChart(labels, series, height = 260) {
  const w = 1000, pad = 34, n = Math.max(labels.length, 1);
  const totals = labels.map((_, i) => series.reduce((a, se) => a + (se.values[i] || 0), 0));
  const top = Math.max(1, ...totals);
  const bw = (w - pad) / n;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${w} ${height}`, role: "img" });
  svg.append(s("text", { x: 0, y: 18 }, String(top)), s("text", { x: 0, y: height - pad }, "0"));
  labels.forEach((_, i) => {
    let y = height - pad;
    for (const se of series) {
      const v = se.values[i] || 0;
      if (!v) continue;
      const bh = (v / top) * (height - pad - 24);
      y -= bh;
      svg.append(s("rect", { x: pad + i * bw + 0.5, y, width: Math.max(bw - 1, 1), height: bh, fill: se.color }, s("title", {}, `${labels[i]}: ${v} ${se.label}`)));
    }
  });
  axis(svg, labels, pad, bw, height);
  return svg;
}

// lineChart draws lines over the same x labels.
export function lineChart(labels, series, unit, height = 260) {
  const w = 1000, pad = 34, n = Math.max(labels.length, 1);
  const top = Math.max(1, ...series.flatMap((se) => se.values.filter((v) => v !== null)));
  const bw = (w - pad) / n;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${w} ${height}`, role: "img" });
  svg.append(s("text", { x: 0, y: 18 }, unit(top)), s("text", { x: 0, y: height - pad }, "0"));
  for (const se of series) {
    const pts = [];
    se.values.forEach((v, i) => {
      if (v === null) return;
      const x = pad + i * bw + bw / 2, y = height - pad - (v / top) * (height - pad - 24);
      pts.push(`${x},${y}`);
      svg.append(s("circle", { cx: x, cy: y, r: 4, fill: se.color }, s("title", {}, `${labels[i]}: ${unit(v)}`)));
    });
    if (pts.length > 1) svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: se.color, "stroke-width": 2 }));
  }
  axis(svg, labels, pad, bw, height);
  return svg;
}

function axis(svg, labels, pad, bw, height) {
  const every = Math.max(1, Math.ceil(labels.length / 8));
  labels.forEach((l, i) => {
    if (i % every === 0) svg.append(s("text", { x: pad + i * bw, y: height - 6 }, l));
  });
}

// navigate moves to another page of the dashboard without a reload.
export function navigate(path) {
  history.pushState(null, "", path);
  window.dispatchEvent(new PopStateEvent("popstate"));
}
