"""ADBC's Flight SQL driver (and pyarrow, pandas, Polars) against tidemark's Flight SQL frontend.

Usage: test_flight.py FLIGHT_URI ORACLE_DSN [USERNAMES PASSWORD]

FLIGHT_URI reaches tidemark (`grpc://127.0.0.1:PORT`, logical table `events`); ORACLE_DSN
reaches the warehouse database directly, where `events_oracle` holds every event exactly once.
Every answer from tidemark is compared with the same query over `events_oracle`, run with
psycopg 3 (numerics loaded as `decimal.Decimal`, as tidemark's Arrow Decimal128 numerics are).

With USERNAMES (comma-separated) and PASSWORD (tidemark configured with `[[users]]`, every one
of them with that password), every connection authenticates as the first user (Flight Handshake
with basic auth, then a bearer token); each other user logs in once too (give names of different
lengths: ADBC's Go client sends the Basic credentials as base64 *without* padding, so a server
must accept `user:password` of every length), and a wrong password, an unknown user and a
missing login must be refused with UNAUTHENTICATED.

ADBC's DBAPI prepares every statement (CreatePreparedStatement) and binds parameters by sending
a one-row record batch to the prepared statement (DoPut), so the SQL text uses PostgreSQL's `$1`
placeholders: tidemark hands the SQL to PostgreSQL.

Prints `flight: N checks passed` and exits 0, or lists the failures and exits 1.
Run by tests/flight_clients.rs with the venv that scripts/clients.sh creates.
"""

import math
import sys
from decimal import Decimal
import traceback
import warnings
from datetime import date, datetime, timezone

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pandas
import polars
import psycopg
import pyarrow as pa

passed = 0
failures = []

# gRPC status codes, as ADBC's Flight SQL driver reports them in `vendor_code`.
GRPC_INVALID_ARGUMENT = 3
GRPC_PERMISSION_DENIED = 7
GRPC_UNAUTHENTICATED = 16

# The logical table's columns: name, Arrow type, PostgreSQL type name (`pg_type` metadata).
EVENT_COLUMNS = [
    ("id", pa.int64(), "int8"),
    ("event_time", pa.timestamp("us"), "timestamp"),
    ("user_id", pa.int32(), "int4"),
    ("country", pa.string(), "text"),
    ("device", pa.string(), "text"),
    ("amount", pa.decimal128(12, 2), "numeric"),
    ("qty", pa.int16(), "int2"),
    ("score", pa.float64(), "float8"),
    ("big", pa.int64(), "int8"),
    ("flag", pa.bool_(), "bool"),
    ("day", pa.date32(), "date"),
]
COLUMN_NAMES = [name for name, _, _ in EVENT_COLUMNS]


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
    """Runs a group of checks; an exception fails the group (the others still run)."""

    def wrap(fn):
        try:
            fn()
        except Exception:  # noqa: BLE001 - any error is a failed check
            failures.append(f"{name}: raised\n{traceback.format_exc()}")
        return fn

    return wrap


def cell_equal(got, want):
    """One value from Arrow against the oracle's: floats within 1e-9 (relative), everything else
    exactly and of the same Python type (so True never equals 1), Decimals with the same scale
    too (so 1.50 never equals 1.5)."""
    if isinstance(want, Decimal):
        return (isinstance(got, Decimal) and got == want
                and got.as_tuple().exponent == want.as_tuple().exponent)
    if isinstance(want, float):
        if not isinstance(got, float):
            return False
        if math.isnan(want):
            return math.isnan(got)
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return type(got) is type(want) and got == want


def rows_equal(got, want):
    """Whether two lists of rows match cell by cell; a description of the first difference."""
    if len(got) != len(want):
        return False, f"{len(got)} rows from tidemark, {len(want)} from the oracle"
    for i, (g, w) in enumerate(zip(got, want)):
        if len(g) != len(w):
            return False, f"row {i}: {len(g)} columns from tidemark, {len(w)} from the oracle"
        for j, (a, b) in enumerate(zip(g, w)):
            if not cell_equal(a, b):
                return False, f"row {i} column {j}: tidemark {a!r}, oracle {b!r}\n  tidemark row {g!r}\n  oracle   row {w!r}"
    return True, ""


def same_rows(name, got, want):
    ok, detail = rows_equal(got, want)
    check(name, ok, detail)


def table_rows(table):
    """A pyarrow Table as a list of tuples (Python values)."""
    columns = [col.to_pylist() for col in table.columns]
    return [tuple(col[i] for col in columns) for i in range(table.num_rows)]


def pg_type(field):
    """The `pg_type` metadata of an Arrow field, or None."""
    meta = field.metadata or {}
    value = meta.get(b"pg_type")
    return value.decode() if value is not None else None


def on_events(sql):
    return sql.replace("{T}", "events")


def on_oracle(sql):
    return sql.replace("{T}", "events_oracle")


def oracle_rows(sql, params=()):
    """Rows of `sql` over events_oracle; `$n` placeholders become psycopg's `%s` in order."""
    text = on_oracle(sql)
    for n in range(len(params), 0, -1):
        text = text.replace(f"${n}", "%s")
    return [tuple(r) for r in oracle.execute(text, params).fetchall()]


def error_text(exc):
    """Everything an ADBC error says: its message, SQLSTATE and details."""
    parts = [str(exc)]
    for attr in ("sqlstate", "vendor_code"):
        value = getattr(exc, attr, None)
        if value is not None:
            parts.append(f"{attr}={value}")
    for key, value in getattr(exc, "details", None) or []:
        parts.append(f"{key}={value!r}")
    return " | ".join(parts)


def expect_error(name, fn, sqlstate, grpc_code, grpc_names):
    """`fn()` must raise an ADBC error naming `sqlstate` (when given) and carrying the gRPC
    status `grpc_code` (when given: ADBC's vendor_code, or the code's name in the message)."""
    try:
        fn()
    except adbc_driver_manager.Error as exc:
        text = error_text(exc)
        if sqlstate is not None:
            check(f"{name}: SQLSTATE {sqlstate} in the error", sqlstate in text, text)
        if grpc_code is not None:
            code_ok = getattr(exc, "vendor_code", None) == grpc_code or any(n in text for n in grpc_names)
            check(f"{name}: gRPC status {grpc_names[0]}", code_ok, f"{type(exc).__name__}: {text}")
        return exc
    except Exception as exc:  # noqa: BLE001
        check(name, False, f"raised {type(exc).__name__} (not an ADBC error): {exc}")
        return None
    check(name, False, "no error was raised")
    return None


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------

if len(sys.argv) not in (3, 5):
    sys.exit(__doc__)
flight_uri, oracle_dsn = sys.argv[1], sys.argv[2]
usernames = sys.argv[3].split(",") if len(sys.argv) == 5 else []
username, password = (usernames[0], sys.argv[4]) if usernames else (None, None)

# A hang fails the query (tests/flight_clients.rs also kills the whole script after a while).
TIMEOUTS = {
    adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: "60",
    adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: "60",
    adbc_driver_flightsql.DatabaseOptions.TIMEOUT_UPDATE.value: "60",
}


def connect(user=None, secret=None):
    """A DBAPI connection to tidemark as a data scientist would open it (autocommit left to the
    driver: tidemark has no transactions, so ADBC warns and stays in autocommit)."""
    db_kwargs = dict(TIMEOUTS)
    if user is not None:
        db_kwargs["username"] = user
        db_kwargs["password"] = secret
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flight_sql.connect(flight_uri, db_kwargs=db_kwargs)


oracle = psycopg.connect(oracle_dsn, connect_timeout=10, autocommit=True)
oracle.execute("SET TIME ZONE 'UTC'")

try:
    conn = connect(username, password)
except Exception:  # noqa: BLE001
    print(f"flight: cannot connect to {flight_uri}:\n{traceback.format_exc()}")
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------


@group("execute without parameters")
def _():
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one, 'two' AS two")
        same("SELECT 1, 'two'", cur.fetchall(), [(1, "two")])
        check("description names", [d[0] for d in cur.description] == ["one", "two"], cur.description)
        cur.execute(on_events("SELECT count(*) FROM {T}"))
        same("count(*) of events", cur.fetchall(), oracle_rows("SELECT count(*) FROM {T}"))


@group("execute with parameters")
def _():
    with conn.cursor() as cur:
        sql = "SELECT count(*), sum(amount) FROM {T} WHERE qty > $1"
        cur.execute(on_events(sql), parameters=(100,))
        same_rows("count, sum where qty > $1 (int)", cur.fetchall(), oracle_rows(sql, (100,)))
        # Same statement, other value: the prepared statement is reused with new parameters.
        cur.execute(on_events(sql), parameters=(500,))
        same_rows("same statement rebound (qty > 500)", cur.fetchall(), oracle_rows(sql, (500,)))

        sql = "SELECT count(*), sum(amount) FROM {T} WHERE country = $1"
        cur.execute(on_events(sql), parameters=("DE",))
        same_rows("where country = $1 (text)", cur.fetchall(), oracle_rows(sql, ("DE",)))
        cur.execute(on_events(sql), parameters=("日本",))
        same_rows("where country = $1 (unicode text)", cur.fetchall(), oracle_rows(sql, ("日本",)))

        sql = "SELECT count(*), min(event_time) FROM {T} WHERE event_time >= $1 AND qty < $2"
        params = (datetime(2024, 3, 22, 6, 30), 50)
        cur.execute(on_events(sql), parameters=params)
        same_rows("timestamp and int parameters", cur.fetchall(), oracle_rows(sql, params))

        sql = ("SELECT id, country, amount FROM {T} WHERE country = $1 AND flag = $2 "
               "ORDER BY id LIMIT 10")
        params = ("US", True)
        cur.execute(on_events(sql), parameters=params)
        got = cur.fetchall()
        same_rows("rows where country = $1 AND flag = $2", got, oracle_rows(sql, params))
        check("rows came back", len(got) > 0, got)


@group("fetch_arrow_table: the whole logical table")
def _():
    sql = f"SELECT {', '.join(COLUMN_NAMES)} FROM {{T}} ORDER BY id"
    with conn.cursor() as cur:
        cur.execute(on_events(sql))
        table = cur.fetch_arrow_table()
    check("a pyarrow Table", isinstance(table, pa.Table), type(table))
    schema = table.schema
    same("column names", schema.names, COLUMN_NAMES)
    for name, arrow_type, pg in EVENT_COLUMNS:
        if name not in schema.names:
            continue
        field = schema.field(name)
        check(f"{name} is {arrow_type}", field.type == arrow_type, f"got {field.type}")
        check(f"{name} has pg_type {pg}", pg_type(field) == pg, f"metadata {field.metadata!r}")
    want = oracle_rows(sql)
    same("row count", table.num_rows, len(want))
    same_rows("every row equals the oracle's", table_rows(table), want)
    amounts = [v for v in table.column("amount").to_pylist() if v is not None]
    check("numerics keep their scale (12.50, not 12.5)",
          amounts and all(a.as_tuple().exponent == -2 for a in amounts), amounts[:5])


@group("fetch_arrow_table: types of expressions")
def _():
    sql = ("SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 1.5::float8 AS f8, true AS b, "
           "'x'::text AS t, DATE '2024-03-05' AS d, TIMESTAMP '2024-03-05 01:02:03.456789' AS ts, "
           "TIMESTAMPTZ '2024-03-05 12:00:00+02' AS tstz, 12345678901234567890.123456789::numeric AS n")
    with conn.cursor() as cur:
        cur.execute(sql)
        table = cur.fetch_arrow_table()
    expected = [
        ("i2", pa.int16(), "int2", 1),
        ("i4", pa.int32(), "int4", 2),
        ("i8", pa.int64(), "int8", 3),
        ("f8", pa.float64(), "float8", 1.5),
        ("b", pa.bool_(), "bool", True),
        ("t", pa.string(), "text", "x"),
        ("d", pa.date32(), "date", date(2024, 3, 5)),
        ("ts", pa.timestamp("us"), "timestamp", datetime(2024, 3, 5, 1, 2, 3, 456789)),
        ("tstz", pa.timestamp("us", tz="UTC"), "timestamptz",
         datetime(2024, 3, 5, 10, 0, 0, tzinfo=timezone.utc)),
        ("n", pa.decimal128(38, 9), "numeric", Decimal("12345678901234567890.123456789")),
    ]
    same("column names", table.schema.names, [e[0] for e in expected])
    for name, arrow_type, pg, value in expected:
        if name not in table.schema.names:
            continue
        field = table.schema.field(name)
        check(f"{name} is {arrow_type}", field.type == arrow_type, f"got {field.type}")
        check(f"{name} has pg_type {pg}", pg_type(field) == pg, f"metadata {field.metadata!r}")
        got = table.column(name).to_pylist()
        check(f"{name} value", got == [value], f"got {got!r}, want [{value!r}]")


@group("fetchall and NULLs")
def _():
    sql = ("SELECT id, country, amount, score, flag, day FROM {T} "
           "WHERE country IS NULL OR amount IS NULL OR flag IS NULL ORDER BY id LIMIT 25")
    with conn.cursor() as cur:
        cur.execute(on_events(sql))
        got = cur.fetchall()
    want = oracle_rows(sql)
    same_rows("rows with NULLs", got, want)
    check("a NULL came back as None", any(None in row for row in got), got[:3])
    check("rows are tuples", all(isinstance(r, tuple) for r in got), got[:1])


@group("split aggregate")
def _():
    sql = "SELECT country, count(*), sum(amount) FROM {T} GROUP BY 1 ORDER BY 1"
    with conn.cursor() as cur:
        cur.execute(on_events(sql))
        table = cur.fetch_arrow_table()
    same_rows("GROUP BY country equals the oracle", table_rows(table), oracle_rows(sql))
    check("count is int64", table.schema.field(1).type == pa.int64(), table.schema)
    check("sum(amount) is decimal128(38, 2) (numeric, the scale PostgreSQL shows)",
          table.schema.field(2).type == pa.decimal128(38, 2)
          and pg_type(table.schema.field(2)) == "numeric", table.schema)
    sql = ("SELECT sum(big), avg(qty), min(event_time), max(day), bool_or(flag), sum(score) "
           "FROM {T}")
    with conn.cursor() as cur:
        cur.execute(on_events(sql))
        same_rows("global aggregate (int8 sum past 2^63, avg, min, max, bool_or, float sum)",
                  cur.fetchall(), oracle_rows(sql))
    sql = "SELECT count(*), sum(amount) FROM {T} WHERE id < 0"
    with conn.cursor() as cur:
        cur.execute(on_events(sql))
        same_rows("aggregate over no rows", cur.fetchall(), oracle_rows(sql))


@group("pandas and Polars")
def _():
    sql = "SELECT id, country, amount, score FROM {T} WHERE id <= 200 ORDER BY id"
    want = oracle_rows(sql)
    with conn.cursor() as cur:
        cur.execute(on_events(sql))
        df = cur.fetch_df()
    check("fetch_df gives a pandas DataFrame", isinstance(df, pandas.DataFrame), type(df))
    same("pandas columns", list(df.columns), ["id", "country", "amount", "score"])
    same("pandas row count", len(df), len(want))
    same("pandas ids", [int(v) for v in df["id"]], [r[0] for r in want])
    with conn.cursor() as cur:
        cur.execute(on_events(sql))
        pl = polars.from_arrow(cur.fetch_arrow_table())
    check("polars.from_arrow gives a DataFrame", isinstance(pl, polars.DataFrame), type(pl))
    same("polars row count", pl.height, len(want))
    same_rows("polars rows", [tuple(r) for r in pl.iter_rows()], want)


# Dashboard-style queries whose numeric columns used to reach pandas and Polars as text:
# AVG of integers, SUM of bigint (past 2^63), casts to numeric(p,s), ratios.
DASHBOARD = [
    "SELECT country, count(*) AS n, avg(amount) AS avg_amount, sum(big) AS sum_big "
    "FROM {T} GROUP BY 1 ORDER BY 1",
    "SELECT device, avg(qty) AS avg_qty, avg(user_id) AS avg_user, sum(qty) AS sum_qty "
    "FROM {T} GROUP BY 1 ORDER BY 1",
    "SELECT date_trunc('day', event_time) AS day, sum(amount) AS revenue, "
    "round(avg(amount), 2) AS avg2 FROM {T} GROUP BY 1 ORDER BY 1",
    "SELECT avg(flag::int) AS share, avg(big) AS avg_big, sum(amount)::numeric(20,2) AS total "
    "FROM {T}",
    "SELECT country, (sum(amount) / nullif(count(*), 0))::numeric(12,4) AS per_event, "
    "avg(score) AS avg_score FROM {T} GROUP BY 1 ORDER BY 1",
    "SELECT id, amount, amount::numeric(10,1) AS rounded, qty::numeric AS q FROM {T} "
    "ORDER BY id LIMIT 50",
]


def is_number(v):
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)


def same_number(got, want):
    """Numbers equal to the oracle's within a relative 1e-9 (exact types compare exactly)."""
    if isinstance(want, Decimal) and isinstance(got, Decimal):
        return got == want
    return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)


def numeric_columns(rows):
    """Columns whose non-NULL oracle values are all numbers."""
    if not rows:
        return []
    return [j for j in range(len(rows[0]))
            if all(is_number(r[j]) for r in rows if r[j] is not None)
            and any(r[j] is not None for r in rows)]


@group("dashboard queries: numbers as numbers in pandas and Polars")
def _():
    for sql in DASHBOARD:
        want = oracle_rows(sql)
        with conn.cursor() as cur:
            cur.execute(on_events(sql))
            df = cur.fetch_df()
        pl = polars.read_database(on_events(sql), connection=conn)
        for j in numeric_columns(want):
            name = df.columns[j]
            col = df[name]
            values = [v for v in col.tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
            numeric_dtype = pandas.api.types.is_numeric_dtype(col) or all(isinstance(v, Decimal) for v in values)
            check(f"{sql[:40]}... pandas {name}: numbers ({col.dtype})", numeric_dtype, values[:3])
            check(f"{sql[:40]}... polars {name}: numeric dtype", pl[name].dtype.is_numeric(), pl[name].dtype)
            try:
                col.dropna().mean()
                pl[name].mean()
            except Exception as exc:  # noqa: BLE001
                check(f"{sql[:40]}... {name}: mean()", False, repr(exc))
            got = [tuple(r) for r in pl.iter_rows()]
            pairs = [(g[j], w[j]) for g, w in zip(got, want)]
            check(f"{sql[:40]}... {name}: values equal the oracle's",
                  len(got) == len(want) and all((g is None) == (w is None) and (w is None or same_number(g, w))
                                                 for g, w in pairs),
                  pairs[:3])


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------


@group("adbc_get_objects")
def _():
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = [c["catalog_name"] for c in objects]
    check("at least one catalog", len(objects) > 0, objects)
    found = []
    for catalog in objects:
        for schema in catalog.get("catalog_db_schemas") or []:
            for table in schema.get("db_schema_tables") or []:
                if table["table_name"] == "events":
                    found.append((catalog["catalog_name"], schema["db_schema_name"], table))
    check("table events is listed", len(found) == 1,
          f"{len(found)} matches; catalogs {catalogs}, first: {str(objects)[:2000]}")
    if not found:
        return
    _catalog, schema_name, table = found[0]
    same("events is in schema public", schema_name, "public")
    columns = sorted(table.get("table_columns") or [], key=lambda c: c["ordinal_position"] or 0)
    same("events columns in order", [c["column_name"] for c in columns], COLUMN_NAMES)
    same("ordinal positions 1..11", [c["ordinal_position"] for c in columns],
         list(range(1, len(COLUMN_NAMES) + 1)))
    table_types = conn.adbc_get_table_types()
    check("get_table_types lists the type of events", table["table_type"] in table_types,
          f"events is {table['table_type']!r}, types {table_types!r}")
    # Filters reach the server (GetTables with a name pattern, GetDbSchemas with a pattern).
    only = conn.adbc_get_objects(depth="tables", db_schema_filter="public",
                                 table_name_filter="events").read_all().to_pylist()
    names = [t["table_name"] for c in only for s in (c["catalog_db_schemas"] or [])
             for t in (s["db_schema_tables"] or [])]
    same("table_name_filter='events' gives events only", names, ["events"])
    print(f"flight: get_objects: catalogs {catalogs}, events in {found[0][0]!r}.{schema_name!r} "
          f"as {table['table_type']!r}; table types {table_types!r}")


@group("adbc_get_table_schema")
def _():
    schema = conn.adbc_get_table_schema("events")
    same("events columns", schema.names, COLUMN_NAMES)
    for name, arrow_type, pg in EVENT_COLUMNS:
        if name in schema.names:
            field = schema.field(name)
            check(f"table schema: {name} is {arrow_type}", field.type == arrow_type, f"got {field.type}")
            check(f"table schema: {name} has pg_type {pg}", pg_type(field) == pg,
                  f"metadata {field.metadata!r}")
    schema = conn.adbc_get_table_schema("events", db_schema_filter="public")
    same("events columns (schema public)", schema.names, COLUMN_NAMES)


@group("adbc_get_table_types")
def _():
    types = conn.adbc_get_table_types()
    check("a list of strings", isinstance(types, list) and all(isinstance(t, str) for t in types), types)
    check("not empty", len(types) > 0, types)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def run_query(sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, parameters=params)
        cur.fetch_arrow_table()


@group("errors")
def _():
    expect_error("bad SQL", lambda: run_query("SELEC count(*) FROM events"),
                 "42601", GRPC_INVALID_ARGUMENT, ["InvalidArgument", "INVALID_ARGUMENT"])
    expect_error("unknown table", lambda: run_query("SELECT * FROM no_such_table"),
                 "42P01", None, [])
    expect_error("INSERT (tidemark is read-only)",
                 lambda: run_query("INSERT INTO events (id) VALUES (1)"),
                 "25006", GRPC_PERMISSION_DENIED, ["PermissionDenied", "PERMISSION_DENIED"])
    expect_error("DELETE with a parameter", lambda: run_query("DELETE FROM events WHERE id = $1", (1,)),
                 "25006", GRPC_PERMISSION_DENIED, ["PermissionDenied", "PERMISSION_DENIED"])
    expect_error("CREATE TABLE", lambda: run_query("CREATE TABLE tm_flight_should_not_exist (x int)"),
                 "25006", GRPC_PERMISSION_DENIED, ["PermissionDenied", "PERMISSION_DENIED"])
    exists = oracle.execute("SELECT to_regclass('tm_flight_should_not_exist') IS NOT NULL").fetchone()[0]
    check("the refused CREATE TABLE did not reach the warehouse", not exists, exists)
    # The connection is still usable after errors.
    with conn.cursor() as cur:
        cur.execute("SELECT 42 AS answer")
        same("a query after the errors", cur.fetchall(), [(42,)])


@group("authentication")
def _():
    if username is None:
        return
    unauth = ["Unauthenticated", "UNAUTHENTICATED"]

    def wrong_password():
        bad = connect(username, password + "-wrong")
        try:
            with bad.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
        finally:
            bad.close()

    def no_login():
        anon = connect()
        try:
            with anon.cursor() as cur:
                cur.execute(on_events("SELECT count(*) FROM {T}"))
                cur.fetchall()
        finally:
            anon.close()

    def unknown_user():
        other = connect("mallory", password)
        other.close()

    expect_error("wrong password", wrong_password, None, GRPC_UNAUTHENTICATED, unauth)
    expect_error("no credentials", no_login, None, GRPC_UNAUTHENTICATED, unauth)
    expect_error("unknown user", unknown_user, None, GRPC_UNAUTHENTICATED, unauth)
    # More connections, next to the first: the same user again, then every other user.
    for user in usernames:
        try:
            other = connect(user, password)
        except adbc_driver_manager.Error as exc:
            check(f"login as {user!r} ({len(user) + 1 + len(password)} bytes of credentials)",
                  False, error_text(exc))
            continue
        try:
            with other.cursor() as cur:
                cur.execute(on_events("SELECT count(*) FROM {T}"))
                same(f"a query as {user!r} on a second connection", cur.fetchall(),
                     oracle_rows("SELECT count(*) FROM {T}"))
        finally:
            other.close()


conn.close()
oracle.close()

if failures:
    print(f"flight: {len(failures)} failed, {passed} passed")
    for f in failures:
        print(f"FAIL {f}")
    sys.exit(1)
print(f"flight: {'with' if username is not None else 'without'} authentication")
print(f"flight: {passed} checks passed")
