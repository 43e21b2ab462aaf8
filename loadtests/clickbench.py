"""ClickBench's PostgreSQL queries over a split `hits` table: the load and the timed runs.

Driven by loadtests/clickbench.sh (read it first). Two subcommands:

  load   creates `hits_all` from ClickBench's create.sql (every event once), fills it with
         generated rows over July 2013, and cuts it into `hits_batch` (everything before W plus
         the first hours after it: wrong-side copies) and `hits_speed` (everything from some hours
         before W on: wrong-side copies the other way)
  run    times each of ClickBench's queries on `hits_all` (one table), on the union view `hits`
         that `tidemark setup` made, and through tidemark (REST, and pgwire for comparison),
         interleaved, RUNS rounds; prints per-query medians and a markdown summary

The queries and the schema are read at run time from the user's ClickBench checkout; nothing
of ClickBench is copied into this repository.
"""

import argparse
import json
import re
import statistics
import sys
import time
import urllib.error
import urllib.request

import psycopg

# Expressions for the columns ClickBench's queries filter or group on, over `g` (the row number,
# 1..rows), `h` (a per-column hash of g, non-negative) and `t` (the event time). Other columns
# get a small value of their type. Shapes follow the real data loosely: CounterID 62 is a big
# counter, most SearchPhrase/MobilePhoneModel values are empty, a few URLs mention google.
KEY_COLUMNS = {
    "watchid": "g",
    "eventtime": "t",
    "eventdate": "t::date",
    "clienteventtime": "t",
    "localeventtime": "t",
    "counterid": "CASE WHEN h % 4 = 0 THEN 62 ELSE (h % 5000)::int END",
    "clientip": "(h % 100000)::int",
    "regionid": "(h % 300)::int",
    "userid": "h % 20000",
    "url": "CASE WHEN h % 20 = 0 THEN 'http://www.google.com/search?q=' || h % 100 "
    "ELSE 'http://site' || h % 1000 || '.com/page/' || h % 50 END",
    "title": "CASE WHEN h % 25 = 0 THEN 'Google result ' || h % 40 ELSE 'Title ' || h % 500 END",
    "referer": "CASE WHEN h % 5 = 0 THEN '' ELSE 'https://www.ref' || h % 200 || '.com/p/' || h % 30 END",
    "searchphrase": "CASE WHEN h % 3 = 0 THEN 'phrase ' || h % 2000 ELSE '' END",
    "advengineid": "(CASE WHEN h % 10 = 0 THEN h % 30 ELSE 0 END)::smallint",
    "resolutionwidth": "(800 + h % 1200)::smallint",
    "mobilephonemodel": "CASE WHEN h % 4 = 0 THEN 'model ' || h % 50 ELSE '' END",
    "mobilephone": "(h % 20)::smallint",
    "searchengineid": "(h % 10)::smallint",
    "traficsourceid": "(h % 10 - 1)::smallint",
    "refererhash": "CASE WHEN h % 7 = 0 THEN 3594120000172545465 ELSE h % 1000 END",
    "urlhash": "CASE WHEN h % 9 = 0 THEN 2868770270353813622 ELSE h % 1000 END",
    "windowclientwidth": "(h % 2000)::smallint",
    "windowclientheight": "(h % 1500)::smallint",
}
GENERIC = {
    "bigint": "h % 1000",
    "integer": "(h % 1000)::int",
    "smallint": "(h % 2)::smallint",
    "text": "''",
    "char": "'a'",
    "timestamp": "t",
    "date": "t::date",
}
COLUMN_RE = re.compile(r"^\s*(\w+)\s+(BIGINT|INTEGER|SMALLINT|TEXT|CHAR|TIMESTAMP|DATE|VARCHAR\(\d+\))\s+NOT NULL", re.I)


def columns(create_sql):
    """(name, type) of every column in ClickBench's create.sql, names lower-cased as PostgreSQL does."""
    cols = []
    for line in create_sql.splitlines():
        m = COLUMN_RE.match(line)
        if m:
            kind = m.group(2).lower()
            cols.append((m.group(1).lower(), "text" if kind.startswith("varchar") else kind))
    if len(cols) < 100:
        sys.exit(f"error: found {len(cols)} columns in create.sql, expected ClickBench's 105")
    return cols


def expression(index, name, kind):
    """The generated value of one column (see KEY_COLUMNS): `h` is g hashed with the column's
    own salt, so columns are independent of each other."""
    expr = KEY_COLUMNS.get(name, GENERIC[kind])
    return re.sub(r"\bh\b", f"(hashint8(g * 211 + {index}) & 281474976710655)", expr)


def load(args):
    """Creates and fills hits_all, hits_batch and hits_speed (see the module doc)."""
    create_sql = open(f"{args.clickbench}/postgresql/create.sql").read()
    cols = columns(create_sql)
    table_sql = re.sub(r"CREATE TABLE\s+hits\b", "CREATE UNLOGGED TABLE hits_all", create_sql, flags=re.I)
    select = ",\n".join(expression(i, name, kind) for i, (name, kind) in enumerate(cols))
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(table_sql)
        conn.execute(
            f"INSERT INTO hits_all SELECT {select} FROM ("
            f"SELECT g, timestamp '2013-07-01' + (g - 1) * (interval '31 days' / {args.rows}) AS t "
            f"FROM generate_series(1, {args.rows}) g) s")
        w = args.watermark
        conn.execute("CREATE UNLOGGED TABLE hits_batch AS SELECT * FROM hits_all "
                     f"WHERE eventtime < timestamp '{w}' + interval '{args.overlap_hours} hours'")
        conn.execute("CREATE UNLOGGED TABLE hits_speed AS SELECT * FROM hits_all "
                     f"WHERE eventtime >= timestamp '{w}' - interval '{args.overlap_hours} hours'")
        conn.execute("CREATE TABLE tidemark_watermarks (table_name text PRIMARY KEY, "
                     "batch_watermark timestamp, updated_at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO tidemark_watermarks VALUES ('hits', %s)", (w,))
        for t in ("hits_all", "hits_batch", "hits_speed"):
            conn.execute(f"VACUUM (ANALYZE) {t}")
        counts = conn.execute("SELECT (SELECT count(*) FROM hits_all), (SELECT count(*) FROM hits_batch), "
                              "(SELECT count(*) FROM hits_speed)").fetchone()
    print(f"==> hits_all {counts[0]} rows, hits_batch {counts[1]}, hits_speed {counts[2]}, W = {w}",
          file=sys.stderr)


def queries(path):
    """ClickBench's queries, one per line."""
    return [q.strip().rstrip(";") for q in open(f"{path}/postgresql/queries.sql") if q.strip()]


def on_pg(conn, sql):
    """Runs sql on PostgreSQL; (seconds, rows)."""
    t0 = time.perf_counter()
    rows = conn.execute(sql).fetchall()
    return time.perf_counter() - t0, len(rows)


def on_rest(url, sql):
    """Runs sql through tidemark's REST endpoint; (seconds, rows, plan header)."""
    req = urllib.request.Request(f"{url}/v1/query", data=json.dumps({"sql": sql}).encode(),
                                 headers={"content-type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            body = json.loads(resp.read())
            plan = resp.headers.get("tidemark-plan", "?")
    except urllib.error.HTTPError as err:
        sys.exit(f"error: tidemark refused {sql[:80]}...: {err.code} {err.read()[:300]!r}")
    return time.perf_counter() - t0, len(body["rows"]), plan


def run(args):
    """Times every query on every path, interleaved; prints the tables."""
    qs = queries(args.clickbench)
    single = psycopg.connect(args.pg, autocommit=True)
    tm_pg = psycopg.connect(args.tm_pg, autocommit=True)
    times = {k: [[] for _ in qs] for k in ("single", "union", "rest", "pgwire")}
    plans, mismatched = [""] * len(qs), []
    for r in range(args.runs):
        for i, q in enumerate(qs):
            s, n_single = on_pg(single, q.replace("FROM hits", "FROM hits_all"))
            times["single"][i].append(s)
            times["union"][i].append(on_pg(single, q)[0])
            s, n_rest, plans[i] = on_rest(args.rest, q)
            times["rest"][i].append(s)
            times["pgwire"][i].append(on_pg(tm_pg, q)[0])
            if r == 0 and n_rest != n_single:
                mismatched.append(f"Q{i + 1}: {n_rest} rows through tidemark, {n_single} on one table")
        print(f"==> round {r + 1} of {args.runs} done", file=sys.stderr)
    profiles = [profile(tm_pg, q) for q in qs]
    report(qs, times, plans, mismatched, profiles, args)


def profile(conn, sql):
    """tidemark's own account of one more run (EXPLAIN ANALYZE): (total ms in the engine,
    ms waiting for the warehouse's legs, ms merging, the legs as `name rows`)."""
    text = "\n".join(r[0] for r in conn.execute(f"EXPLAIN ANALYZE {sql}").fetchall())
    total = re.search(r"actual: .* in ([0-9.]+) ms", text)
    legs = re.search(r"legs ([0-9.]+) ms, merge ([0-9.]+) ms", text)
    names = re.findall(r"^\s+(\w+) leg: (\d+) row", text, re.M)
    return (float(total.group(1)) if total else float("nan"),
            float(legs.group(1)) if legs else float("nan"),
            float(legs.group(2)) if legs else float("nan"),
            " + ".join(f"{n} {r}" for n, r in names))


def report(qs, times, plans, mismatched, profiles, args):
    """Per-query medians, the totals and the targets; the profile columns are one EXPLAIN
    ANALYZE run after the timed rounds (engine total, of it the warehouse legs and the merge)."""
    med = {k: [statistics.median(v) * 1000 for v in per] for k, per in times.items()}
    first = {k: sum(v[0] for v in per) * 1000 for k, per in times.items()}
    print("\n| query | plan | one table ms | union view ms | tidemark REST ms | REST / one table | pgwire ms "
          "| engine ms | of it legs ms | merge ms | legs (rows) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for i in range(len(qs)):
        ratio = med["rest"][i] / med["single"][i]
        eng, legs, merge, names = profiles[i]
        print(f"| Q{i + 1} | {plans[i]} | {med['single'][i]:.1f} | {med['union'][i]:.1f} | "
              f"{med['rest'][i]:.1f} | {ratio:.2f} | {med['pgwire'][i]:.1f} | {eng:.1f} | {legs:.1f} | "
              f"{merge:.1f} | {names} |")
    tot = {k: sum(v) for k, v in med.items()}
    worst = max(range(len(qs)), key=lambda i: med["rest"][i] / med["single"][i])
    worst_ratio = med["rest"][worst] / med["single"][worst]
    print(f"\nmedians of {args.runs} runs, {args.rows} rows, caches off")
    print("\n| measure | value | target | met |")
    print("|---|---|---|---|")
    total_ratio = tot["rest"] / tot["single"]
    print(f"| total, tidemark REST / one table | {total_ratio:.2f} ({tot['rest']:.0f} vs {tot['single']:.0f} ms)"
          f" | ≤ 1.1 | {'yes' if total_ratio <= 1.1 else 'no'} |")
    print(f"| total, union view / one table | {tot['union'] / tot['single']:.2f} ({tot['union']:.0f} ms) | - | - |")
    print(f"| total, tidemark pgwire / one table | {tot['pgwire'] / tot['single']:.2f} ({tot['pgwire']:.0f} ms) | - | - |")
    print(f"| slowest query, REST / one table | Q{worst + 1}: {worst_ratio:.2f} | ≤ 1.5 | "
          f"{'yes' if worst_ratio <= 1.5 else 'no'} |")
    print(f"| first run total, REST / one table | {first['rest'] / first['single']:.2f} | - | - |")
    split = [i for i in range(len(qs)) if plans[i] == "split"]
    eng = sum(profiles[i][0] for i in split)
    legs = sum(profiles[i][1] for i in split)
    single = sum(med["single"][i] for i in split)
    print(f"| split queries ({len(split)}): engine / one table; of it the warehouse legs | "
          f"{eng / single:.2f}; legs {legs / single:.2f} ({eng:.0f}, {legs:.0f} vs {single:.0f} ms) | - | - |")
    if mismatched:
        print("\nrow counts that differ (ties under LIMIT can differ; anything else is a bug):")
        for m in mismatched:
            print(f"- {m}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["load", "run"])
    p.add_argument("--clickbench", required=True, help="a checkout of github.com/ClickHouse/ClickBench")
    p.add_argument("--pg", required=True, help="the warehouse (PostgreSQL) URL")
    p.add_argument("--rows", type=int, default=300000)
    p.add_argument("--watermark", default="2013-07-24 00:00:00")
    p.add_argument("--overlap-hours", type=int, default=6)
    p.add_argument("--rest", help="tidemark's HTTP base URL")
    p.add_argument("--tm-pg", help="tidemark's pgwire URL")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    load(args) if args.command == "load" else run(args)


if __name__ == "__main__":
    main()
