// The create / edit form: both task types, cron presets with a live preview, policies, and
// secrets that are write-only (stored ones show as *** and are kept unless replaced).

import { ApiError, call, get, query } from "./api.js";
import { modal } from "./dialogs.js";
import { debounce, fill, h, pretty, timeEl, uid, when } from "./dom.js";

const MASK = "***";
const PRESETS = [
  ["", "Choose a preset…"],
  ["*/10 * * * * *", "Every 10 seconds"],
  ["* * * * *", "Every minute"],
  ["*/5 * * * *", "Every 5 minutes"],
  ["0 * * * *", "Every hour"],
  ["0 2 * * *", "Daily at 02:00"],
  ["0 9 * * 1-5", "Weekdays at 09:00"],
  ["0 9 * * 1", "Mondays at 09:00"],
  ["0 0 1 * *", "Monthly, on the 1st"],
];
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
const DEFAULTS = {
  retry: { maxRetries: 0, retryDelaySeconds: 60, backoff: "fixed", maxDelaySeconds: 3600 },
  concurrencyPolicy: "allow", misfirePolicy: "skip", catchUpWindowSeconds: 3600,
  pauseAfterFailures: null, jitterSeconds: 0,
};

let functionsCache = null;
let zones = null;

function timeZones() {
  if (!zones) {
    const listed = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    zones = ["UTC", ...listed.filter((z) => z !== "UTC")];
  }
  return zones;
}

/** JSON with sorted keys, to compare values whatever their key order. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

function input(attrs) {
  return h("input", { id: uid(), ...attrs });
}

function selectOf(options, value) {
  return h("select", { id: uid() }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

/** A labelled control with an optional hint and an inline error slot. */
function control(label, el, hint) {
  const error = h("p", { class: "field-error", id: uid("err"), hidden: true });
  const described = [error.id];
  const parts = [h("label", { for: el.id }, label), el];
  if (hint) {
    const hintEl = h("p", { class: "hint", id: uid("hint") }, hint);
    described.unshift(hintEl.id);
    parts.push(hintEl);
  }
  parts.push(error);
  el.setAttribute("aria-describedby", described.join(" "));
  const wrap = h("div", { class: "field" }, parts);
  return {
    wrap, el,
    setError(message) {
      error.hidden = !message;
      error.textContent = message || "";
      if (message) el.setAttribute("aria-invalid", "true");
      else el.removeAttribute("aria-invalid");
    },
  };
}

/** A JSON editor: a textarea whose content must parse (and pass `check`). */
function jsonControl(label, value, hint, check) {
  const area = h("textarea", { id: uid(), rows: 4, spellcheck: "false", class: "code" });
  area.value = value === undefined || value === null ? "" : pretty(value);
  const c = control(label, area, hint);
  c.parse = () => {
    const text = area.value.trim();
    if (!text) return { ok: true, value: undefined };
    try {
      const parsed = JSON.parse(text);
      const problem = check ? check(parsed) : null;
      return problem ? { ok: false, message: problem } : { ok: true, value: parsed };
    } catch (e) {
      return { ok: false, message: `Not valid JSON: ${e.message}` };
    }
  };
  return c;
}

function numberControl(label, value, attrs = {}) {
  return control(label, input({ type: "number", inputmode: "numeric", value: value ?? "", ...attrs }));
}

/** Open the form; resolves to the saved job, or undefined when cancelled. */
export async function openJobForm(job) {
  if (!functionsCache) {
    try {
      functionsCache = await get("/functions");
    } catch {
      functionsCache = [];
    }
  }
  const functions = functionsCache;
  return modal(job ? `Edit ${job.name}` : "New job", (body, close) => build(body, close, job, functions), { wide: true });
}

function build(body, close, job, functions) {
  const base = { ...DEFAULTS, ...(job || {}), retry: { ...DEFAULTS.retry, ...(job?.retry || {}) } };
  const config = job?.taskConfig || {};
  const summary = h("div", { class: "error-summary", role: "alert", tabindex: "-1", hidden: true });

  // -- the job
  const name = control("Name", input({ value: base.name || "", required: true, autocomplete: "off", pattern: "[A-Za-z0-9._\\-]{1,200}" }),
    "Letters, digits, dot, dash, underscore; unique in its application.");
  const app = job ? null : control("Application", input({ value: "", autocomplete: "off", placeholder: "default" }), "An application id; jobs are unique by name inside one.");
  const description = control("Description", h("textarea", { id: uid(), rows: 2 }, base.description || ""));
  const enabled = job ? null : input({ type: "checkbox", checked: true });

  // -- the schedule
  const pattern = control("Cron pattern", input({ value: base.pattern || "0 2 * * *", required: true, autocomplete: "off", spellcheck: "false", class: "code" }),
    "5 fields (minute hour day month weekday), 6 with seconds first, or @hourly, @daily…");
  const preset = control("Preset", selectOf(PRESETS, ""));
  const zoneList = h("datalist", { id: uid("zones") }, timeZones().map((z) => h("option", { value: z })));
  const timezone = control("Time zone", input({ value: base.timezone || "UTC", list: zoneList.id, autocomplete: "off", required: true }), "IANA name, e.g. Europe/Berlin");
  const previewList = h("ol", { class: "preview", "aria-label": "Next 5 runs" });
  const previewBox = h("div", { class: "preview-box", "aria-live": "polite" }, h("h3", {}, "Next 5 runs"), previewList);

  // -- the task
  const isFunction = base.taskType === "FunctionTask";
  const typeName = uid("type");
  const typeHttp = input({ type: "radio", name: typeName, value: "HttpInvokerTask", checked: !isFunction });
  const typeFunction = input({ type: "radio", name: typeName, value: "FunctionTask", checked: isFunction });
  const taskType = h("fieldset", { class: "inline" }, h("legend", {}, "Task type"),
    h("label", { class: "check" }, typeHttp, " HTTP request"),
    h("label", { class: "check" }, typeFunction, " Function"));

  const http = isFunction ? {} : config;
  const method = control("Method", selectOf(METHODS.map((m) => [m, m]), (http.method || "GET").toUpperCase()));
  const usesEndpoint = Boolean(http.endpoint) && !http.url;
  const url = control(usesEndpoint ? "Endpoint" : "URL", input({ type: "text", inputmode: "url", value: usesEndpoint ? http.endpoint : http.url || "", autocomplete: "off", placeholder: "https://example.com/hook" }),
    (http.url || "").includes(MASK) ? "This URL holds a masked secret: enter it in full again if you change this task." : "May hold ${T:YYYY-MM-DD} parameters.");
  const path = usesEndpoint ? control("Path", input({ value: http.path || "", autocomplete: "off" })) : null;
  const httpTimeout = numberControl("Timeout (ms)", http.timeout ?? 30000, { min: 1, max: 86400000 });
  const headers = jsonControl("Headers (JSON object)", http.headers, `Values shown as ${MASK} are stored secrets: leave ${MASK} to keep one.`,
    (v) => (v && typeof v === "object" && !Array.isArray(v) && Object.values(v).every((x) => typeof x === "string") ? null : "Headers must be an object of strings"));
  const httpBody = jsonControl("Body (JSON)", http.body, "Sent as JSON; empty for none.");
  const storedAuth = http.auth || null;
  const authMethod = control("Authentication", selectOf([["", "None"], ["bearer", "Bearer token"], ["basic", "Basic (user and password)"]], storedAuth?.authMethod || ""));
  const keep = storedAuth ? "Stored: leave empty to keep it" : "";
  const token = control("Token", input({ type: "password", autocomplete: "new-password", placeholder: keep }), "Write-only: never shown again.");
  const username = control("User name", input({ value: storedAuth?.username || "", autocomplete: "off" }));
  const password = control("Password", input({ type: "password", autocomplete: "new-password", placeholder: keep }), "Write-only: never shown again.");
  const authBox = h("div", { class: "grid-2" });
  const showAuth = () => {
    const kind = authMethod.el.value;
    fill(authBox, kind === "bearer" ? token.wrap : null, kind === "basic" ? [username.wrap, password.wrap] : null);
  };
  authMethod.el.addEventListener("change", showAuth);
  showAuth();
  const httpPart = h("div", { class: "task-part" },
    h("div", { class: "grid-url" }, method.wrap, url.wrap), path?.wrap,
    headers.wrap, httpBody.wrap, authMethod.wrap, authBox, httpTimeout.wrap);

  const fnConfig = isFunction ? config : {};
  const fnNames = functions.map((f) => [f.name, f.name]);
  if (fnConfig.function && !fnNames.some(([n]) => n === fnConfig.function)) fnNames.unshift([fnConfig.function, `${fnConfig.function} (not registered)`]);
  const fn = control("Function", selectOf(fnNames, fnConfig.function || fnNames[0]?.[0]));
  const fnDoc = h("p", { class: "hint" });
  const showDoc = () => { fnDoc.textContent = functions.find((f) => f.name === fn.el.value)?.doc || ""; };
  fn.el.addEventListener("change", showDoc);
  showDoc();
  const payload = jsonControl("Payload (JSON object)", fnConfig.payload, "Given to the function; empty for {}.",
    (v) => (v && typeof v === "object" && !Array.isArray(v) ? null : "The payload must be a JSON object"));
  const fnTimeout = numberControl("Timeout (ms)", fnConfig.timeout ?? "", { min: 1, max: 86400000, placeholder: "none" });
  const functionPart = h("div", { class: "task-part" }, fn.wrap, fnDoc, payload.wrap, fnTimeout.wrap);
  const taskBox = h("div");
  const showTask = () => fill(taskBox, typeFunction.checked ? functionPart : httpPart);
  typeHttp.addEventListener("change", () => { showTask(); validate(); });
  typeFunction.addEventListener("change", () => { showTask(); validate(); });
  showTask();

  // -- policies
  const maxRetries = numberControl("Max retries", base.retry.maxRetries, { min: 0, max: 100 });
  const retryDelay = numberControl("Retry delay (s)", base.retry.retryDelaySeconds, { min: 0 });
  const backoff = control("Backoff", selectOf([["fixed", "Fixed"], ["exponential", "Exponential"]], base.retry.backoff));
  const maxDelay = numberControl("Max delay (s)", base.retry.maxDelaySeconds, { min: 0 });
  const concurrency = control("Concurrency", selectOf([["allow", "Allow overlapping runs"], ["skip", "Skip while running"], ["queue", "Queue one"], ["replace", "Replace the running one"]], base.concurrencyPolicy));
  const misfire = control("Missed runs", selectOf([["skip", "Skip them"], ["runOnce", "Run the latest once"], ["runAll", "Run each one"]], base.misfirePolicy));
  const catchUp = numberControl("Catch-up window (s)", base.catchUpWindowSeconds, { min: 0 });
  const pauseAfter = numberControl("Pause after N failures", base.pauseAfterFailures ?? "", { min: 1, max: 1000, placeholder: "never" });
  const jitter = numberControl("Jitter (s)", base.jitterSeconds, { min: 0, max: 3600 });
  const policies = h("details", { class: "policies" }, h("summary", {}, "Retries, concurrency and missed runs"),
    h("div", { class: "grid-4" }, maxRetries.wrap, retryDelay.wrap, backoff.wrap, maxDelay.wrap),
    h("div", { class: "grid-3" }, concurrency.wrap, misfire.wrap, catchUp.wrap),
    h("div", { class: "grid-2" }, pauseAfter.wrap, jitter.wrap));

  const cancel = h("button", { type: "button", class: "button subtle", onclick: () => close(undefined) }, "Cancel");
  const save = h("button", { type: "submit", class: "button primary" }, job ? "Save changes" : "Create job");
  const form = h("form", { class: "job-form", novalidate: true },
    summary,
    h("fieldset", {}, h("legend", {}, "Job"), h("div", { class: "grid-2" }, name.wrap, app?.wrap), description.wrap,
      enabled ? h("label", { class: "check" }, enabled, " Enabled: fire on schedule once created") : null),
    h("fieldset", {}, h("legend", {}, "Schedule"),
      h("div", { class: "grid-2" }, pattern.wrap, preset.wrap), timezone.wrap, zoneList, previewBox),
    h("fieldset", {}, h("legend", {}, "Task"), taskType, taskBox),
    policies,
    h("div", { class: "actions sticky" }, cancel, save),
  );
  body.append(form);
  queueMicrotask(() => name.el.focus());

  // -- live checks: the preview, and JSON editors
  let patternError = null;
  let previewSeq = 0;
  async function preview() {
    const seq = ++previewSeq;
    const p = pattern.el.value.trim();
    const tz = timezone.el.value.trim() || "UTC";
    if (!p) {
      patternError = "A cron pattern is required";
      showPreview(seq, null, { pattern: patternError });
      return;
    }
    try {
      const result = await get(`/cron/preview${query({ pattern: p, timezone: tz, count: 5 })}`);
      showPreview(seq, result.next, {});
    } catch (error) {
      const fields = {};
      if (error instanceof ApiError) {
        for (const e of error.problem.errors || []) fields[e.field] = e.detail;
        if (!Object.keys(fields).length) fields.pattern = error.message;
      } else {
        fields.pattern = String(error);
      }
      showPreview(seq, null, fields);
    }
  }
  function showPreview(seq, instants, errors) {
    if (seq !== previewSeq) return; // an answer to an older pattern
    pattern.setError(errors.pattern || null);
    timezone.setError(errors.timezone || null);
    patternError = errors.pattern || errors.timezone || null;
    const tz = timezone.el.value.trim() || "UTC";
    if (instants) {
      fill(previewList, instants.map((i) => h("li", {}, timeEl(i, tz), tz !== "UTC" ? h("span", { class: "muted small" }, ` (${when(i, "UTC")})`) : null)));
    } else {
      fill(previewList, h("li", { class: "muted" }, "No preview while the schedule is invalid."));
    }
    validate();
  }
  const schedulePreview = debounce(preview, 250);
  pattern.el.addEventListener("input", schedulePreview);
  timezone.el.addEventListener("input", schedulePreview);
  timezone.el.addEventListener("change", schedulePreview);
  preset.el.addEventListener("change", () => {
    if (!preset.el.value) return;
    pattern.el.value = preset.el.value;
    preset.el.value = "";
    preview();
  });

  const jsonFields = () => (typeFunction.checked ? [payload] : [headers, httpBody]);
  function validate() {
    let ok = !patternError;
    for (const c of jsonFields()) {
      const parsed = c.parse();
      c.setError(parsed.ok ? null : parsed.message);
      ok = ok && parsed.ok;
    }
    save.disabled = !ok;
    return ok;
  }
  for (const c of [headers, httpBody, payload]) c.el.addEventListener("input", debounce(validate, 200));
  preview();

  // -- saving
  function num(c) {
    const v = c.el.value.trim();
    return v === "" ? null : Number(v);
  }
  function taskConfig() {
    if (typeFunction.checked) {
      const out = { function: fn.el.value, payload: payload.parse().value || {} };
      if (num(fnTimeout) !== null) out.timeout = num(fnTimeout);
      return out;
    }
    const out = { method: method.el.value };
    if (path) {
      out.endpoint = url.el.value.trim();
      out.path = path.el.value.trim();
    } else {
      out.url = url.el.value.trim();
    }
    const hs = headers.parse().value;
    if (hs && Object.keys(hs).length) out.headers = hs;
    const b = httpBody.parse().value;
    if (b !== undefined) out.body = b;
    const kind = authMethod.el.value;
    const sameKind = storedAuth && storedAuth.authMethod === kind;
    if (kind === "bearer") out.auth = { authMethod: "bearer", token: token.el.value || (sameKind ? MASK : "") };
    if (kind === "basic") out.auth = { authMethod: "basic", username: username.el.value, password: password.el.value || (sameKind ? MASK : "") };
    if (num(httpTimeout) !== null) out.timeout = num(httpTimeout);
    return out;
  }
  function document_() {
    const doc = {
      name: name.el.value.trim(),
      description: description.el.value.trim() || null,
      pattern: pattern.el.value.trim(),
      timezone: timezone.el.value.trim() || "UTC",
      taskType: typeFunction.checked ? "FunctionTask" : "HttpInvokerTask",
      taskConfig: taskConfig(),
      retry: { maxRetries: num(maxRetries) ?? 0, retryDelaySeconds: num(retryDelay) ?? 60, backoff: backoff.el.value, maxDelaySeconds: num(maxDelay) ?? 3600 },
      concurrencyPolicy: concurrency.el.value,
      misfirePolicy: misfire.el.value,
      catchUpWindowSeconds: num(catchUp) ?? 3600,
      pauseAfterFailures: num(pauseAfter),
      jitterSeconds: num(jitter) ?? 0,
    };
    if (!job) {
      if (app.el.value.trim()) doc.applicationId = app.el.value.trim();
      doc.enabled = enabled.checked;
    }
    return doc;
  }

  const byField = {
    name, description, pattern, timezone, applicationId: app,
    "taskConfig.url": url, "taskConfig.endpoint": url, "taskConfig.path": path, "taskConfig.method": method,
    "taskConfig.headers": headers, "taskConfig.body": httpBody, "taskConfig.timeout": typeFunction.checked ? fnTimeout : httpTimeout,
    "taskConfig.auth.token": token, "taskConfig.auth.password": password, "taskConfig.auth.username": username,
    "taskConfig.function": fn, "taskConfig.payload": payload,
    "retry.maxRetries": maxRetries, "retry.retryDelaySeconds": retryDelay, "retry.maxDelaySeconds": maxDelay,
    catchUpWindowSeconds: catchUp, pauseAfterFailures: pauseAfter, jitterSeconds: jitter,
  };
  function showErrors(error) {
    const items = (error.problem?.errors || []).map((e) => {
      const target = byField[e.field] || byField[e.field.split(".").slice(0, 2).join(".")];
      if (target) {
        target.setError(e.detail);
        if (["retry", "catchUpWindowSeconds", "pauseAfterFailures", "jitterSeconds"].some((k) => e.field.startsWith(k))) policies.open = true;
      }
      return h("li", {}, e.detail);
    });
    fill(summary, h("p", {}, error.status === 412 ? "This job was changed by someone else since you opened it. Close the form and open it again." : `Not saved: ${error.message}`),
      items.length ? h("ul", {}, items) : null);
    summary.hidden = false;
    summary.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const c of Object.values(byField)) c?.setError?.(null);
    summary.hidden = true;
    if (!validate()) return;
    const doc = document_();
    save.disabled = true;
    try {
      let saved;
      if (job) {
        const changes = Object.fromEntries(Object.entries(doc).filter(([k, v]) => canonical(v) !== canonical(job[k] ?? null)));
        if (!Object.keys(changes).length) {
          close(undefined);
          return;
        }
        saved = (await call(`/jobs/${job.id}`, { method: "PUT", body: changes, headers: { "If-Match": `"${job.version}"` } })).data;
      } else {
        saved = (await call("/jobs", { method: "POST", body: doc })).data;
      }
      close(saved);
    } catch (error) {
      save.disabled = false;
      if (error instanceof ApiError) showErrors(error);
      else showErrors(new ApiError(0, { detail: String(error) }));
    }
  });
}
