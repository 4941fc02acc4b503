// bms-gateway dashboard: plain JavaScript, no framework, nothing loaded from anywhere but the gateway.
// Every page follows the bank live over Server-Sent Events (/api/stream) and reads the JSON API (/api/...).
// The DOM is built with createElement and textContent only: the CSP allows no inline script or style, and no
// value from the bank is ever parsed as HTML.
"use strict";

const PAGE = document.body.dataset.page;
const VIEWS = {
  overview: "bank",
  modules: "bank,modules",
  cells: "bank,cells",
  events: "bank,events",
  expansion: "bank",
};
const RENDER_EVERY = 250; // ms: a page redraws at most 4 times a second, whatever the master's rate
const TOKEN_KEY = "bms-gateway-token";

let info = { actions: false, alarm_names: {}, addresses: [1, 31], events: "", tick: 0.1 };

// -- small helpers ---------------------------------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else if (key === "on") for (const [name, fn] of Object.entries(value)) node.addEventListener(name, fn);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function num(value, digits, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return value.toFixed(digits) + (unit ? "\u202f" + unit : "");
}

function signed(value, digits, unit) {
  if (value === null || value === undefined) return "–";
  return (value > 0 ? "+" : "") + num(value, digits, unit);
}

function mv(volts) {
  return volts === null || volts === undefined ? "–" : Math.round(volts * 1000) + "\u202fmV";
}

/** How long ago `t` was: seconds since the epoch, or an ISO 8601 time (what MQTT's payloads move to). */
function since(t) {
  const then = typeof t === "string" ? Date.parse(t) / 1000 : t;
  if (typeof then !== "number" || Number.isNaN(then)) return null;
  const seconds = Math.max(0, Date.now() / 1000 - then);
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function clock(t) {
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function alarmName(code) {
  return info.alarm_names[code] || code.replaceAll("_", " ");
}

function modulesText(list) {
  if (!list || !list.length) return "bank";
  return (list.length === 1 ? "module " : "modules ") + list.join(", ");
}

/** A temperature as a colour: blue when cold, green in the comfortable range, through yellow to red when hot. */
function heat(t) {
  if (t === null || t === undefined) return "hsl(0 0% 80%)";
  const x = Math.min(1, Math.max(0, (t - 5) / 50));
  const hue = 220 - 220 * x;
  return `hsl(${hue.toFixed(0)} 70% ${(58 - 8 * Math.abs(x - 0.5)).toFixed(0)}%)`;
}

function clear(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ headers: { Accept: "application/json" } }, options || {}));
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = { error: response.statusText };
  }
  return { status: response.status, ok: response.ok, body };
}

function section(title, ...children) {
  return el("section", { class: "card" }, title ? el("h2", { text: title }) : null, ...children);
}

// -- live --------------------------------------------------------------------------------------------------------

const state = { bank: null, words: {}, modules: null, moduleWords: {}, cells: null, seq: 0 };
let renderer = null;
let renderTimer = null;
let lastRender = 0;

function schedule() {
  if (renderTimer !== null || !renderer) return;
  const wait = Math.max(0, lastRender + RENDER_EVERY - performance.now());
  renderTimer = setTimeout(() => {
    renderTimer = null;
    lastRender = performance.now();
    renderer();
    document.getElementById("main").dataset.seq = String(state.seq);
    document.body.dataset.ready = "true";
  }, wait);
}

function follow(onEvents, after) {
  const live = document.getElementById("live");
  const source = new EventSource(`/api/stream?views=${VIEWS[PAGE]}${after === undefined ? "" : "&after=" + after}`);
  source.addEventListener("open", () => (live.dataset.state = "live"));
  source.addEventListener("error", () => (live.dataset.state = "lost"));
  source.addEventListener("bank", (e) => {
    const data = JSON.parse(e.data);
    state.bank = data.bank;
    state.words = data.words;
    state.seq = data.seq;
    header(data.bank);
    schedule();
  });
  source.addEventListener("modules", (e) => {
    const data = JSON.parse(e.data);
    state.modules = data.modules;
    state.moduleWords = data.words;
    schedule();
  });
  source.addEventListener("cells", (e) => {
    state.cells = JSON.parse(e.data).cells;
    schedule();
  });
  if (onEvents) source.addEventListener("events", (e) => onEvents(JSON.parse(e.data)));
}

function header(bank) {
  const pill = document.getElementById("validity");
  pill.dataset.state = bank.valid ? "valid" : "invalid";
  pill.textContent = bank.valid ? "valid" : "not valid";
  pill.title = bank.valid ? "the master vouches for the bank" : bank.reason;
  const worst = bank.alarms.some((a) => a.level === "protection")
    ? "protection"
    : bank.alarms.length
      ? "warning"
      : "none";
  document.body.dataset.alarm = worst;
}

// -- operator actions ----------------------------------------------------------------------------------------------

function tokenBox() {
  const input = el("input", {
    type: "password",
    id: "token",
    autocomplete: "current-password",
    placeholder: "operator token",
    "aria-label": "operator token",
    value: sessionStorage.getItem(TOKEN_KEY) || "",
  });
  input.addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, input.value.trim()));
  return input;
}

async function act(path, output) {
  const token = (document.getElementById("token") || {}).value || sessionStorage.getItem(TOKEN_KEY) || "";
  const headers = { Accept: "application/json" };
  if (token.trim()) headers.Authorization = "Bearer " + token.trim();
  output.textContent = "…";
  const { status, body } = await api(path, { method: "POST", headers });
  output.dataset.status = String(status);
  if (status === 200) output.textContent = "Done: " + body.detail;
  else if (status === 403) output.textContent = "Refused: " + body.error;
  else output.textContent = (body.detail || body.error || "failed") + ` (HTTP ${status})`;
}

// -- overview ------------------------------------------------------------------------------------------------------

const LIMITS = [
  ["charge_current", "Charge current", 1, "A"],
  ["discharge_current", "Discharge current", 1, "A"],
  ["charge_voltage", "Charge voltage", 2, "V"],
  ["discharge_voltage", "Discharge voltage", 2, "V"],
];
const FLAGS = [
  ["charge_enable", "Charging allowed"],
  ["discharge_enable", "Discharging allowed"],
  ["force_charge", "Force charge"],
  ["full_charge", "Full charge requested"],
];

function tile(key, label, value, sub, extra) {
  return el("div", { class: "tile", data: { k: key } }, el("div", { class: "label", text: label }),
    el("div", { class: "value", text: value }), sub ? el("div", { class: "sub", text: sub }) : null, extra || null);
}

function bar(percent, kind) {
  const fill = el("span", { class: "fill" });
  fill.style.width = Math.max(0, Math.min(100, percent || 0)).toFixed(1) + "%";
  return el("div", { class: "bar " + (kind || "") }, fill);
}

function overviewPage(main) {
  const status = el("div", { id: "status" });
  const tiles = el("div", { class: "tiles", id: "tiles" });
  const limits = el("div", { id: "limits" });
  const flags = el("div", { class: "chips", id: "flags" });
  const alarms = el("div", { id: "alarms" });
  const cards = [
    status,
    tiles,
    el("div", { class: "columns" },
      section("What the inverter gets, and why", limits),
      el("div", {}, section("Requests to the inverter", flags), section("Active alarms", alarms))),
  ];
  if (info.actions) {
    const output = el("p", { class: "result", id: "action-result", role: "status" });
    cards.push(section("Operator actions",
      el("p", { class: "muted", text: "Actions need the gateway's token; a wrong token is refused and logged." }),
      el("div", { class: "row" }, tokenBox(),
        el("button", { id: "full-charge", type: "button", on: { click: () => act("/api/actions/full-charge", output) } },
          "Request a full charge")),
      output));
  }
  clear(main, el("h1", { text: "Overview" }), cards);

  renderer = () => {
    const b = state.bank;
    if (!b) return;
    clear(status, el("div", { class: "banner " + (b.valid ? "ok" : "bad"), id: "banner" },
      el("strong", { text: b.valid ? "Valid:" : "Not valid:" }),
      " ",
      b.valid
        ? `the master vouches for the bank: ${b.modules_online.length} module${b.modules_online.length === 1 ? "" : "s"} online`
        : b.reason));
    const charging = b.current > 0.5 ? "charging" : b.current < -0.5 ? "discharging" : "at rest";
    const delta = b.cell_voltage_delta;
    const vmax = b.cell_voltage_max, vmin = b.cell_voltage_min, tmax = b.temperature_max, tmin = b.temperature_min;
    clear(tiles,
      tile("voltage", "Voltage", num(b.voltage, 2, "V")),
      tile("current", "Current", signed(b.current, 1, "A"), charging),
      tile("power", "Power", b.power === null ? "–" : signed(b.power / 1000, 2, "kW")),
      tile("soc", "State of charge", num(b.soc, 1, "%"), b.remaining_ah !== null
        ? `${num(b.remaining_ah, 0)} of ${num(b.full_ah, 0, "Ah")}` : null, bar(b.soc, "soc")),
      tile("soh", "State of health", num(b.soh, 0, "%")),
      tile("cells", "Cell spread", mv(delta), vmax && vmin
        ? `${num(vmin.value, 3)}–${num(vmax.value, 3, "V")} (modules ${vmin.module}, ${vmax.module})` : null),
      tile("temperature", "Temperature", tmax ? `${num(tmin ? tmin.value : null, 1)}–${num(tmax.value, 1, "°C")}` : "–",
        b.temperature_gradient === null ? null : `gradient ${signed(b.temperature_gradient, 1, "°C")} bottom to top`),
      tile("fan", "Fan duty", num(b.fan_duty, 0, "%"), null, bar(b.fan_duty, "fan")));
    clear(limits, LIMITS.map(([key, label, digits, unit]) => {
      const limit = b.limits[key];
      return el("div", { class: "limit", data: { limit: key } },
        el("div", { class: "name", text: label }),
        el("div", { class: "value", text: limit ? num(limit.value, digits, unit) : "–" }),
        el("div", { class: "why" },
          el("span", { class: "words", text: state.words[key] || "" }),
          el("code", { class: "rule", title: "bound_by", text: limit ? limit.bound_by : "" })));
    }));
    clear(flags, FLAGS.map(([key, label]) =>
      el("span", { class: "chip " + (b.flags[key] ? "on" : "off"), data: { flag: key, on: String(b.flags[key]) } },
        (b.flags[key] ? "✓ " : "✗ ") + label)));
    clear(alarms, b.alarms.length
      ? el("ul", { class: "alarms" }, b.alarms.map((a) =>
        el("li", { class: "alarm " + a.level, data: { code: a.code } },
          el("span", { class: "level", text: a.level }),
          el("strong", { text: alarmName(a.code) }),
          el("span", { class: "who", text: modulesText(a.modules) }),
          el("span", { class: "detail", text: a.detail }),
          since(a.since) ? el("span", { class: "muted", text: "for " + since(a.since) }) : null)))
      : el("p", { class: "none", id: "no-alarms", text: "No active alarms." }));
  };
  follow();
}

// -- modules -------------------------------------------------------------------------------------------------------

const COLUMNS = ["Pos", "Module", "State", "SOC", "Voltage", "Current", "Share", "Temp", "Cells min–max", "Δ", "Limits"];

function modulesPage(main) {
  const stack = el("div", { class: "stack", id: "stack" });
  const gradient = el("p", { class: "muted", id: "gradient" });
  const table = el("div", { class: "table-wrap" });
  const output = el("p", { class: "result", id: "action-result", role: "status" });
  clear(main, el("h1", { text: "Modules" }),
    el("div", { class: "modules-layout" },
      section("Stack, by position", el("p", { class: "muted", text: "Top of the stack first, coloured by temperature." }),
        stack, el("div", { class: "legend" }, el("span", { text: "5 °C" }), el("span", { class: "scale" }), el("span", { text: "55 °C" })),
        gradient),
      section("Every module", table, info.actions ? el("div", { class: "row" },
        el("span", { class: "muted", text: "Operator token, to readmit an isolated module:" }), tokenBox(), output) : null)));

  renderer = () => {
    const mods = state.modules;
    if (!mods) return;
    const byPosition = [...mods].sort((a, b) => b.position - a.position || b.address - a.address);
    clear(stack, byPosition.map((m) => {
      const box = el("div", { class: "slab", data: { module: m.address, state: m.state },
        title: `module ${m.address}: ${m.state}${m.reason ? " (" + m.reason + ")" : ""}` },
      el("span", { class: "pos", text: m.position }),
      el("span", { class: "addr", text: "Module " + m.address }),
      el("span", { class: "temp", text: num(m.temperature_max, 1, "°C") }),
      el("span", { class: "state-chip " + m.state, text: m.state }));
      box.style.background = m.state === "offline" ? "" : heat(m.temperature_max);
      return box;
    }));
    const g = state.bank ? state.bank.temperature_gradient : null;
    gradient.textContent = g === null ? "" : `Gradient ${signed(g, 1, "°C")} from bottom to top.`;
    const rows = [...mods].sort((a, b) => a.position - b.position || a.address - b.address).map((m) => {
      const lim = m.limits || {};
      const words = state.moduleWords[m.address] || {};
      const charge = lim.charge_current, discharge = lim.discharge_current;
      const stateCell = el("td", { "data-label": "State" },
        el("span", { class: "state-chip " + m.state, text: m.state }),
        m.reason ? el("div", { class: "reason", text: m.reason }) : null,
        m.mismatch.length ? el("div", { class: "reason warn", text: m.mismatch.join("; ") }) : null);
      if (m.state === "isolated" && info.actions) {
        stateCell.append(el("button", { type: "button", class: "small", data: { readmit: m.address },
          on: { click: () => act(`/api/actions/readmit/${m.address}`, output) } }, "Readmit"));
      }
      if (m.state === "pending" || m.state === "rejected") {
        stateCell.append(el("a", { class: "small", href: `/expansion?module=${m.address}`, text: "May it join?" }));
      }
      return el("tr", { data: { module: m.address, state: m.state } },
        el("td", { "data-label": "Pos", text: m.position }),
        el("td", { "data-label": "Module", class: "addr", text: m.address }),
        stateCell,
        el("td", { "data-label": "SOC" }, num(m.soc, 1, "%"), bar(m.soc, "soc small")),
        el("td", { "data-label": "Voltage", text: num(m.voltage, 2, "V") }),
        el("td", { "data-label": "Current", text: signed(m.current, 1, "A") }),
        el("td", { "data-label": "Share", text: m.share === null ? "–" : num(m.share * 100, 0, "%") }),
        el("td", { "data-label": "Temp", text: `${num(m.temperature_min, 1)}–${num(m.temperature_max, 1, "°C")}` }),
        el("td", { "data-label": "Cells min–max", text: `${num(m.cell_voltage_min, 3)}–${num(m.cell_voltage_max, 3, "V")}` }),
        el("td", { "data-label": "Δ", text: mv(m.cell_voltage_delta) }),
        el("td", { "data-label": "Limits", class: "lims" },
          el("span", { title: words.charge_current || "", text: "⇡ " + (charge ? num(charge.value, 0, "A") : "–") }),
          el("span", { title: words.discharge_current || "", text: "⇣ " + (discharge ? num(discharge.value, 0, "A") : "–") })));
    });
    clear(table, el("table", { class: "modules", id: "modules" },
      el("thead", {}, el("tr", {}, COLUMNS.map((c) => el("th", { text: c })))),
      el("tbody", {}, rows)));
  };
  follow();
}

// -- cells ---------------------------------------------------------------------------------------------------------

function cellsPage(main) {
  const scale = el("p", { class: "muted", id: "scale" });
  const grid = el("div", { class: "cell-grid", id: "cell-grid" });
  clear(main, el("h1", { text: "Cell monitor" }),
    el("p", { class: "muted" }, "One bar per cell, every module on the same scale. ",
      el("span", { class: "key min", text: "lowest" }), " ", el("span", { class: "key max", text: "highest" }), " ",
      el("span", { class: "key bal", text: "balancing" })),
    scale, grid);

  renderer = () => {
    const mods = state.cells;
    if (!mods) return;
    const all = mods.flatMap((m) => m.voltages.filter((v) => v !== null && v > 0));
    let lo = all.length ? Math.min(...all) : 3.2, hi = all.length ? Math.max(...all) : 3.4;
    lo = Math.floor(lo * 100 - 1) / 100; // at least 10 mV below the lowest cell, on whole 10 mV
    hi = Math.ceil(hi * 100 + 0.5) / 100;
    if (hi - lo < 0.05) hi = lo + 0.05;
    scale.textContent = `Scale ${lo.toFixed(2)}–${hi.toFixed(2)} V for every module.`;
    const sorted = [...mods].sort((a, b) => b.position - a.position || a.address - b.address);
    clear(grid, sorted.map((m) => {
      const volts = m.voltages.map((v) => (v === null || v <= 0 ? null : v));
      const present = volts.filter((v) => v !== null);
      const vmax = present.length ? Math.max(...present) : null, vmin = present.length ? Math.min(...present) : null;
      const iMax = volts.indexOf(vmax), iMin = volts.indexOf(vmin);
      const balancing = m.balancing.filter(Boolean).length;
      const bars = volts.map((v, i) => {
        const kind = ["bar-cell", i === iMax ? "max" : "", i === iMin ? "min" : "", m.balancing[i] ? "bal" : ""]
          .filter(Boolean).join(" ");
        const fill = el("span", { class: "level" });
        fill.style.height = v === null ? "0%" : (Math.max(0.02, (v - lo) / (hi - lo)) * 100).toFixed(1) + "%";
        return el("div", { class: kind, data: { cell: i + 1 },
          title: `cell ${i + 1}: ${v === null ? "no value" : v.toFixed(3) + " V"}${m.balancing[i] ? ", balancing" : ""}` },
        el("span", { class: "flag" }), el("div", { class: "column" }, fill),
        el("span", { class: "n", text: i + 1 }));
      });
      return el("section", { class: "card cells", data: { module: m.address, state: m.state } },
        el("h2", {}, `Module ${m.address}`, el("span", { class: "state-chip " + m.state, text: m.state })),
        el("p", { class: "stats" },
          el("span", { class: "delta", text: "Δ " + (vmax === null ? "–" : Math.round((vmax - vmin) * 1000) + "\u202fmV") }),
          el("span", { text: `min ${num(vmin, 3)} (cell ${iMin + 1})` }),
          el("span", { text: `max ${num(vmax, 3)} (cell ${iMax + 1})` }),
          el("span", { class: balancing ? "bal-count on" : "bal-count", text: `${balancing} balancing` })),
        el("div", { class: "chart", data: { cells: volts.length } },
          el("div", { class: "axis" }, el("span", { text: hi.toFixed(2) }), el("span", { text: lo.toFixed(2) })),
          el("div", { class: "bars" }, bars)));
    }));
  };
  follow();
}

// -- events --------------------------------------------------------------------------------------------------------

function eventsPage(main) {
  let events = [];
  const moduleSelect = el("select", { id: "filter-module", "aria-label": "module" }, el("option", { value: "", text: "All modules" }));
  const levelSelect = el("select", { id: "filter-level", "aria-label": "level" },
    el("option", { value: "info", text: "Every level" }),
    el("option", { value: "warning", text: "Warnings and protections" }),
    el("option", { value: "protection", text: "Protections only" }));
  const list = el("div", { id: "events" });
  const source = el("p", { class: "muted", id: "source" });
  const params = new URLSearchParams(location.search);
  clear(main, el("h1", { text: "Events" }),
    el("div", { class: "row filters" }, el("label", {}, "Module ", moduleSelect), el("label", {}, "Level ", levelSelect)),
    source, list);

  const wanted = () => ({ module: moduleSelect.value, level: levelSelect.value });
  const rank = { info: 0, warning: 1, protection: 2 };
  const matches = (e) => {
    const w = wanted();
    if (rank[e.level] < rank[w.level]) return false;
    if (!w.module) return true;
    const m = Number(w.module);
    return e.modules.includes(m);
  };
  function draw() {
    const shown = events.filter(matches);
    if (!shown.length) {
      clear(list, el("p", { class: "none", text: "No events match." }));
      return;
    }
    clear(list, el("table", { class: "events" },
      el("thead", {}, el("tr", {}, ["Time", "Level", "Event", "Module", "Details"].map((c) => el("th", { text: c })))),
      el("tbody", {}, shown.map((e) => {
        const detail = [e.code ? alarmName(e.code) : "", e.detail].filter(Boolean).join(" · ");
        const bankWide = e.event.startsWith("alarm") || e.event.startsWith("bank");
        const who = e.modules.length || bankWide ? modulesText(e.modules) : "gateway";
        return el("tr", { class: "event " + e.level, data: { id: e.id, code: e.code, module: e.modules.join(",") } },
          el("td", { "data-label": "Time", title: e.time, text: clock(e.t) }),
          el("td", { "data-label": "Level" }, el("span", { class: "level-chip " + e.level, text: e.level })),
          el("td", { "data-label": "Event", class: "what", text: e.event }),
          el("td", { "data-label": "Module", text: who }),
          el("td", { "data-label": "Details", text: detail }));
      }))));
  }
  function addModules() {
    const known = new Set([...moduleSelect.options].map((o) => o.value));
    const seen = new Set();
    for (const e of events) {
      e.modules.forEach((m) => seen.add(m));
    }
    if (state.bank) [...state.bank.modules_online, ...state.bank.modules_pending, ...state.bank.modules_offline,
      ...state.bank.modules_isolated, ...state.bank.modules_rejected].forEach((m) => seen.add(m));
    [...seen].sort((a, b) => a - b).forEach((m) => {
      if (!known.has(String(m))) moduleSelect.append(el("option", { value: m, text: "Module " + m }));
    });
    if (params.get("module") && moduleSelect.value !== params.get("module")) moduleSelect.value = params.get("module");
  }
  let lastId = 0;
  async function load() {
    const { body } = await api("/api/events?limit=500");
    events = body.events;
    lastId = body.last_id;
    source.textContent = `Events ${body.source}, newest first.`;
    addModules();
    draw();
  }
  moduleSelect.addEventListener("change", draw);
  levelSelect.addEventListener("change", draw);
  if (params.get("level")) levelSelect.value = params.get("level");
  renderer = () => addModules();
  load().then(() => follow((data) => {
    const known = new Set(events.map((e) => e.id));
    const fresh = data.events.filter((e) => !known.has(e.id)).reverse();
    if (!fresh.length) return;
    events = [...fresh, ...events].slice(0, 1000);
    addModules();
    draw();
  }, lastId));
}

// -- expansion assistant ---------------------------------------------------------------------------------------------

const VERDICTS = {
  online: ["✓", "In the bank"],
  joins: ["✓", "Yes: it joins now"],
  wait: ["…", "Not yet"],
  attention: ["!", "Fix this first"],
  never: ["✗", "No"],
  unknown: ["?", "Not on the bus yet"],
};

function gauge(label, value, center, window, unit, digits, span) {
  // A scale around the bank's value: the window the module must be in, the bank and the module marked.
  const lo = center - span, hi = center + span;
  const at = (v) => (Math.max(0, Math.min(1, (v - lo) / (hi - lo))) * 100).toFixed(2) + "%";
  const band = el("span", { class: "band" });
  band.style.left = at(center - window);
  band.style.width = ((2 * window) / (hi - lo) * 100).toFixed(2) + "%";
  const bank = el("span", { class: "mark bank", title: `bank ${center.toFixed(digits)} ${unit}` });
  bank.style.left = at(center);
  const marks = [band, bank];
  if (value !== null && value !== undefined) {
    const mod = el("span", { class: "mark module", title: `module ${value.toFixed(digits)} ${unit}` });
    mod.style.left = at(value);
    marks.push(mod);
  }
  return el("div", { class: "gauge" },
    el("div", { class: "gauge-label" }, el("strong", { text: label }),
      el("span", { class: "of-module", text: ` module ${value === null || value === undefined ? "–" : value.toFixed(digits)} ${unit}` }),
      el("span", { class: "of-bank", text: ` · bank ${center.toFixed(digits)} ${unit}` }),
      el("span", { class: "muted", text: ` (joins within ± ${window} ${unit}, the green band)` })),
    el("div", { class: "track" }, marks),
    el("div", { class: "ends muted" }, el("span", { text: lo.toFixed(digits) }), el("span", { text: hi.toFixed(digits) })));
}

function answerCard(a) {
  const [icon, word] = VERDICTS[a.verdict] || ["?", a.verdict];
  const gauges = [];
  if (a.bank) {
    const span = Math.max(3 * a.windows.soc, a.module ? Math.abs(a.module.soc - a.bank.soc) * 1.25 : 0);
    gauges.push(gauge("SOC", a.module ? a.module.soc : null, a.bank.soc, a.windows.soc, "%", 1, span));
    const vspan = Math.max(3 * a.windows.voltage, a.module ? Math.abs(a.module.voltage - a.bank.voltage) * 1.25 : 0);
    gauges.push(gauge("Voltage", a.module ? a.module.voltage : null, a.bank.voltage, a.windows.voltage, "V", 2, vspan));
  }
  return el("section", { class: "card answer " + a.verdict, id: "answer", data: { verdict: a.verdict, module: a.address } },
    el("div", { class: "verdict" }, el("span", { class: "icon", text: icon }),
      el("div", {}, el("div", { class: "word", text: word }), el("p", { class: "summary", id: "summary", text: a.summary }))),
    a.items.length ? el("ol", { class: "items", id: "items" }, a.items.map((i) =>
      el("li", { class: i.blocking ? "blocking" : "note", data: { kind: i.kind } },
        el("div", { class: "what", text: i.text }),
        el("div", { class: "todo" }, el("span", { class: "arrow", text: "→ " }), i.action)))) : null,
    gauges.length ? el("div", { class: "gauges" }, gauges) : null);
}

function expansionPage(main) {
  const params = new URLSearchParams(location.search);
  const input = el("input", { type: "number", id: "module", min: info.addresses[0], max: info.addresses[1],
    inputmode: "numeric", value: params.get("module") || "", "aria-label": "module address" });
  const answer = el("div", { id: "answer-slot" });
  const others = el("div", { id: "others" });
  const form = el("form", { class: "ask", id: "ask" },
    el("label", { for: "module", text: "May I connect module" }), input, el("span", { text: "now?" }),
    el("button", { type: "submit", text: "Check" }));
  clear(main, el("h1", { text: "Expansion assistant" }),
    el("p", { class: "muted", text: "Asks the master's own admission rule: a module joins a parallel bank only with its SOC and voltage close to the bank's." }),
    form, answer, section("Modules not in the bank", others));
  let asked = params.get("module") ? Number(params.get("module")) : null;
  let busy = false;

  async function check() {
    if (asked === null || busy) return;
    busy = true;
    try {
      const { status, body } = await api(`/api/join-check/${asked}`);
      clear(answer, status === 200 ? answerCard(body)
        : el("p", { class: "banner bad", text: body.error || `HTTP ${status}` }));
    } finally {
      busy = false;
    }
  }
  async function list() {
    const { body } = await api("/api/join-check");
    clear(others, body.length
      ? el("ul", { class: "waiting" }, body.map((a) => el("li", { data: { module: a.address, verdict: a.verdict } },
        el("button", { type: "button", class: "link", on: { click: () => ask(a.address) } }, `Module ${a.address}`),
        el("span", { class: "verdict-chip " + a.verdict, text: (VERDICTS[a.verdict] || ["", a.verdict])[1] }),
        el("span", { class: "muted", text: a.summary }))))
      : el("p", { class: "none", text: "Every module the gateway sees is in the bank." }));
  }
  function ask(address) {
    asked = address;
    input.value = address;
    history.replaceState(null, "", `/expansion?module=${address}`);
    check();
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value) ask(Number(input.value));
  });
  let lastCheck = 0;
  renderer = () => {
    if (performance.now() - lastCheck < 1000) return;
    lastCheck = performance.now();
    check();
    list();
  };
  follow();
}

// -- start ---------------------------------------------------------------------------------------------------------

async function start() {
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.page === PAGE) link.setAttribute("aria-current", "page");
  }
  const got = await api("/api/info");
  if (got.ok) info = got.body;
  document.getElementById("foot").textContent = `bms-gateway ${info.version || ""} · ${info.id || ""}`;
  const main = document.getElementById("main");
  ({ overview: overviewPage, modules: modulesPage, cells: cellsPage, events: eventsPage, expansion: expansionPage })[PAGE](main);
}

start();
