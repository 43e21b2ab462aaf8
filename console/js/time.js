// Times as tidemark writes them: PostgreSQL text (`2026-12-05 17:52:12.5` for timestamp,
// with `+00` for timestamptz), read as UTC instants in milliseconds.

/** Milliseconds since 1970 of a PostgreSQL timestamp text (UTC), or null. */
export function parsePgTime(text) {
  if (!text) return null;
  const m = /^(\d{4,})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d):(\d\d)(\.\d+)?)?(?:([+-])(\d\d)(?::?(\d\d))?)?$/.exec(text.trim());
  if (!m) return null;
  const [, y, mo, d, hh = "0", mi = "0", ss = "0", frac = "", sign, oh = "0", om = "0"] = m;
  let ms = Date.UTC(+y, +mo - 1, +d, +hh, +mi, +ss, frac ? Math.round(parseFloat(frac) * 1000) : 0);
  if (sign) ms -= (sign === "+" ? 1 : -1) * (+oh * 60 + +om) * 60000;
  return ms;
}

/** A duration in seconds as `1 d 2 h`, `3 min 4 s`, `5.2 s`, `80 ms`. */
export function duration(secs) {
  if (secs === null || secs === undefined || Number.isNaN(secs)) return "—";
  const neg = secs < 0 ? "−" : "";
  let s = Math.abs(secs);
  if (s < 1) return `${neg}${Math.round(s * 1000)} ms`;
  if (s < 60) return `${neg}${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  const parts = [];
  for (const [u, n] of units) {
    if (s >= n && parts.length < 2) {
      parts.push(`${Math.floor(s / n)} ${u}`);
      s %= n;
    }
  }
  return neg + parts.join(" ");
}

/** An instant (ms) as `HH:MM:SS` UTC, with the date when `withDate`. */
export function clock(ms, withDate = false) {
  if (ms === null || ms === undefined) return "—";
  const iso = new Date(ms).toISOString();
  return withDate ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}` : iso.slice(11, 19);
}

/** A short label for an instant relative to a span: time of day, or the date for long spans. */
export function tickLabel(ms, span) {
  const iso = new Date(ms).toISOString();
  if (span > 3 * 86400000) return iso.slice(5, 10);
  if (span > 86400000) return `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
  if (span > 600000) return iso.slice(11, 16);
  return iso.slice(11, 19);
}
