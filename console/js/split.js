// The split, drawn: the last statement's legs as boxes on a time axis (batch up to W, speed
// from W to S, the Redis windows from S to now), chunks of a sliding range, pruned legs
// greyed out, rows, milliseconds and cache status per leg, the reason of a pass-through.
// Everything comes from the statement's record (`GET /v1/recent/{id}`): its plan as it ran
// (the EXPLAIN record) and its freshness; nothing is computed here but the picture.

import { h, s, fill, badge, tooltip } from "./dom.js";
import { state, go } from "./state.js";
import { parsePgTime, duration, tickLabel, clock } from "./time.js";

const WIDTH = 1000;
const LEFT = 90; // lane labels
const RIGHT = 30;
const LANE = 46;
const TOP = 44;

const COLORS = { batch: "var(--batch)", speed: "var(--speed)", windows: "var(--windows)", union: "var(--batch)", warehouse: "var(--warehouse)" };
const CACHE = { hit: "var(--hit)", miss: "var(--miss)", partial: "var(--partial)", bypass: "var(--bypass)", none: "var(--none)" };

/** The legs of a statement, joined by name: plan (SQL, range) with report (rows, ms, cache). */
export function legsOf(record) {
  const f = record.freshness || { legs: [], pruned: [] };
  const plan = record.explain?.legs || [];
  const reports = Object.fromEntries((f.legs || []).map((l) => [l.name, l]));
  const batchReport = reports.batch;
  const pieces = plan.filter((l) => l.name.startsWith("batch piece"));
  const legs = plan
    .filter((l) => !l.name.startsWith("batch piece"))
    .map((l) => ({ ...l, report: reports[l.name] }));
  if (pieces.length) {
    legs.unshift({
      name: "batch",
      from: pieces[0].from,
      to: pieces[pieces.length - 1].to,
      pieces: pieces.map((p, i) => ({ ...p, cache: batchReport?.pieces?.[i] })),
      report: batchReport,
    });
  }
  if (reports.windows) legs.push({ name: "windows", report: reports.windows, from: f.windows?.from, to: f.realtime_reaches });
  if (!record.explain && record.sql && f.plan === "passthrough") {
    legs.push({ name: "warehouse", sql: record.sql, report: reports.warehouse });
  }
  return legs;
}

/** The axis: segments of the time line, each drawn at a share of the width. */
function axisOf(record, legs) {
  const f = record.freshness;
  const w = parsePgTime(record.explain?.batch_watermark || f.batch_watermark);
  const started = Date.parse(record.started_at);
  const now = parsePgTime(f.realtime_as_of) ?? (Number.isNaN(started) ? Date.now() : started);
  const used = f.windows?.used;
  const sMark = used ? parsePgTime(f.windows.from) : null;
  const hMark = parsePgTime(f.windows?.high_water_mark) ?? parsePgTime(f.realtime_reaches);
  const reaches = parsePgTime(f.realtime_reaches);
  const end = Math.max(now, reaches ?? now, (sMark ?? now) + 1000);
  const batchFrom = legs.find((l) => l.name === "batch" || l.name === "union")?.from;
  const start = parsePgTime(batchFrom);
  const open = start === null;
  const b0 = open ? w - Math.max(3600000, (end - w) * 4) : Math.min(start, w - 1000);
  const segs = [{ name: "batch", from: b0, to: w, share: used ? 0.45 : 0.55, open }];
  if (used && sMark !== null) {
    segs.push({ name: "speed", from: w, to: sMark, share: 0.35 });
    segs.push({ name: "windows", from: sMark, to: end, share: 0.2 });
  } else {
    segs.push({ name: "speed", from: w, to: end, share: 0.45 });
  }
  let x = LEFT;
  const inner = WIDTH - LEFT - RIGHT;
  for (const sg of segs) {
    sg.x0 = x;
    sg.x1 = x + sg.share * inner;
    x = sg.x1;
  }
  const at = (t) => {
    if (t === null || t === undefined) return null;
    const sg = segs.find((g) => t <= g.to) || segs[segs.length - 1];
    const first = segs[0];
    if (t < first.from) return first.x0;
    const span = Math.max(1, sg.to - sg.from);
    return Math.min(sg.x1, sg.x0 + ((t - sg.from) / span) * (sg.x1 - sg.x0));
  };
  return { segs, at, w, now: end, h: hMark, s: sMark, open };
}

function legTip(leg) {
  const r = leg.report;
  const lines = [leg.name];
  if (leg.from || leg.to) lines.push(`from ${leg.from ?? "the beginning"} to ${leg.to ?? "now"}`);
  if (r) lines.push(`${r.rows ?? "streamed"} rows · ${r.elapsed_ms.toFixed(2)} ms · cache ${r.cache}`);
  if (leg.sql) lines.push(leg.sql.length > 300 ? `${leg.sql.slice(0, 300)}…` : leg.sql);
  return lines.join("\n");
}

function box(x0, x1, y, fill, label, attrs, tip) {
  const wdt = Math.max(3, x1 - x0);
  return s(
    "g",
    { ...attrs, tabindex: "0", onmousemove: (e) => tooltip(e, tip), onmouseleave: () => tooltip(null), onfocus: () => {}, onclick: attrs.onclick },
    s("rect", { x: x0, y, width: wdt, height: LANE - 14, rx: 4, fill }),
    wdt > 40 && label ? s("text", { x: x0 + 8, y: y + (LANE - 14) / 2 + 4 }, fit(label, wdt - 14)) : null,
    s("title", {}, tip),
  );
}

/** `label` cut to fit `width` px (about 7 px a character at the picture's size). */
function fit(label, width) {
  const n = Math.floor(width / 7.2);
  return label.length <= n ? label : `${label.slice(0, Math.max(1, n - 1))}…`;
}

function laneY(name) {
  return TOP + { batch: 0, union: 0, speed: 1, windows: 2, warehouse: 1 }[name] * LANE;
}

function markers(ax, height) {
  const out = [];
  const mark = (cls, t, label, row) => {
    const x = ax.at(t);
    if (x === null) return;
    out.push(
      s(
        "g",
        { class: `marker ${cls}`, "data-marker": cls },
        s("line", { x1: x, x2: x, y1: 14 + row * 14, y2: height - 22 }),
        s("text", { x: cls === "now" ? x - 4 : x + 4, y: 12 + row * 14, "text-anchor": cls === "now" ? "end" : "start" }, label),
      ),
    );
  };
  mark("w", ax.w, `W ${clock(ax.w)}`, 0);
  if (ax.s !== null && ax.s !== undefined) {
    const same = clock(ax.h) === clock(ax.s);
    mark("h", ax.s, same ? `H = S ${clock(ax.s)}` : `S ${clock(ax.s)} (H ${clock(ax.h)})`, 0);
  }
  else if (ax.h !== null && ax.h !== undefined) mark("h", ax.h, `H ${clock(ax.h)}`, 0);
  mark("now", ax.now, `now ${clock(ax.now)}`, 1);
  return out;
}

function axisTicks(ax, y) {
  const out = [s("line", { class: "axis", x1: LEFT, x2: WIDTH - RIGHT, y1: y, y2: y })];
  for (const sg of ax.segs) {
    const span = sg.to - sg.from;
    out.push(s("text", { class: "tick", x: (sg.x0 + sg.x1) / 2, y: y + 28, "text-anchor": "middle" }, `${sg.name}: ${sg.open ? "all history" : duration(span / 1000)}`));
    out.push(s("text", { class: "tick", x: sg.x0, y: y + 14, "text-anchor": "start" }, sg.open ? "…" : tickLabel(sg.from, span)));
    out.push(s("line", { class: "break", x1: sg.x0, x2: sg.x0, y1: y - 4, y2: y + 4 }));
  }
  return out;
}

/** The SVG picture of a split statement's legs. */
export function picture(record) {
  const legs = legsOf(record);
  const ax = axisOf(record, legs);
  const pruned = record.freshness.pruned || [];
  const lanes = ["batch", "speed"].concat(record.freshness.windows?.used || legs.some((l) => l.name === "windows") ? ["windows"] : []);
  const height = TOP + lanes.length * LANE + 44;
  const g = [];
  for (const name of lanes) g.push(s("text", { class: "lane-label", x: 8, y: laneY(name) + 20 }, name));
  const bySeg = Object.fromEntries(ax.segs.map((sg) => [sg.name, sg]));
  for (const p of pruned) {
    const sg = bySeg[p];
    if (!sg) continue;
    g.push(box(sg.x0, sg.x1, laneY(p), "var(--pruned)", `${p}: pruned by the time filter`, { class: "leg pruned", "data-leg": p, "data-pruned": "true" }, `${p} leg pruned: the query's time filter lies entirely on the other side of W`));
  }
  for (const leg of legs) {
    const y = laneY(leg.name === "union" ? "batch" : leg.name);
    if (y === undefined || Number.isNaN(y)) continue;
    const r = leg.report;
    const card = () => document.getElementById(`leg-${leg.name}`)?.scrollIntoView({ behavior: "smooth", block: "center" });
    if (leg.pieces) {
      leg.pieces.forEach((p, i) => {
        const x0 = ax.at(parsePgTime(p.from)) ?? ax.segs[0].x0;
        const x1 = ax.at(parsePgTime(p.to)) ?? ax.segs[0].x1;
        const cache = p.cache || "none";
        const label = `${clock(parsePgTime(p.from)).slice(0, 5)} ${cache}`;
        g.push(box(x0 + 0.5, x1 - 0.5, y, CACHE[cache], label, { class: "leg piece", "data-leg": "batch", "data-piece": i + 1, "data-cache": cache, onclick: card }, `${p.name}\n${p.from} … ${p.to}\ncache ${cache}\n${p.sql}`));
      });
      g.push(s("text", { x: ax.segs[0].x0 + 6, y: y - 3, class: "tick" }, `batch: ${leg.pieces.length} chunks · ${r ? `${r.rows} rows · ${r.elapsed_ms.toFixed(1)} ms · ${r.cache}` : ""}`));
      continue;
    }
    let x0, x1;
    if (leg.name === "warehouse") {
      [x0, x1] = [LEFT, WIDTH - RIGHT];
    } else if (leg.name === "union") {
      [x0, x1] = [ax.at(parsePgTime(leg.from)) ?? LEFT, ax.at(ax.now)];
    } else {
      const sg = bySeg[leg.name];
      x0 = ax.at(parsePgTime(leg.from)) ?? sg?.x0 ?? LEFT;
      x1 = ax.at(parsePgTime(leg.to)) ?? sg?.x1 ?? WIDTH - RIGHT;
    }
    const label = `${leg.name}${r ? ` · ${r.rows ?? "…"} rows · ${r.elapsed_ms.toFixed(1)} ms · ${r.cache}` : ""}`;
    g.push(box(x0, x1, y, COLORS[leg.name] || "var(--none)", label, { class: "leg", "data-leg": leg.name, "data-cache": r?.cache || "", onclick: card }, legTip(leg)));
  }
  g.push(...markers(ax, height));
  g.push(...axisTicks(ax, TOP + lanes.length * LANE));
  return s("svg", { class: "split-svg", viewBox: `0 0 ${WIDTH} ${height}`, role: "img", "aria-label": "the legs of the split on a time axis", "data-testid": "split-svg" }, g);
}

function legCard(leg) {
  const r = leg.report;
  const color = COLORS[leg.name] || "var(--none)";
  return h(
    "article",
    { class: "panel leg-card", id: `leg-${leg.name}` },
    h("h3", {}, h("span", { class: "swatch", style: `background:${color}` }), leg.name, r ? badge(r.cache) : null),
    h("div", { class: "muted" }, leg.from || leg.to ? `reads ${leg.from ?? "from the beginning"} → ${leg.to ?? "now"}` : ""),
    r ? h("div", {}, `${r.rows ?? "streamed"} rows in ${r.elapsed_ms.toFixed(2)} ms`) : null,
    leg.pieces
      ? h("details", {}, h("summary", {}, `${leg.pieces.length} chunks (each cached on its own)`), leg.pieces.map((p) => h("div", {}, h("div", { class: "muted" }, `${p.from} → ${p.to} `, badge(p.cache || "none")), h("pre", {}, p.sql))))
      : leg.sql
        ? h("pre", {}, leg.sql)
        : leg.name === "windows"
          ? h("p", { class: "muted" }, "Redis buckets, read in one pipelined round trip")
          : null,
  );
}

function header(record) {
  const f = record.freshness;
  const e = record.explain;
  return h(
    "div",
    { class: "panel stack" },
    h(
      "div",
      { class: "summary" },
      badge(f.plan, f.plan),
      f.table ? h("span", {}, "table ", h("strong", {}, f.table)) : null,
      f.cache ? h("span", {}, "answer ", badge(f.cache)) : null,
      h("span", {}, `${record.rows} rows in ${record.ms.toFixed(1)} ms`),
      h("span", { class: "muted" }, `${record.frontend} · ${record.user || "anonymous"} · ${record.started_at}`),
      f.degraded ? badge("degraded") : null,
    ),
    record.sql ? h("pre", {}, record.sql) : h("p", { class: "muted" }, "<insufficient privilege>"),
    f.plan === "passthrough" ? h("div", { class: "reason", "data-testid": "reason" }, h("strong", {}, "Passed through: "), f.reason || "") : null,
    f.plan === "split" && e?.reason ? h("div", { class: "muted" }, `merge: ${e.reason}`) : null,
    f.windows ? h("div", { class: "muted", "data-testid": "windows" }, `windows: ${e?.windows ?? (f.windows.used ? "used" : `not used: ${f.windows.reason}`)}`) : null,
  );
}

/** Renders the split view for the statement in `state.statement`. */
export function splitView(root) {
  const record = state.statement;
  if (!record || !record.freshness) {
    fill(
      root,
      h("div", { class: "empty" }, "No statement yet: run one in the ", h("a", { href: "#/query" }, "query view"), " or reopen one from ", h("a", { href: "#/recent" }, "recent queries"), "."),
    );
    return () => {};
  }
  const f = record.freshness;
  const body = [header(record)];
  if (f.plan === "local") {
    body.push(h("div", { class: "panel" }, "Answered by tidemark itself: no layer was read."));
  } else {
    body.push(h("div", { class: "panel" }, picture(record), h("p", { class: "muted" }, "Hover a box for its SQL and numbers; click it for its card. Colours of chunks: cache hit, miss, partial.")));
    body.push(h("div", { class: "legs" }, legsOf(record).map(legCard)));
  }
  body.push(h("div", { class: "row" }, h("button", { onclick: () => go("query") }, "← back to the query")));
  fill(root, h("section", { class: "stack", "data-testid": "split" }, body));
  return () => {};
}
