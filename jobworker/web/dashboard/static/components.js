// Pieces every page uses: loading data, a live EventSource, status badges, times, JSON blocks,
// buttons that act through the API and say how it went.
import { api, apiUrl } from "./api.js";
import { dateTime, prettyJson, relative } from "./format.js";
import { html, useCallback, useEffect, useRef, useState } from "./lib.js";

// Load `path` (with `query`) from the API; again when they change or `reload()` is called.
// Returns { data, error, loading, reload }.
export function useApi(path, query) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const key = apiUrl(path, query);
  const generation = useRef(0);
  const reload = useCallback(() => {
    const mine = ++generation.current;
    setState((old) => ({ ...old, loading: true }));
    api.get(path, query).then(
      (data) => mine === generation.current && setState({ data, error: null, loading: false }),
      (error) => mine === generation.current && setState({ data: null, error, loading: false }),
    );
  }, [key]);
  useEffect(() => {
    reload();
  }, [reload]);
  return { ...state, reload };
}

// Follow an SSE route of the API while the component is shown: `handlers` maps event names to
// functions of the parsed `data`. The browser reconnects by itself with Last-Event-ID.
// Returns the connection state: "connecting", "open" or "closed".
export function useEventSource(path, handlers, enabled = true) {
  const [state, setState] = useState("connecting");
  const current = useRef(handlers);
  current.current = handlers;
  useEffect(() => {
    if (!enabled || !path) {
      setState("closed");
      return undefined;
    }
    const source = new EventSource(apiUrl(path), { withCredentials: true });
    setState("connecting");
    source.onopen = () => setState("open");
    source.onerror = () => setState(source.readyState === EventSource.CLOSED ? "closed" : "connecting");
    const names = Object.keys(current.current);
    const listeners = names.map((name) => {
      const listener = (event) => {
        let data = null;
        try {
          data = JSON.parse(event.data);
        } catch {
          data = event.data;
        }
        const handler = current.current[name];
        if (handler) handler(data, event);
      };
      source.addEventListener(name, listener);
      return [name, listener];
    });
    return () => {
      for (const [name, listener] of listeners) source.removeEventListener(name, listener);
      source.close();
    };
  }, [path, enabled]);
  return state;
}

export function StatusBadge({ status }) {
  return html`<span class=${`badge status-${status}`} data-status=${status}>${status}</span>`;
}

export function KindBadge({ kind }) {
  return kind ? html`<span class=${`badge kind-${kind}`}>${kind}</span>` : null;
}

// A time in the viewer's zone, with how long ago (or how soon) it is in the tooltip.
export function Time({ iso, timeZone }) {
  if (!iso) return html`<span class="muted">–</span>`;
  return html`<time datetime=${iso} title=${relative(iso)}>${dateTime(iso, timeZone)}</time>`;
}

export function JsonBlock({ text, label }) {
  const pretty = prettyJson(text);
  if (!pretty) return html`<p class="muted">none</p>`;
  return html`<pre class="json" aria-label=${label}>${pretty}</pre>`;
}

export function ErrorNotice({ error }) {
  if (!error) return null;
  return html`<p class="notice error" role="alert">${error.message || String(error)}</p>`;
}

export function Loading() {
  return html`<p class="muted loading">Loading…</p>`;
}

// A button that runs `action` (a promise), disabled while it runs; reports success or the
// API's error through `onDone(error | null, result)`.
export function ActionButton({ action, onDone, children, confirm, danger, ...rest }) {
  const [busy, setBusy] = useState(false);
  const click = async () => {
    if (confirm && !window.confirm(confirm)) return;
    setBusy(true);
    try {
      const result = await action();
      if (onDone) onDone(null, result);
    } catch (error) {
      if (onDone) onDone(error, null);
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" class=${danger ? "danger" : ""} disabled=${busy}
    onClick=${click} ...${rest}>${children}</button>`;
}

export function isAdmin(session) {
  return Boolean(session && session.role === "admin");
}
