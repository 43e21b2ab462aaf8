// A time-series chart in SVG: several series over a shared time axis, step or straight
// lines, a legend and a crosshair that shows every series' value at the pointer.

import { h, s, tooltip } from "./dom.js";
import { tickLabel, clock } from "./time.js";

const W = 600;
const H = 180;
const PAD = { l: 74, r: 12, t: 10, b: 22 };

/** The palette series are drawn with, in order. */
export const PALETTE = ["var(--batch)", "var(--speed)", "var(--windows)", "var(--warehouse)", "var(--miss)", "var(--partial)", "var(--bypass)"];

/** Axis values from `lo` to at least `hi` at a round step (1, 2 or 5 times a power of ten). */
export function niceTicks(lo, hi, count = 3, integer = false) {
  const raw = integer ? Math.max(1, (hi - lo) / count) : (hi - lo) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((st) => st >= raw) || raw;
  const start = Math.floor(lo / step) * step;
  const ticks = [];
  for (let v = start; v < hi + step * 0.999 && ticks.length < 12; v += step) ticks.push(v);
  return ticks;
}

function nearest(points, t) {
  let lo = 0;
  let hi = points.length - 1;
  if (hi < 0) return null;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] < t) lo = mid + 1;
    else hi = mid;
  }
  const p = points[lo];
  const q = points[lo - 1];
  return q && Math.abs(q[0] - t) < Math.abs(p[0] - t) ? q : p;
}

function path(points, x, y, step) {
  let d = "";
  let prev = null;
  for (const [t, v] of points) {
    if (v === null || v === undefined || Number.isNaN(v)) {
      prev = null;
      continue;
    }
    if (prev === null) d += `M${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    else if (step) d += `H${x(t).toFixed(1)}V${y(v).toFixed(1)}`;
    else d += `L${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    prev = v;
  }
  return d;
}

/** Axis values for a log scale over [lo, hi] (seconds: 1 s, 10 s, 1 min, 10 min, 1 h, ...). */
export function logTicks(lo, hi) {
  const marks = [0.01, 0.1, 1, 10, 60, 600, 3600, 36000, 86400, 864000];
  const inside = marks.filter((m) => m >= lo && m <= hi);
  return inside.length >= 2 ? inside : [lo, hi];
}

/**
 * A chart panel. `opts`: title, series [{name, points: [[t ms, value]], step, dash, color}],
 * from/to (ms), fmt (value → text), min (lower bound of the y axis, default 0; null: the
 * lowest value), max (upper bound, default the highest value), clamp (values outside
 * [min, max] are drawn at the edge), instants (values are times: no round steps), integer
 * (counts: steps of at least 1), log (a logarithmic axis for positive values), testid.
 */
export function chart(opts) {
  const { title, series, from, to, fmt = (v) => v.toFixed(2), min = 0, testid } = opts;
  const values = series.flatMap((sr) => sr.points.map((p) => p[1])).filter((v) => v !== null && v !== undefined && !Number.isNaN(v));
  let lo = min === null ? Math.min(...values) : min;
  let hi = opts.max ?? Math.max(...values, lo + 1e-9);
  if (!values.length) [lo, hi] = [opts.log ? 1 : 0, opts.log ? 60 : 1];
  if (opts.log) [lo, hi] = [Math.max(lo, 0.1), Math.max(hi, 1)];
  if (hi - lo < 1e-9) hi = lo + 1;
  let ticks = null;
  if (opts.log) ticks = logTicks(lo, hi);
  else if (!opts.instants) ticks = niceTicks(lo, hi, 3, opts.integer);
  if (ticks && !opts.log) [lo, hi] = [ticks[0], ticks[ticks.length - 1]];
  else if (!opts.max) hi += (hi - lo) * 0.08;
  const span = Math.max(1, to - from);
  const x = (t) => PAD.l + ((t - from) / span) * (W - PAD.l - PAD.r);
  const frac = opts.log
    ? (v) => (Math.log(Math.max(v, lo)) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))
    : (v) => (v - lo) / (hi - lo);
  const clamp = (f) => (opts.clamp || opts.log ? Math.min(1, Math.max(0, f)) : f);
  const y = (v) => H - PAD.b - clamp(frac(v)) * (H - PAD.t - PAD.b);
  const grid = [];
  for (const v of ticks || [0, 1, 2, 3].map((i) => lo + ((hi - lo) * i) / 3)) {
    grid.push(s("line", { class: "grid-line", x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
    grid.push(s("text", { class: "axis-text", x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = from + (span * i) / 4;
    grid.push(s("text", { class: "axis-text", x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, tickLabel(t, span)));
  }
  const colored = series.map((sr, i) => ({ ...sr, color: sr.color || PALETTE[i % PALETTE.length] }));
  const shown = (sr) => sr.points.filter((p) => p[0] >= from);
  const lines = colored.map((sr) =>
    s("path", { class: "series", d: path(shown(sr), x, y, sr.step), stroke: sr.color, "stroke-dasharray": sr.dash ? "5 4" : null, "data-series": sr.name }),
  );
  const cursor = s("line", { class: "cursor", y1: PAD.t, y2: H - PAD.b, visibility: "hidden" });
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title }, grid, lines, cursor);
  svg.addEventListener("mousemove", (ev) => {
    const box = svg.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * W;
    const t = from + ((px - PAD.l) / (W - PAD.l - PAD.r)) * span;
    cursor.setAttribute("x1", px);
    cursor.setAttribute("x2", px);
    cursor.setAttribute("visibility", "visible");
    const rows = colored.map((sr) => {
      const p = nearest(sr.points, t);
      return `${sr.name}: ${p && p[1] !== null && p[1] !== undefined ? fmt(p[1]) : "—"}`;
    });
    tooltip(ev, `${clock(t, true)}\n${rows.join("\n")}`);
  });
  svg.addEventListener("mouseleave", () => {
    cursor.setAttribute("visibility", "hidden");
    tooltip(null);
  });
  const legend = h(
    "div",
    { class: "legend" },
    colored.map((sr) => {
      const last = [...sr.points].reverse().find((p) => p[1] !== null && p[1] !== undefined);
      return h("span", {}, h("span", { class: "swatch", style: `background:${sr.color}` }), `${sr.name}${last ? ` ${fmt(last[1])}` : ""}`);
    }),
  );
  return h("div", { class: "panel chart", "data-testid": testid }, h("h3", {}, title), svg, legend);
}
