// The queues: each with its depth (queued), running and other counts, and whether it is paused;
// an admin pauses and resumes them. The list is asked for again after each action and every
// few seconds.
import { api } from "../api.js";
import { ActionButton, ErrorNotice, Loading, isAdmin, useApi } from "../components.js";
import { approxCount, count } from "../format.js";
import { html, useEffect, useState } from "../lib.js";
import { Link, href } from "../router.js";

const REFRESH_MS = 5000;
const SHOWN = new Set(["queued", "running"]);

export function QueuesPage({ session }) {
  const { data, error, reload } = useApi("/queues");
  const [outcome, setOutcome] = useState(null);
  const admin = isAdmin(session);

  useEffect(() => {
    const timer = setInterval(reload, REFRESH_MS);
    return () => clearInterval(timer);
  }, [reload]);

  const done = (verb, name) => (failure) => {
    setOutcome(failure ? { error: failure } : { text: `Queue ${name} ${verb}.` });
    reload();
  };

  return html`
    <h1>Queues</h1>
    ${outcome && outcome.error && html`<${ErrorNotice} error=${outcome.error} />`}
    ${outcome && outcome.text && html`<p class="notice ok acted" role="status">${outcome.text}</p>`}
    ${error && html`<${ErrorNotice} error=${error} />`}
    ${!data && !error && html`<${Loading} />`}
    ${data && data.queues.length === 0 && html`<p class="muted">No queue has jobs or a pause yet.</p>`}
    ${data &&
    data.queues.length > 0 &&
    html`<div class="table-wrap">
      <table class="queues">
        <thead><tr>
          <th>Queue</th><th>State</th><th class="number">Queued</th><th class="number">Running</th>
          <th>Other jobs</th>${admin && html`<th><span class="visually-hidden">Actions</span></th>`}
        </tr></thead>
        <tbody>
          ${data.queues.map(
            (queue) => html`
              <tr key=${queue.name} data-queue=${queue.name} data-paused=${String(queue.paused)}>
                <td><${Link} to=${href("/jobs", { queue: queue.name })} class="mono">${queue.name}<//></td>
                <td>${queue.paused
                  ? html`<span class="badge paused-badge">paused</span>`
                  : html`<span class="badge">active</span>`}</td>
                <td class="number" data-count="queued">
                  ${approxCount(queue.counts.queued || 0, queue.estimated)}
                </td>
                <td class="number" data-count="running">
                  ${approxCount(queue.counts.running || 0, queue.estimated)}
                </td>
                <td><${OtherCounts} queue=${queue} /></td>
                ${admin &&
                html`<td>
                  ${queue.paused
                    ? html`<${ActionButton} aria-label=${`Resume ${queue.name}`}
                        action=${() => api.post(`/queues/${encodeURIComponent(queue.name)}/resume`)}
                        onDone=${done("resumed", queue.name)}>Resume<//>`
                    : html`<${ActionButton} aria-label=${`Pause ${queue.name}`}
                        action=${() => api.post(`/queues/${encodeURIComponent(queue.name)}/pause`)}
                        onDone=${done("paused", queue.name)}>Pause<//>`}
                </td>`}
              </tr>`,
          )}
        </tbody>
      </table>
    </div>`}
  `;
}

function OtherCounts({ queue }) {
  const others = Object.entries(queue.counts).filter(([status, n]) => !SHOWN.has(status) && n > 0);
  if (others.length === 0) return html`<span class="muted">none</span>`;
  return html`<span class="other-counts">
    ${others.map(
      ([status, n]) => html`<${Link} to=${href("/jobs", { queue: queue.name, status })}
        class=${`badge status-${status}`} data-status=${status}>
        ${status} ${queue.estimated ? approxCount(n, true) : count(n)}
      <//>`,
    )}
  </span>`;
}
