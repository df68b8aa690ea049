// A job followed live over its SSE stream: the progress bar, log lines, the streamed output
// growing in place (the last MAX_OUTPUT characters of it), metrics as their latest values, and
// the status until the terminal lifecycle event, when the stream is closed and the page told.
import { StatusBadge, useEventSource } from "../components.js";
import { count } from "../format.js";
import { html, useEffect, useRef, useState } from "../lib.js";
import { TERMINAL } from "./job_actions.js";

const MAX_OUTPUT = 1024 * 1024; // characters of streamed output kept on the page
const MAX_LOGS = 500; // log lines kept on the page
const FLUSH_MS = 50; // chunks arriving within this are drawn at once

export function LiveTail({ jobId, onStatus, onFinished }) {
  const [status, setStatus] = useState(null);
  const [progress, setProgress] = useState(null);
  const [logs, setLogs] = useState({ lines: [], dropped: 0 });
  const [output, setOutput] = useState({ text: "", dropped: 0 });
  const [metrics, setMetrics] = useState(() => new Map());
  const [ended, setEnded] = useState(false);
  const [behind, setBehind] = useState(null);
  const outputBox = useFollowedBottom(output.text);
  const logBox = useFollowedBottom(logs.lines);
  const pending = useRef("");
  const flushTimer = useRef(0);

  const flush = () => {
    clearTimeout(flushTimer.current);
    flushTimer.current = 0;
    const added = pending.current;
    pending.current = "";
    if (!added) return;
    setOutput((old) => {
      const text = old.text + added;
      if (text.length <= MAX_OUTPUT) return { text, dropped: old.dropped };
      const cut = text.length - MAX_OUTPUT;
      return { text: text.slice(cut), dropped: old.dropped + cut };
    });
  };

  const connection = useEventSource(
    `/jobs/${encodeURIComponent(jobId)}/stream`,
    {
      lifecycle: (event) => {
        setStatus(event.status);
        if (onStatus) onStatus(event.status, event);
        if (TERMINAL.has(event.status)) {
          flush();
          setEnded(true);
          if (onFinished) onFinished(event.status, event);
        }
      },
      progress: (event) => setProgress(event),
      log: (event) =>
        setLogs((old) =>
          old.lines.length < MAX_LOGS
            ? { lines: [...old.lines, event], dropped: old.dropped }
            : { lines: [...old.lines.slice(1), event], dropped: old.dropped + 1 },
        ),
      chunk: (event) => {
        const value = event.value;
        pending.current += typeof value === "string" ? value : JSON.stringify(value);
        if (!flushTimer.current) flushTimer.current = setTimeout(flush, FLUSH_MS);
      },
      metric: (event) =>
        setMetrics((old) => new Map(old).set(String(event.name), event.value)),
      result: () => {},
      reconnect: (event) => setBehind(event),
    },
    !ended,
  );

  const state = ended ? "ended" : connection === "open" ? "live" : "connecting…";
  return html`<section class="card live-tail" aria-label="Live" data-connection=${state}>
    <h2>
      Live <span class=${`badge connection-${ended ? "ended" : connection}`}>${state}</span>
      ${status ? html` <${StatusBadge} status=${status} />` : null}
    </h2>
    ${behind &&
    !ended &&
    html`<p class="muted">Fell behind the job (${behind.reason || "reconnecting"}); resumed
      after event ${behind.lastEventId}.</p>`}
    <${Progress} progress=${progress} ended=${ended} />
    ${metrics.size > 0 &&
    html`<dl class="metrics" aria-label="Metrics">
      ${[...metrics].map(
        ([name, value]) => html`<div class="metric" key=${name} data-metric=${name}>
          <dt>${name}</dt><dd>${typeof value === "number" ? count(value) : String(value)}</dd>
        </div>`,
      )}
    </dl>`}
    <h3>Log</h3>
    ${logs.dropped > 0 &&
    html`<p class="muted">${count(logs.dropped)} earlier lines not shown (the last ${MAX_LOGS}
      are).</p>`}
    ${logs.lines.length === 0
      ? html`<p class="muted">No log lines yet.</p>`
      : html`<ol class="log" aria-label="Log" ref=${logBox} onScroll=${logBox.onScroll}>
          ${logs.lines.map((line) => html`<${LogLine} key=${line.seq} line=${line} />`)}
        </ol>`}
    <h3>Output</h3>
    ${output.dropped > 0 &&
    html`<p class="muted" data-output-dropped=${output.dropped}>The first
      ${count(output.dropped)} characters are not shown: only the last 1 MB of output is
      kept here.</p>`}
    ${output.text
      ? html`<pre class="text output" aria-label="Output" ref=${outputBox}
          onScroll=${outputBox.onScroll}>${output.text}</pre>`
      : html`<p class="muted">No output yet.</p>`}
  </section>`;
}

// A ref for a scrolling box that stays scrolled to its end as `content` grows, unless the reader
// scrolled up (then it stays where they left it until they scroll back down).
function useFollowedBottom(content) {
  const box = useRef(null);
  const follow = useRef(true);
  if (!box.onScroll) {
    box.onScroll = () => {
      const el = box.current;
      if (el) follow.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
    };
  }
  useEffect(() => {
    const el = box.current;
    if (el && follow.current) el.scrollTop = el.scrollHeight;
  }, [content]);
  return box;
}

export function Progress({ progress, ended }) {
  if (!progress) {
    return html`<p class="muted">${ended ? "No progress was reported." : "No progress reported yet."}</p>`;
  }
  const { done, total, label } = progress;
  const known = typeof done === "number" && typeof total === "number" && total > 0;
  const numbers = known
    ? `${count(done)} / ${count(total)}`
    : typeof done === "number"
      ? count(done)
      : "";
  return html`<div class="progress" data-done=${done ?? ""} data-total=${total ?? ""}>
    ${known
      ? html`<progress max=${total} value=${Math.min(done, total)} aria-label="Progress" />`
      : html`<progress aria-label="Progress" />`}
    <span class="progress-text">${numbers}${numbers && label ? " · " : ""}${label || ""}</span>
  </div>`;
}

// A log line's time of day (the date is the job's).
function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function LogLine({ line }) {
  const level = String(line.level || "info");
  return html`<li class=${`log-line level-${level}`}>
    <time datetime=${line.occurredAt} class="muted">${clock(line.occurredAt)}</time>
    <span class="level">${level}</span>
    <span class="message">${line.message}</span>
    ${line.dataJson ? html`<code class="data">${line.dataJson}</code>` : null}
  </li>`;
}
