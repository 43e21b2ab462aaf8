// The query view: the logical tables and named queries beside an editor; run (Ctrl-Enter),
// cancel (Esc), the answer as a typed grid with its freshness, CSV and Arrow downloads.

import { api, ApiError, download, requestId } from "./api.js";
import { h, fill, badge } from "./dom.js";
import { grid } from "./grid.js";
import { state, changed, go } from "./state.js";
import { duration } from "./time.js";

const ARROW = "application/vnd.apache.arrow.stream";
let running = null; // { id, started }
let catalog = null; // { tables, queries }

/** Cancels the running query, if any (Esc). */
export async function cancelRunning() {
  if (!running) return;
  const id = running.id;
  try {
    await api("/v1/cancel", { body: { request_id: id } });
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e; // it had just finished
  }
}

/** Loads the tables and named queries once per page load (again after a sign-in). */
export async function loadCatalog(force = false) {
  if (catalog && !force) return catalog;
  const [tables, queries] = await Promise.all([api("/v1/tables"), api("/v1/queries")]);
  catalog = { tables, queries };
  return catalog;
}

/** The parameters of the editor as a JSON array (throws with a clear message). */
function editorParams() {
  const text = state.params.trim();
  if (!text) return [];
  let p;
  try {
    p = JSON.parse(text);
  } catch {
    throw new Error("parameters must be a JSON array, e.g. [\"2026-01-01\", 10]");
  }
  if (!Array.isArray(p)) throw new Error("parameters must be a JSON array");
  return p;
}

/** What to send for the current editor or named query, with an Accept type. */
function request(accept, id, bypass) {
  const headers = { "tidemark-request-id": id };
  if (bypass) headers["cache-control"] = "no-cache";
  if (state.named) {
    const qs = new URLSearchParams();
    for (const p of state.named.params) {
      const v = state.namedValues[p.name];
      if (v !== undefined && v !== "") qs.set(p.name, v);
    }
    const path = `/v1/queries/${encodeURIComponent(state.named.name)}?${qs}`;
    return [path, { headers, accept, as: "response" }];
  }
  return ["/v1/query", { body: { sql: state.sql, params: editorParams() }, headers, accept, as: "response" }];
}

/** Runs the editor's statement (or the named query) and shows its answer. */
export async function run(bypass = false) {
  if (running) return;
  const id = requestId();
  running = { id, started: performance.now() };
  changed("running");
  try {
    const [path, opts] = request(undefined, id, bypass);
    const resp = await api(path, opts);
    const body = await resp.json();
    const queryId = resp.headers.get("tidemark-query-id");
    const ms = performance.now() - running.started;
    state.answer = { ...body, ms, queryId };
    state.statement = null;
    if (queryId) state.statement = await api(`/v1/recent/${queryId}`).catch(() => null);
  } catch (e) {
    state.answer = { error: e, ms: performance.now() - running.started };
  } finally {
    running = null;
    changed("answer");
  }
}

async function save(kind) {
  const accept = kind === "csv" ? "text/csv" : ARROW;
  const [path, opts] = request(accept, requestId(), false);
  const resp = await api(path, opts);
  download(await resp.blob(), kind === "csv" ? "tidemark-result.csv" : "tidemark-result.arrows");
}

function sidebar(cat, editor) {
  const insert = (text) => {
    const { selectionStart: a, selectionEnd: b, value } = editor;
    editor.value = value.slice(0, a) + text + value.slice(b);
    editor.selectionStart = editor.selectionEnd = a + text.length;
    editor.dispatchEvent(new Event("input"));
    editor.focus();
  };
  const tables = cat.tables.map((t) =>
    h(
      "details",
      { open: true, "data-table": t.name },
      h("summary", { title: `${t.batch_table} + ${t.speed_table}, split at W on ${t.time_column}` }, t.name),
      h(
        "ul",
        {},
        t.columns.map((c) =>
          h(
            "li",
            {},
            h("button", { onclick: () => insert(c.name), title: "insert into the editor" }, c.name),
            h("span", { class: "type" }, c.type),
          ),
        ),
      ),
      h("div", { class: "muted" }, `W = ${t.batch_watermark ?? "—"}`),
    ),
  );
  const named = cat.queries.map((q) =>
    h(
      "li",
      {},
      h("button", { onclick: () => pickNamed(q), title: q.description, "data-named": q.name }, q.name),
      h("span", { class: "type" }, `${q.params.length} param${q.params.length === 1 ? "" : "s"}`),
    ),
  );
  return h(
    "aside",
    { class: "side panel", "aria-label": "tables and named queries" },
    h("h2", {}, "Logical tables"),
    tables.length ? tables : h("p", { class: "muted" }, "none configured"),
    h("h2", {}, "Named queries"),
    named.length ? h("ul", {}, named) : h("p", { class: "muted" }, "none ([queries] dir)"),
  );
}

function pickNamed(q) {
  state.named = q;
  state.namedValues = Object.fromEntries(q.params.map((p) => [p.name, p.default ?? ""]));
  state.sql = q.sql;
  state.params = "";
  changed("editor");
}

function namedForm() {
  const q = state.named;
  if (!q) return null;
  const inputs = q.params.map((p) =>
    h(
      "label",
      {},
      `${p.name} (${p.type})`,
      h("input", {
        value: state.namedValues[p.name] ?? "",
        name: p.name,
        "data-param": p.name,
        oninput: (e) => (state.namedValues[p.name] = e.target.value),
      }),
    ),
  );
  return h(
    "div",
    { class: "panel named-form", "aria-label": `named query ${q.name}` },
    h("div", {}, h("strong", {}, q.name), h("div", { class: "muted" }, q.description)),
    inputs,
    h("button", { class: "link", onclick: () => ((state.named = null), changed("editor")) }, "back to ad hoc SQL"),
  );
}

function legLine(l) {
  const rows = l.rows === null ? "streamed" : `${l.rows} row${l.rows === 1 ? "" : "s"}`;
  return h("span", {}, h("strong", {}, l.name), " ", badge(l.cache), ` ${rows}, ${l.elapsed_ms.toFixed(1)} ms`);
}

function answerView() {
  const a = state.answer;
  if (!a) return h("div", { class: "empty" }, "Run a query: Ctrl-Enter (⌘-Enter) in the editor.");
  if (a.error) {
    const e = a.error;
    const code = e.sqlstate ? `${e.sqlstate}: ` : "";
    return h("div", { class: "panel error", role: "alert", "data-testid": "error", "data-sqlstate": e.sqlstate || "" }, `ERROR ${code}${e.message}`);
  }
  const f = a.freshness || {};
  const summary = h(
    "div",
    { class: "summary panel", "data-testid": "summary" },
    badge(f.plan || "?", f.plan),
    f.cache ? h("span", {}, "answer ", badge(f.cache)) : null,
    h("span", {}, `${a.rows.length} row${a.rows.length === 1 ? "" : "s"} in ${duration(a.ms / 1000)}`),
    f.batch_watermark ? h("span", {}, "W = ", h("code", {}, f.batch_watermark)) : null,
    f.realtime_reaches ? h("span", {}, "realtime reaches ", h("code", {}, f.realtime_reaches)) : null,
    f.degraded ? badge("degraded") : null,
    (f.legs || []).map(legLine),
    f.reason && f.plan === "passthrough" ? h("span", { class: "muted" }, `passed through: ${f.reason}`) : null,
    h("button", { class: "link", onclick: () => go("split") }, "See the split drawn →"),
  );
  return h(
    "div",
    { class: "stack" },
    summary,
    h(
      "div",
      { class: "row" },
      h("button", { onclick: () => save("csv").catch(showError) }, "Download CSV"),
      h("button", { onclick: () => save("arrow").catch(showError) }, "Download Arrow"),
    ),
    grid(a.columns, a.rows),
  );
}

function showError(e) {
  state.answer = { error: e, ms: 0 };
  changed("answer");
}

/** Renders the query view into `root`; returns a function that stops its listeners. */
export async function queryView(root, watchState) {
  const editor = h("textarea", {
    class: "editor",
    spellcheck: false,
    "aria-label": "SQL",
    placeholder: "SELECT country, count(*) FROM events GROUP BY 1",
    oninput: (e) => {
      state.sql = e.target.value;
      localStorage.setItem("tidemark.sql", state.sql);
    },
    onkeydown: (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        run(bypass.checked);
      }
    },
  });
  const params = h("input", {
    class: "mono",
    style: "flex:1;min-width:200px",
    placeholder: 'parameters $1..$n as a JSON array, e.g. ["2026-01-01 00:00:00", 10]',
    "aria-label": "parameters",
    oninput: (e) => (state.params = e.target.value),
  });
  const bypass = h("input", { type: "checkbox" });
  const runBtn = h("button", { class: "primary", onclick: () => run(bypass.checked), "data-testid": "run" }, "Run ", h("span", { class: "kbd" }, "Ctrl-Enter"));
  const cancelBtn = h("button", { onclick: () => cancelRunning().catch(showError), disabled: true, "data-testid": "cancel" }, "Cancel ", h("span", { class: "kbd" }, "Esc"));
  const status = h("div", { class: "status muted", role: "status", "aria-live": "polite" });
  const named = h("div");
  const answer = h("div", { "data-testid": "answer" });
  const side = h("div", {}, h("div", { class: "panel muted" }, "loading tables…"));

  const sync = (what) => {
    if (what === "editor" || what === "init") {
      editor.value = state.sql;
      params.value = state.params;
      editor.readOnly = !!state.named;
      params.hidden = !!state.named;
      fill(named, namedForm());
    }
    const busy = !!running;
    runBtn.disabled = busy;
    cancelBtn.disabled = !busy;
    status.textContent = busy ? "running…" : "";
    if (what !== "running") fill(answer, answerView());
  };
  fill(
    root,
    h(
      "section",
      { class: "query" },
      side,
      h(
        "div",
        { class: "stack" },
        named,
        editor,
        h("div", { class: "row" }, params, runBtn, cancelBtn, h("label", { class: "inline" }, bypass, "bypass caches"), status),
        answer,
      ),
    ),
  );
  sync("init");
  const stop = watchState(sync);
  loadCatalog()
    .then((cat) => fill(side, sidebar(cat, editor)))
    .catch((e) => fill(side, h("div", { class: "panel error" }, e.message)));
  editor.focus();
  return stop;
}
