// Freshness: per logical table, W, H and now over the last hour (how far behind the batch
// and the speed layer are; W moves in steps), whether the windows are up or degraded, and
// the retention rule's margins. Polls `GET /v1/freshness` every two seconds.

import { api } from "./api.js";
import { h, fill, badge } from "./dom.js";
import { chart } from "./chart.js";
import { duration, clock } from "./time.js";

const HOUR = 3600000;
const POLL = 2000;

function card(label, value, note, testid) {
  return h("div", { class: "card", "data-testid": testid }, h("div", { class: "label" }, label), h("div", { class: "big" }, value), note ? h("div", { class: "label" }, note) : null);
}

function windowsCards(t) {
  const w = t.windows;
  if (!w) return [card("windows", "none", "no [tables.windows] for this table")];
  return [
    h("div", { class: "card", "data-testid": "windows-state" }, h("div", { class: "label" }, "windows (Redis)"), h("div", { class: "big" }, badge(w.up ? "up" : "degraded")), w.reason ? h("div", { class: "label error" }, w.reason) : h("div", { class: "label" }, `${w.bucket_s} s buckets, kept ${duration(w.retention_s)}`)),
    card("windows retention margin", w.margin_s === null ? "—" : duration(w.margin_s), "until H is too far behind for the windows to be read", "windows-margin"),
  ];
}

function tableSection(t) {
  const points = [...t.samples, { t: t.now, w: t.w, h: t.h }];
  // the last hour, or as much of it as the samples reach back
  const from = Math.max(t.now - HOUR, (points[0]?.t ?? t.now) - 1000);
  const marks = chart({
    title: "W, H and now — the last hour (instants before the chart's start are drawn at its floor)",
    testid: `timeline-${t.table}`,
    from,
    to: t.now,
    min: from,
    max: t.now,
    clamp: true,
    instants: true,
    fmt: (v) => clock(v),
    series: [
      { name: "now", points: points.map((p) => [p.t, p.t]), dash: true, color: "var(--now)" },
      { name: "H (speed table)", points: points.map((p) => [p.t, p.h]), color: "var(--h)" },
      { name: "W (batch)", points: points.map((p) => [p.t, p.w]), step: true, color: "var(--w)" },
    ],
  });
  const lag = chart({
    title: "How far behind now (log scale)",
    testid: `lag-${t.table}`,
    from,
    to: t.now,
    log: true,
    fmt: (v) => duration(v),
    series: [
      { name: "batch (now − W)", points: points.map((p) => [p.t, p.w === null ? null : (p.t - p.w) / 1000]), color: "var(--w)" },
      { name: "speed (now − H)", points: points.map((p) => [p.t, p.h === null ? null : (p.t - p.h) / 1000]), color: "var(--h)" },
    ],
  });
  return h(
    "section",
    { class: "panel stack", "data-table": t.table },
    h("h2", {}, t.table),
    h(
      "div",
      { class: "cards" },
      card("batch watermark W", t.batch_watermark ?? "—", `batch behind now: ${duration(t.batch_behind_s)}`, "watermark"),
      card("speed high-water mark H", t.h === null ? "—" : clock(t.h, true), t.h === null ? "published only with windows" : `speed behind now: ${duration(t.speed_behind_s)}`, "high-water-mark"),
      ...windowsCards(t),
      card("speed rows must be kept", `≥ ${duration(t.speed_retention_s)}`, "after W passes them (watermark_poll + statement_timeout)", "speed-retention"),
    ),
    h("div", { class: "charts" }, marks, lag),
  );
}

/** Renders the freshness view into `root` and keeps it live; returns a stop function. */
export function freshnessView(root) {
  let stopped = false;
  let timer = null;
  fill(root, h("div", { class: "empty" }, "loading…"));
  const tick = async () => {
    try {
      const { tables } = await api("/v1/freshness");
      if (stopped) return;
      fill(root, h("div", { class: "stack", "data-testid": "freshness" }, tables.length ? tables.map(tableSection) : h("div", { class: "empty" }, "No logical tables are configured.")));
    } catch (e) {
      if (!stopped) fill(root, h("div", { class: "panel error" }, e.message));
    }
    if (!stopped) timer = setTimeout(tick, POLL);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
