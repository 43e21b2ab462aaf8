// The REST API as the console calls it: same origin only, the user's API key as a bearer
// token (kept in sessionStorage: gone when the tab closes), errors as problem+json.

const KEY = "tidemark.apiKey";
let unauthorized = () => {};

/** An error answer: HTTP status, SQLSTATE and detail of the problem. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.sqlstate = problem.sqlstate || "";
  }
}

/** Calls `f` whenever the server says the key is missing or wrong. */
export function onUnauthorized(f) {
  unauthorized = f;
}

/** The API key in use ("" when none). */
export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

/** Remembers the key for this tab ("" forgets it). */
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** A random id for a request, so that it can be cancelled. */
export function requestId() {
  return crypto.randomUUID ? crypto.randomUUID() : `r${Date.now()}${Math.random().toString(16).slice(2)}`;
}

/**
 * Calls `path` on this origin. Options: method, body (sent as JSON), headers, accept,
 * signal, as ("json" | "blob" | "response"). Throws ApiError for error answers.
 */
export async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  const key = apiKey();
  if (key) headers.authorization = `Bearer ${key}`;
  if (opts.accept) headers.accept = opts.accept;
  if (opts.body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(path, {
    method: opts.method || (opts.body !== undefined ? "POST" : "GET"),
    headers,
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    signal: opts.signal,
    credentials: "omit",
  });
  if (!resp.ok) {
    let problem = {};
    try {
      problem = await resp.json();
    } catch {
      problem = { detail: `HTTP ${resp.status}` };
    }
    if (resp.status === 401) unauthorized();
    throw new ApiError(resp.status, problem);
  }
  if (opts.as === "response") return resp;
  if (opts.as === "blob") return resp.blob();
  return resp.json();
}

/** Saves `blob` as a download named `name`. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
