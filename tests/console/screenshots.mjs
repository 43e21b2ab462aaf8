// Makes the console screenshots of docs/console/ from a running demo:
//
//   target/release/tidemark demo &            # let it run a while, with some load
//   (cd tests/console && npm ci && TIDEMARK_URL=http://127.0.0.1:8080 OUT=../../docs/console node screenshots.mjs)
//
// TIDEMARK_URL: the REST base; API_KEY: a key when the demo has users; OUT: where the PNGs go.

import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const BASE = process.env.TIDEMARK_URL || "http://127.0.0.1:8080";
const OUT = process.env.OUT || "screenshots";
mkdirSync(OUT, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 860 }, colorScheme: "light" });
const shot = (name) => page.screenshot({ path: `${OUT}/${name}.png` });
const settle = () => page.waitForTimeout(1500);

async function run(sql) {
  await page.click("nav a[data-view=query]");
  await page.fill("textarea.editor", sql);
  await page.focus("textarea.editor");
  await page.keyboard.press("Control+Enter");
  await page.waitForSelector("[data-testid=summary], [data-testid=error]");
  await settle();
}

await page.goto(`${BASE}/console`);
if (process.env.API_KEY) {
  await page.fill("#login-key", process.env.API_KEY);
  await page.click("#login-form button[type=submit]");
}
await page.waitForSelector("aside details");
const live = "SELECT country, count(*) AS events, sum(amount) AS revenue\nFROM events\nWHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '6 hours'\nGROUP BY country\nORDER BY events DESC";
await run(live); // warms the chunks
await run(live);
await shot("query");
await page.click("nav a[data-view=split]");
await settle();
await shot("split");
await run("SELECT count(DISTINCT user_id) AS users, count(*) AS events\nFROM events\nWHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '1 day'");
await page.click("nav a[data-view=split]");
await settle();
await shot("split-passthrough");
for (const view of ["freshness", "health", "recent"]) {
  await page.click(`nav a[data-view=${view}]`);
  await page.waitForTimeout(3000);
  await shot(view);
}
await browser.close();
console.log(`screenshots in ${OUT}`);
