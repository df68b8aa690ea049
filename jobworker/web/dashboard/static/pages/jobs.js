// The jobs list: filters kept in the URL (a filtered list can be shared, reloaded and walked
// back and forth), keyset pages (`before` = the last page's `next`), and for admins a selection
// with bulk cancel / retry / delete, each offered only for the selected jobs it applies to.
import {
  ErrorNotice,
  KindBadge,
  Loading,
  StatusBadge,
  Time,
  isAdmin,
  useApi,
} from "../components.js";
import { dateTime, duration, idTime } from "../format.js";
import { html, useEffect, useRef, useState } from "../lib.js";
import { Link, href, navigate } from "../router.js";
import { TypeName } from "../types.js";
import { ACTIONS, ConfirmButton, eachJob, summary } from "./job_actions.js";

const STATUSES = [
  "queued",
  "scheduled",
  "awaiting",
  "running",
  "succeeded",
  "failed",
  "dead",
  "cancelled",
];
// [query name, label, placeholder]: the free-text filters, sent as typed (debounced).
const TEXT_FILTERS = [
  ["type", "Job type", "exact, e.g. reports.build"],
  ["queue", "Queue", "any"],
  ["idempotency_key", "Idempotency key", "exact"],
  ["search", "Search", "type or id"],
];
const FILTERS = ["status", "kind", ...TEXT_FILTERS.map(([name]) => name)];
const DEFAULT_LIMIT = 50;
const TYPING_PAUSE_MS = 300;
const REFRESH_MS = 5000;
const BULK = ["cancel", "retry", "delete"];

// On a phone the filters start folded away, unless one is set.
function narrow() {
  return matchMedia("(max-width: 640px)").matches;
}

function filterOf(query) {
  return Object.fromEntries(FILTERS.map((name) => [name, query.get(name) || ""]));
}

function textOf(filter) {
  return Object.fromEntries(TEXT_FILTERS.map(([name]) => [name, filter[name]]));
}

function limitOf(query) {
  const limit = Number.parseInt(query.get("limit") || "", 10);
  return limit >= 1 && limit <= 500 ? limit : DEFAULT_LIMIT;
}

export function JobsPage({ route, session }) {
  const admin = isAdmin(session);
  const filter = filterOf(route.query);
  const before = route.query.get("before") || "";
  const limit = limitOf(route.query);
  const search = route.query.toString();

  // The text fields as typed; the URL follows them after a pause in typing.
  const [draft, setDraft] = useState(() => textOf(filter));
  const draftNow = useRef(draft);
  const written = useRef(search);
  const typing = useRef(0);
  useEffect(() => {
    if (search !== written.current) {
      // Back/forward or a link changed the URL: the fields show its filter.
      written.current = search;
      draftNow.current = textOf(filter);
      setDraft(draftNow.current);
    }
  }, [search]);
  useEffect(() => () => clearTimeout(typing.current), []);

  const go = (changes, replace) => {
    clearTimeout(typing.current);
    const query = {
      ...filter,
      ...draftNow.current,
      limit: limit === DEFAULT_LIMIT ? "" : limit,
      before,
      ...changes,
    };
    const url = href("/jobs", query);
    written.current = new URL(url, location.origin).searchParams.toString();
    navigate(url, { replace });
  };
  const typed = (name, value) => {
    draftNow.current = { ...draftNow.current, [name]: value };
    setDraft(draftNow.current);
    clearTimeout(typing.current);
    typing.current = setTimeout(() => go({ before: "" }, true), TYPING_PAUSE_MS);
  };

  const { data, error, loading, reload } = useApi("/jobs", { ...filter, before, limit });
  const jobs = (data && data.jobs) || [];
  const active = FILTERS.filter((name) => filter[name]).length;

  const [selected, setSelected] = useState(() => new Set());
  const [outcome, setOutcome] = useState(null);
  const [live, setLive] = useState(true);
  useEffect(() => setSelected(new Set()), [search]);
  const chosen = jobs.filter((job) => selected.has(job.jobId));

  // The first page follows new jobs by itself, unless a selection is being acted on.
  useEffect(() => {
    if (!live || before || selected.size > 0) return undefined;
    const timer = setInterval(() => document.hidden || reload(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [live, before, selected.size, reload]);

  const toggle = (id, on) =>
    setSelected((old) => {
      const next = new Set(old);
      if (on) next.add(id);
      else next.delete(id);
      return next;
    });
  const toggleAll = (on) => setSelected(on ? new Set(jobs.map((job) => job.jobId)) : new Set());

  const bulk = (name) => async () => {
    const action = ACTIONS[name];
    const ids = chosen.filter(action.applies).map((job) => job.jobId);
    const results = await eachJob(ids, action.call);
    setOutcome({ text: summary(action, results), refused: results.some((r) => r.error) });
    setSelected(new Set());
    reload();
  };

  return html`
    <h1>Jobs</h1>
    <details class="filter-box" open=${!narrow() || active > 0}>
    <summary>Filters${active ? ` (${active} set)` : ""}</summary>
    <form class="toolbar filters" role="search" aria-label="Filter jobs"
      onSubmit=${(event) => {
        event.preventDefault();
        go({ before: "" }, true);
      }}>
      <label>Status
        <select name="status" value=${filter.status}
          onChange=${(e) => go({ status: e.currentTarget.value, before: "" }, false)}>
          <option value="">any</option>
          ${STATUSES.map((status) => html`<option value=${status}>${status}</option>`)}
        </select>
      </label>
      <label>Kind
        <select name="kind" value=${filter.kind}
          onChange=${(e) => go({ kind: e.currentTarget.value, before: "" }, false)}>
          <option value="">any</option>
          <option value="user">user</option>
          <option value="system">system</option>
        </select>
      </label>
      ${TEXT_FILTERS.map(
        ([name, label, placeholder]) => html`
          <label>${label}
            <input name=${name} type="search" value=${draft[name]} placeholder=${placeholder}
              autocomplete="off" spellcheck="false"
              onInput=${(e) => typed(name, e.currentTarget.value)} />
          </label>`,
      )}
      <label class="inline">
        <input type="checkbox" checked=${live} onChange=${(e) => setLive(e.currentTarget.checked)} />
        Refresh every 5 s
      </label>
    </form>
    </details>

    ${outcome &&
    html`<p class=${`notice ${outcome.refused ? "error" : "ok"}`} role="status" data-outcome>
      ${outcome.text}
      <button type="button" class="link" onClick=${() => setOutcome(null)}>Dismiss</button>
    </p>`}

    ${admin &&
    html`<div class="toolbar bulk" aria-label="Act on the selected jobs" role="group">
      <span class="muted" data-selected=${chosen.length}>${chosen.length} selected</span>
      ${BULK.map((name) => {
        const action = ACTIONS[name];
        const n = chosen.filter(action.applies).length;
        const verb = action.verb[0].toUpperCase() + action.verb.slice(1);
        const skipped = chosen.length - n;
        return html`<${ConfirmButton} key=${name} data-action=${name} label=${`${verb} (${n})`}
          disabled=${n === 0} danger=${name !== "retry"} yes=${`Yes, ${action.verb} ${n}`}
          question=${`${verb} ${n} job${n === 1 ? "" : "s"}?${
            skipped ? ` (${skipped} selected job${skipped === 1 ? "" : "s"} left as they are: not applicable)` : ""
          }`}
          run=${bulk(name)} />`;
      })}
    </div>`}

    <${ErrorNotice} error=${error} />
    ${data && data.scanLimited &&
    html`<p class="notice" data-scan-limited>
      This filter is not served by an index: the search stopped at its scan budget, having
      looked back to jobs enqueued <${Time} iso=${data.next ? idTime(data.next) : null} />.
      Older jobs were not looked at yet.
      <button type="button" onClick=${() => go({ before: data.next }, false)}
        disabled=${!data.next} data-next=${data.next || ""}>Search older</button>
    </p>`}
    ${data && data.unreadable && data.unreadable.length > 0 &&
    html`<p class="notice error">Rows that could not be read: ${data.unreadable.join(", ")}</p>`}
    ${!data && loading ? html`<${Loading} />` : null}
    ${data &&
    html`<${JobTable} jobs=${jobs} admin=${admin} selected=${selected} onToggle=${toggle}
      onToggleAll=${toggleAll} />`}
    ${data && jobs.length === 0 &&
    html`<p class="muted empty">${
      data.scanLimited
        ? "No job matches among the rows scanned so far."
        : `No job ${before ? "older than these " : ""}matches.`
    }</p>`}

    <nav class="pager" aria-label="Pages">
      <button type="button" disabled=${!before} onClick=${() => go({ before: "" }, false)}>
        Newest
      </button>
      <button type="button" disabled=${!(data && data.next)}
        onClick=${() => go({ before: data.next }, false)}>Older →</button>
      <label class="inline">Per page
        <select value=${String(limit)}
          onChange=${(e) => go({ limit: e.currentTarget.value, before: "" }, false)}>
          ${[...new Set([25, 50, 100, 200, limit])]
            .sort((a, b) => a - b)
            .map((n) => html`<option value=${String(n)}>${n}</option>`)}
        </select>
      </label>
    </nav>
  `;
}

function JobTable({ jobs, admin, selected, onToggle, onToggleAll }) {
  const picked = jobs.filter((job) => selected.has(job.jobId)).length;
  return html`<div class="table-wrap">
    <table class="jobs" aria-label="Jobs">
      <thead>
        <tr>
          ${admin &&
          html`<th class="pick">
            <input type="checkbox" aria-label="Select every job on this page"
              checked=${jobs.length > 0 && picked === jobs.length}
              indeterminate=${picked > 0 && picked < jobs.length}
              onChange=${(e) => onToggleAll(e.currentTarget.checked)} />
          </th>`}
          <th>Job</th>
          <th>Type</th>
          <th>Kind</th>
          <th>Status</th>
          <th>Queue</th>
          <th>Attempt</th>
          <th>Enqueued</th>
          <th>Started / finished</th>
          <th>Error</th>
        </tr>
      </thead>
      <tbody>
        ${jobs.map(
          (job) => html`<${JobRow} key=${job.jobId} job=${job} admin=${admin}
            selected=${selected.has(job.jobId)} onToggle=${onToggle} />`,
        )}
      </tbody>
    </table>
  </div>`;
}

// The random tail of a UUIDv7: its first digits are a timestamp that jobs enqueued within the
// same minute share.
function idTail(id) {
  return `…${String(id).slice(-12)}`;
}

function firstLine(text, length = 120) {
  const line = String(text).split("\n", 1)[0];
  return line.length > length ? `${line.slice(0, length)}…` : line;
}

function sameDay(a, b) {
  return Boolean(a && b) && new Date(a).toDateString() === new Date(b).toDateString();
}

function JobRow({ job, admin, selected, onToggle }) {
  const link = href(`/jobs/${encodeURIComponent(job.jobId)}`);
  return html`<tr class=${selected ? "selected" : ""} data-job-id=${job.jobId}
    data-status=${job.status} data-type=${job.jobType} data-kind=${job.kind}>
    ${admin &&
    html`<td class="pick">
      <input type="checkbox" aria-label=${`Select job ${job.jobId}`} checked=${selected}
        onChange=${(e) => onToggle(job.jobId, e.currentTarget.checked)} />
    </td>`}
    <td class="bare id"><${Link} to=${link} class="mono" title=${job.jobId}>${idTail(job.jobId)}<//></td>
    <td class="bare type"><${TypeName} type=${job.jobType} /></td>
    <td class="bare"><${KindBadge} kind=${job.kind} /></td>
    <td class="bare"><${StatusBadge} status=${job.status} /></td>
    <td data-label="Queue">${job.queue}</td>
    <td data-label="Attempt" class="num">${job.attempt} / ${job.maxAttempts}</td>
    <td data-label="Enqueued" class="wide date"><${Time} iso=${job.enqueuedAt} /></td>
    <td data-label="Started / finished" class="wide times">
      <${Time} iso=${job.startedAt} />
      ${job.completedAt &&
      html`<span class="finished"> → <time datetime=${job.completedAt}
          title=${dateTime(job.completedAt)}>${sameDay(job.startedAt, job.completedAt)
            ? new Date(job.completedAt).toLocaleTimeString()
            : dateTime(job.completedAt)}</time>
        ${job.startedAt && html` <span class="muted">(${duration(job.startedAt, job.completedAt)})</span>`}</span>`}
    </td>
    ${job.errorMessage
      ? html`<td data-label="Error" class="wide error-snippet" title=${job.errorMessage}>
          ${firstLine(job.errorMessage)}</td>`
      : html`<td class="wide empty-cell"></td>`}
  </tr>`;
}
