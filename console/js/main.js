// The console's shell: the views behind the navigation (hash routes), sign-in with an API
// key when the server has users, and the keyboard: Alt+1..5 switch views, Ctrl-Enter runs,
// Esc cancels a running query.

import { api, ApiError, apiKey, setApiKey, onUnauthorized } from "./api.js";
import { state, watch } from "./state.js";
import { queryView, cancelRunning, loadCatalog } from "./query.js";
import { splitView } from "./split.js";
import { freshnessView } from "./freshness.js";
import { healthView } from "./health.js";
import { recentView } from "./recent.js";

const VIEWS = {
  query: (root) => queryView(root, watch),
  split: (root) => {
    splitView(root);
    return watch((what) => what === "answer" && splitView(root));
  },
  freshness: freshnessView,
  health: healthView,
  recent: recentView,
};
const ORDER = ["query", "split", "freshness", "health", "recent"];
const EXAMPLE =
  "SELECT country, count(*) AS events, sum(amount) AS revenue\nFROM events\nWHERE event_time >= (now() AT TIME ZONE 'UTC') - interval '5 minutes'\nGROUP BY country\nORDER BY events DESC";

let stopView = null;

async function show() {
  const name = location.hash.replace(/^#\//, "") || "query";
  const view = VIEWS[name] ? name : "query";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (stopView) stopView();
  const root = document.getElementById("view");
  stopView = await VIEWS[view](root);
  document.title = `tidemark · ${view}`;
}

function signedIn(on) {
  document.getElementById("signout").hidden = !on;
  document.getElementById("whoami").textContent = on ? "signed in with an API key" : "";
}

function askForKey(message = "") {
  const dialog = document.getElementById("login");
  document.getElementById("login-error").textContent = message;
  if (!dialog.open) dialog.showModal();
  document.getElementById("login-key").focus();
}

async function tryKey(key) {
  setApiKey(key);
  try {
    await api("/v1/tables");
    return true;
  } catch (e) {
    setApiKey("");
    if (e instanceof ApiError && e.status === 401) return false;
    throw e;
  }
}

function wireLogin() {
  const dialog = document.getElementById("login");
  dialog.addEventListener("cancel", (e) => e.preventDefault()); // no data without a key
  document.getElementById("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = document.getElementById("login-key").value.trim();
    try {
      if (!(await tryKey(key))) return askForKey("That key is not valid here.");
    } catch (err) {
      return askForKey(err.message);
    }
    document.getElementById("login-key").value = "";
    dialog.close();
    signedIn(true);
    await loadCatalog(true).catch(() => {});
    show();
  });
  document.getElementById("signout").addEventListener("click", () => {
    setApiKey("");
    signedIn(false);
    askForKey();
  });
  onUnauthorized(() => {
    const had = apiKey();
    setApiKey("");
    signedIn(false);
    askForKey(had ? "Your key is no longer valid." : "");
  });
}

function wireKeys() {
  document.addEventListener("keydown", (e) => {
    if (e.altKey && !e.ctrlKey && !e.metaKey && /^[1-5]$/.test(e.key)) {
      e.preventDefault();
      location.hash = `#/${ORDER[+e.key - 1]}`;
    } else if (e.key === "Escape" && !document.getElementById("login").open) {
      cancelRunning().catch(() => {});
    }
  });
}

async function start() {
  state.sql = localStorage.getItem("tidemark.sql") || EXAMPLE;
  wireLogin();
  wireKeys();
  window.addEventListener("hashchange", show);
  try {
    await api("/v1/tables");
    signedIn(!!apiKey());
    show();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) askForKey();
    else document.getElementById("view").textContent = `tidemark cannot be reached: ${e.message}`;
  }
}

start();
