"""psqlODBC (the PostgreSQL ODBC driver Tableau, Excel and Power BI use) through pyodbc against
tidemark's PostgreSQL wire protocol frontend.

Usage: test_odbc.py TIDEMARK_CONNECTION_STRING ORACLE_CONNECTION_STRING

Both strings use `DRIVER={PostgreSQL Unicode}` with `UseDeclareFetch=1`, so results are read
through `declare ... cursor with hold` / `fetch 1000 in ...` inside a transaction with
savepoints, as psqlODBC does for large results. Catalog calls (SQLTables, SQLColumns,
SQLPrimaryKeys, SQLStatistics) are compared with the same calls on the warehouse database;
queries with the same query over `events_oracle`.

Prints `psqlodbc: N checks passed` and exits 0, or lists the failures and exits 1.
Run by tests/client_matrix.rs.
"""

import sys

import pyodbc

from checks import check, finish, group, on_events, on_oracle, same, same_rows

tm_cs, oracle_cs = sys.argv[1], sys.argv[2]
tm = pyodbc.connect(tm_cs, timeout=10)
oracle = pyodbc.connect(oracle_cs, timeout=10)


def rows(cursor):
    return [tuple(r) for r in cursor.fetchall()]


@group("catalog calls")
def _():
    same("SQLTables", rows(tm.cursor().tables(tableType="TABLE,VIEW")),
         rows(oracle.cursor().tables(tableType="TABLE,VIEW")))
    got = rows(tm.cursor().columns(table="events"))
    same("SQLColumns(events)", got, rows(oracle.cursor().columns(table="events")))
    same("SQLColumns names", [r[3] for r in got],
         ["id", "event_time", "user_id", "country", "device", "amount", "qty", "score", "big", "flag", "day"])
    same("SQLPrimaryKeys(countries)", rows(tm.cursor().primaryKeys("countries")),
         rows(oracle.cursor().primaryKeys("countries")))
    same("SQLStatistics(countries)", rows(tm.cursor().statistics("countries")),
         rows(oracle.cursor().statistics("countries")))
    same("SQLGetTypeInfo", rows(tm.cursor().getTypeInfo()), rows(oracle.cursor().getTypeInfo()))


def both(sql, *params):
    return (rows(tm.cursor().execute(on_events(sql), *params)),
            rows(oracle.cursor().execute(on_oracle(sql), *params)))


@group("parameterized queries")
def _():
    got, want = both("SELECT country, count(*), sum(amount), avg(qty) FROM {T} "
                     "WHERE qty > ? AND country <> ? GROUP BY 1 ORDER BY 1", 100, "XX")
    same_rows("split aggregate with parameters", got, want)
    got, want = both("SELECT id, event_time, device, amount, score, flag, day FROM {T} "
                     "WHERE id BETWEEN ? AND ? ORDER BY id", 100, 300)
    same_rows("rows with parameters", got, want)


@group("a large result with UseDeclareFetch=1")
def _():
    sql = "SELECT e.id, e.amount, g.n FROM {T} e CROSS JOIN generate_series(1, 10) AS g(n)"

    def digest(conn, text):
        cur = conn.cursor()
        cur.execute(text)
        count, ids, amounts = 0, 0, 0
        while True:
            chunk = cur.fetchmany(5000)
            if not chunk:
                break
            for r in chunk:
                count += 1
                ids += r[0] * r[2]
                amounts += r[1] or 0
        return count, ids, amounts

    got, want = digest(tm, on_events(sql)), digest(oracle, on_oracle(sql))
    same("100k rows: count, sum(id * n), sum(amount)", got, want)
    check("at least 100k rows", got[0] >= 100_000, got[0])


@group("errors leave the connection usable")
def _():
    try:
        tm.cursor().execute("SELECT 1 / 0")
        check("division by zero fails", False, "no error")
    except pyodbc.Error as exc:
        check("division by zero: 22012", "22012" in str(exc), exc)
    try:
        tm.cursor().execute("INSERT INTO events (id) VALUES (1)")
        check("INSERT fails", False, "no error")
    except pyodbc.Error as exc:
        check("INSERT: 25006", "25006" in str(exc), exc)
    same("a query after the errors", rows(tm.cursor().execute("SELECT 42")), [(42,)])


tm.close()
oracle.close()
finish("psqlodbc")
