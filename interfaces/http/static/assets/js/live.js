// Live updates: the event stream (EventSource sends the session cookie), or polling when the
// session may not read events.

import { PREFIX, session } from "./api.js";

const TYPES = [
  "scheduler.job.created", "scheduler.job.updated", "scheduler.job.enabled",
  "scheduler.job.disabled", "scheduler.job.deleted", "scheduler.job.execution.started",
  "scheduler.job.execution.succeeded", "scheduler.job.execution.failed",
  "scheduler.job.execution.retrying", "scheduler.job.execution.skipped",
];
const POLL_MS = 15000;

const listeners = new Set();
let source = null;
let poller = null;

/** Call `fn(event)` for each live event ({type, subject, data, position}); returns an unsubscribe. */
export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function dispatch(envelope) {
  for (const fn of listeners) fn(envelope);
}

/** Start following; `status(text)` reports the connection state. */
export function startLive(status) {
  stopLive();
  if (!session.can("events:read")) {
    status("polling (no events:read)");
    poller = setInterval(() => dispatch({ type: "poll", subject: null, data: {} }), POLL_MS);
    return;
  }
  source = new EventSource(`${PREFIX}/events/stream?types=scheduler.job.*`);
  source.addEventListener("open", () => status("live"));
  source.addEventListener("error", () => status("reconnecting…"));
  for (const type of TYPES) {
    source.addEventListener(type, (message) => {
      try {
        dispatch(JSON.parse(message.data));
      } catch {
        // a frame we cannot read changes nothing on the page
      }
    });
  }
}

export function stopLive() {
  if (source) source.close();
  if (poller) clearInterval(poller);
  source = null;
  poller = null;
}
