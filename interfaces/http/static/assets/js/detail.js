// One job: its configuration, execution history, slot ledger, backfill, and its event
// timeline with time travel (the job as it was at a version or instant) and version diffs.

import { ApiError, call, get, post, query, session } from "./api.js";
import { confirmAction } from "./dialogs.js";
import { badge, duration, fill, h, pretty, throttle, timeEl, toast, uid, when } from "./dom.js";
import { openJobForm } from "./form.js";
import { jobStatusBadge, runBadge } from "./jobs.js";
import { onEvent } from "./live.js";

const EXEC_PAGE = 20;
const STRIP_MAX_SEGMENTS = 288;
const SLOTS_PER_REQUEST = 8000; // below the API's 10,000
const TYPE_LABEL = { HttpInvokerTask: "HTTP request", FunctionTask: "Function" };
const EVENT_LABEL = {
  "scheduler.job.created": "Created", "scheduler.job.updated": "Updated",
  "scheduler.job.enabled": "Resumed", "scheduler.job.disabled": "Paused", "scheduler.job.deleted": "Deleted",
};

/** The detail view of job `jobId` in `root`; returns a cleanup function. */
export function showJobDetail(root, jobId, refreshStats) {
  let job = null;
  let history = [];
  let execPage = 1;
  let execStatus = "";
  const open = new Set(); // execution ids whose details are expanded

  const head = h("div", { class: "detail-head" });
  const config = h("section", { class: "card", "aria-labelledby": "config-h" });
  const execSection = h("section", { class: "card", "aria-labelledby": "exec-h" });
  const slotSection = h("section", { class: "card", "aria-labelledby": "slots-h" });
  const historySection = h("section", { class: "card", "aria-labelledby": "history-h" });
  fill(root,
    h("p", {}, h("a", { href: "#/", class: "back" }, "← All jobs")),
    head, config, execSection, slotSection, historySection);

  // -- the job --------------------------------------------------------------------------
  async function loadJob() {
    try {
      job = await get(`/jobs/${jobId}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        fill(head, h("h1", {}, "Job not found"), h("p", {}, "It was deleted, or it belongs to another tenant."));
        for (const s of [config, execSection, slotSection]) s.hidden = true;
        return false;
      }
      throw error;
    }
    renderHead();
    renderConfig();
    return true;
  }

  function renderHead() {
    const buttons = [];
    if (session.can("jobs:trigger")) buttons.push(h("button", { type: "button", class: "button", onclick: trigger }, "Trigger now"));
    if (session.can("jobs:write")) {
      buttons.push(
        job.enabled
          ? h("button", { type: "button", class: "button", onclick: () => toggle("disable") }, "Pause")
          : h("button", { type: "button", class: "button", onclick: () => toggle("enable") }, "Resume"),
        h("button", { type: "button", class: "button", onclick: edit }, "Edit"),
        h("button", { type: "button", class: "button danger", onclick: remove }, "Delete"),
      );
    }
    fill(head,
      h("div", {},
        h("h1", {}, job.name, " ", jobStatusBadge(job)),
        h("p", { class: "muted" }, h("code", {}, job.pattern), ` · ${job.timezone} · ${TYPE_LABEL[job.taskType] || job.taskType} · version ${job.version}`),
        job.description ? h("p", {}, job.description) : null),
      h("div", { class: "button-row" }, buttons));
  }

  function renderConfig() {
    const c = job.taskConfig || {};
    const rows = [
      ["Application", job.application?.displayName || job.application?.id],
      ...(job.taskType === "FunctionTask"
        ? [["Function", c.function], ["Payload", h("pre", {}, pretty(c.payload || {}))]]
        : [["Request", `${c.method || "GET"} ${c.url || `${c.endpoint || ""}${c.path || ""}`}`],
          c.headers ? ["Headers", h("pre", {}, pretty(c.headers))] : null,
          c.body !== undefined ? ["Body", h("pre", {}, pretty(c.body))] : null,
          c.auth ? ["Authentication", `${c.auth.authMethod}${c.auth.username ? ` (${c.auth.username})` : ""}, secret stored`] : null]),
      ["Timeout", c.timeout ? duration(c.timeout) : "—"],
      ["Retries", `${job.retry?.maxRetries ?? 0} (${job.retry?.backoff || "fixed"}, ${job.retry?.retryDelaySeconds ?? 60} s)`],
      ["Concurrency", job.concurrencyPolicy],
      ["Missed runs", `${job.misfirePolicy} (window ${job.catchUpWindowSeconds} s)`],
      ["Pause after failures", job.pauseAfterFailures ?? "never"],
      ["Jitter", `${job.jitterSeconds || 0} s`],
      ["Created", h("span", {}, timeEl(job.createdAt), ` by ${job.createdBy}`)],
      ["Updated", h("span", {}, timeEl(job.updatedAt), ` by ${job.updatedBy}`)],
    ].filter(Boolean);
    fill(config, h("h2", { id: "config-h" }, "Configuration"),
      h("dl", { class: "config" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")])));
  }

  async function trigger() {
    try {
      await post(`/jobs/${jobId}/trigger`);
      toast(`Triggered ${job.name}`, "ok");
      loadExecutions();
    } catch (error) {
      toast(`Could not trigger: ${error.message}`, "bad");
    }
  }

  async function toggle(command) {
    try {
      job = await post(`/jobs/${jobId}/${command}`);
      toast(`${command === "enable" ? "Resumed" : "Paused"} ${job.name}`, "ok");
      renderHead();
      head.querySelector(".button-row button:nth-child(2)")?.focus();
      loadHistory();
      refreshStats();
    } catch (error) {
      toast(`Could not ${command}: ${error.message}`, "bad");
    }
  }

  async function edit() {
    const saved = await openJobForm(job);
    if (saved) {
      job = saved;
      renderHead();
      renderConfig();
      toast(`Saved ${job.name} (version ${job.version})`, "ok");
      loadHistory();
    }
  }

  async function remove() {
    if (!(await confirmAction(`Delete ${job.name}?`, "The job stops firing and leaves the list. Its history stays in the event log.", "Delete job"))) return;
    try {
      await call(`/jobs/${jobId}`, { method: "DELETE" });
      toast(`Deleted ${job.name}`, "ok");
      refreshStats();
      location.hash = "#/";
    } catch (error) {
      toast(`Could not delete: ${error.message}`, "bad");
    }
  }

  // -- executions ---------------------------------------------------------------------------
  const execStatusSelect = h("select", { id: uid() },
    [["", "All"], ["succeeded", "Succeeded"], ["failed", "Failed"], ["running", "Running"], ["pending", "Pending"]]
      .map(([v, l]) => h("option", { value: v }, l)));
  execStatusSelect.addEventListener("change", () => { execStatus = execStatusSelect.value; execPage = 1; loadExecutions(); });
  const execTable = h("table", { class: "executions" });
  const execPager = h("nav", { class: "pager", "aria-label": "Execution pages" });
  const execCount = h("p", { class: "muted", "aria-live": "polite" });
  fill(execSection,
    h("div", { class: "section-head" }, h("h2", { id: "exec-h" }, "Executions"),
      h("div", { class: "field inline-field" }, h("label", { for: execStatusSelect.id }, "Status"), execStatusSelect)),
    execCount, h("div", { class: "table-wrap" }, execTable), execPager);

  let execSeq = 0;
  async function loadExecutions() {
    const seq = ++execSeq;
    const { data, headers } = await call(`/jobs/${jobId}/executions${query({ status: execStatus, page: execPage, pageSize: EXEC_PAGE })}`);
    if (seq !== execSeq) return;
    const total = Number(headers.get("X-Total-Count") || data.length);
    fill(execCount, total ? `${total} execution${total === 1 ? "" : "s"}` : "No executions yet.");
    execTable.parentElement.hidden = total === 0;
    fill(execTable,
      h("thead", {}, h("tr", {}, ["Status", "Trigger", "Scheduled", "Started", "Duration", "Attempts", "Result"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, data.map(executionRows)));
    const pages = Math.max(1, Math.ceil(total / EXEC_PAGE));
    fill(execPager,
      h("button", { type: "button", class: "button subtle", disabled: execPage <= 1, onclick: () => { execPage -= 1; loadExecutions(); } }, "Newer"),
      h("span", {}, `Page ${execPage} of ${pages}`),
      h("button", { type: "button", class: "button subtle", disabled: execPage >= pages, onclick: () => { execPage += 1; loadExecutions(); } }, "Older"));
  }

  function outcome(e) {
    if (e.error) return h("span", { class: "bad-text" }, `${e.error.code || "ERROR"}: ${e.error.message || ""}`);
    if (e.result) {
      if (e.result.status !== undefined) return `HTTP ${e.result.status}`;
      return "returned";
    }
    return h("span", { class: "muted" }, e.status === "pending" && e.nextAttemptAt ? `retry at ${when(e.nextAttemptAt)}` : "—");
  }

  function executionRows(e) {
    const detailsId = `exec-${e.id}`;
    const expanded = open.has(e.id);
    const toggleButton = h("button", { type: "button", class: "link-button", "aria-expanded": String(expanded), "aria-controls": detailsId,
      onclick: () => { if (open.has(e.id)) open.delete(e.id); else open.add(e.id); loadExecutions(); } }, runBadge(e.status));
    const main = h("tr", { dataset: { executionId: e.id, status: e.status } },
      h("td", { "data-label": "Status" }, toggleButton),
      h("td", { "data-label": "Trigger" }, e.trigger),
      h("td", { "data-label": "Scheduled" }, timeEl(e.scheduledFor)),
      h("td", { "data-label": "Started" }, timeEl(e.startedAt)),
      h("td", { "data-label": "Duration" }, duration(e.durationMs)),
      h("td", { "data-label": "Attempts" }, String(e.attempt)),
      h("td", { "data-label": "Result" }, outcome(e)));
    if (!expanded) return main;
    const late = e.startedAt ? new Date(e.startedAt) - new Date(e.scheduledFor) : null;
    const more = h("tr", { id: detailsId, class: "execution-detail" }, h("td", { colspan: 7 },
      h("dl", { class: "config" },
        h("dt", {}, "Execution"), h("dd", {}, h("code", {}, e.id)),
        h("dt", {}, "Job version"), h("dd", {}, String(e.jobVersion ?? "—")),
        h("dt", {}, "Node"), h("dd", {}, e.node || "—"),
        h("dt", {}, "Started after slot"), h("dd", {}, late === null ? "—" : duration(late)),
        h("dt", {}, "Finished"), h("dd", {}, timeEl(e.finishedAt)),
        h("dt", {}, e.error ? "Error" : "Result"), h("dd", {}, h("pre", {}, pretty(e.error || e.result || null))))));
    return [main, more];
  }

  // -- the slot ledger and backfill -------------------------------------------------------------
  const today = new Date();
  const dayInput = h("input", { type: "date", id: uid(), value: localDate(today), max: localDate(today) });
  const strip = h("ol", { class: "strip", "aria-label": "Slots of the chosen day" });
  const stripSummary = h("p", { class: "muted", "aria-live": "polite" });
  const backfillFrom = h("input", { type: "datetime-local", id: uid(), step: 1 });
  const backfillTo = h("input", { type: "datetime-local", id: uid(), step: 1 });
  const backfillForm = session.can("jobs:trigger")
    ? h("form", { class: "backfill", onsubmit: backfill },
      h("h3", {}, "Backfill"),
      h("p", { class: "hint" }, "Run each slot of a past range once (slots already run are not run again)."),
      h("div", { class: "grid-3" },
        h("div", { class: "field" }, h("label", { for: backfillFrom.id }, "From"), backfillFrom),
        h("div", { class: "field" }, h("label", { for: backfillTo.id }, "To"), backfillTo),
        h("div", { class: "field end" }, h("button", { type: "submit", class: "button" }, "Backfill range"))))
    : null;
  dayInput.addEventListener("change", loadSlots);
  fill(slotSection,
    h("div", { class: "section-head" }, h("h2", { id: "slots-h" }, "Slots"),
      h("div", { class: "field inline-field" }, h("label", { for: dayInput.id }, "Day"), dayInput)),
    stripSummary, strip,
    h("p", { class: "legend muted small" }, badge("ran", "ok"), " ", badge("failed", "bad"), " ", badge("skipped", "skip"), " ", badge("pending", "wait"), " hover or focus a slot for its reason"),
    backfillForm);

  let slotSeq = 0;
  const chunksByPattern = new Map();
  async function chunksPerDay() {
    // one ledger request lists at most 10,000 slots: a dense pattern is asked in parts
    const key = `${job.pattern}|${job.timezone}`;
    if (!chunksByPattern.has(key)) {
      const { next } = await get(`/cron/preview${query({ pattern: job.pattern, timezone: job.timezone, count: 100 })}`);
      const span = next.length > 1 ? new Date(next.at(-1)) - new Date(next[0]) : 86400000;
      const perDay = (next.length * 86400000) / Math.max(span, 1);
      chunksByPattern.set(key, Math.min(24, Math.max(1, Math.ceil(perDay / SLOTS_PER_REQUEST))));
    }
    return chunksByPattern.get(key);
  }

  async function loadSlots() {
    if (!job) return;
    const seq = ++slotSeq;
    const day = dayInput.value || localDate(new Date());
    const from = new Date(`${day}T00:00:00`);
    const to = new Date(from.getTime() + 86400000);
    const parts = await chunksPerDay();
    const step = Math.ceil(86400000 / parts);
    const slots = [];
    for (let i = 0; i < parts; i += 1) { // one after another: each part makes the server catch up
      slots.push(...await get(`/jobs/${jobId}/slots${query({
        from: new Date(from.getTime() + i * step).toISOString(),
        to: new Date(Math.min(to.getTime(), from.getTime() + (i + 1) * step)).toISOString() })}`));
    }
    if (seq !== slotSeq) return;
    renderStrip(slots, from);
    if (backfillFrom && !backfillFrom.value) {
      backfillFrom.value = localDateTime(from);
      backfillTo.value = localDateTime(new Date(Math.min(to.getTime(), Date.now())));
    }
  }

  function kindOf(slot) {
    if (slot.outcome === "succeeded") return "ok";
    if (slot.outcome === "failed") return "bad";
    if (slot.outcome === "skipped") return "skip";
    if (slot.outcome === "running") return "run";
    return "wait";
  }

  function renderStrip(slots, from) {
    const counts = { ok: 0, bad: 0, skip: 0, run: 0, wait: 0 };
    for (const s of slots) counts[kindOf(s)] += 1;
    fill(stripSummary, slots.length
      ? `${slots.length} slot${slots.length === 1 ? "" : "s"}: ${counts.ok} ran, ${counts.bad} failed, ${counts.skip} skipped, ${counts.run + counts.wait} pending`
      : "No slot owed on this day (paused, or not scheduled then).");
    strip.hidden = slots.length === 0;
    if (slots.length <= STRIP_MAX_SEGMENTS) {
      fill(strip, slots.map((s) => {
        const label = `${when(s.slot)}: ${s.outcome}${s.reason ? ` (${s.reason})` : ""}`;
        return h("li", { class: `seg seg-${kindOf(s)}`, title: label, tabindex: "0", "aria-label": label });
      }));
      return;
    }
    const bucketMs = 86400000 / 96; // 15 minutes
    const buckets = Array.from({ length: 96 }, () => []);
    for (const s of slots) {
      const i = Math.min(95, Math.max(0, Math.floor((new Date(s.slot) - from) / bucketMs)));
      buckets[i].push(s);
    }
    fill(strip, buckets.map((items, i) => {
      const start = new Date(from.getTime() + i * bucketMs);
      const c = { ok: 0, bad: 0, skip: 0, run: 0, wait: 0 };
      const reasons = new Set();
      for (const s of items) {
        c[kindOf(s)] += 1;
        if (s.reason) reasons.add(s.reason);
      }
      const worst = ["bad", "skip", "run", "ok", "wait"].find((k) => c[k]) || "none";
      const label = `${when(start.toISOString())}: ${c.ok} ran, ${c.bad} failed, ${c.skip} skipped${reasons.size ? ` (${[...reasons].join(", ")})` : ""}`;
      return h("li", { class: `seg seg-${worst}`, title: label, tabindex: "0", "aria-label": label });
    }));
  }

  async function backfill(event) {
    event.preventDefault();
    const from = new Date(backfillFrom.value);
    const to = new Date(backfillTo.value);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || to <= from) {
      toast("Choose a range whose end is after its start", "bad");
      return;
    }
    if (!(await confirmAction("Backfill this range?", `Each slot of ${job.name} from ${when(from.toISOString())} to ${when(to.toISOString())} runs once.`, "Backfill", false))) return;
    try {
      const result = await post(`/jobs/${jobId}/backfill`, { from: from.toISOString(), to: to.toISOString() });
      toast(`${result.count} slot${result.count === 1 ? "" : "s"} recorded for backfill`, "ok");
      loadSlots();
      loadExecutions();
    } catch (error) {
      toast(`Backfill refused: ${error.message}`, "bad");
    }
  }

  // -- history and time travel ---------------------------------------------------------------
  const versionSelect = h("select", { id: uid() });
  const asOfInput = h("input", { type: "datetime-local", id: uid(), step: 1 });
  const compareSelect = h("select", { id: uid() }, h("option", { value: "previous" }, "the version before it"), h("option", { value: "current" }, "the current version"));
  const travel = h("div", { class: "travel", "aria-live": "polite" });
  const timeline = h("ol", { class: "timeline" });
  fill(historySection,
    h("h2", { id: "history-h" }, "History"),
    h("form", { class: "travel-form", onsubmit: (e) => { e.preventDefault(); showVersion(Number(versionSelect.value)); } },
      h("div", { class: "field" }, h("label", { for: versionSelect.id }, "Version"), versionSelect),
      h("div", { class: "field" }, h("label", { for: compareSelect.id }, "Compare with"), compareSelect),
      h("div", { class: "field end" }, h("button", { type: "submit", class: "button" }, "Show version"))),
    h("form", { class: "travel-form", onsubmit: (e) => { e.preventDefault(); showAsOf(); } },
      h("div", { class: "field" }, h("label", { for: asOfInput.id }, "As of (your time)"), asOfInput),
      h("div", { class: "field end" }, h("button", { type: "submit", class: "button" }, "Show as of"))),
    travel, h("h3", {}, "Events"), timeline);

  async function loadHistory() {
    history = await get(`/jobs/${jobId}/history`);
    const chosen = versionSelect.value;
    fill(versionSelect, history.map((e) => h("option", { value: String(e.version) }, `v${e.version} — ${EVENT_LABEL[e.type] || e.type}`)));
    versionSelect.value = chosen && history.some((e) => String(e.version) === chosen) ? chosen : String(history.at(-1)?.version ?? "");
    fill(timeline, [...history].reverse().map((e) => h("li", { class: "event", dataset: { version: e.version } },
      h("div", { class: "event-head" },
        h("strong", {}, `v${e.version} ${EVENT_LABEL[e.type] || e.type}`), " ", timeEl(e.time), ` by ${e.by ?? "—"}`),
      eventSummary(e),
      h("button", { type: "button", class: "link-button", onclick: () => { versionSelect.value = String(e.version); showVersion(e.version); } }, `View version ${e.version}`))));
  }

  function eventSummary(e) {
    if (e.type === "scheduler.job.updated" && e.data?.changes) {
      return h("p", { class: "small" }, `Changed: ${Object.keys(e.data.changes).join(", ")}`);
    }
    if (e.data?.reason) return h("p", { class: "small" }, `Reason: ${e.data.reason}`);
    return null;
  }

  async function showVersion(version) {
    const other = compareSelect.value === "current" ? history.at(-1)?.version : version - 1;
    const [then, before] = await Promise.all([
      get(`/jobs/${jobId}?version=${version}`),
      other >= 1 && other !== version ? get(`/jobs/${jobId}?version=${other}`) : Promise.resolve(null),
    ]);
    renderTravel(`Version ${version}`, then, before, other);
  }

  async function showAsOf() {
    if (!asOfInput.value) {
      toast("Choose a date and time", "bad");
      return;
    }
    const at = new Date(asOfInput.value).toISOString();
    try {
      const then = await get(`/jobs/${jobId}${query({ asOf: at })}`);
      const before = then.version > 1 ? await get(`/jobs/${jobId}?version=${then.version - 1}`) : null;
      renderTravel(`As of ${when(at)} (version ${then.version})`, then, before, then.version - 1);
    } catch (error) {
      fill(travel, h("p", { class: "bad-text" }, error.message));
    }
  }

  function renderTravel(title, then, other, otherVersion) {
    // the older version on the left, the newer on the right, whichever one is shown
    const [older, newer] = other && other.version > then.version ? [then, other] : [other, then];
    const label = (v) => `v${v.version}${v === then ? " (shown)" : ""}`;
    const changes = other ? diff(flatten(older), flatten(newer)) : [];
    const rows = changes.map(([path, a, b]) => h("tr", {}, h("th", { scope: "row" }, h("code", {}, path)),
      h("td", { class: "diff-old" }, a === undefined ? "—" : h("code", {}, JSON.stringify(a))),
      h("td", { class: "diff-new" }, b === undefined ? "—" : h("code", {}, JSON.stringify(b)))));
    fill(travel,
      h("h3", { tabindex: "-1", class: "travel-title" }, title),
      h("p", { class: "muted small" }, `${then.name} · ${then.pattern} · ${then.timezone} · ${then.enabled ? "active" : "paused"}${then.deleted ? " · deleted" : ""}`),
      other
        ? h("div", { class: "table-wrap" }, h("table", { class: "diff", "aria-label": `Differences from version ${otherVersion}` },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"),
            h("th", { scope: "col" }, label(older)), h("th", { scope: "col" }, label(newer)))),
          h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 3 }, "No differences in the job's fields.")))))
        : h("p", { class: "muted" }, "The first version: nothing to compare with."),
      h("details", {}, h("summary", {}, `The whole job at version ${then.version}`), h("pre", {}, pretty(then))));
    travel.querySelector(".travel-title").focus();
  }

  // -- live -------------------------------------------------------------------------------------
  const refreshSlots = throttle(loadSlots, 5000); // a day's ledger is heavier than a page
  const refreshExecutions = throttle(() => { loadExecutions(); refreshSlots(); }, 1000);
  const refreshJob = throttle(async () => { if (await loadJob()) loadHistory(); }, 700);
  const off = onEvent((event) => {
    if (event.type === "poll") {
      refreshExecutions();
      refreshJob();
      return;
    }
    if ((event.data?.jobId || event.subject) !== jobId) return;
    if (event.type.startsWith("scheduler.job.execution.")) refreshExecutions();
    else refreshJob();
  });

  (async () => {
    if (await loadJob()) {
      await Promise.all([loadExecutions(), loadSlots(), loadHistory()]);
    } else {
      await loadHistory().catch(() => null);
    }
  })().catch((error) => toast(`Could not load the job: ${error.message}`, "bad"));
  return off;
}

const IGNORED = new Set(["updatedAt", "updatedBy", "version"]);

function flatten(value, prefix = "", out = {}) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) {
      const path = prefix ? `${prefix}.${k}` : k;
      if (!prefix && IGNORED.has(k)) continue;
      flatten(v, path, out);
    }
    if (!Object.keys(value).length && prefix) out[prefix] = {};
  } else {
    out[prefix] = value;
  }
  return out;
}

function diff(a, b) {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).map((k) => [k, a[k], b[k]]);
}

function localDate(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function localDateTime(d) {
  return `${localDate(d)}T${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}:${String(d.getSeconds()).padStart(2, "0")}`;
}
