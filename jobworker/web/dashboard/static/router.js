// Where the page is: the path under the dashboard's base and its query string. Pages are plain
// URLs (history API), so a filtered list or a job can be linked to and reloaded.
import { BASE } from "./api.js";
import { html, useEffect, useState } from "./lib.js";

const PATTERNS = [
  ["overview", /^\/?$/],
  ["login", /^\/login$/],
  ["jobs", /^\/jobs$/],
  ["job", /^\/jobs\/(?<id>[^/]+)$/],
  ["recurring", /^\/recurring$/],
  ["queues", /^\/queues$/],
];

const listeners = new Set();

export function currentRoute() {
  let path = location.pathname;
  if (BASE && path.startsWith(BASE)) path = path.slice(BASE.length);
  if (path === "") path = "/";
  const query = new URLSearchParams(location.search);
  for (const [page, pattern] of PATTERNS) {
    const found = pattern.exec(path);
    if (found) return { page, params: found.groups || {}, query, path };
  }
  return { page: "missing", params: {}, query, path };
}

// The URL of a dashboard path with a query (an object; empty values left out).
export function href(path, query) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return `${BASE}${path === "/" && BASE ? "/" : path}${text ? `?${text}` : ""}`;
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  for (const listener of listeners) listener();
}

addEventListener("popstate", () => {
  for (const listener of listeners) listener();
});

export function useRoute() {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const changed = () => setRoute(currentRoute());
    listeners.add(changed);
    return () => listeners.delete(changed);
  }, []);
  return route;
}

// A link that changes the page without reloading it (a modified click still opens a tab).
export function Link({ to, children, ...rest }) {
  const click = (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    navigate(to);
  };
  return html`<a href=${to} onClick=${click} ...${rest}>${children}</a>`;
}
