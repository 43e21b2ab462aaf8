// Recent queries: the last statements tidemark answered (`GET /v1/recent`), filterable by
// user, frontend, plan, outcome and text; each reopens in the query view with its split.
// Other users' text is shown only to users allowed to read it (`read_all_stats`).

import { api } from "./api.js";
import { h, fill, badge } from "./dom.js";
import { state, changed, go } from "./state.js";

const POLL = 3000;
const filters = { user: "", frontend: "", plan: "", failed: "", q: "" };

async function reopen(id) {
  const r = await api(`/v1/recent/${id}`);
  state.statement = r;
  state.named = null;
  if (r.sql) {
    state.sql = r.sql;
    state.params = r.params.length ? JSON.stringify(r.params) : "";
  }
  state.answer = null;
  changed("editor");
  go("query");
}

function row(r) {
  const open = () => reopen(r.id).catch((e) => alert(e.message));
  return h(
    "tr",
    { tabindex: "0", onclick: open, onkeydown: (e) => e.key === "Enter" && open(), "data-id": r.id, title: "reopen in the query view" },
    h("td", { class: "mono" }, r.started_at.slice(11, 23)),
    h("td", {}, r.user || "—"),
    h("td", {}, r.frontend),
    h("td", {}, r.plan ? badge(r.plan, r.plan) : "—"),
    h("td", { class: "num" }, r.ms.toFixed(1)),
    h("td", {}, r.cache ? badge(r.cache) : ""),
    h("td", { class: "num" }, r.rows),
    h("td", {}, r.sqlstate ? badge(r.sqlstate, "failed") : ""),
    h("td", { class: "sql", title: r.sql ?? r.error ?? "" }, r.sql ?? h("span", { class: "muted" }, "<insufficient privilege>")),
  );
}

function controls(refresh) {
  const input = (name, placeholder) => h("label", {}, name, h("input", { value: filters[name], placeholder, oninput: (e) => ((filters[name] = e.target.value), refresh()) }));
  const select = (name, options) => h("label", {}, name, h("select", { onchange: (e) => ((filters[name] = e.target.value), refresh()) }, options.map(([v, t]) => h("option", { value: v, selected: filters[name] === v }, t))));
  return h(
    "div",
    { class: "row panel" },
    input("q", "text contains"),
    input("user", "any"),
    select("frontend", [["", "any"], ["rest", "rest"], ["pgwire", "pgwire"], ["flight", "flight"], ["rewarm", "rewarm (background)"]]),
    select("plan", [["", "any"], ["split", "split"], ["passthrough", "passthrough"], ["local", "local"]]),
    select("failed", [["", "any"], ["true", "failed"], ["false", "succeeded"]]),
  );
}

/** Renders the recent queries into `root` and keeps the list live; returns a stop function. */
export function recentView(root) {
  let stopped = false;
  let timer = null;
  const body = h("tbody");
  const note = h("p", { class: "muted" });
  const refresh = async () => {
    clearTimeout(timer);
    const qs = new URLSearchParams({ limit: "200" });
    for (const [k, v] of Object.entries(filters)) if (v) qs.set(k, v);
    try {
      const got = await api(`/v1/recent?${qs}`);
      if (stopped) return;
      fill(body, got.statements.map(row));
      note.textContent = got.read_all ? "You see every user's statements." : "You see the text of your own statements only.";
      if (!got.statements.length) fill(body, h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No statements match.")));
    } catch (e) {
      if (!stopped) fill(body, h("tr", {}, h("td", { colspan: 9, class: "error" }, e.message)));
    }
    if (!stopped) timer = setTimeout(refresh, POLL);
  };
  const head = ["time (UTC)", "user", "frontend", "plan", "ms", "cache", "rows", "SQLSTATE", "statement"].map((c) => h("th", { scope: "col" }, c));
  fill(
    root,
    h(
      "section",
      { class: "stack", "data-testid": "recent" },
      controls(refresh),
      note,
      h("div", { class: "panel" }, h("table", { class: "recent" }, h("thead", {}, h("tr", {}, head)), body)),
    ),
  );
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
