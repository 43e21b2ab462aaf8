"""psycopg 3 against tidemark's PostgreSQL wire protocol frontend.

Usage: test_psycopg.py TIDEMARK_DSN ORACLE_DSN

TIDEMARK_DSN reaches tidemark (logical table `events`); ORACLE_DSN reaches the warehouse database
directly, where `events_oracle` holds every event exactly once. Every answer from tidemark is
compared with the same query over `events_oracle`. psycopg 3 binds parameters on the server
(extended protocol) and prepares a statement after 5 executions.

Prints `psycopg: N checks passed` and exits 0, or lists the failures and exits 1.
Run by tests/pg_clients.rs with the venv that scripts/clients.sh creates.
"""

import json
import sys
import traceback
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import psycopg

passed = 0
failures = []


def check(name, ok, detail=""):
    """Counts one check; remembers a failure with its detail."""
    global passed
    if ok:
        passed += 1
    else:
        failures.append(f"{name}: {detail}")


def same(name, got, want):
    check(name, got == want, f"tidemark {got!r} != oracle {want!r}")


def group(name):
    """Runs a group of checks; an exception fails the group, and the connection is rolled back."""

    def wrap(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001 - any error is a failed check
            failures.append(f"{name}: raised\n{traceback.format_exc()}")
            try:
                tm.rollback()
            except Exception:  # noqa: BLE001
                pass
        return fn

    return wrap


def both(sql, params=()):
    """Runs `sql` with {T} = events on tidemark and {T} = events_oracle on the oracle."""
    got = tm.execute(sql.replace("{T}", "events"), params).fetchall()
    want = oracle.execute(sql.replace("{T}", "events_oracle"), params).fetchall()
    return got, want


tm_dsn, oracle_dsn = sys.argv[1], sys.argv[2]
tm = psycopg.connect(tm_dsn, connect_timeout=10)  # default: autocommit off, server-side binding
oracle = psycopg.connect(oracle_dsn, connect_timeout=10, autocommit=True)
UTC = timezone.utc


@group("connect")
def _():
    same("select 1", tm.execute("SELECT 1").fetchone(), (1,))
    check("server_version reported", tm.info.server_version >= 90000, tm.info.server_version)
    check("transaction open (autocommit off)", tm.info.transaction_status.name == "INTRANS",
          tm.info.transaction_status)
    tm.commit()
    check("idle after commit", tm.info.transaction_status.name == "IDLE", tm.info.transaction_status)


@group("int parameter")
def _():
    got, want = both("SELECT count(*) FROM {T} WHERE qty > %s", (100,))
    same("count where qty > int", got, want)
    check("count is int", isinstance(got[0][0], int), type(got[0][0]))


@group("text parameter")
def _():
    got, want = both("SELECT count(*), sum(amount) FROM {T} WHERE country = %s", ("DE",))
    same("count, sum where country = str", got, want)
    check("sum(amount) is Decimal", isinstance(got[0][1], Decimal), type(got[0][1]))
    got, want = both("SELECT count(*) FROM {T} WHERE country = %s", ("日本",))
    same("unicode text parameter", got, want)


@group("Decimal parameter")
def _():
    got, want = both("SELECT count(*), sum(amount) FROM {T} WHERE amount > %s", (Decimal("100.50"),))
    same("where amount > Decimal", got, want)


@group("datetime parameters with tzinfo")
def _():
    w = datetime(2024, 3, 22, 0, 0, tzinfo=UTC)
    got, want = both("SELECT count(*), min(event_time) FROM {T} WHERE event_time >= %s", (w,))
    same("where event_time >= aware datetime (UTC)", got, want)
    plus2 = datetime(2024, 3, 22, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    got2, _ = both("SELECT count(*), min(event_time) FROM {T} WHERE event_time >= %s", (plus2,))
    same("same instant written at +02:00", got2, got)
    lo, hi = datetime(2024, 3, 10, tzinfo=UTC), datetime(2024, 3, 25, 12, tzinfo=UTC)
    got, want = both(
        "SELECT country, count(*), sum(amount) FROM {T} "
        "WHERE event_time >= %s AND event_time < %s GROUP BY 1 ORDER BY 1", (lo, hi))
    same("group by in a time range", got, want)


@group("None parameters")
def _():
    same("NULL::int IS NULL", tm.execute("SELECT %s::int IS NULL", (None,)).fetchone(), (True,))
    got, want = both("SELECT count(*) FROM {T} WHERE country IS NOT DISTINCT FROM %s", (None,))
    same("IS NOT DISTINCT FROM None", got, want)
    got, want = both("SELECT count(*) FROM {T} WHERE coalesce(qty, %s) = 0", (None,))
    same("coalesce with a NULL int", got, want)


@group("NULLs in results")
def _():
    got, want = both("SELECT id, country, amount, score, flag FROM {T} "
                     "WHERE country IS NULL OR amount IS NULL ORDER BY id LIMIT 20")
    same("rows with NULLs", got, want)
    check("a NULL came back as None", any(None in row for row in got), got[:3])
    got, want = both("SELECT sum(amount), max(country), count(amount) FROM {T} WHERE id < 0")
    same("aggregate over no rows", got, want)
    same("sum over no rows is None", got[0][0], None)


@group("exact numerics")
def _():
    sql = ("SELECT country, count(*), sum(amount), avg(amount), sum(big), min(amount), max(big) "
           "FROM {T} GROUP BY 1 ORDER BY 1")
    got, want = both(sql)
    same("group by with numeric sums/avg", got, want)
    check("sum(big) is Decimal (numeric)", isinstance(got[0][4], Decimal), type(got[0][4]))
    check("max(big) is int", isinstance(got[0][6], int), type(got[0][6]))
    got, want = both("SELECT sum(amount) * 2, round(avg(amount), 3), sum(qty) FROM {T}")
    same("expressions over aggregates", got, want)


@group("binary results")
def _():
    sql = "SELECT country, count(*), sum(amount), sum(score) > 0, min(event_time) FROM {T} GROUP BY 1 ORDER BY 1"
    with tm.cursor(binary=True) as cur:
        got = cur.execute(sql.replace("{T}", "events")).fetchall()
    want = oracle.execute(sql.replace("{T}", "events_oracle")).fetchall()
    same("binary cursor", got, want)


@group("timestamps with time zones")
def _():
    (now,) = tm.execute("SELECT now()").fetchone()
    check("now() is an aware datetime", isinstance(now, datetime) and now.tzinfo is not None, repr(now))
    if isinstance(now, datetime) and now.tzinfo is not None:
        skew = abs((now - datetime.now(UTC)).total_seconds())
        check("now() is about now", skew < 300, f"{skew}s off")
    t = datetime(2024, 3, 22, 10, 11, 12, 345678, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    (back,) = tm.execute("SELECT %s::timestamptz", (t,)).fetchone()
    same("timestamptz parameter round trip", back, t)
    (lit,) = tm.execute("SELECT TIMESTAMPTZ '2024-03-22 10:00:00+05:30'").fetchone()
    same("timestamptz literal", lit, datetime(2024, 3, 22, 4, 30, tzinfo=UTC))
    got, want = both("SELECT min(event_time), max(event_time), min(day) FROM {T}")
    same("min/max timestamp and date", got, want)
    check("event_time is naive", got[0][0] is not None and got[0][0].tzinfo is None, repr(got[0][0]))


@group("prepared after 5 executions")
def _():
    sql = "SELECT count(*), sum(amount) FROM {T} WHERE event_time >= %s AND qty > %s"
    params = (datetime(2024, 3, 15, tzinfo=UTC), 10)
    want = oracle.execute(sql.replace("{T}", "events_oracle"), params).fetchall()
    for i in range(8):
        got = tm.execute(sql.replace("{T}", "events"), params).fetchall()
        same(f"execution {i + 1}", got, want)


@group("writes refused with 25006")
def _():
    try:
        tm.execute("INSERT INTO countries VALUES ('QQ', 'nowhere', 1)")
        check("insert refused", False, "INSERT succeeded")
    except psycopg.Error as e:
        check("insert refused with 25006", e.sqlstate == "25006", f"{e.sqlstate}: {e}")
    check("transaction failed (E)", tm.info.transaction_status.name == "INERROR",
          tm.info.transaction_status)
    tm.rollback()
    same("usable after rollback", tm.execute("SELECT 2").fetchone(), (2,))
    tm.commit()


@group("SHOW tidemark.freshness")
def _():
    tm.execute("SELECT country, count(*) FROM events GROUP BY 1").fetchall()
    (text,) = tm.execute("SHOW tidemark.freshness").fetchone()
    fresh = json.loads(text)
    check("freshness names the plan", fresh.get("plan") in ("split", "passthrough"), text)
    check("freshness has the batch watermark", "batch_watermark" in fresh, text)
    tm.commit()


tm.close()
oracle.close()
if failures:
    print(f"psycopg: {passed} checks passed, {len(failures)} failed")
    for f in failures:
        print("FAILED", f)
    sys.exit(1)
print(f"psycopg: {passed} checks passed")
