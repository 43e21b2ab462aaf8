"""REST and Flight SQL clients of the soak test, and its report (run by loadtests/soak.sh).

  soak_clients.py rest   --base http://H:P --clients N --duration S --start EPOCH --interval S --out F
  soak_clients.py flight --uri grpc://H:P  --clients N --duration S --start EPOCH --interval S --out F
  soak_clients.py report --work DIR --start EPOCH --duration S --every S [--pg-extended N]

`rest` and `flight` run N client threads until START + DURATION. Each client loops over a
dashboard mix of queries (weighted), one request every INTERVAL seconds (0: back to back),
each on its own keep-alive connection (REST: one http.client connection; Flight: one ADBC
connection), reopened after an error. Every request is recorded as
`end_epoch,latency_ms,ok,query` in OUT; the first errors are printed to stderr in full.

`report` reads those files, pgbench's per-transaction logs (`pgb-*` in DIR), pgbench's
timestamped stderr (`pgbench-*.err`), the RSS samples (`rss.tsv`: interval index, VmRSS KiB,
PostgreSQL backends) and prints a markdown table per interval and a summary. Exits 1 when any
query failed, 2 when the report itself failed.
"""

import argparse
import csv
import glob
import http.client
import json
import math
import os
import random
import re
import sys
import threading
import time
import urllib.parse
import warnings
from datetime import datetime, timedelta, timezone

# ----------------------------------------------------------------------------- the query mix

LIVE_5MIN = (
    "SELECT country, count(*) AS events, sum(amount) AS revenue FROM events "
    "WHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '5 minutes' "
    "GROUP BY country ORDER BY events DESC"
)
DAILY_7D = (
    "SELECT date_trunc('day', event_time) AS day, count(*) AS orders, sum(amount) AS revenue "
    "FROM events WHERE page = '/checkout' "
    "AND event_time >= date_trunc('day', now() AT TIME ZONE 'UTC') - interval '6 days' "
    "GROUP BY 1 ORDER BY 1"
)
HOURLY_7D = (
    "SELECT date_trunc('hour', event_time) AS hour, count(*) AS events, sum(amount) AS revenue "
    "FROM events WHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '7 days' "
    "GROUP BY 1 ORDER BY 1"
)
COUNTRY_SINCE = (
    "SELECT country, count(*) AS n, sum(amount) AS revenue FROM events "
    "WHERE event_time >= $1 GROUP BY 1"
)
LAST_MINUTE_ROWS = (
    "SELECT * FROM events WHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '1 minute'"
)


def utc_now():
    return datetime.now(timezone.utc).replace(tzinfo=None)


def ts(t):
    return t.strftime("%Y-%m-%d %H:%M:%S")


def minute_floor(t):
    return t.replace(second=0, microsecond=0)


def day_floor(t):
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


# REST: (name, weight, method, path, params or body) built per request
def rest_request(name):
    now = utc_now()
    if name == "live_countries":
        return "POST", "/v1/query", None, {"sql": LIVE_5MIN}
    if name == "daily_revenue":
        return "POST", "/v1/query", None, {"sql": DAILY_7D}
    if name == "events_per_minute":
        params = {"from": ts(minute_floor(now) - timedelta(minutes=10))}
        return "GET", "/v1/queries/events_per_minute", params, None
    if name == "revenue_by_country":
        params = {"since": ts(day_floor(now) - timedelta(days=7))}
        return "GET", "/v1/queries/revenue_by_country", params, None
    if name == "top_pages":
        params = {"device": random.choice(["mobile", "desktop", "tablet"])}
        return "GET", "/v1/queries/top_pages", params, None
    raise ValueError(name)


# top_pages is rare on purpose: its LIMIT is a parameter, so it is passed through and scans
# the whole union view on the warehouse every time (~150 ms of PostgreSQL CPU)
REST_MIX = [
    ("live_countries", 20),
    ("daily_revenue", 10),
    ("events_per_minute", 10),
    ("revenue_by_country", 8),
    ("top_pages", 2),
]


# Flight: (sql, parameters) per request
def flight_request(name):
    now = utc_now()
    if name == "country_since":
        return COUNTRY_SINCE, (ts(minute_floor(now) - timedelta(hours=1)),)
    if name == "hourly_7d":
        return HOURLY_7D, None
    if name == "last_minute_rows":
        return LAST_MINUTE_ROWS, None
    raise ValueError(name)


FLIGHT_MIX = [("country_since", 2), ("hourly_7d", 2), ("last_minute_rows", 1)]


def pick(rng, mix):
    names = [n for n, _ in mix]
    weights = [w for _, w in mix]
    return rng.choices(names, weights)[0]


# ----------------------------------------------------------------------------- client loop


class Recorder:
    """Collects `(end_epoch, latency_ms, ok, query)` from all threads; prints first errors."""

    MAX_PRINTED = 20

    def __init__(self, kind):
        self.kind = kind
        self.samples = []  # list.append is atomic under the GIL
        self.lock = threading.Lock()
        self.errors = 0

    def ok(self, end, latency_ms, name):
        self.samples.append((end, latency_ms, 1, name))

    def failed(self, end, latency_ms, name, message):
        self.samples.append((end, latency_ms, 0, name))
        with self.lock:
            self.errors += 1
            if self.errors <= self.MAX_PRINTED:
                stamp = datetime.fromtimestamp(end, timezone.utc).strftime("%H:%M:%S")
                print(f"{self.kind} error at {stamp} ({name}): {message}", file=sys.stderr, flush=True)

    def write(self, path):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            for s in self.samples:
                w.writerow((f"{s[0]:.6f}", f"{s[1]:.3f}", s[2], s[3]))


def run_clients(args, kind, client_fn):
    """Starts args.clients threads running client_fn(index, deadline, recorder), waits for them."""
    rec = Recorder(kind)
    deadline = args.start + args.duration
    threads = [
        threading.Thread(target=client_fn, args=(i, deadline, rec, args), daemon=True)
        for i in range(args.clients)
    ]
    wait = args.start - time.time()
    if wait > 0:
        time.sleep(wait)
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline - time.time() + 120))
    rec.write(args.out)
    alive = sum(t.is_alive() for t in threads)
    print(
        f"{kind}: {len(rec.samples)} requests, {rec.errors} failed"
        + (f", {alive} clients still stuck at the end" if alive else ""),
        file=sys.stderr,
        flush=True,
    )
    return 1 if alive else 0


def paced(i, deadline, interval, rng, step):
    """Calls step() every `interval` s (first one at a random offset) until the deadline."""
    nxt = time.time() + (rng.uniform(0, interval) if interval > 0 else 0)
    while True:
        now = time.time()
        if nxt > now:
            time.sleep(nxt - now)
        if time.time() >= deadline:
            return
        step()
        nxt = max(nxt + interval, time.time()) if interval > 0 else time.time()


def rest_client(i, deadline, rec, args):
    """One dashboard: a keep-alive HTTP/1.1 connection (stdlib http.client), reopened after errors."""
    rng = random.Random(1000 + i)
    url = urllib.parse.urlsplit(args.base)
    state = {"conn": None}

    def call(method, path, params, body):
        if state["conn"] is None:
            state["conn"] = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        if params:
            path += "?" + urllib.parse.urlencode(params)
        headers = {"accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        state["conn"].request(method, path, body=data, headers=headers)
        resp = state["conn"].getresponse()
        return resp.status, resp.read()

    def step():
        name = pick(rng, REST_MIX)
        method, path, params, body = rest_request(name)
        t0 = time.time()
        try:
            status, payload = call(method, path, params, body)
            end = time.time()
            if status == 200 and json.loads(payload).get("rows") is not None:
                rec.ok(end, (end - t0) * 1000, name)
            else:
                rec.failed(end, (end - t0) * 1000, name, f"HTTP {status}: {payload[:300]!r}")
        except Exception as e:  # noqa: BLE001 - every failure counts
            end = time.time()
            rec.failed(end, (end - t0) * 1000, name, f"{type(e).__name__}: {e}")
            if state["conn"] is not None:
                state["conn"].close()
            state["conn"] = None

    paced(i, deadline, args.interval, rng, step)
    if state["conn"] is not None:
        state["conn"].close()


def flight_client(i, deadline, rec, args):
    import adbc_driver_flightsql.dbapi as flight_sql

    rng = random.Random(2000 + i)
    state = {"conn": None}

    def connect():
        state["conn"] = flight_sql.connect(args.uri)

    def step():
        name = pick(rng, FLIGHT_MIX)
        sql, params = flight_request(name)
        t0 = time.time()
        try:
            if state["conn"] is None:
                connect()
            with state["conn"].cursor() as cur:
                cur.execute(sql, parameters=params)
                table = cur.fetch_arrow_table()
            end = time.time()
            if table.num_columns > 0:
                rec.ok(end, (end - t0) * 1000, name)
            else:
                rec.failed(end, (end - t0) * 1000, name, "answer without columns")
        except Exception as e:  # noqa: BLE001 - every failure counts
            end = time.time()
            rec.failed(end, (end - t0) * 1000, name, f"{type(e).__name__}: {e}")
            try:
                state["conn"].close()
            except Exception:  # noqa: BLE001
                pass
            state["conn"] = None

    paced(i, deadline, args.interval, rng, step)
    if state["conn"] is not None:
        state["conn"].close()


# ----------------------------------------------------------------------------- report


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    # nearest rank
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


class Series:
    """Latencies and error counts per interval for one protocol."""

    def __init__(self, buckets):
        self.lat = [[] for _ in range(buckets)]
        self.errors = [0] * buckets
        self.total = 0
        self.failed = 0
        self.per_query = {}

    def add(self, b, latency_ms, ok, query=None):
        self.total += 1
        if ok:
            self.lat[b].append(latency_ms)
        else:
            self.errors[b] += 1
            self.failed += 1
        if query is not None:
            q = self.per_query.setdefault(query, [])
            if ok:
                q.append(latency_ms)

    def stats(self, b, seconds):
        v = sorted(self.lat[b])
        n = len(v) + self.errors[b]
        return n / seconds if seconds > 0 else 0.0, percentile(v, 50), percentile(v, 99)


def bucket_of(t, start, every, buckets):
    return min(buckets - 1, max(0, int((t - start) // every)))


PGB_SCRIPTS_RE = re.compile(r"^pgb-(\w+)\.\d+(\.\d+)?$")


def read_pgbench(work, start, every, buckets, series):
    """Per-transaction logs: client_id tx_no latency_us script_no epoch us [lag_us]."""
    names = {}
    p = os.path.join(work, "pgbench-scripts.txt")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                mode, idx, name = line.split()
                names[(mode, int(idx))] = name
    for path in sorted(glob.glob(os.path.join(work, "pgb-*"))):
        m = PGB_SCRIPTS_RE.match(os.path.basename(path))
        if not m:
            continue
        mode = m.group(1)
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                t = int(parts[4]) + int(parts[5]) / 1e6
                b = bucket_of(t, start, every, buckets)
                query = f"{names.get((mode, int(parts[3])), parts[3])} ({mode})"
                if parts[2].isdigit():
                    series.add(b, int(parts[2]) / 1000.0, True, query)
                else:  # "failed" / "skipped"
                    series.add(b, 0.0, False, query)


def read_pgbench_errors(work, start, every, buckets, series):
    """Aborted clients and connection failures in pgbench's stderr (`epoch line` per line)."""
    messages = []
    for path in sorted(glob.glob(os.path.join(work, "pgbench-*.err"))):
        with open(path) as f:
            for line in f:
                stamp, _, text = line.rstrip("\n").partition(" ")
                if not re.search(r"aborted in command|connection to server .* failed|could not connect", text):
                    continue
                b = bucket_of(float(stamp), start, every, buckets)
                series.add(b, 0.0, False)
                messages.append(text)
    rc_path = os.path.join(work, "pgbench-exit.txt")
    if os.path.exists(rc_path) and not messages:
        with open(rc_path) as f:
            for line in f:
                mode, rc = line.split()
                if rc != "0":
                    series.add(buckets - 1, 0.0, False)
                    messages.append(f"pgbench ({mode}) exited with status {rc}")
    return messages


def read_client_csv(path, start, every, buckets, series):
    if not os.path.exists(path):
        series.add(buckets - 1, 0.0, False)
        return [f"{os.path.basename(path)} missing: the client process failed"]
    with open(path) as f:
        for row in csv.reader(f):
            t, lat, ok, name = float(row[0]), float(row[1]), row[2] == "1", row[3]
            series.add(bucket_of(t, start, every, buckets), lat, ok, name)
    return []


def read_rss(work):
    """rss.tsv: index, VmRSS KiB, PostgreSQL backends -> {index: (kib, backends)}."""
    out = {}
    p = os.path.join(work, "rss.tsv")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    out[int(parts[0])] = (int(parts[1]), parts[2])
    return out


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def report(args):
    every, duration = args.every, args.duration
    buckets = max(1, -(-duration // every))
    pg, rest, flight = Series(buckets), Series(buckets), Series(buckets)
    read_pgbench(args.work, args.start, every, buckets, pg)
    notes = read_pgbench_errors(args.work, args.start, every, buckets, pg)
    notes += read_client_csv(os.path.join(args.work, "rest.csv"), args.start, every, buckets, rest)
    notes += read_client_csv(os.path.join(args.work, "flight.csv"), args.start, every, buckets, flight)
    rss = read_rss(args.work)

    label = "minute" if every == 60 else f"interval ({every} s)"
    print(f"\n| {label} | RSS MiB | pgwire q/s | p50 ms | p99 ms | REST q/s | p50 ms | p99 ms "
          "| Flight q/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for b in range(buckets):
        secs = min(every, duration - b * every)
        row = [str(b + 1), fmt(rss[b + 1][0] / 1024 if b + 1 in rss else None)]
        for s in (pg, rest, flight):
            qps, p50, p99 = s.stats(b, secs)
            row += [f"{qps:.0f}" if qps >= 10 else f"{qps:.1f}", fmt(p50, 2), fmt(p99, 2)]
        row.append(str(pg.errors[b] + rest.errors[b] + flight.errors[b]))
        print("| " + " | ".join(row) + " |")

    failed = pg.failed + rest.failed + flight.failed
    first, last = rss.get(1), rss.get(buckets)
    rss_txt = (f"{first[0] / 1024:.1f} → {last[0] / 1024:.1f} MiB" if first and last else "n/a")
    if 0 in rss:
        rss_txt += f" (at start {rss[0][0] / 1024:.1f} MiB)"
    if args.hwm_kib:
        rss_txt += f", peak {args.hwm_kib / 1024:.1f} MiB"

    def p99s(s):
        a = percentile(sorted(s.lat[0]), 99)
        z = percentile(sorted(s.lat[buckets - 1]), 99)
        return f"{fmt(a, 2)} → {fmt(z, 2)} ms"

    backends = [v[1] for v in rss.values() if v[1].isdigit()]
    print()
    print(
        f"Summary: queries pgwire {pg.total}, REST {rest.total}, Flight {flight.total} "
        f"(total {pg.total + rest.total + flight.total}); failed {failed} "
        f"(pgwire {pg.failed}, REST {rest.failed}, Flight {flight.failed}); "
        f"RSS {rss_txt}; p99 first → last {label}: pgwire {p99s(pg)}, REST {p99s(rest)}, "
        f"Flight {p99s(flight)}"
        + (f"; PostgreSQL backends at most {max(map(int, backends))}" if backends else "")
    )
    print("\nPer query over the whole run (successful answers):\n")
    print("| protocol | query | answers | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for proto, s in (("pgwire", pg), ("REST", rest), ("Flight", flight)):
        for q in sorted(s.per_query):
            v = sorted(s.per_query[q])
            print(f"| {proto} | {q} | {len(v)} | {fmt(percentile(v, 50), 2)} | "
                  f"{fmt(percentile(v, 99), 2)} | {fmt(v[-1] if v else None, 2)} |")
    for n in notes[:20]:
        print(f"note: {n}")
    if len(notes) > 20:
        print(f"note: ... and {len(notes) - 20} more")
    return 1 if failed else 0


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("rest", "flight"):
        p = sub.add_parser(name)
        p.add_argument("--base" if name == "rest" else "--uri", required=True)
        p.add_argument("--clients", type=int, required=True)
        p.add_argument("--duration", type=float, required=True)
        p.add_argument("--start", type=float, required=True, help="epoch seconds to start at")
        p.add_argument("--interval", type=float, default=1.0)
        p.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--work", required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--duration", type=int, required=True)
    p.add_argument("--every", type=int, default=60)
    p.add_argument("--hwm-kib", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "rest":
        return run_clients(args, "REST", rest_client)
    if args.cmd == "flight":
        # ADBC warns "Cannot disable autocommit" on connect: tidemark has no transactions
        warnings.filterwarnings("ignore", message="Cannot disable autocommit")
        return run_clients(args, "Flight", flight_client)
    try:
        return report(args)
    except Exception:  # noqa: BLE001 - 1 is reserved for "some query failed"
        import traceback

        traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(main())
