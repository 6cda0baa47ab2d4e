// spangpt explore: plain JavaScript, no library, everything served by the package (works offline).
"use strict";

const $ = (id) => document.getElementById(id);
let MODELS = [];

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function api(path, body) {
  const opts = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)};
  const r = await fetch(path, opts);
  let data;
  try { data = await r.json(); } catch { throw new Error(`${r.status} ${r.statusText}`); }
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function showError(id, err) {
  const p = $(id);
  p.hidden = !err;
  p.textContent = err ? err.message || String(err) : "";
}

const pct = (p) => (100 * p).toFixed(p >= 0.001 ? 1 : 3) + "%";

// ---------------------------------------------------------------- ask + attention

// Each request takes a ticket; a reply that is no longer the latest is dropped (a second Ask, or another
// model for the map, while the first was on its way).
const latest = {ask: 0, attention: 0};

async function ask(question, k) {
  const ticket = ++latest.ask;
  let res;
  try {
    res = await api("/api/ask", {question, k});
  } catch (err) {
    if (ticket !== latest.ask) return;
    showError("ask-error", err);
    $("answers").replaceChildren();
    $("attention").replaceChildren();
    return;
  }
  if (ticket !== latest.ask) return;
  showError("ask-error", null);
  const cards = el("div", {class: "answers"});
  for (const a of res.answers) {
    const card = el("div", {class: "card"}, el("h3", {}, a.model));
    if (a.error) {
      card.append(el("p", {class: "error"}, a.error));
    } else {
      card.append(el("div", {class: "greedy", "data-answer": a.answer}, a.answer || "(empty)"),
                  el("div", {}, `greedy answer, probability ${pct(a.probability)}`));
      const t = el("table", {class: "alternatives"});
      const top = Math.max(...a.alternatives.map((alt) => alt.probability));
      a.alternatives.forEach((alt, i) => t.append(el("tr", {},
        el("td", {}, `${i + 1}.`), el("td", {}, (alt.text || "(empty)") + (alt.closed ? "" : "…")),
        el("td", {}, pct(alt.probability)),
        el("td", {}, el("span", {class: "bar", style: `width:${Math.round(80 * alt.probability / top)}px`})))));
      card.append(t);
    }
    cards.append(card);
  }
  $("answers").replaceChildren(el("p", {}, res.question), cards);
  await drawAttention(res.question);
}

async function drawAttention(question) {
  const ticket = ++latest.attention;
  const box = $("attention");
  let res;
  try {
    res = await api("/api/attention", {question, model: Number($("attention-model").value)});
  } catch (err) {
    if (ticket !== latest.attention) return;
    box.replaceChildren();
    showError("attention-error", err);
    return;
  }
  if (ticket !== latest.attention) return;
  showError("attention-error", null);
  box.replaceChildren();
  res.weights.forEach((heads, layer) => {
    const table = el("table", {class: "heat", "data-layer": layer});
    const head = el("tr", {}, el("th", {class: "row"}, `layer ${layer + 1}`));
    for (const c of res.chars) head.append(el("th", {}, c === " " ? "␣" : c));
    table.append(head);
    heads.forEach((row, h) => {
      const max = Math.max(...row);
      const tr = el("tr", {}, el("th", {class: "row"}, `head ${h + 1}`));
      row.forEach((w, i) => {
        const a = (w / max).toFixed(3);  // shaded against the row's largest weight; the exact one on hover
        tr.append(el("td", {style: `background: rgba(59, 111, 182, ${a})`,
                           title: `${res.chars[i]}: ${w.toFixed(3)}`}));
      });
      table.append(tr);
    });
    box.append(table);
  });
}

// ---------------------------------------------------------------- dev set

let DEV = null;

async function loadDev() {
  try {
    DEV = await api("/api/dev");
  } catch (err) {
    showError("dev-error", err);
    return;
  }
  $("dev-summary").textContent = DEV.models.map((m, i) => DEV.errors[i] ? `${m}: ${DEV.errors[i]}`
                                                   : `${m}: ${DEV.accuracy[i].toFixed(1)}%`).join(" · ") +
    ` (exact match, ${DEV.rows.length} questions)`;
  const head = el("tr", {}, el("th", {}, "question"), el("th", {}, "gold"), el("th", {}, "in line"));
  for (const m of DEV.models) head.append(el("th", {}, m));
  $("dev").tHead.replaceChildren(head);
  drawDev();
}

function drawDev() {
  if (!DEV) return;
  const wrongOnly = $("wrong-only").checked;
  const filter = $("dev-filter").value.trim().toLowerCase();
  const body = $("dev").tBodies[0];
  body.replaceChildren();
  let shown = 0;
  for (const r of DEV.rows) {
    if (wrongOnly && r.predictions.every((p) => p === r.answer)) continue;
    if (filter && !(r.question + " " + r.answer).toLowerCase().includes(filter)) continue;
    if (++shown > 1000) break;
    const tr = el("tr", {class: "row"}, el("td", {}, r.question), el("td", {}, r.answer), el("td", {}, r.where));
    for (const p of r.predictions) tr.append(el("td", {class: p === r.answer ? "right" : "wrong"}, p || "(empty)"));
    tr.addEventListener("click", () => toggleDetail(tr, r));
    body.append(tr);
  }
}

async function toggleDetail(tr, r) {
  if (tr.nextSibling && tr.nextSibling.classList.contains("detail")) {
    tr.nextSibling.remove();
    return;
  }
  const cell = el("td", {colspan: 3 + DEV.models.length}, `wiki.txt: ${r.line || "(no line for this name)"}`);
  tr.after(el("tr", {class: "detail"}, cell));
  if (!r.head) return;
  for (let i = 0; i < DEV.models.length; i++) {
    try {
      const c = await api("/api/complete", {text: r.head, model: i, max_chars: 96});
      cell.append("\n" + `${DEV.models[i]} writes: ${r.head}${c.completion}`);
    } catch (err) {
      cell.append("\n" + `${DEV.models[i]}: ${err.message}`);
    }
  }
}

// ---------------------------------------------------------------- curves

function lineChart(points, width = 320, height = 160) {
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  if (points.length < 2) return svg;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const pad = 30;
  const sx = (x) => pad + (width - pad - 5) * (x - x0) / Math.max(1e-9, x1 - x0);
  const sy = (y) => 5 + (height - pad - 5) * (1 - (y - y0) / Math.max(1e-9, y1 - y0));
  const line = document.createElementNS(svgNS, "polyline");
  line.setAttribute("points", points.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#3b6fb6");
  svg.append(line);
  const label = (x, y, text, anchor) => {
    const t = document.createElementNS(svgNS, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "10");
    t.setAttribute("text-anchor", anchor); t.textContent = text;
    svg.append(t);
  };
  label(pad - 3, 12, y1.toFixed(2), "end");
  label(pad - 3, height - pad, y0.toFixed(2), "end");
  label(pad, height - pad + 14, `step ${x0}`, "start");
  label(width - 5, height - pad + 14, `${x1}`, "end");
  return svg;
}

async function loadCurves() {
  let res;
  try {
    res = await api("/api/curves");
  } catch (err) {
    showError("curves-error", err);
    return;
  }
  const box = el("div", {class: "charts"});
  for (const m of res.models) {
    let dev = m.dev_accuracy == null ? "" : `dev ${m.dev_accuracy.toFixed(1)}%`;
    if (m.dev_before_finetune != null) dev += ` (before fine-tuning ${m.dev_before_finetune.toFixed(1)}%)`;
    for (const [stage, points] of Object.entries(m.stages)) {
      box.append(el("div", {class: "chart"}, el("h3", {}, `${m.model}: ${stage} loss`), lineChart(points)));
    }
    if (dev) box.append(el("div", {class: "chart"}, el("h3", {}, m.model), el("p", {}, dev)));
  }
  if (!box.children.length) box.append(el("p", {class: "hint"}, "no metrics files beside these checkpoints"));
  $("curves").replaceChildren(box);
}

// ---------------------------------------------------------------- start

async function start() {
  try {
    const res = await api("/api/models");
    MODELS = res.models;
  } catch (err) {
    $("models-line").textContent = `cannot reach the server: ${err.message}`;
    return;
  }
  $("models-line").textContent = MODELS.map((m) => `${m.name} (${m.variant})`).join(" · ");
  for (const m of MODELS) $("attention-model").append(el("option", {value: m.index}, m.name));
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    ask($("question").value, Number($("k").value));
  });
  $("attention-model").addEventListener("change", () => {
    const q = $("answers").querySelector("p");
    if (q) drawAttention(q.textContent);
  });
  $("wrong-only").addEventListener("change", drawDev);
  $("dev-filter").addEventListener("input", drawDev);
  document.body.dataset.ready = "1";
  loadCurves();
  loadDev();
}

start();
