// The result grid: column names with their PostgreSQL types, NULL shown as NULL, numbers
// right-aligned, rows paged so a large answer stays quick to show.

import { h, fill } from "./dom.js";

/** Rows per page. */
export const PAGE = 100;

const NUMERIC = new Set(["int2", "int4", "int8", "float4", "float8", "numeric", "oid"]);

/** Whether a PostgreSQL type name is a number (right-aligned). */
export function isNumeric(type) {
  return NUMERIC.has(type);
}

/** A cell's text: JSON values as REST sends them (int8 and numeric arrive as exact text). */
export function cellText(v) {
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return v ? "true" : "false";
  return String(v);
}

/** A grid over `columns` ({name, type}) and `rows` (arrays), starting at page 0. */
export function grid(columns, rows) {
  const wrap = h("div", { class: "grid-wrap", tabindex: "0", "aria-label": "result rows" });
  const pager = h("div", { class: "pager" });
  const root = h("div", { class: "result" }, wrap, pager);
  let page = 0;
  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  const head = h(
    "tr",
    {},
    h("th", { class: "num", scope: "col" }, "#"),
    columns.map((c) =>
      h("th", { scope: "col", class: isNumeric(c.type) ? "num" : "" }, c.name, h("span", { class: "type" }, c.type)),
    ),
  );
  const body = h("tbody");
  const table = h("table", { class: "grid", "data-testid": "grid" }, h("thead", {}, head), body);
  wrap.append(table);

  function show(p) {
    page = Math.min(Math.max(0, p), pages - 1);
    const start = page * PAGE;
    const slice = rows.slice(start, start + PAGE);
    fill(
      body,
      slice.map((r, i) =>
        h(
          "tr",
          {},
          h("td", { class: "rownum" }, start + i + 1),
          r.map((v, c) => {
            const num = isNumeric(columns[c]?.type);
            return v === null
              ? h("td", { class: num ? "num" : "" }, h("span", { class: "null" }, "NULL"))
              : h("td", { class: num ? "num" : "", title: cellText(v) }, cellText(v));
          }),
        ),
      ),
    );
    fill(
      pager,
      h("button", { onclick: () => show(0), disabled: page === 0, "aria-label": "first page" }, "«"),
      h("button", { onclick: () => show(page - 1), disabled: page === 0, "aria-label": "previous page" }, "‹"),
      h("span", { class: "muted", "data-testid": "page" }, `page ${page + 1} of ${pages} · rows ${rows.length ? start + 1 : 0}–${start + slice.length} of ${rows.length}`),
      h("button", { onclick: () => show(page + 1), disabled: page >= pages - 1, "aria-label": "next page" }, "›"),
      h("button", { onclick: () => show(pages - 1), disabled: page >= pages - 1, "aria-label": "last page" }, "»"),
    );
  }
  show(0);
  return root;
}
