// The operator dashboard: reads /dashboard/data.json (the document `ingest status --json` prints, plus
// the map's cells) and draws it. Leaflet without a tile server: the world outline is Natural Earth's,
// served by the same endpoint, so the page needs nothing from the internet.
"use strict";

const REFRESH_MS = 15000;
const STATE_COLOUR = { catalogued: "#2e7d32", pending: "#f9a825", failing: "#c62828" };
const AGE_STEPS = [[1, "#1b5e20", "< 1 day"], [7, "#7cb342", "< 1 week"], [30, "#fbc02d", "< 30 days"],
                   [Infinity, "#e65100", "older"]];
const NO_CATALOGUED = "#9e9e9e";

const $ = (sel) => document.querySelector(sel);
let map, cellLayer, last = null, fitted = false;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? "-"));
  return node;
}

// a figure the tests read back: data-field names its place in the status document
const fig = (field, value) => el("span", { "data-field": field }, value === null || value === undefined ? "-" : String(value));

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.abs(seconds);
  const text = s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min`
    : s < 172800 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86400).toFixed(1)} d`;
  return seconds < 0 ? `in ${text}` : text;
}

function row(label, ...value) { return [el("dt", {}, label), el("dd", {}, ...value)]; }

function card(c) {
  const failing = (c.states.failed || 0) + (c.states.invalid || 0);
  const states = el("table", { class: "states" }, el("tr", {}, el("th", {}, "state"), el("th", { class: "n" }, "products")));
  for (const [state, n] of Object.entries(c.states).sort()) {
    states.append(el("tr", {}, el("td", {}, state), el("td", { class: "n" }, fig(`states.${state}`, n))));
  }
  const r = c.retention;
  const dl = el("dl", {},
    ...row("products", fig("products", c.products)),
    ...row("harvest lag", fig("lag", duration(c.lag_s)), " (watermark ", fig("watermark", c.watermark), ")"),
    ...row("last harvest", fig("last_harvest_at", c.last_harvest_at), ` · ${duration(c.last_harvest_age_s)} ago · found `,
      fig("last_harvest_found", c.last_harvest_found)),
    ...row("oldest pending", fig("oldest_pending", c.oldest_pending)),
    ...row("queue", fig("queue.todo", c.queue.todo), " waiting, ", fig("queue.doing", c.queue.doing), " running"),
    ...row("retention", r.enabled
      ? el("span", {}, "max age ", fig("retention.max_age", r.max_age), ", keep latest ", fig("retention.keep_latest", r.keep_latest),
        `, cron ${r.schedule}, next run `, fig("retention.next_run", r.next_run))
      : fig("retention.enabled", "off")),
    ...row("unfinished retirements", fig("retirements_pending", c.retirements_pending)),
  );
  if (c.last_audit) {
    dl.append(...row("last audit", fig("last_audit.finished_at", c.last_audit.finished_at), ": ",
      fig("last_audit.broken_items", c.last_audit.broken_items), " broken, ",
      fig("last_audit.orphan_objects", c.last_audit.orphan_objects), " orphans"));
  }
  const node = el("div", { class: failing ? "card failing" : "card", "data-collection": c.collection },
    el("h3", {}, c.collection), dl, states);
  if (c.recent_failures.length) {
    const t = el("table", { class: "failures" },
      el("tr", {}, el("th", {}, "latest failures"), el("th", {}, "state"), el("th", { class: "n" }, "attempts"), el("th", {}, "cause"), el("th", {}, "when")));
    for (const f of c.recent_failures) {
      t.append(el("tr", { "data-failure": f.id }, el("td", {}, f.id), el("td", {}, f.state), el("td", { class: "n" }, String(f.attempts)),
        el("td", { class: "cause" }, f.last_error), el("td", {}, f.updated_at)));
    }
    node.append(t);
  }
  return node;
}

function site(doc) {
  const box = el("div", { class: "card" });
  const q = Object.entries(doc.queue).sort().map(([k, v]) => `${k} ${v}`).join(", ") || "empty";
  box.append(el("dl", {}, ...row("queue (all jobs)", el("span", { "data-field": "site.queue" }, q))));
  for (const p of doc.providers) {
    box.append(el("dl", { "data-provider": p.provider }, ...row(`provider ${p.provider}`,
      `${p.slots_held} of ${p.slots_limit} download slots in use`,
      p.paused ? ` · PAUSED until ${p.paused_until} (${p.pause_cause || "a refusal"})` : "")));
  }
  return box;
}

function ageColour(days) {
  if (days === null) return NO_CATALOGUED;
  return AGE_STEPS.find(([limit]) => days < limit)[1];
}

function legend(by) {
  const items = by === "age"
    ? [...AGE_STEPS.map(([, colour, label]) => [colour, `newest catalogued ${label}`]), [NO_CATALOGUED, "nothing catalogued"]]
    : [[STATE_COLOUR.catalogued, "all catalogued"], [STATE_COLOUR.pending, "some on their way"], [STATE_COLOUR.failing, "some failing"]];
  $("#legend").replaceChildren(...items.map(([colour, label]) => el("span", {}, el("i", { style: `background:${colour}` }), label)));
}

function drawCells() {
  if (!last) return;
  const m = last.map, by = $("#map-colour").value, only = $("#map-collection").value;
  const col = Object.fromEntries(m.columns.map((name, i) => [name, i]));
  cellLayer.clearLayers();
  let cells = 0, products = 0;
  for (const c of m.cells) {
    if (only && c[col.collection] !== only) continue;
    const w = c[col.west], s = c[col.south], d = m.cell_deg, worst = c[col.worst];
    const colour = by === "age" ? ageColour(c[col.newest_age_days]) : STATE_COLOUR[worst];
    L.rectangle([[s, w], [s + d, w + d]], { className: `cell cell-${worst}`, color: colour, weight: 1, fillOpacity: 0.55 })
      .bindTooltip(`${c[col.collection]} · ${c[col.products]} products: ${c[col.catalogued]} catalogued, ` +
        `${c[col.pending]} on their way, ${c[col.failing]} failing · newest catalogued ` +
        `${c[col.newest_age_days] === null ? "-" : c[col.newest_age_days] + " days ago"}`)
      .addTo(cellLayer);
    cells += 1; products += c[col.products];
  }
  if (cells && !fitted) {  // the first time there is something to show: look at it
    map.fitBounds(cellLayer.getLayers().reduce((b, layer) => b.extend(layer.getBounds()), L.latLngBounds([])), { maxZoom: 6, padding: [20, 20] });
    fitted = true;
  }
  if (m.error) {
    $("#map-summary").textContent = `map not drawn: ${m.error}`;
    $("#map-summary").dataset.cells = "0";
    return;
  }
  $("#map-summary").textContent = cells ? `${products} products in ${cells} cells of ${m.cell_deg}°` : "no footprints catalogued yet";
  $("#map-summary").dataset.cells = String(cells);
  legend(by);
}

function render(doc) {
  last = doc;
  $("#error").hidden = true;
  const cards = doc.collections.map(card);
  $("#collections").replaceChildren(cards.length ? el("div", { class: "cards" }, ...cards) : el("p", { class: "muted" }, "no collections configured"));
  $("#site").replaceChildren(site(doc));
  const select = $("#map-collection"), chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, "all"), ...doc.collections.map((c) => el("option", { value: c.collection }, c.collection)));
  select.value = doc.collections.some((c) => c.collection === chosen) ? chosen : "";
  drawCells();
  $("#updated").textContent = `database time ${doc.now}`;
  document.body.dataset.loaded = "yes";
}

function fail(message) {
  const box = $("#error");
  box.textContent = `Data not available: ${message}. Showing ${last ? `the figures of ${last.now}` : "nothing yet"}; trying again every ${REFRESH_MS / 1000} s.`;
  box.hidden = false;
  document.body.dataset.loaded = "error";
}

async function load() {
  try {
    const res = await fetch("/dashboard/data.json", { cache: "no-store" });
    const doc = await res.json();
    if (!res.ok) return fail(doc.error || `HTTP ${res.status}`);
    render(doc);
  } catch (err) {
    fail(String(err));
  }
}

// Natural Earth's rings that cross the antimeridian (Russia's east, Fiji) would be drawn as lines across
// the whole map: they are drawn east of 180° instead; one that still crosses (Antarctica's, around the
// pole) is left out of the outline.
const crosses = (ring) => ring.some((p, i) => i > 0 && Math.abs(p[0] - ring[i - 1][0]) > 180);
const eastward = (ring) => (crosses(ring) ? ring.map(([x, y]) => [x < 0 ? x + 360 : x, y]) : ring);

function withoutCrossings(geometry) {
  if (!geometry) return null;
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  const kept = polygons.map((rings) => rings.map(eastward)).filter((rings) => !crosses(rings[0]))
    .map((rings) => rings.filter((r) => !crosses(r)));
  return kept.length ? { type: "MultiPolygon", coordinates: kept } : null;
}

async function world() {
  const res = await fetch("/dashboard/static/countries-110m.json");
  const topo = await res.json();
  const countries = topojson.feature(topo, topo.objects.countries);
  countries.features = countries.features.map((f) => ({ ...f, geometry: withoutCrossings(f.geometry) })).filter((f) => f.geometry);
  L.geoJSON(countries, {
    interactive: false, style: { className: "land", color: "#8a96a3", weight: 0.6, fillColor: "#eef0f2", fillOpacity: 1 },
  }).addTo(map).bringToBack();
}

function start() {
  map = L.map("map", { renderer: L.svg(), worldCopyJump: true, minZoom: 1 }).setView([30, 10], 2);
  map.attributionControl.setPrefix("Leaflet").addAttribution("Natural Earth (public domain)");
  cellLayer = L.layerGroup().addTo(map);
  $("#map-colour").addEventListener("change", drawCells);
  $("#map-collection").addEventListener("change", drawCells);
  world().catch((err) => fail(`world outline: ${err}`));
  load();
  setInterval(load, REFRESH_MS);
}

start();
