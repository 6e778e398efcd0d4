// The admin page: sign-in, the stats bar, and a hash router between the list and a job.

import { ApiError, get, loadSession, session, signIn, signOut } from "./api.js";
import { showJobDetail } from "./detail.js";
import { duration, fill, h, throttle, toast, uid } from "./dom.js";
import { showJobList } from "./jobs.js";
import { onEvent, startLive, stopLive } from "./live.js";

const main = document.getElementById("main");
const statsBar = document.getElementById("stats");
let cleanup = null;

function tokenInLink() {
  return new URLSearchParams(location.hash.slice(1)).get("token");
}

async function boot() {
  const fromLink = tokenInLink();
  if (fromLink) {
    history.replaceState(null, "", `${location.pathname}#/`); // the token leaves the address bar
    try {
      await signIn(fromLink);
    } catch (error) {
      showLogin(error instanceof ApiError ? error.message : String(error));
      return;
    }
  } else {
    await loadSession();
  }
  if (session.authenticated) start();
  else showLogin(session.reason ? `Your session ended (${session.reason}). Sign in again.` : null);
}

function showLogin(message) {
  stopLive();
  document.getElementById("user").hidden = true;
  statsBar.hidden = true;
  const tokenInput = h("textarea", { id: uid(), rows: 4, required: true, spellcheck: "false", autocomplete: "off", class: "code" });
  const error = h("p", { class: "field-error", role: "alert", id: uid("err"), hidden: !message }, message || "");
  tokenInput.setAttribute("aria-describedby", error.id);
  const button = h("button", { type: "submit", class: "button primary" }, "Sign in");
  const form = h("form", { class: "card login", onsubmit: async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      await signIn(tokenInput.value.trim());
      start();
    } catch (e) {
      error.hidden = false;
      error.textContent = e instanceof ApiError ? e.message : String(e);
      tokenInput.setAttribute("aria-invalid", "true");
      button.disabled = false;
      tokenInput.focus();
    }
  } },
  h("h1", {}, "Sign in"),
  h("p", {}, "Paste a token (", h("code", {}, "cronsource token --sub NAME"), "), or open the link ", h("code", {}, "cronsource serve"), " printed."),
  h("div", { class: "field" }, h("label", { for: tokenInput.id }, "Token"), tokenInput),
  error, h("div", { class: "actions" }, button));
  fill(main, form);
  tokenInput.focus();
}

function start() {
  document.getElementById("user").hidden = false;
  fill(document.getElementById("user-name"), `${session.subject} · ${session.tenant}`);
  const live = document.getElementById("live");
  startLive((text) => { live.textContent = text; live.dataset.state = text; });
  statsBar.hidden = !session.can("jobs:read");
  refreshStats();
  window.addEventListener("hashchange", route);
  route();
}

const STAT_LABELS = [
  ["jobs", "Jobs"], ["enabled", "Enabled"], ["running", "Running"], ["queued", "Queued"],
  ["successRate", "Success (24 h)"], ["p95", "p95 duration"],
];

async function loadStats() {
  if (!session.authenticated || !session.can("jobs:read")) return;
  try {
    const s = await get("/stats");
    const rate = s.last24h.successRate;
    const values = {
      jobs: s.jobs.total, enabled: s.jobs.enabled, running: s.engine.running, queued: s.engine.queued,
      successRate: rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(rate === 1 ? 0 : 1)} %`,
      p95: duration(s.durationMs.p95),
    };
    fill(statsBar, h("dl", {}, STAT_LABELS.map(([key, label]) =>
      h("div", { class: "stat", dataset: { stat: key } }, h("dt", {}, label), h("dd", {}, String(values[key]))))));
  } catch {
    // the bar keeps its last figures; the list shows errors that matter
  }
}
const refreshStats = throttle(loadStats, 1500);
onEvent(() => refreshStats());

function route() {
  if (tokenInLink()) return; // a login link opened on this page: boot() takes it
  if (cleanup) cleanup();
  cleanup = null;
  if (!session.can("jobs:read")) {
    fill(main, h("div", { class: "card" }, h("h1", {}, "No access"),
      h("p", {}, "This token does not grant jobs:read, so there is nothing to show. Sign in with another token.")));
    return;
  }
  const match = location.hash.match(/^#\/jobs\/([0-9a-fA-F-]{36})$/);
  if (match) {
    cleanup = showJobDetail(main, match[1], refreshStats);
    document.title = "Job · cronsource";
  } else {
    cleanup = showJobList(main, refreshStats);
    document.title = "Jobs · cronsource";
  }
  main.focus({ preventScroll: true });
}

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await signOut();
  } catch (error) {
    toast(`Could not sign out: ${error.message}`, "bad");
    return;
  }
  if (cleanup) cleanup();
  cleanup = null;
  window.removeEventListener("hashchange", route);
  showLogin("Signed out.");
});

window.addEventListener("cronsource:signed-out", () => {
  session.authenticated = false;
  if (cleanup) cleanup();
  cleanup = null;
  window.removeEventListener("hashchange", route);
  showLogin("Your session ended. Sign in again.");
});

window.addEventListener("hashchange", () => {
  if (!tokenInLink()) return;
  if (cleanup) cleanup();
  cleanup = null;
  window.removeEventListener("hashchange", route);
  boot().catch((error) => fill(main, h("p", { class: "field-error" }, `The page could not start: ${error.message}`)));
});

boot().catch((error) => fill(main, h("p", { class: "field-error" }, `The page could not start: ${error.message}`)));
