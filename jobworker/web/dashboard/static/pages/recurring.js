// The recurring (cron) definitions: each with its job, schedule, time zone, next fire time in
// the definition's zone and the viewer's, last fire, and whether it is enabled; an admin
// enables, disables or runs one now. The API decides what may be done to which definition (a
// user job's answers 403): the page shows its answer as it is.
import { api } from "../api.js";
import {
  ActionButton,
  ErrorNotice,
  KindBadge,
  Loading,
  isAdmin,
  useApi,
  useNow,
} from "../components.js";
import { relative, viewerTimeZone, zonedDateTime } from "../format.js";
import { html, useState } from "../lib.js";
import { Link, href } from "../router.js";
import { TypeName } from "../types.js";

export function RecurringPage({ session }) {
  const { data, error, reload } = useApi("/recurring");
  const [outcome, setOutcome] = useState(null);
  const admin = isAdmin(session);
  const viewerZone = viewerTimeZone();
  const now = useNow(30000);

  const done = (name, verb) => (failure, result) => {
    if (failure) setOutcome({ error: failure });
    else if (result && result.jobId) setOutcome({ name, jobId: result.jobId });
    else setOutcome({ text: `${name} ${verb}.` });
    reload();
  };
  const act = (name, action) => () =>
    api.post(`/recurring/${encodeURIComponent(name)}/${action}`);

  return html`
    <h1>Recurring</h1>
    ${outcome && outcome.error && html`<${ErrorNotice} error=${outcome.error} />`}
    ${outcome && outcome.text && html`<p class="notice ok acted" role="status">${outcome.text}</p>`}
    ${outcome &&
    outcome.jobId &&
    html`<p class="notice ok acted" role="status" data-run-job=${outcome.jobId}>
      ${outcome.name} enqueued now: job${" "}
      <${Link} to=${href(`/jobs/${outcome.jobId}`)} class="mono">${outcome.jobId}<//>
    </p>`}
    ${error && html`<${ErrorNotice} error=${error} />`}
    ${!data && !error && html`<${Loading} />`}
    ${data && data.recurring.length === 0 && html`<p class="muted">No recurring job is defined.
      Beat registers the <code>@job(kind="system", cron=...)</code> definitions of its module when it starts;
      <code>client.schedule_recurring(...)</code> adds others.</p>`}
    ${data &&
    data.recurring.length > 0 &&
    html`<div class="table-wrap">
      <table class="recurring">
        <thead><tr>
          <th>Name</th><th>Job</th><th>Schedule</th><th>Next fire</th>
          <th>Next fire, your time<span class="zone muted">${viewerZone}</span></th><th>Last fire</th><th>State</th>
          ${admin && html`<th><span class="visually-hidden">Actions</span></th>`}
        </tr></thead>
        <tbody>
          ${data.recurring.map(
            (item) => html`
              <tr key=${item.name} data-recurring=${item.name} data-enabled=${String(item.enabled)}>
                <td class="mono">${item.name}</td>
                <td>
                  <${Link} to=${href("/jobs", { type: item.jobType })} class="mono"><${TypeName} type=${item.jobType} /><//>
                  ${" "}<${KindBadge} kind=${item.kind} />
                </td>
                <td><code>${item.cron}</code><span class="zone muted">${item.timezone}</span></td>
                <td class="when" data-when="zone">
                  <${When} iso=${item.enabled ? item.nextFireAt : null} timeZone=${item.timezone}
                    now=${now} />
                </td>
                <td class="when" data-when="viewer">
                  <${When} iso=${item.enabled ? item.nextFireAt : null} timeZone=${viewerZone}
                    now=${now} />
                </td>
                <td class="when" data-when="last">
                  <${When} iso=${item.lastFireAt} timeZone=${viewerZone} now=${now} />
                </td>
                <td>
                  <span class="badge enabled-badge" data-enabled=${String(item.enabled)}>
                    ${item.enabled ? "enabled" : "disabled"}
                  </span>
                </td>
                ${admin &&
                html`<td><div class="actions">
                  ${item.enabled
                    ? html`<${ActionButton} aria-label=${`Disable ${item.name}`}
                        action=${act(item.name, "disable")}
                        onDone=${done(item.name, "disabled")}>Disable<//>`
                    : html`<${ActionButton} aria-label=${`Enable ${item.name}`}
                        action=${act(item.name, "enable")}
                        onDone=${done(item.name, "enabled")}>Enable<//>`}
                  <${ActionButton} aria-label=${`Run ${item.name} now`}
                    action=${act(item.name, "run")} onDone=${done(item.name, "run")}>Run now<//>
                </div></td>`}
              </tr>`,
          )}
        </tbody>
      </table>
    </div>`}
  `;
}

// A time in a zone with the zone's name, and how far off it is; "–" when there is none.
function When({ iso, timeZone, now }) {
  if (!iso) return html`<span class="muted">–</span>`;
  return html`<time datetime=${iso}>${zonedDateTime(iso, timeZone)}</time>
    <span class="zone muted">${relative(iso, now)}</span>`;
}
