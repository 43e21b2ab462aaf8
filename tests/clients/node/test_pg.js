// node-postgres (npm `pg`) against tidemark's PostgreSQL wire protocol frontend.
//
// Usage: node test_pg.js TIDEMARK_URL ORACLE_URL
//
// TIDEMARK_URL reaches tidemark (logical table `events`); ORACLE_URL reaches the warehouse
// database directly, where `events_oracle` holds every event exactly once. Queries with
// parameters use the extended protocol, queries without use the simple protocol. node-postgres
// returns int8 and numeric as strings, so exact values compare as text.
//
// Prints `node-postgres: N checks passed` and exits 0, or lists the failures and exits 1.
// Run by tests/pg_clients.rs after scripts/clients.sh ran `npm ci` here.
'use strict';

process.env.TZ = 'UTC'; // node-postgres reads `timestamp` (no zone) as local time
const assert = require('node:assert');
const { Client } = require('pg');

let passed = 0;
const failures = [];

function check(name, ok, detail) {
  if (ok) passed += 1;
  else failures.push(`${name}: ${detail}`);
}

function same(name, got, want) {
  try {
    assert.deepStrictEqual(got, want);
    passed += 1;
  } catch (e) {
    failures.push(`${name}: tidemark ${JSON.stringify(got)} != oracle ${JSON.stringify(want)}`);
  }
}

async function group(name, fn) {
  try {
    await fn();
  } catch (e) {
    failures.push(`${name}: threw ${e && e.stack ? e.stack : e} (code ${e && e.code})`);
  }
}

async function main() {
  const [tmUrl, oracleUrl] = process.argv.slice(2);
  const tm = new Client({ connectionString: tmUrl, connectionTimeoutMillis: 10000 });
  const oracle = new Client({ connectionString: oracleUrl, connectionTimeoutMillis: 10000 });
  await tm.connect();
  await oracle.connect();

  // Runs `sql` with {T} = events on tidemark and {T} = events_oracle on the oracle; rows as arrays.
  async function both(sql, values) {
    const q = (t) => ({ text: sql.replaceAll('{T}', t), values, rowMode: 'array' });
    const got = await tm.query(q('events'));
    const want = await oracle.query(q('events_oracle'));
    return [got.rows, want.rows, got];
  }

  await group('simple protocol', async () => {
    const r = await tm.query('SELECT 1 AS one');
    same('select 1', r.rows, [{ one: 1 }]);
    const multi = await tm.query('SELECT 1 AS a; SELECT 2 AS b');
    check('two statements in one query', Array.isArray(multi) && multi.length === 2, JSON.stringify(multi));
    if (Array.isArray(multi)) same('both results', multi.map((m) => m.rows), [[{ a: 1 }], [{ b: 2 }]]);
  });

  await group('integer parameter', async () => {
    const [got, want] = await both('SELECT count(*) FROM {T} WHERE qty > $1', [100]);
    same('count where qty > $1', got, want);
    check('count (int8) is a string', typeof got[0][0] === 'string', typeof got[0][0]);
  });

  await group('text parameter', async () => {
    const [got, want] = await both('SELECT count(*), sum(amount), sum(big) FROM {T} WHERE country = $1', ['DE']);
    same('count, sums where country = $1', got, want);
    const [got2, want2] = await both('SELECT count(*) FROM {T} WHERE country = $1', ['日本']);
    same('unicode text parameter', got2, want2);
  });

  await group('numeric parameter', async () => {
    const [got, want] = await both('SELECT count(*), sum(amount) FROM {T} WHERE amount > $1', ['100.50']);
    same('where amount > numeric text', got, want);
  });

  await group('Date parameters', async () => {
    const w = new Date('2024-03-22T00:00:00Z');
    const [got, want] = await both('SELECT count(*), min(event_time) FROM {T} WHERE event_time >= $1', [w]);
    same('where event_time >= Date', got, want);
    const lo = new Date('2024-03-10T00:00:00Z');
    const hi = new Date('2024-03-25T12:00:00Z');
    const [g2, w2] = await both(
      'SELECT country, count(*), sum(amount) FROM {T} WHERE event_time >= $1 AND event_time < $2 GROUP BY 1 ORDER BY 1',
      [lo, hi],
    );
    same('group by in a time range', g2, w2);
  });

  await group('null parameters', async () => {
    const r = await tm.query('SELECT $1::int IS NULL AS isnull', [null]);
    same('NULL::int IS NULL', r.rows, [{ isnull: true }]);
    const [got, want] = await both('SELECT count(*) FROM {T} WHERE country IS NOT DISTINCT FROM $1', [null]);
    same('IS NOT DISTINCT FROM null', got, want);
  });

  await group('NULLs and int8 in results', async () => {
    const [got, want] = await both(
      'SELECT id, country, amount, score, flag, big FROM {T} WHERE country IS NULL OR amount IS NULL ORDER BY id LIMIT 20',
    );
    same('rows with NULLs', got, want);
    check('a NULL came back as null', got.some((row) => row.includes(null)), JSON.stringify(got.slice(0, 3)));
    check('id (int8) is a string', got.length > 0 && typeof got[0][0] === 'string', JSON.stringify(got[0]));
    const [g2, w2] = await both('SELECT max(big), min(big), sum(big) FROM {T}');
    same('int8 extremes and numeric sum', g2, w2);
    const [g3, w3] = await both('SELECT sum(amount), count(amount) FROM {T} WHERE id < 0');
    same('aggregate over no rows', g3, w3);
    same('sum over no rows is null', g3[0][0], null);
  });

  await group('exact numerics', async () => {
    const [got, want] = await both(
      'SELECT country, count(*), sum(amount), avg(amount), sum(big), min(amount) FROM {T} GROUP BY 1 ORDER BY 1',
    );
    same('group by with numeric sums/avg', got, want);
    const [g2, w2] = await both('SELECT sum(amount) * 2, round(avg(amount), 3), sum(qty) FROM {T}');
    same('expressions over aggregates', g2, w2);
  });

  await group('timestamps with time zones', async () => {
    const now = (await tm.query('SELECT now() AS n')).rows[0].n;
    check('now() is a Date', now instanceof Date, String(now));
    check('now() is about now', Math.abs(now - Date.now()) < 300000, String(now));
    const t = new Date('2024-03-22T04:41:12.345Z');
    const back = (await tm.query('SELECT $1::timestamptz AS t', [t])).rows[0].t;
    same('timestamptz parameter round trip', back.toISOString(), t.toISOString());
    const lit = (await tm.query("SELECT TIMESTAMPTZ '2024-03-22 10:00:00+05:30' AS t")).rows[0].t;
    same('timestamptz literal', lit.toISOString(), '2024-03-22T04:30:00.000Z');
    const text = (await tm.query("SELECT TIMESTAMPTZ '2024-03-22 10:00:00+05:30'::text AS t")).rows[0].t;
    same('timestamptz as text (UTC session)', text, '2024-03-22 04:30:00+00');
    const [got, want] = await both('SELECT min(event_time)::text, max(event_time)::text, min(day)::text FROM {T}');
    same('min/max timestamp and date as text', got, want);
  });

  await group('named prepared statement', async () => {
    const sql = 'SELECT count(*), sum(amount) FROM {T} WHERE event_time >= $1 AND qty > $2';
    for (let i = 0; i < 4; i++) {
      const values = [new Date(Date.UTC(2024, 2, 12 + i * 3)), 10 * i];
      const got = await tm.query({ name: 'tm_window', text: sql.replace('{T}', 'events'), values, rowMode: 'array' });
      const want = await oracle.query({ text: sql.replace('{T}', 'events_oracle'), values, rowMode: 'array' });
      same(`execution ${i + 1}`, got.rows, want.rows);
    }
  });

  await group('writes refused with 25006', async () => {
    let code = null;
    try {
      await tm.query("INSERT INTO countries VALUES ('QQ', 'nowhere', 1)");
    } catch (e) {
      code = e.code;
    }
    same('insert refused with 25006', code, '25006');
    same('usable afterwards', (await tm.query('SELECT 3 AS x')).rows, [{ x: 3 }]);
  });

  await group('SHOW tidemark.freshness', async () => {
    await tm.query('SELECT country, count(*) FROM events GROUP BY 1');
    const r = await tm.query({ text: 'SHOW tidemark.freshness', rowMode: 'array' });
    const fresh = JSON.parse(r.rows[0][0]);
    check('freshness names the plan', ['split', 'passthrough'].includes(fresh.plan), r.rows[0][0]);
    check('freshness has the batch watermark', 'batch_watermark' in fresh, r.rows[0][0]);
  });

  await tm.end();
  await oracle.end();
}

main()
  .catch((e) => failures.push(`fatal: ${e && e.stack ? e.stack : e} (code ${e && e.code})`))
  .finally(() => {
    if (failures.length > 0) {
      console.log(`node-postgres: ${passed} checks passed, ${failures.length} failed`);
      for (const f of failures) console.log(`FAILED ${f}`);
      process.exit(1);
    }
    console.log(`node-postgres: ${passed} checks passed`);
    process.exit(0);
  });
