// The REST API, called with the session cookie; writes carry the CSRF header.

export const PREFIX = "/_/scheduler";

export const session = {
  authenticated: false,
  subject: null,
  tenant: null,
  scopes: [],
  csrfToken: null,
  can(scope) {
    return this.scopes.includes(scope);
  },
};

/** A refused request: `status`, and the RFC 9457 problem (`detail`, `errors`). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  /** The message for one field, if the problem names it. */
  fieldMessage(name) {
    const hit = (this.problem.errors || []).find((e) => e.field === name);
    return hit ? hit.detail : null;
  }
}

/** Call the API; resolves to {data, headers, status}. */
export async function call(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (!["GET", "HEAD"].includes(method) && session.csrfToken) {
    init.headers["X-CSRF-Token"] = session.csrfToken;
  }
  const response = await fetch(PREFIX + path, init);
  const text = response.status === 204 ? "" : await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && session.authenticated) {
      window.dispatchEvent(new CustomEvent("cronsource:signed-out"));
    }
    throw new ApiError(response.status, typeof data === "object" ? data : { detail: String(data) });
  }
  return { data, headers: response.headers, status: response.status };
}

export const get = async (path) => (await call(path)).data;
export const post = async (path, body) => (await call(path, { method: "POST", body })).data;

/** A query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Sign in with a token; fills `session`. */
export async function signIn(token) {
  const response = await fetch(`${PREFIX}/ui/login`, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ token }),
  });
  const data = await response.json();
  if (!response.ok) throw new ApiError(response.status, data);
  Object.assign(session, data);
  return data;
}

/** Who is signed in (the cookie is HttpOnly: only the server can tell). */
export async function loadSession() {
  const response = await fetch(`${PREFIX}/ui/session`, { credentials: "same-origin" });
  const data = await response.json();
  Object.assign(session, { scopes: [], csrfToken: null }, data);
  return session;
}

export async function signOut() {
  await call("/ui/logout", { method: "POST" });
  Object.assign(session, { authenticated: false, subject: null, scopes: [], csrfToken: null });
}
