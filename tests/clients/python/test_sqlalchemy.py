"""SQLAlchemy 2 (with pandas) against tidemark's PostgreSQL wire protocol frontend.

Usage: test_sqlalchemy.py DRIVER TIDEMARK_URL ORACLE_URL

DRIVER is `psycopg2` or `psycopg` (3). TIDEMARK_URL reaches tidemark (logical table `events`);
ORACLE_URL the warehouse database directly, where `events_oracle` holds every event once.
Connecting runs what SQLAlchemy runs on every new connection (`SHOW TRANSACTION ISOLATION
LEVEL`, `SHOW standard_conforming_strings`, `current_schema()`, `version()`); inspect() calls
are compared with the same calls on the warehouse; queries with `events_oracle`.

Prints `sqlalchemy+DRIVER: N checks passed` and exits 0, or lists the failures and exits 1.
Run by tests/client_matrix.rs.
"""

import sys

import pandas
import sqlalchemy as sa

from checks import check, finish, group, on_events, on_oracle, same, same_rows

driver, tm_url, oracle_url = sys.argv[1], sys.argv[2], sys.argv[3]
scheme = f"postgresql+{driver}"
tm = sa.create_engine(tm_url.replace("postgresql", scheme, 1))
oracle = sa.create_engine(oracle_url.replace("postgresql", scheme, 1))
NAME = f"sqlalchemy+{driver}"


def both(sql, **params):
    """Rows of `sql` through tidemark (`{T}` = events) and on the oracle (events_oracle)."""
    with tm.connect() as c:
        got = c.execute(sa.text(on_events(sql)), params).fetchall()
    with oracle.connect() as c:
        want = c.execute(sa.text(on_oracle(sql)), params).fetchall()
    return got, want


@group("connect")
def _():
    with tm.connect() as c:
        same("SELECT 1", c.execute(sa.text("SELECT 1")).scalar(), 1)
        level = c.get_isolation_level()
        check("isolation level read on connect", level == "READ COMMITTED", level)
        same("default schema", tm.dialect.default_schema_name, "public")
        check("server version", tm.dialect.server_version_info >= (9,), tm.dialect.server_version_info)
    with tm.connect().execution_options(isolation_level="SERIALIZABLE") as c:
        same("BEGIN ISOLATION LEVEL SERIALIZABLE then SHOW", c.get_isolation_level(), "SERIALIZABLE")
        same("a query in it", c.execute(sa.text("SELECT 2")).scalar(), 2)
    with tm.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        same("autocommit connection", c.execute(sa.text("SELECT 3")).scalar(), 3)


@group("inspect")
def _():
    ti, oi = sa.inspect(tm), sa.inspect(oracle)
    same("get_table_names", ti.get_table_names(), oi.get_table_names())
    same("get_view_names", ti.get_view_names(), oi.get_view_names())
    check("events is a view", "events" in ti.get_view_names(), ti.get_view_names())
    columns = [(c["name"], str(c["type"]), c["nullable"]) for c in ti.get_columns("events")]
    want = [(c["name"], str(c["type"]), c["nullable"]) for c in oi.get_columns("events_oracle")]
    same("get_columns of the logical table: names and types", columns, want)
    same("get_pk_constraint", ti.get_pk_constraint("countries"), oi.get_pk_constraint("countries"))
    check("the primary key is code", ti.get_pk_constraint("countries")["constrained_columns"] == ["code"],
          ti.get_pk_constraint("countries"))
    same("get_foreign_keys", ti.get_foreign_keys("country_notes"), oi.get_foreign_keys("country_notes"))
    check("one foreign key", len(ti.get_foreign_keys("country_notes")) == 1, ti.get_foreign_keys("country_notes"))
    same("get_foreign_keys of the view", ti.get_foreign_keys("events"), [])
    same("get_indexes", ti.get_indexes("countries"), oi.get_indexes("countries"))
    same("get_schema_names", ti.get_schema_names(), oi.get_schema_names())
    check("has_table(events)", ti.has_table("events"), False)
    check("not has_table(nope)", not ti.has_table("no_such_table"), True)


def read_sql(sql):
    with tm.connect() as c:
        got = pandas.read_sql(sa.text(on_events(sql)), c)
    with oracle.connect() as c:
        want = pandas.read_sql(sa.text(on_oracle(sql)), c)
    return got, want


@group("pandas.read_sql")
def _():
    for kind, sql in [
        ("split aggregate", "SELECT country, count(*) AS n, sum(amount) AS revenue, avg(qty) AS q "
                            "FROM {T} GROUP BY 1 ORDER BY 1"),
        ("rows", "SELECT id, event_time, country, amount, score, flag, day FROM {T} "
                 "ORDER BY event_time DESC, id LIMIT 200"),
        ("pass-through", "SELECT device, count(DISTINCT user_id) AS users FROM {T} GROUP BY 1 ORDER BY 1"),
    ]:
        got, want = read_sql(sql)
        same(f"{kind}: columns", list(got.columns), list(want.columns))
        same(f"{kind}: dtypes", [str(t) for t in got.dtypes], [str(t) for t in want.dtypes])
        same_rows(f"{kind}: rows", got.itertuples(index=False), want.itertuples(index=False))
        check(f"{kind}: not empty", len(got) > 0, len(got))


@group("parameters")
def _():
    got, want = both("SELECT count(*), sum(amount) FROM {T} WHERE country = :c AND qty > :q", c="DE", q=100)
    same_rows("bound parameters", got, want)


STREAM = ("SELECT e.id, e.amount, g.n FROM {T} e CROSS JOIN generate_series(1, 10) AS g(n) "
          "ORDER BY e.id, g.n")


@group("stream_results over 100k rows")
def _():
    def digest(engine, sql):
        count, ids, amounts = 0, 0, 0
        with engine.connect().execution_options(stream_results=True, max_row_buffer=2000) as c:
            for row in c.execute(sa.text(sql)):
                count += 1
                ids += row[0] * row[2]
                amounts += row[1] or 0
        return count, ids, amounts

    got = digest(tm, on_events(STREAM))
    want = digest(oracle, on_oracle(STREAM))
    same("streamed rows: count, sum(id * n), sum(amount)", got, want)
    check("100k rows", got[0] >= 100_000, got[0])


finish(NAME)
