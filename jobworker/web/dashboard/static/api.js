// The admin API as the page calls it: JSON in and out, the session's CSRF token on every
// mutating request, errors as ApiError with the API's own message.

const meta = document.querySelector('meta[name="jobworker-base"]');
export const BASE = meta ? meta.content : "";
export const API = `${BASE}/api`;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let csrfToken = "";
let unauthorized = () => {};

// The session's token, sent as X-CSRF-Token; `onUnauthorized` runs when a call answers 401
// (the session ended): the shell shows the login page.
export function useSessionToken(session, onUnauthorized) {
  csrfToken = session ? session.csrfToken : "";
  unauthorized = onUnauthorized;
}

export function apiUrl(path, query) {
  const url = new URL(API + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") {
      url.searchParams.set(name, String(value));
    }
  }
  return url.pathname + url.search;
}

async function call(method, path, { query, body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(apiUrl(path, query), {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && data.error) || `${response.status} ${response.statusText}`;
    if (response.status === 401 && path !== "/login" && path !== "/session") unauthorized();
    throw new ApiError(response.status, message);
  }
  return data;
}

export const api = {
  get: (path, query) => call("GET", path, { query }),
  post: (path, body) => call("POST", path, { body }),
  delete: (path) => call("DELETE", path),
};
