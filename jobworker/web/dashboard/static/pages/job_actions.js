// What an admin may do to a job, by its kind and status (the admin API's rules: system jobs may
// be cancelled until they finish, retried when dead and run again; user jobs may only be
// deleted, and no job while it runs), the calls that do it, a few at a time, and how it went.
import { api } from "../api.js";
import { html, useEffect, useRef, useState } from "../lib.js";

export const TERMINAL = new Set(["succeeded", "dead", "cancelled"]);

const jobPath = (id) => `/jobs/${encodeURIComponent(id)}`;

export const ACTIONS = {
  cancel: {
    verb: "cancel",
    applies: (job) => job.kind === "system" && !TERMINAL.has(job.status),
    call: (id) => api.post(`${jobPath(id)}/cancel`),
    // "cancelled" (it was waiting), "requested" (its worker stops it), "finished" (too late)
    outcome: (answer) =>
      ({ cancelled: "cancelled", requested: "cancel requested", finished: "already finished" })[
        answer && answer.result
      ] || "cancelled",
  },
  retry: {
    verb: "retry",
    applies: (job) => job.kind === "system" && job.status === "dead",
    call: (id) => api.post(`${jobPath(id)}/retry`),
    outcome: () => "queued again",
  },
  runAgain: {
    verb: "run again",
    applies: (job) => job.kind === "system",
    call: (id) => api.post(`${jobPath(id)}/run-again`),
    outcome: () => "enqueued again",
  },
  delete: {
    verb: "delete",
    applies: (job) => job.status !== "running",
    call: (id) => api.delete(jobPath(id)),
    outcome: () => "deleted",
  },
};

// Run `call(id)` for every id, at most `width` at once; each result is {id, answer} or
// {id, error}, in the order of `ids`.
export async function eachJob(ids, call, width = 4) {
  const results = new Array(ids.length);
  let next = 0;
  const lane = async () => {
    while (next < ids.length) {
      const index = next++;
      const id = ids[index];
      try {
        results[index] = { id, answer: await call(id) };
      } catch (error) {
        results[index] = { id, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, ids.length) }, lane));
  return results;
}

// "3 cancelled, 1 refused: <the API's message>": the outcomes counted, refusals by message.
export function summary(action, results) {
  const counts = new Map();
  const add = (text) => counts.set(text, (counts.get(text) || 0) + 1);
  for (const result of results) {
    if (result.error) add(`refused: ${result.error.message || String(result.error)}`);
    else add(action.outcome(result.answer));
  }
  return [...counts].map(([text, n]) => `${n} ${text}`).join(", ");
}

// A button that asks in the page before it acts: "Cancel" shows "Cancel this job? [Yes, cancel]
// [No]", with the focus on "No" (two presses of Enter do nothing). `run` returns a promise.
export function ConfirmButton({ label, question, yes, run, danger, disabled, ...rest }) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const no = useRef(null);
  useEffect(() => {
    if (asking && no.current) no.current.focus();
  }, [asking]);
  const confirm = async () => {
    setBusy(true);
    try {
      await run();
    } finally {
      setBusy(false);
      setAsking(false);
    }
  };
  if (!asking) {
    return html`<button type="button" class=${danger ? "danger" : ""} disabled=${disabled || busy}
      onClick=${() => setAsking(true)} ...${rest}>${label}</button>`;
  }
  return html`<span class="confirm" role="group" aria-label=${question}>
    <span>${question}</span>
    <button type="button" class=${danger ? "danger" : "primary"} disabled=${busy}
      onClick=${confirm}>${yes}</button>
    <button type="button" ref=${no} disabled=${busy} onClick=${() => setAsking(false)}>No</button>
  </span>`;
}
