// The job list: search, filters, sorting, paging, and each job's actions.

import { ApiError, call, get, post, query, session } from "./api.js";
import { confirmAction } from "./dialogs.js";
import { badge, fill, h, relative, throttle, timeEl, toast, uid } from "./dom.js";
import { openJobForm } from "./form.js";
import { onEvent } from "./live.js";

const SERVER_PAGE = 500; // the API's largest page
const LOAD_ALL_LIMIT = 2000; // up to this many jobs the list sorts and pages in the browser
const PAGE_SIZE = 25;
const TYPE_LABEL = { HttpInvokerTask: "HTTP", FunctionTask: "Function" };

const COLUMNS = [
  { key: "name", label: "Name", sort: (j) => j.name.toLowerCase() },
  { key: "status", label: "Status", sort: (j) => (j.enabled ? 0 : 1) },
  { key: "type", label: "Type", sort: (j) => j.taskType },
  { key: "schedule", label: "Schedule", sort: (j) => j.pattern },
  { key: "lastRun", label: "Last run" },
  { key: "nextRun", label: "Next run" },
  { key: "updated", label: "Updated", sort: (j) => j.updatedAt || "" },
];

/** The list state survives leaving the page and coming back. */
const state = { q: "", status: "", type: "", sort: "name", dir: 1, page: 1 };
const lastRuns = new Map(); // job id -> newest execution (or null)
const nextRuns = new Map(); // pattern|timezone -> {at, until}

export function jobStatusBadge(job) {
  return job.enabled ? badge("Active", "ok") : badge("Paused", "muted");
}

export function runBadge(status) {
  const kind = { succeeded: "ok", failed: "bad", running: "run", pending: "wait" }[status] || "muted";
  return badge(status, kind);
}

/** The list view, rendered into `root`; returns a cleanup function. */
export function showJobList(root, refreshStats) {
  let jobs = [];
  let total = 0;
  let partial = false; // more jobs than LOAD_ALL_LIMIT: the server pages, sorting is per page
  let loadSeq = 0;

  const heading = h("h1", {}, "Jobs");
  const create = session.can("jobs:write")
    ? h("button", { type: "button", class: "button primary", onclick: () => edit(null) }, "New job")
    : null;

  const search = h("input", { type: "search", id: uid(), value: state.q, placeholder: "name or description", autocomplete: "off" });
  const statusFilter = select([["", "All"], ["true", "Active"], ["false", "Paused"]], state.status);
  const typeFilter = select([["", "All"], ["HttpInvokerTask", "HTTP"], ["FunctionTask", "Function"]], state.type);
  const filters = h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
    h("div", { class: "field" }, h("label", { for: search.id }, "Search"), search),
    h("div", { class: "field" }, h("label", { for: statusFilter.id }, "Status"), statusFilter),
    h("div", { class: "field" }, h("label", { for: typeFilter.id }, "Task type"), typeFilter),
  );
  const summary = h("p", { class: "muted", id: uid("summary"), "aria-live": "polite" });
  const table = h("table", { class: "jobs", "aria-describedby": summary.id });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });

  fill(root,
    h("div", { class: "page-head" }, heading, create),
    filters, summary,
    h("div", { class: "table-wrap" }, table),
    pager,
  );

  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.q = search.value.trim(); state.page = 1; load(); }, 250);
  });
  statusFilter.addEventListener("change", () => { state.status = statusFilter.value; state.page = 1; load(); });
  typeFilter.addEventListener("change", () => { state.type = typeFilter.value; state.page = 1; load(); });

  async function load() {
    const seq = ++loadSeq;
    const params = { q: state.q, enabled: state.status, taskType: state.type };
    try {
      const first = await call(`/jobs${query({ ...params, pageSize: SERVER_PAGE, page: 1 })}`);
      let rows = first.data;
      const count = Number(first.headers.get("X-Total-Count") || rows.length);
      if (count > SERVER_PAGE && count <= LOAD_ALL_LIMIT) {
        const pages = Math.ceil(count / SERVER_PAGE);
        const rest = await Promise.all(
          Array.from({ length: pages - 1 }, (_, i) => get(`/jobs${query({ ...params, pageSize: SERVER_PAGE, page: i + 2 })}`)),
        );
        rows = rows.concat(...rest);
      }
      partial = count > LOAD_ALL_LIMIT;
      if (partial) {
        rows = (await call(`/jobs${query({ ...params, pageSize: PAGE_SIZE, page: state.page })}`)).data;
      }
      if (seq !== loadSeq) return; // a newer load is under way
      jobs = rows;
      total = count;
      render();
    } catch (error) {
      if (seq === loadSeq) fill(summary, `Could not load the jobs: ${error.message}`);
    }
  }

  function sorted() {
    const column = COLUMNS.find((c) => c.key === state.sort && c.sort);
    if (!column) return jobs;
    return [...jobs].sort((a, b) => {
      const x = column.sort(a);
      const y = column.sort(b);
      return (x < y ? -1 : x > y ? 1 : 0) * state.dir || a.name.localeCompare(b.name);
    });
  }

  function visible() {
    if (partial) return sorted();
    const start = (state.page - 1) * PAGE_SIZE;
    return sorted().slice(start, start + PAGE_SIZE);
  }

  function render() {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    if (state.page > pages) state.page = pages;
    const rows = visible();
    const first = total ? (state.page - 1) * PAGE_SIZE + 1 : 0;
    const last = (state.page - 1) * PAGE_SIZE + rows.length;
    fill(summary, total
      ? `Jobs ${first}–${last} of ${total}${partial ? " (sorted within this page)" : ""}`
      : (state.q || state.status || state.type ? "No job matches these filters." : "No jobs yet."));

    const head = h("tr", {}, COLUMNS.map((c) => headerCell(c)), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")));
    // a live refresh rebuilds the rows: the keyboard focus stays on the same control
    const focusKey = document.activeElement?.dataset?.focusKey;
    fill(table, h("thead", {}, head), h("tbody", {}, rows.map(row)));
    if (focusKey) table.querySelector(`[data-focus-key="${focusKey}"]`)?.focus();

    fill(pager,
      h("button", { type: "button", class: "button subtle", disabled: state.page <= 1, onclick: () => go(state.page - 1) }, "Previous"),
      h("span", { "aria-current": "page" }, `Page ${state.page} of ${pages}`),
      h("button", { type: "button", class: "button subtle", disabled: state.page >= pages, onclick: () => go(state.page + 1) }, "Next"),
    );
    fillRuns(rows);
  }

  function go(page) {
    state.page = page;
    if (partial) load(); else render();
  }

  function headerCell(column) {
    if (!column.sort) return h("th", { scope: "col" }, column.label);
    const active = state.sort === column.key;
    const direction = active ? (state.dir > 0 ? "ascending" : "descending") : "none";
    const button = h("button", { type: "button", class: "sort", onclick: () => {
      state.dir = active ? -state.dir : 1;
      state.sort = column.key;
      render();
    }, dataset: { focusKey: `sort:${column.key}` } }, column.label, h("span", { "aria-hidden": "true", class: "sort-mark" }, active ? (state.dir > 0 ? " ▲" : " ▼") : ""));
    return h("th", { scope: "col", "aria-sort": direction, dataset: { key: column.key } }, button);
  }

  function row(job) {
    const link = h("a", { href: `#/jobs/${job.id}`, dataset: { focusKey: `${job.id}:open` } }, job.name);
    return h("tr", { dataset: { jobId: job.id } },
      h("td", { "data-label": "Name" }, link, job.description ? h("div", { class: "muted small" }, job.description) : null),
      h("td", { "data-label": "Status" }, jobStatusBadge(job)),
      h("td", { "data-label": "Type" }, TYPE_LABEL[job.taskType] || job.taskType),
      h("td", { "data-label": "Schedule" }, h("code", {}, job.pattern), job.timezone !== "UTC" ? h("div", { class: "muted small" }, job.timezone) : null),
      h("td", { "data-label": "Last run", class: "last-run" }, h("span", { class: "muted" }, "…")),
      h("td", { "data-label": "Next run", class: "next-run" }, job.enabled ? h("span", { class: "muted" }, "…") : h("span", { class: "muted" }, "paused")),
      h("td", { "data-label": "Updated" }, timeEl(job.updatedAt)),
      h("td", { class: "row-actions" }, actions(job)),
    );
  }

  function actions(job) {
    const buttons = [];
    if (session.can("jobs:trigger")) {
      buttons.push(h("button", { type: "button", class: "button small", "aria-label": `Trigger ${job.name}`, dataset: { focusKey: `${job.id}:trigger` }, onclick: () => trigger(job) }, "Trigger"));
    }
    if (session.can("jobs:write")) {
      buttons.push(
        job.enabled
          ? h("button", { type: "button", class: "button small", "aria-label": `Pause ${job.name}`, dataset: { focusKey: `${job.id}:toggle` }, onclick: () => toggle(job, "disable") }, "Pause")
          : h("button", { type: "button", class: "button small", "aria-label": `Resume ${job.name}`, dataset: { focusKey: `${job.id}:toggle` }, onclick: () => toggle(job, "enable") }, "Resume"),
        h("button", { type: "button", class: "button small", "aria-label": `Edit ${job.name}`, dataset: { focusKey: `${job.id}:edit` }, onclick: () => edit(job) }, "Edit"),
        h("button", { type: "button", class: "button small danger", "aria-label": `Delete ${job.name}`, dataset: { focusKey: `${job.id}:delete` }, onclick: () => remove(job) }, "Delete"),
      );
    }
    return h("div", { class: "button-row" }, buttons);
  }

  async function fillRuns(rows) {
    await Promise.all(rows.map(async (job) => {
      if (!lastRuns.has(job.id)) {
        try {
          lastRuns.set(job.id, (await get(`/executions${query({ jobId: job.id, pageSize: 1 })}`))[0] || null);
        } catch {
          lastRuns.set(job.id, null);
        }
      }
      paintLastRun(job.id);
    }));
    const now = Date.now();
    const wanted = new Map();
    for (const job of rows) {
      if (!job.enabled) continue;
      const key = `${job.pattern}|${job.timezone}`;
      const known = nextRuns.get(key);
      if (!known || new Date(known).getTime() <= now) wanted.set(key, job);
    }
    await Promise.all([...wanted.entries()].map(async ([key, job]) => {
      try {
        const preview = await get(`/cron/preview${query({ pattern: job.pattern, timezone: job.timezone, count: 1 })}`);
        nextRuns.set(key, preview.next[0] || null);
      } catch {
        nextRuns.set(key, null);
      }
    }));
    for (const job of rows) paintNextRun(job);
  }

  function cell(jobId, cls) {
    return table.querySelector(`tr[data-job-id="${jobId}"] td.${cls}`);
  }

  function paintLastRun(jobId) {
    const td = cell(jobId, "last-run");
    if (!td) return;
    const run = lastRuns.get(jobId);
    if (!run) {
      fill(td, h("span", { class: "muted" }, "never"));
      return;
    }
    const at = run.startedAt || run.scheduledFor;
    fill(td, runBadge(run.status), " ", h("time", { datetime: at, title: at }, relative(at)));
  }

  function paintNextRun(job) {
    const td = cell(job.id, "next-run");
    if (!td || !job.enabled) return;
    const next = nextRuns.get(`${job.pattern}|${job.timezone}`);
    fill(td, next ? h("time", { datetime: next, title: next }, relative(next)) : h("span", { class: "muted" }, "—"));
  }

  async function trigger(job) {
    try {
      const result = await post(`/jobs/${job.id}/trigger`);
      toast(`Triggered ${job.name}`, "ok");
      if (lastRuns.get(job.id)?.id !== result.executionId) { // the stream may have told us first
        lastRuns.set(job.id, { id: result.executionId, status: "pending", scheduledFor: new Date().toISOString() });
        paintLastRun(job.id);
      }
    } catch (error) {
      toast(`Could not trigger ${job.name}: ${error.message}`, "bad");
    }
  }

  async function toggle(job, command) {
    try {
      await post(`/jobs/${job.id}/${command}`);
      toast(`${command === "enable" ? "Resumed" : "Paused"} ${job.name}`, "ok");
      await load();
      table.querySelector(`[data-focus-key="${job.id}:toggle"]`)?.focus();
      refreshStats();
    } catch (error) {
      toast(`Could not ${command} ${job.name}: ${error.message}`, "bad");
    }
  }

  async function edit(job) {
    const saved = await openJobForm(job);
    if (saved) {
      await load();
      refreshStats();
    }
  }

  async function remove(job) {
    const sure = await confirmAction(`Delete ${job.name}?`,
      "The job stops firing and leaves the list. Its history stays in the event log.", "Delete job");
    if (!sure) return;
    try {
      await call(`/jobs/${job.id}`, { method: "DELETE" });
      toast(`Deleted ${job.name}`, "ok");
      await load();
      refreshStats();
    } catch (error) {
      toast(error instanceof ApiError ? `Could not delete: ${error.message}` : String(error), "bad");
    }
  }

  const reload = throttle(load, 1000);
  const off = onEvent((event) => {
    const jobId = event.data?.jobId || event.subject;
    if (event.type === "poll" || /^scheduler\.job\.(created|updated|enabled|disabled|deleted)$/.test(event.type)) {
      if (jobId) lastRuns.delete(jobId);
      reload();
      return;
    }
    const status = {
      "scheduler.job.execution.started": "running",
      "scheduler.job.execution.succeeded": "succeeded",
      "scheduler.job.execution.failed": "failed",
      "scheduler.job.execution.retrying": "pending",
    }[event.type];
    if (status && jobId && event.data?.executionId) {
      const known = lastRuns.get(jobId);
      const scheduledFor = event.data.scheduledFor;
      if (!known || known.id === event.data.executionId || (scheduledFor || "") >= (known.scheduledFor || "")) {
        lastRuns.set(jobId, { id: event.data.executionId, status, scheduledFor, startedAt: status === "running" ? event.data.at : known?.startedAt });
        paintLastRun(jobId);
      }
    }
  });

  load();
  return off;
}

function select(options, value) {
  return h("select", { id: uid() }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}
