// A job's kept events in order (GET jobs/{id}/events), a page at a time: the box scrolls to the
// newest loaded, and "Load newer events" fetches the next page after the last one shown.
import { api } from "../api.js";
import { ErrorNotice, Loading } from "../components.js";
import { count, dateTime } from "../format.js";
import { html, useEffect, useRef, useState } from "../lib.js";

const PAGE = 100;
const SNIPPET = 300;

export function Timeline({ jobId, version }) {
  const [state, setState] = useState({ events: [], next: null, loading: true, error: null });
  const generation = useRef(0);
  const box = useRef(null);

  const load = (after, append) => {
    const mine = ++generation.current;
    setState((old) => ({ ...old, loading: true, error: null }));
    api
      .get(`/jobs/${encodeURIComponent(jobId)}/events`, { after_sequence: after, limit: PAGE })
      .then(
        (page) =>
          mine === generation.current &&
          setState((old) => ({
            events: append ? [...old.events, ...page.events] : page.events,
            next: page.next,
            loading: false,
            error: null,
          })),
        (error) => mine === generation.current && setState((old) => ({ ...old, loading: false, error })),
      );
  };

  useEffect(() => load(0, false), [jobId, version]);
  useEffect(() => {
    if (box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [state.events.length]);

  const { events, next, loading, error } = state;
  return html`<section class="card timeline-card" aria-label="Timeline">
    <h2>Timeline <span class="muted">(${count(events.length)}${next ? "+" : ""} kept events)</span></h2>
    <${ErrorNotice} error=${error} />
    ${events.length === 0 && loading ? html`<${Loading} />` : null}
    ${events.length === 0 && !loading && !error ? html`<p class="muted">No events kept.</p>` : null}
    ${events.length > 0 &&
    html`<ol class="timeline" ref=${box}>
      ${events.map(
        (event) => html`<li key=${event.seq} data-kind=${event.kind} data-seq=${event.seq}>
          <span class="seq muted">#${event.seq}</span>
          <time datetime=${event.occurredAt} class="muted">${dateTime(event.occurredAt)}</time>
          <span class=${`badge event-${event.kind}`}>${event.kind}</span>
          <span class="what">${describe(event)}</span>
        </li>`,
      )}
    </ol>`}
    ${next !== null &&
    html`<button type="button" disabled=${loading} onClick=${() => load(next, true)}>
      Load newer events
    </button>`}
  </section>`;
}

function clip(text) {
  const value = String(text);
  return value.length > SNIPPET ? `${value.slice(0, SNIPPET)}…` : value;
}

// One line of text for an event (its fields by kind, as docs/web.md lists them).
export function describe(event) {
  switch (event.kind) {
    case "lifecycle": {
      const parts = [String(event.status)];
      if (event.attempt) parts.push(`attempt ${event.attempt}`);
      if (event.retryAt) parts.push(`retry at ${dateTime(event.retryAt)}`);
      return parts.join(", ") + (event.error ? `: ${clip(event.error)}` : "");
    }
    case "progress": {
      const numbers =
        event.done === null || event.done === undefined
          ? ""
          : event.total === null || event.total === undefined
            ? `${event.done}`
            : `${event.done} / ${event.total}`;
      return [numbers, event.label || ""].filter(Boolean).join(" · ") || "progress";
    }
    case "log":
      return `${event.level}: ${clip(event.message)}${event.dataJson ? ` ${clip(event.dataJson)}` : ""}`;
    case "chunk":
      return clip(typeof event.value === "string" ? event.value : JSON.stringify(event.value));
    case "metric":
      return `${event.name} = ${event.value}`;
    case "result":
      return event.resultJson === null ? "result (too large to keep)" : clip(event.resultJson);
    default:
      return "";
  }
}
