"""Times pulling a whole logical table into Python (run by loadtests/pull.sh):

  flight      ADBC's Flight SQL driver through tidemark, `SELECT * FROM <table>` into a
              pyarrow Table (cursor.fetch_arrow_table());
  adbc_tm     ADBC's PostgreSQL driver through tidemark's pgwire listener into a pyarrow
              Table (the driver reads with `COPY (...) TO STDOUT (FORMAT binary)`);
  psycopg_tm  psycopg 3 through tidemark's pgwire listener into Python tuples (fetchall);
  copy_tm     tidemark's own binary COPY of the table, read fully through psycopg (bytes only);
  adbc        ADBC's PostgreSQL driver straight from PostgreSQL (the union view): reference;
  psycopg     psycopg 3 straight from PostgreSQL into Python tuples (fetchall);
  copy        PostgreSQL's `COPY (SELECT * FROM <view>) TO STDOUT (FORMAT binary)` read fully
              through psycopg's cursor.copy() (bytes only, no decoding): the floor.

Each path runs --repeat times, interleaved (a, b, c, a, b, c, ...) after one untimed warm-up
of each; the median is reported. With --pid, tidemark's resident memory is sampled while the
Flight pulls run and its peak (VmHWM, over the process's life) is read at the end.

Prints a markdown table. A benchmark, not a test: nothing here fails on timing (it fails only
when a path returns the wrong number of rows).
"""

import argparse
import gc
import statistics
import sys
import threading
import time
import warnings

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_postgresql.dbapi as adbc_pg
import psycopg


def flight_pull(uri, table):
    """(a) rows pulled through tidemark's Flight SQL frontend into a pyarrow Table."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cannot disable autocommit": tidemark has no transactions
        conn = flight_sql.connect(uri)
    try:
        with conn.cursor() as cur:
            start = time.perf_counter()
            cur.execute(f"SELECT * FROM {table}")
            arrow_table = cur.fetch_arrow_table()
            elapsed = time.perf_counter() - start
        return elapsed, arrow_table.num_rows, arrow_table.nbytes
    finally:
        conn.close()


def adbc_pull(uri, table):
    """Rows through ADBC's PostgreSQL driver (binary COPY) into a pyarrow Table."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conn = adbc_pg.connect(uri)
    try:
        with conn.cursor() as cur:
            start = time.perf_counter()
            cur.execute(f"SELECT * FROM {table}")
            arrow_table = cur.fetch_arrow_table()
            elapsed = time.perf_counter() - start
        return elapsed, arrow_table.num_rows, arrow_table.nbytes
    finally:
        conn.close()


def psycopg_pull(dsn, table):
    """(b) the same rows straight from PostgreSQL into Python tuples."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            start = time.perf_counter()
            cur.execute(f"SELECT * FROM {table}")
            rows = cur.fetchall()
            elapsed = time.perf_counter() - start
        return elapsed, len(rows), None


def copy_pull(dsn, table, count_dsn=None):
    """PostgreSQL's (or tidemark's) binary COPY of the rows, read to the end without decoding."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor() as cur:
            n_bytes = 0
            start = time.perf_counter()
            with cur.copy(f"COPY (SELECT * FROM {table}) TO STDOUT (FORMAT binary)") as copy:
                for block in copy:
                    n_bytes += len(block)
            elapsed = time.perf_counter() - start
        # The row count is not decoded from the stream (that would not be a floor); ask for it.
        with psycopg.connect(count_dsn or dsn, autocommit=True) as counter:
            rows = counter.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return elapsed, rows, n_bytes


def proc_status_kib(pid, key):
    """A `VmRSS`/`VmHWM`-style line of /proc/<pid>/status in KiB, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples a process's VmRSS every 10 ms on a thread; `peak` is the highest seen (KiB)."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            rss = proc_status_kib(self.pid, "VmRSS")
            if rss is not None:
                self.peak = max(self.peak, rss)
            self._stop.wait(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:.0f} MiB"


LABELS = {
    "flight": "tidemark Flight SQL → ADBC Flight SQL → pyarrow Table",
    "adbc_tm": "tidemark pgwire → ADBC PostgreSQL (binary COPY) → pyarrow Table",
    "psycopg_tm": "tidemark pgwire → psycopg 3 → Python tuples (fetchall)",
    "copy_tm": "tidemark pgwire COPY … (FORMAT binary), bytes only",
    "adbc": "PostgreSQL → ADBC PostgreSQL (binary COPY) → pyarrow Table",
    "psycopg": "PostgreSQL → psycopg 3 → Python tuples (fetchall)",
    "copy": "PostgreSQL COPY … TO STDOUT (FORMAT binary), bytes only (floor)",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flight", help="tidemark's Flight SQL URI, e.g. grpc://127.0.0.1:50051")
    parser.add_argument("--tm-pg", help="libpq URL of tidemark's pgwire listener")
    parser.add_argument("--pg", required=True, help="libpq URL of the warehouse database")
    parser.add_argument("--table", default="events", help="logical table (its union view)")
    parser.add_argument("--rows", type=int, default=None, help="rows every path must return")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each path")
    parser.add_argument("--pid", type=int, default=None, help="tidemark's process id (memory)")
    parser.add_argument("--paths", default="flight,adbc_tm,psycopg_tm,copy_tm,adbc,psycopg,copy",
                        help="comma-separated subset of " + ",".join(LABELS))
    args = parser.parse_args()

    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if "flight" in paths and not args.flight:
        parser.error("--flight is required for the flight path")
    if any(p.endswith("_tm") for p in paths) and not args.tm_pg:
        parser.error("--tm-pg is required for the paths through tidemark's pgwire listener")
    runners = {
        "flight": lambda: flight_pull(args.flight, args.table),
        "adbc_tm": lambda: adbc_pull(args.tm_pg, args.table),
        "psycopg_tm": lambda: psycopg_pull(args.tm_pg, args.table),
        "copy_tm": lambda: copy_pull(args.tm_pg, args.table, args.pg),
        "adbc": lambda: adbc_pull(args.pg, args.table),
        "psycopg": lambda: psycopg_pull(args.pg, args.table),
        "copy": lambda: copy_pull(args.pg, args.table),
    }
    labels = LABELS
    times = {p: [] for p in paths}
    info = {}
    problems = []
    sampler = None
    for round_no in range(args.repeat + 1):
        for p in paths:
            gc.collect()
            if p == "flight" and args.pid and sampler is None:
                sampler = RssSampler(args.pid).__enter__()
            elapsed, rows, size = runners[p]()
            if args.rows is not None and rows != args.rows:
                problems.append(f"{p} returned {rows} rows, expected {args.rows}")
            info[p] = (rows, size)
            if round_no > 0:
                times[p].append(elapsed)
            print(f"  {'warm-up' if round_no == 0 else f'run {round_no}'}: {p:8} "
                  f"{elapsed:7.3f} s  {rows} rows", file=sys.stderr)
            gc.collect()
    if sampler is not None:
        sampler.__exit__(None, None, None)

    med = {p: statistics.median(ts) for p, ts in times.items()}
    first = next(iter(info.values()))[0]
    print()
    print(f"Pull of {first:,} rows × all columns of `{args.table}`, median of {args.repeat} runs:")
    print()
    print("| path | seconds | rows/s | rows | size | × COPY floor |")
    print("|---|---|---|---|---|---|")
    for p in paths:
        rows, size = info[p]
        size_text = "" if size is None else f"{size / 2**20:.0f} MiB" + (
            " (Arrow)" if p in ("flight", "adbc_tm", "adbc") else " (COPY binary)")
        floor = f"{med[p] / med['copy']:.2f}" if "copy" in med else ""
        print(f"| {labels[p]} | {med[p]:.3f} | {rows / med[p]:,.0f} | {rows:,} | {size_text} | {floor} |")
    print()
    if "flight" in med and "psycopg" in med:
        print(f"- Flight's speed-up over psycopg direct (psycopg time ÷ Flight time): "
              f"{med['psycopg'] / med['flight']:.2f}× (target ≥ 2×)")
    if "flight" in med and "copy" in med:
        print(f"- Flight time ÷ COPY floor time: {med['flight'] / med['copy']:.2f}× (target ≤ 1.5×)")
    if "adbc_tm" in med and "copy" in med:
        print(f"- ADBC over tidemark's pgwire ÷ COPY floor time: {med['adbc_tm'] / med['copy']:.2f}× "
              f"(target ≤ 1.5×)")
    if "adbc_tm" in med and "adbc" in med:
        print(f"- ADBC over tidemark's pgwire ÷ ADBC straight from PostgreSQL: "
              f"{med['adbc_tm'] / med['adbc']:.2f}×")
    if "psycopg" in med and "copy" in med:
        print(f"- psycopg time ÷ COPY floor time: {med['psycopg'] / med['copy']:.2f}×")
    if args.pid:
        hwm = proc_status_kib(args.pid, "VmHWM")
        sampled = sampler.peak if sampler is not None else None
        print(f"- tidemark memory: peak RSS over its life (VmHWM) {mib(hwm)}; highest RSS sampled "
              f"during the Flight pulls {mib(sampled)} (target < 300 MiB)")
    if problems:
        print()
        for problem in problems:
            print(f"ERROR {problem}")
        sys.exit(1)


if __name__ == "__main__":
    main()
