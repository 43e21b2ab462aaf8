"""ADBC's PostgreSQL driver, Polars and connectorx against tidemark's PostgreSQL wire protocol.

Usage: test_adbc_postgresql.py TIDEMARK_URL ORACLE_URL

The ADBC driver reads results with `COPY (query) TO STDOUT (FORMAT binary)`, connectorx's
binary protocol with `COPY ... TO STDOUT WITH BINARY` and its cursor protocol with binary
rows. Every Arrow table read through tidemark must equal the one the same client reads from
the warehouse database itself (the query over `events_oracle`), types and values; the
catalog calls must equal the same calls on the warehouse.

Prints `adbc-postgresql: N checks passed` and exits 0, or lists the failures and exits 1.
Run by tests/client_matrix.rs.
"""

import sys
import warnings

import adbc_driver_postgresql.dbapi as adbc_pg
import connectorx
import polars

from checks import check, finish, group, on_events, on_oracle, same

tm_url, oracle_url = sys.argv[1], sys.argv[2]
warnings.simplefilter("ignore")
tm = adbc_pg.connect(tm_url)
oracle = adbc_pg.connect(oracle_url)

QUERIES = [
    ("split aggregate", "SELECT country, count(*) AS n, sum(amount) AS revenue, avg(qty) AS q, "
                        "max(event_time) AS last FROM {T} GROUP BY 1 ORDER BY 1"),
    ("split aggregate over no rows", "SELECT count(*) AS n, sum(amount) AS s FROM {T} WHERE id < 0"),
    ("rows", "SELECT * FROM {T} ORDER BY event_time DESC, id LIMIT 300"),
    ("every row", "SELECT * FROM {T} ORDER BY id"),
    ("pass-through", "SELECT device, count(DISTINCT user_id) AS users, "
                     "percentile_disc(0.5) WITHIN GROUP (ORDER BY amount) AS median FROM {T} "
                     "GROUP BY 1 ORDER BY 1"),
    ("a dimension join", "SELECT c.region, count(*) AS n, sum(e.amount) AS s FROM {T} e "
                         "JOIN countries c ON c.code = e.country GROUP BY 1 ORDER BY 1"),
]


def table(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, parameters=params)
        return cur.fetch_arrow_table()


@group("fetch_arrow_table (binary COPY)")
def _():
    for name, sql in QUERIES:
        got, want = table(tm, on_events(sql)), table(oracle, on_oracle(sql))
        same(f"{name}: schema", got.schema, want.schema)
        check(f"{name}: equal tables", got.equals(want),
              f"\n    tidemark {got.slice(0, 3).to_pylist()}\n    oracle   {want.slice(0, 3).to_pylist()}")
        check(f"{name}: rows", got.num_rows > 0, got.num_rows)


@group("parameters")
def _():
    sql = "SELECT count(*) AS n, sum(amount) AS s FROM {T} WHERE qty > $1 AND country = $2"
    got, want = table(tm, on_events(sql), (100, "DE")), table(oracle, on_oracle(sql), (100, "DE"))
    check("bound parameters", got.equals(want), f"{got.to_pylist()} != {want.to_pylist()}")


@group("catalog")
def _():
    same("adbc_get_table_schema(events)", tm.adbc_get_table_schema("events"),
         oracle.adbc_get_table_schema("events"))
    got = tm.adbc_get_objects(depth="columns").read_all()
    want = oracle.adbc_get_objects(depth="columns").read_all()
    check("adbc_get_objects(depth=columns)", got.equals(want), f"{got.num_rows} != {want.num_rows}")
    names = [t["table_name"] for c in got.to_pylist() for s in c["catalog_db_schemas"] or []
             for t in s["db_schema_tables"] or []]
    check("events is listed", "events" in names, names)
    same("adbc_get_table_types", tm.adbc_get_table_types(), oracle.adbc_get_table_types())


@group("errors leave the connection usable")
def _():
    for sql, code in [("SELECT * FROM no_such_table", "42P01"),
                      ("COPY (SELECT 1) TO STDOUT (FORMAT xml)", "22023"),
                      ("INSERT INTO events (id) VALUES (1)", "25006")]:
        try:
            table(tm, sql)
            check(f"{sql}: fails", False, "no error")
        except Exception as exc:  # noqa: BLE001
            check(f"{sql}: SQLSTATE {code}", code in str(exc), exc)
        # as on PostgreSQL, the error aborted ADBC's transaction: roll it back and go on
        tm.rollback()
        same(f"a query after {sql}", table(tm, "SELECT 42 AS a").to_pylist(), [{"a": 42}])


@group("Polars read_database_uri")
def _():
    for name, sql in QUERIES[:3] + QUERIES[4:]:
        for engine, protocol in [("adbc", None), ("connectorx", "binary"), ("connectorx", "cursor")]:
            kwargs = {"protocol": protocol} if protocol else {}
            got = polars.read_database_uri(on_events(sql), tm_url, engine=engine, **kwargs)
            want = polars.read_database_uri(on_oracle(sql), oracle_url, engine=engine, **kwargs)
            check(f"{name} ({engine} {protocol or ''}): equal frames", got.equals(want),
                  f"\n    tidemark {got.head(3)}\n    oracle   {want.head(3)}")


@group("connectorx read_sql")
def _():
    for name, sql in QUERIES[:4]:
        for protocol in ["binary", "cursor"]:
            got = connectorx.read_sql(tm_url, on_events(sql), protocol=protocol, return_type="arrow")
            want = connectorx.read_sql(oracle_url, on_oracle(sql), protocol=protocol, return_type="arrow")
            check(f"{name} ({protocol}): equal tables", got.equals(want),
                  f"\n    tidemark {got.slice(0, 2).to_pylist()}\n    oracle   {want.slice(0, 2).to_pylist()}")


tm.close()
oracle.close()
finish("adbc-postgresql")
