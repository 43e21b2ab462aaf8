// Browser test of the console against a running `tidemark demo` (started by tests/console.rs),
// in Debian's chromium driven by playwright-core. Every step asserts; a failure saves a
// screenshot and exits 1. Screenshots of each view go to $SCREENSHOTS.
//
// Environment: TIDEMARK_URL (the REST base), ANALYST_KEY (a user without read_all_stats),
// BOB_KEY (another user), WAREHOUSE_URL (the demo database, to watch its queries),
// SCREENSHOTS (a directory), CHROMIUM (default /usr/bin/chromium).

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";
import pg from "pg";

const BASE = process.env.TIDEMARK_URL;
const ANALYST = process.env.ANALYST_KEY;
const BOB = process.env.BOB_KEY;
const SHOTS = process.env.SCREENSHOTS;
const origin = new URL(BASE).origin;
mkdirSync(SHOTS, { recursive: true });

const log = (...a) => console.log("console test:", ...a);

/** The REST answer to `sql` as `key`'s user. */
async function rest(sql, key, params = []) {
  const r = await fetch(`${BASE}/v1/query`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ sql, params }),
  });
  assert.equal(r.status, 200, `REST ${sql}: ${await r.clone().text()}`);
  return r.json();
}

const db = new pg.Client({ connectionString: process.env.WAREHOUSE_URL });
await db.connect();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 960 }, colorScheme: "light" });
const page = await context.newPage();
const requests = [];
const problems = [];
page.on("request", (r) => requests.push(r.url()));
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => m.type() === "error" && !/401|404|499/.test(m.text()) && problems.push(`console error: ${m.text()}`));

async function shot(name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: false });
}

async function runQuery(sql) {
  await page.fill("textarea.editor", sql);
  await page.focus("textarea.editor");
  const done = page.waitForResponse((r) => r.url().includes("/v1/query") || r.url().includes("/v1/queries/"));
  await page.keyboard.press("Control+Enter");
  await done;
  await page.waitForFunction(() => !document.querySelector("[data-testid=run]").disabled);
}

async function step(name, f) {
  log(name);
  try {
    await f();
  } catch (e) {
    await page.screenshot({ path: `${SHOTS}/failed-${name.replace(/\W+/g, "-")}.png` }).catch(() => {});
    console.error(`console test: FAILED at "${name}":`, e);
    process.exit(1);
  }
}

await step("unauthenticated requests are refused", async () => {
  for (const path of ["/v1/tables", "/v1/recent", "/v1/freshness", "/v1/stats", "/v1/queries"]) {
    const r = await fetch(`${BASE}${path}`);
    assert.equal(r.status, 401, `${path} without a key`);
  }
  const wrong = await fetch(`${BASE}/v1/stats`, { headers: { authorization: "Bearer tmk_wrong" } });
  assert.equal(wrong.status, 401);
  await page.goto(`${BASE}/console`);
  await page.waitForSelector("#login[open]");
  assert.equal(await page.locator("[data-testid=grid]").count(), 0, "no data before signing in");
  await shot("login");
  await page.fill("#login-key", "tmk_not_a_key");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("login-error").textContent.includes("not valid"));
});

await step("sign in with an API key", async () => {
  await page.fill("#login-key", ANALYST);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("#login:not([open])", { state: "attached" });
  await page.waitForSelector("aside details[data-table=events]");
  assert.match(await page.locator("aside").innerText(), /event_time/);
  assert.match(await page.locator("aside").innerText(), /revenue_by_country/, "named queries listed");
});

let H0;
await step("a split query's grid equals the REST answer", async () => {
  // the demo's loader publishes H within seconds of its start
  let t;
  for (let i = 0; ; i++) {
    const { tables } = await (await fetch(`${BASE}/v1/freshness`, { headers: { authorization: `Bearer ${ANALYST}` } })).json();
    t = tables.find((x) => x.table === "events");
    if (t.w && t.h && t.windows?.up) break;
    assert.ok(i < 60, `W and H are published and the windows are up: ${JSON.stringify(t)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  H0 = t.h;
  const iso = (ms) => new Date(ms).toISOString().replace("T", " ").replace("Z", "");
  // a closed range across W that ends below H: its answer no longer changes, whatever W does
  const sql = `SELECT country, count(*) AS events, sum(amount) AS revenue, min(event_time) AS first FROM events WHERE event_time >= '${iso(t.w - 3600000)}' AND event_time < '${iso(t.h - 1000)}' GROUP BY country ORDER BY country`;
  await runQuery(sql);
  const expected = await rest(sql, ANALYST);
  const summary = await page.locator("[data-testid=summary]").innerText();
  assert.match(summary, /split/);
  const headers = await page.locator("table.grid thead th").allInnerTexts();
  assert.deepEqual(headers.slice(1).map((x) => x.split("\n")), expected.columns.map((c) => [c.name, c.type]));
  const cells = await page.locator("table.grid tbody tr").evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll("td")].slice(1).map((td) => td.textContent)));
  const want = expected.rows.map((r) => r.map((v) => (v === null ? "NULL" : String(v))));
  assert.deepEqual(cells, want);
  const numeric = await page.locator("table.grid tbody tr:first-child td:nth-child(3)").getAttribute("class");
  assert.match(numeric, /num/, "numbers are right-aligned");
  await page.click("text=See the split drawn");
  await page.waitForSelector("[data-testid=split-svg]");
  for (const leg of ["batch", "speed"]) assert.ok(await page.locator(`[data-testid=split-svg] g[data-leg=${leg}]`).count(), `${leg} leg drawn`);
});

await step("the split picture of a live query shows batch, speed and windows with W and H", async () => {
  await page.click("nav a[data-view=query]");
  await runQuery("SELECT country, count(*) AS events, sum(amount) AS revenue FROM events WHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '6 hours' GROUP BY country ORDER BY events DESC");
  await shot("query");
  await page.click("nav a[data-view=split]");
  await page.waitForSelector("[data-testid=split-svg]");
  for (const leg of ["batch", "speed", "windows"]) {
    assert.ok(await page.locator(`[data-testid=split-svg] g[data-leg=${leg}]`).count(), `${leg} leg drawn`);
  }
  assert.ok(await page.locator("[data-testid=split-svg] g.piece").count() >= 2, "the sliding range's chunks are drawn");
  assert.match(await page.locator("[data-marker=w]").textContent(), /^W \d\d:\d\d:\d\d/);
  assert.match(await page.locator("[data-marker=h]").textContent(), /^(H = S|S) \d\d:\d\d:\d\d/);
  assert.match(await page.locator("[data-testid=windows]").innerText(), /used/);
  await shot("split");
});

await step("a pass-through shows its reason", async () => {
  await page.click("nav a[data-view=query]");
  await runQuery("SELECT count(DISTINCT user_id) AS users FROM events");
  assert.match(await page.locator("[data-testid=summary]").innerText(), /passthrough/);
  await page.click("nav a[data-view=split]");
  const reason = await page.locator("[data-testid=reason]").innerText();
  assert.match(reason, /Passed through: .*DISTINCT/);
  assert.ok(await page.locator("[data-testid=split-svg] g[data-leg=warehouse]").count(), "the warehouse leg is drawn");
  await shot("split-passthrough");
});

await step("cancel a slow query: 57014, and the warehouse query is gone", async () => {
  const sleeping = async () => (await db.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()")).rows[0].n;
  await page.click("nav a[data-view=query]");
  await page.fill("textarea.editor", "SELECT pg_sleep(30) AS slept");
  await page.focus("textarea.editor");
  const answered = page.waitForResponse((r) => r.url().includes("/v1/query"));
  await page.keyboard.press("Control+Enter");
  for (let i = 0; (await sleeping()) === 0; i++) {
    assert.ok(i < 100, "the slow query reached the warehouse");
    await new Promise((r) => setTimeout(r, 100));
  }
  await page.keyboard.press("Escape");
  const resp = await answered;
  assert.equal(resp.status(), 499);
  await page.waitForSelector("[data-testid=error][data-sqlstate='57014']");
  for (let i = 0; (await sleeping()) > 0; i++) {
    assert.ok(i < 50, "the warehouse query was cancelled");
    await new Promise((r) => setTimeout(r, 100));
  }
});

await step("the freshness chart moves when W advances", async () => {
  await page.click("nav a[data-view=freshness]");
  await page.waitForSelector("[data-testid=timeline-events] path[data-series='W (batch)']");
  const w0 = await page.locator("[data-testid=watermark] .big").innerText();
  const d0 = await page.locator("[data-testid=timeline-events] path[data-series='W (batch)']").getAttribute("d");
  assert.match(await page.locator("[data-testid=windows-state]").innerText(), /up/);
  await page.waitForFunction((w) => document.querySelector("[data-testid=watermark] .big")?.textContent !== w, w0, { timeout: 60000 });
  const d1 = await page.locator("[data-testid=timeline-events] path[data-series='W (batch)']").getAttribute("d");
  assert.notEqual(d1, d0, "the W line moved");
  const steps = (d1.match(/V/g) || []).length;
  assert.ok(steps >= 1, "W is drawn as steps");
  await shot("freshness");
});

await step("health charts fill from the samples", async () => {
  await page.click("nav a[data-view=health]");
  await page.waitForSelector("[data-testid=qps] path[data-series=rest]", { timeout: 20000, state: "attached" });
  for (const id of ["latency", "cache-ratio", "cache-bytes", "slots", "errors", "connections"]) {
    assert.ok(await page.locator(`[data-testid=${id}] svg`).count(), `${id} chart`);
  }
  await page.waitForSelector("[data-testid=errors] path[data-series='57014']", { timeout: 20000, state: "attached" });
  await shot("health");
});

await step("recent queries: filtered, others' text hidden, reopened in the query view", async () => {
  await rest("SELECT 'bob was here' AS secret", BOB);
  await page.click("nav a[data-view=recent]");
  await page.waitForSelector("table.recent tbody tr[data-id]");
  const all = await page.locator("table.recent tbody").innerText();
  assert.match(all, /pg_sleep/);
  assert.match(all, /<insufficient privilege>/, "bob's statement text is hidden from the analyst");
  assert.doesNotMatch(all, /bob was here/);
  await page.selectOption("select >> nth=1", "passthrough");
  await page.waitForFunction(() => [...document.querySelectorAll("table.recent tbody tr[data-id]")].every((r) => r.innerText.includes("passthrough")));
  await page.selectOption("select >> nth=1", "");
  await page.fill("input[placeholder='text contains']", "DISTINCT user_id");
  await page.waitForFunction(() => document.querySelectorAll("table.recent tbody tr[data-id]").length === 1);
  await shot("recent");
  await page.click("table.recent tbody tr[data-id]");
  await page.waitForSelector("textarea.editor");
  assert.match(await page.inputValue("textarea.editor"), /count\(DISTINCT user_id\)/);
  await page.click("nav a[data-view=split]");
  assert.match(await page.locator("[data-testid=reason]").innerText(), /DISTINCT/);
});

await step("a named query runs from its form", async () => {
  await page.click("nav a[data-view=query]");
  await page.click("button[data-named=revenue_by_country]");
  await page.waitForSelector("input[data-param=since]");
  await page.fill("input[data-param=since]", "2020-01-01 00:00:00");
  const done = page.waitForResponse((r) => r.url().includes("/v1/queries/revenue_by_country"));
  await page.click("[data-testid=run]");
  assert.equal((await done).status(), 200);
  await page.waitForSelector("table.grid tbody tr");
});

await step("dark theme renders", async () => {
  await page.emulateMedia({ colorScheme: "dark" });
  await page.click("nav a[data-view=split]");
  await shot("split-dark");
  await page.emulateMedia({ colorScheme: "light" });
});

await step("the console asked no other host", async () => {
  const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith("data:") && !u.startsWith("blob:"));
  assert.deepEqual(foreign, []);
  assert.ok(requests.length > 20, "requests were recorded");
  assert.deepEqual(problems, []);
});

await browser.close();
await db.end();
log(`passed (${requests.length} requests, all to ${origin})`);
