"""asyncpg against tidemark's PostgreSQL wire protocol frontend.

Usage: test_asyncpg.py TIDEMARK_URL ORACLE_URL

asyncpg uses the extended protocol only, named prepared statements, and binary formats for
every type it knows (numeric, timestamptz, int8, arrays, ...). Every answer is compared with
the same query over `events_oracle` through asyncpg on the warehouse database.

Prints `asyncpg: N checks passed` and exits 0, or lists the failures and exits 1.
Run by tests/client_matrix.rs.
"""

import asyncio
import datetime
import io
import os
import sys
import tempfile

import asyncpg

import checks
from checks import check, on_events, on_oracle, same, same_rows

tm_url, oracle_url = sys.argv[1], sys.argv[2]


async def group(name, fn):
    try:
        await fn()
    except Exception:  # noqa: BLE001
        import traceback
        checks.failures.append(f"{name}: raised\n{traceback.format_exc()}")


async def main():
    tm = await asyncpg.connect(tm_url, timeout=10)
    oracle = await asyncpg.connect(oracle_url, timeout=10)

    async def both(sql, *args):
        return await tm.fetch(on_events(sql), *args), await oracle.fetch(on_oracle(sql), *args)

    async def parameters():
        got, want = await both("SELECT country, count(*), sum(amount), avg(qty) FROM {T} "
                               "WHERE qty > $1 AND event_time >= $2 GROUP BY 1 ORDER BY 1",
                               100, datetime.datetime(2024, 3, 12))
        same_rows("split aggregate with int and timestamp parameters", got, want)
        got, want = await both("SELECT id, country FROM {T} WHERE country = ANY($1::text[]) "
                               "ORDER BY id LIMIT 20", ["DE", "日本"])
        same_rows("an array parameter", got, want)

    async def prepared():
        st = await tm.prepare(on_events("SELECT count(*), sum(amount) FROM {T} WHERE qty > $1"))
        ost = await oracle.prepare(on_oracle("SELECT count(*), sum(amount) FROM {T} WHERE qty > $1"))
        for q in range(-100, 1000, 50):
            same(f"prepared statement, qty > {q}", tuple(await st.fetchrow(q)), tuple(await ost.fetchrow(q)))
        same("described columns", [a.name for a in st.get_attributes()], ["count", "sum"])

    async def cursor():
        sql = "SELECT id, event_time, amount, device FROM {T} ORDER BY id"
        got = []
        async with tm.transaction(readonly=True):
            async for row in tm.cursor(on_events(sql), prefetch=700):
                got.append(row)
        same_rows("cursor in a transaction: every row", got, await oracle.fetch(on_oracle(sql)))
        async with tm.transaction():
            cur = await tm.cursor(on_events(sql))
            first = await cur.fetch(5)
            await cur.forward(100)
            after = await cur.fetchrow()
        want = await oracle.fetch(on_oracle(sql))
        same_rows("cursor fetch(5)", first, want[:5])
        same_rows("cursor forward(100) then fetchrow", [after], [want[105]])

    async def types():
        sql = ("SELECT 1.50::numeric AS n, sum(amount) AS s, now() AT TIME ZONE 'UTC' AS naive, "
               "TIMESTAMPTZ '2024-03-05 12:00:00+02' AS tz, NULL::int AS nothing, "
               "max(big) AS big, ARRAY[1, 2, NULL] AS arr FROM {T}")
        got = await tm.fetchrow(on_events(sql))
        want = await oracle.fetchrow(on_oracle(sql))
        for k in ["n", "s", "tz", "nothing", "big", "arr"]:
            same(f"binary {k}", got[k], want[k])
        check("timestamptz is aware", got["tz"].tzinfo is not None, got["tz"])
        got, want = await both("SELECT id, amount, score, flag, day FROM {T} "
                               "WHERE amount IS NULL OR flag IS NULL ORDER BY id LIMIT 30")
        same_rows("rows with NULLs", got, want)

    async def copy():
        sql = "SELECT id, country, amount FROM {T} WHERE qty < $1 ORDER BY id"
        with tempfile.TemporaryDirectory() as d:
            got_path, want_path = os.path.join(d, "tidemark.csv"), os.path.join(d, "oracle.csv")
            status = await tm.copy_from_query(on_events(sql), 10, output=got_path, format="csv",
                                              header=True)
            await oracle.copy_from_query(on_oracle(sql), 10, output=want_path, format="csv",
                                         header=True)
            with open(got_path, "rb") as g, open(want_path, "rb") as w:
                same("copy_from_query (csv, header) into a file", g.read(), w.read())
        check("copy status names the rows", status.startswith("COPY "), status)
        got, want = io.BytesIO(), io.BytesIO()
        await tm.copy_from_query(on_events("SELECT * FROM {T} ORDER BY id LIMIT 500"), output=got,
                                 format="binary")
        await oracle.copy_from_query(on_oracle("SELECT * FROM {T} ORDER BY id LIMIT 500"), output=want,
                                     format="binary")
        same("copy_from_query (binary) bytes", got.getvalue(), want.getvalue())

    async def errors():
        try:
            await tm.fetch("SELECT * FROM no_such_table")
            check("unknown table fails", False, "no error")
        except asyncpg.PostgresError as e:
            same("unknown table SQLSTATE", e.sqlstate, "42P01")
        same("the connection is usable after an error", await tm.fetchval("SELECT 41 + 1"), 42)

    async def pool():
        p = await asyncpg.create_pool(tm_url, min_size=1, max_size=1)
        for i in range(3):
            async with p.acquire() as c:
                same(f"pooled connection, round {i} (reset in between)", await c.fetchval("SELECT $1::int", i), i)
        await p.close()

    for name, fn in [("parameters", parameters), ("prepared", prepared), ("cursor", cursor),
                     ("types", types), ("copy", copy), ("errors", errors), ("pool", pool)]:
        await group(name, fn)
    await tm.close()
    await oracle.close()


asyncio.run(main())
checks.finish("asyncpg")
