// A job: its fields, arguments, result and error, every finished attempt with its traceback, the
// live tail while it has not finished (job_tail.js), its kept events (job_timeline.js), and for
// admins the actions its kind allows (job_actions.js).
import {
  ErrorNotice,
  JsonBlock,
  KindBadge,
  Loading,
  StatusBadge,
  Time,
  isAdmin,
  useApi,
} from "../components.js";
import { duration } from "../format.js";
import { html, useCallback, useEffect, useState } from "../lib.js";
import { Link, href, navigate } from "../router.js";
import { TypeName } from "../types.js";
import { ACTIONS, ConfirmButton, TERMINAL } from "./job_actions.js";
import { LiveTail } from "./job_tail.js";
import { Timeline } from "./job_timeline.js";

export function JobPage({ route, session }) {
  // A new id is a new page: nothing of the last job's live state carries over.
  return html`<${Job} key=${route.params.id} id=${route.params.id} session=${session} />`;
}

function Job({ id, session }) {
  const { data, error, reload } = useApi(`/jobs/${encodeURIComponent(id)}`);
  const job = data && data.job;
  // The live tail of the current run: shown once the job is seen unfinished, kept (with its
  // final status) after it ends; a retry starts a new one.
  const [tail, setTail] = useState({ run: 0, shown: false, status: null });
  const [timeline, setTimeline] = useState(0);
  const [notice, setNotice] = useState(null);

  useEffect(() => {
    if (job && !TERMINAL.has(job.status)) setTail((t) => (t.shown ? t : { ...t, shown: true }));
  }, [job && job.status]);

  // Every status change may have ended an attempt: the attempts are read again.
  const onStatus = useCallback(
    (status) => {
      setTail((t) => ({ ...t, status }));
      reload();
    },
    [reload],
  );
  const onFinished = useCallback(() => setTimeline((n) => n + 1), []);
  const changed = (restart) => {
    if (restart) setTail((t) => ({ run: t.run + 1, shown: false, status: null }));
    reload();
    setTimeline((n) => n + 1);
  };

  if (error) {
    return html`<h1>Job <span class="mono">${id}</span></h1><${ErrorNotice} error=${error} />
      <p><${Link} to=${href("/jobs")}>Back to the jobs<//></p>`;
  }
  if (!job) return html`<${Loading} />`;
  const status = (tail.shown && tail.status) || job.status;

  return html`
    <div class="job-head">
      <h1><${TypeName} type=${job.jobType} /> <span class="mono muted job-id">${job.jobId}</span></h1>
      <span data-job-status=${status}><${StatusBadge} status=${status} /></span>
      <${KindBadge} kind=${job.kind} />
    </div>
    ${notice &&
    html`<p class=${`notice ${notice.error ? "error" : "ok"}`} role=${notice.error ? "alert" : "status"}
      data-notice>
      ${notice.text}
      ${notice.link && html` <${Link} to=${notice.link.to}>${notice.link.text}<//>`}
    </p>`}
    ${isAdmin(session)
      ? html`<${Actions} job=${{ ...job, status }} onNotice=${setNotice} onChanged=${changed} />`
      : html`<p class="muted readonly-note">Read-only session: jobs can be looked at, not changed.</p>`}

    <div class="job-grid">
      <section class="card" aria-label="Job">
        <h2>Job</h2>
        <${Fields} job=${job} status=${status} />
      </section>
      <section class="card" aria-label="Arguments and result">
        <h2>Arguments</h2>
        <${JsonBlock} text=${job.argsJson} label="Arguments" />
        ${job.resultJson !== null &&
        html`<h2>Result</h2><${JsonBlock} text=${job.resultJson} label="Result" />`}
        ${job.errorMessage &&
        html`<h2>Error</h2><pre class="text error-text" aria-label="Error">${job.errorMessage}</pre>`}
      </section>
    </div>

    ${tail.shown &&
    html`<${LiveTail} key=${tail.run} jobId=${job.jobId} onStatus=${onStatus}
      onFinished=${onFinished} />`}

    <${Attempts} attempts=${data.attempts} />
    <${Timeline} jobId=${job.jobId} version=${timeline} />
  `;
}

function Fields({ job, status }) {
  const row = (label, value) => html`<dt>${label}</dt><dd>${value}</dd>`;
  return html`<dl class="fields">
    ${row("Id", html`<span class="mono">${job.jobId}</span>`)}
    ${row("Type", job.jobType)}
    ${row("Kind", job.kind)}
    ${row("Status", status)}
    ${row("Queue", job.queue)}
    ${row("Priority", String(job.priority))}
    ${row("Attempt", `${job.attempt} of ${job.maxAttempts}`)}
    ${row("Enqueued", html`<${Time} iso=${job.enqueuedAt} />`)}
    ${row("Runs at", html`<${Time} iso=${job.runAt} />`)}
    ${row("Started", html`<${Time} iso=${job.startedAt} />`)}
    ${row("Finished", html`<${Time} iso=${job.completedAt} />`)}
    ${job.startedAt && job.completedAt && row("Took", duration(job.startedAt, job.completedAt))}
    ${job.idempotencyKey && row("Idempotency key", html`<span class="mono">${job.idempotencyKey}</span>`)}
    ${job.continuesJobId &&
    row(
      "Continues",
      html`<${Link} class="mono" to=${href(`/jobs/${encodeURIComponent(job.continuesJobId)}`)}>
        ${job.continuesJobId}<//>`,
    )}
  </dl>`;
}

function Attempts({ attempts }) {
  return html`<section class="card attempts" aria-label="Attempts">
    <h2>Attempts <span class="muted">(${attempts.length} finished)</span></h2>
    ${attempts.length === 0 && html`<p class="muted">No attempt has finished yet.</p>`}
    ${attempts.map(
      (attempt, index) => html`<article class="attempt" key=${attempt.attempt}
        data-attempt=${attempt.attempt} data-outcome=${attempt.outcome}>
        <h3>Attempt ${attempt.attempt} <${StatusBadge} status=${attempt.outcome} /></h3>
        <dl class="fields">
          <dt>Worker</dt><dd class="mono">${attempt.worker}</dd>
          <dt>Started</dt><dd><${Time} iso=${attempt.startedAt} /></dd>
          <dt>Ended</dt><dd><${Time} iso=${attempt.endedAt} /></dd>
          <dt>Took</dt><dd>${duration(attempt.startedAt, attempt.endedAt)}</dd>
        </dl>
        ${attempt.error &&
        html`<pre class="text error-text" aria-label=${`Error of attempt ${attempt.attempt}`}>${attempt.error}</pre>`}
        ${attempt.traceback &&
        html`<details open=${index === attempts.length - 1}>
          <summary>Traceback</summary>
          <pre class="text traceback" aria-label=${`Traceback of attempt ${attempt.attempt}`}>${attempt.traceback}</pre>
        </details>`}
      </article>`,
    )}
  </section>`;
}

// The buttons the job's kind and status allow, each asking in the page before it acts.
function Actions({ job, onNotice, onChanged }) {
  const act = (name, after) => async () => {
    try {
      const answer = await ACTIONS[name].call(job.jobId);
      after(answer);
    } catch (error) {
      onNotice({ error: true, text: `Refused: ${error.message || String(error)}` });
    }
  };
  const buttons = [];
  if (ACTIONS.runAgain.applies(job)) {
    buttons.push(html`<${ConfirmButton} key="again" label="Run again" data-action="run-again"
      question="Enqueue this job again with the same arguments?" yes="Yes, run again"
      run=${act("runAgain", (answer) =>
        onNotice({
          text: "Enqueued again as",
          link: { to: href(`/jobs/${encodeURIComponent(answer.jobId)}`), text: answer.jobId },
        }),
      )} />`);
  }
  if (ACTIONS.cancel.applies(job)) {
    buttons.push(html`<${ConfirmButton} key="cancel" label="Cancel" data-action="cancel" danger
      question="Cancel this job?" yes="Yes, cancel it"
      run=${act("cancel", (answer) => {
        onNotice({ text: `Cancel: ${ACTIONS.cancel.outcome(answer)}.` });
        onChanged(false);
      })} />`);
  }
  if (ACTIONS.retry.applies(job)) {
    buttons.push(html`<${ConfirmButton} key="retry" label="Retry" data-action="retry"
      question="Queue this dead job again?" yes="Yes, retry it"
      run=${act("retry", () => {
        onNotice({ text: "Queued again." });
        onChanged(true);
      })} />`);
  }
  if (ACTIONS.delete.applies(job)) {
    buttons.push(html`<${ConfirmButton} key="delete" label="Delete" data-action="delete" danger
      question="Delete this job, its attempts and its events?" yes="Yes, delete it"
      run=${act("delete", () => navigate(href("/jobs")))} />`);
  }
  const why =
    job.kind === "user"
      ? "User jobs are read-only here: they may only be deleted, and not while they run."
      : job.status === "running"
        ? "A running job cannot be deleted: cancel it first."
        : "";
  return html`<div class="actions job-actions" role="group" aria-label="Actions">
    ${buttons}
    ${why && html`<span class="muted">${why}</span>`}
  </div>`;
}
