// Health: the numbers of /metrics over the last hour, sampled by tidemark every few seconds
// (`GET /v1/stats`): statements per second and p50/p99 latency per frontend, cache hit ratio
// and bytes per cache, warehouse slots in use and queued, errors by SQLSTATE, connections.

import { api } from "./api.js";
import { h, fill } from "./dom.js";
import { chart } from "./chart.js";
import { duration } from "./time.js";

const HOUR = 3600000;
const POLL = 5000;

/**
 * Series of a per-key map field of the samples: one series per key seen; a sample without
 * the key gives `missing` (0 for counts and rates, null where there is no value).
 */
function byKey(samples, field, pick = (v) => v, missing = null) {
  const keys = new Set(samples.flatMap((s) => Object.keys(s[field] || {})));
  const value = (s, k) => (s[field]?.[k] === undefined ? missing : pick(s[field][k]));
  return [...keys].sort().map((k) => ({ name: k, points: samples.map((s) => [s.t, value(s, k)]) }));
}

function bytes(v) {
  if (v >= 1 << 30) return `${(v / (1 << 30)).toFixed(1)} GiB`;
  if (v >= 1 << 20) return `${(v / (1 << 20)).toFixed(1)} MiB`;
  if (v >= 1 << 10) return `${(v / (1 << 10)).toFixed(0)} KiB`;
  return `${Math.round(v)} B`;
}

function charts(samples) {
  const now = Date.now();
  // the last hour, or as much of it as the samples reach back
  const [from, to] = [Math.max(now - HOUR, (samples[0]?.t ?? now) - 5000), now];
  const latency = [
    ...byKey(samples, "p50_ms").map((s) => ({ ...s, name: `${s.name} p50` })),
    ...byKey(samples, "p99_ms").map((s) => ({ ...s, name: `${s.name} p99`, dash: true })),
  ];
  const slots = ["in_use", "queued", "max"].map((k) => ({ name: k.replace("_", " "), dash: k === "max", points: samples.map((s) => [s.t, s.warehouse_slots[k]]) }));
  const errors = byKey(samples, "errors", (v) => v, 0);
  const ms = (v) => duration(v / 1000);
  return [
    chart({ title: "Statements per second, by frontend", testid: "qps", from, to, series: byKey(samples, "queries_per_second", (v) => v, 0), fmt: (v) => v.toFixed(1) }),
    chart({ title: "Latency to the first batch (p50, p99 dashed)", testid: "latency", from, to, series: latency, fmt: ms }),
    chart({ title: "Cache hit ratio, by cache", testid: "cache-ratio", from, to, series: byKey(samples, "cache", (c) => c.hit_ratio), fmt: (v) => `${Math.round(v * 100)}%` }),
    chart({ title: "Cache bytes, by cache", testid: "cache-bytes", from, to, series: byKey(samples, "cache", (c) => c.bytes), fmt: bytes }),
    chart({ title: "Warehouse slots", testid: "slots", from, to, series: slots, fmt: (v) => v.toFixed(0), integer: true }),
    chart({ title: "Errors by SQLSTATE (per interval)", testid: "errors", from, to, series: errors.length ? errors : [{ name: "none", points: samples.map((s) => [s.t, 0]) }], fmt: (v) => v.toFixed(0), integer: true }),
    chart({ title: "Open connections, by frontend", testid: "connections", from, to, series: byKey(samples, "connections", (v) => v, 0), fmt: (v) => v.toFixed(0), integer: true }),
  ];
}

/** Renders the health view into `root` and keeps it live; returns a stop function. */
export function healthView(root) {
  let stopped = false;
  let timer = null;
  let samples = [];
  let every = 5;
  fill(root, h("div", { class: "empty" }, "loading…"));
  const tick = async () => {
    try {
      const since = samples.length ? samples[samples.length - 1].t : 0;
      const got = await api(`/v1/stats?since=${since}`);
      if (stopped) return;
      every = got.interval_s;
      samples = samples.concat(got.samples).filter((s) => s.t > Date.now() - HOUR);
      const note = samples.length < 2 ? `Samples arrive every ${every} s; the charts fill as they come.` : `${samples.length} samples, one every ${every} s; the same numbers as /metrics.`;
      fill(root, h("div", { class: "stack", "data-testid": "health" }, h("p", { class: "muted" }, note), h("div", { class: "charts" }, charts(samples))));
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
