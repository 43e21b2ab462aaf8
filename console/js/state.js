// What the views share: the statement shown in the query and split views (the last one run
// or reopened), the editor's text, and a way for views to ask for another view.

const listeners = new Set();

/** Shared state. */
export const state = {
  /** The editor's SQL and parameters (JSON array text). */
  sql: "",
  params: "",
  /** The named query selected in the form, if any, and its parameter values. */
  named: null,
  namedValues: {},
  /** The last answer: { columns, rows, freshness, ms, queryId } or an error. */
  answer: null,
  /** The recent statement record of the last answer (plan + freshness), when known. */
  statement: null,
};

/** Tells every listener that `what` changed. */
export function changed(what) {
  for (const f of listeners) f(what);
}

/** Calls `f(what)` on every change. */
export function watch(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

/** Goes to a view (`query`, `split`, `freshness`, `health`, `recent`). */
export function go(view) {
  if (location.hash !== `#/${view}`) location.hash = `#/${view}`;
}
