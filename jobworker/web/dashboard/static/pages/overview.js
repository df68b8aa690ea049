// The overview: counts by status, the throughput of the last hour, the workers with their
// heartbeats, the beat leader and this instance, kept live by the stats stream (SSE). Until the
// stream's first event, and while it is down, the page asks GET /stats every few seconds.
import { api } from "../api.js";
import { ErrorNotice, Loading, Time, useEventSource, useNow } from "../components.js";
import { ago, approxCount, count, dateTime } from "../format.js";
import { html, useEffect, useRef, useState } from "../lib.js";
import { Link, href } from "../router.js";

const STATUSES = [
  "queued", "scheduled", "awaiting", "running", "succeeded", "failed", "dead", "cancelled",
];
const POLL_MS = 5000;
const STREAM_QUIET_MS = 6000; // the stream sends every 2 s: quieter than this, it is down
const STREAM_RETRY_MS = 5000; // a stream the server ended (or refused) is opened again after

export function OverviewPage() {
  const { stats, error, connection } = useLiveStats();
  return html`
    <div class="overview">
      <div class="page-title">
        <h1>Overview</h1>
        <${ConnectionState} connection=${connection} />
      </div>
      ${error && html`<${ErrorNotice} error=${error} />`}
      ${stats ? html`<${Dashboard} stats=${stats} />` : !error && html`<${Loading} />`}
    </div>
  `;
}

// The latest stats: from the stream while it runs, else from GET /stats every few seconds.
function useLiveStats() {
  const [stats, setStats] = useState(null);
  const [error, setError] = useState(null);
  const [streamOn, setStreamOn] = useState(true);
  const lastStreamed = useRef(0);
  const everOpen = useRef(false);

  const state = useEventSource(
    "/stats/stream",
    {
      stats: (data) => {
        lastStreamed.current = Date.now();
        setStats(data);
        setError(null);
      },
    },
    streamOn,
  );
  if (state === "open") everOpen.current = true;

  // EventSource gives up for good on an answer that is not a stream (a 404 from an older
  // server, a 502 from a proxy): open it again later, polling meanwhile.
  useEffect(() => {
    if (state !== "closed") return undefined;
    if (!streamOn) {
      setStreamOn(true);
      return undefined;
    }
    const timer = setTimeout(() => setStreamOn(false), STREAM_RETRY_MS);
    return () => clearTimeout(timer);
  }, [state, streamOn]);

  useEffect(() => {
    let cancelled = false;
    const poll = async () => {
      if (Date.now() - lastStreamed.current < STREAM_QUIET_MS) return;
      const asked = Date.now();
      try {
        const data = await api.get("/stats");
        // A stream event newer than this question wins over its answer.
        if (!cancelled && lastStreamed.current < asked) {
          setStats(data);
          setError(null);
        }
      } catch (failure) {
        if (!cancelled && lastStreamed.current < asked) setError(failure);
      }
    };
    poll();
    const timer = setInterval(poll, POLL_MS);
    return () => {
      cancelled = true;
      clearInterval(timer);
    };
  }, []);

  // A stream that has not opened within a few seconds is as good as down.
  const [late, setLate] = useState(false);
  useEffect(() => {
    const timer = setTimeout(() => setLate(true), STREAM_QUIET_MS);
    return () => clearTimeout(timer);
  }, []);

  const connection =
    state === "open"
      ? "live"
      : everOpen.current || late || state === "closed"
        ? "reconnecting"
        : "connecting";
  return { stats, error, connection };
}

function ConnectionState({ connection }) {
  const titles = {
    live: "the counts follow the server's stats stream",
    connecting: "opening the stats stream",
    reconnecting: `the stats stream is down: the counts are asked for every ${POLL_MS / 1000} s`,
  };
  return html`<span class="live-state" data-state=${connection} role="status"
    title=${titles[connection]}>${connection}</span>`;
}

function Dashboard({ stats }) {
  const estimated = new Set(stats.estimated || []);
  return html`
    <section aria-labelledby="counts-title">
      <h2 id="counts-title" class="visually-hidden">Jobs by status</h2>
      <div class="stats headline">
        <${Figure} name="queueDepth" label="queue depth" value=${stats.queueDepth}
          estimated=${estimated.has("queued")} />
        <${Figure} name="scheduledPending" label="scheduled pending"
          value=${stats.scheduledPending} estimated=${estimated.has("scheduled")} />
        <${Figure} name="runningNow" label="running now" value=${stats.runningNow}
          estimated=${estimated.has("running")} />
      </div>
      <nav class="stats by-status" aria-label="Jobs by status">
        ${STATUSES.map(
          (status) => html`
            <${Link} to=${href("/jobs", { status })} class=${`stat status-link status-${status}`}
              data-status=${status}>
              <span class="value">${approxCount(stats.counts[status], estimated.has(status))}</span>
              <span class="label">${status}</span>
            <//>`,
        )}
      </nav>
    </section>
    <section class="card" aria-labelledby="throughput-title">
      <h2 id="throughput-title">Throughput</h2>
      ${stats.throughput
        ? html`<${ThroughputChart} throughput=${stats.throughput} />`
        : html`<p class="muted">This server does not report throughput yet.</p>`}
    </section>
    <${Workers} workers=${stats.workers} />
    <div class="overview-pair">
      <${Beat} beat=${stats.beat} />
      <${Instance} instance=${stats.instance} />
    </div>
  `;
}

function Figure({ name, label, value, estimated }) {
  return html`<div class="stat" data-stat=${name}>
    <span class="value">${approxCount(value, estimated)}</span>
    <span class="label">${label}</span>
  </div>`;
}

// Jobs finished per minute by outcome, oldest minute first, as stacked bars. The drawing is as
// wide as its box (measured), so its text keeps its size on a phone.
const MARGIN = { left: 40, right: 8, top: 10, bottom: 24 };

function ThroughputChart({ throughput }) {
  const { buckets, outcomes } = throughput;
  const box = useRef(null);
  const [boxWidth, setBoxWidth] = useState(720);
  useEffect(() => {
    const observer = new ResizeObserver(([entry]) =>
      setBoxWidth(Math.max(240, Math.round(entry.contentRect.width))),
    );
    observer.observe(box.current);
    return () => observer.disconnect();
  }, []);
  const CHART = { ...MARGIN, width: boxWidth, height: boxWidth < 600 ? 160 : 220 };
  const plotWidth = CHART.width - CHART.left - CHART.right;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const totals = buckets.map((bucket) => outcomes.reduce((sum, o) => sum + (bucket.counts[o] || 0), 0));
  const top = niceCeiling(Math.max(1, ...totals));
  const slot = plotWidth / Math.max(1, buckets.length);
  const barWidth = Math.max(1, slot > 8 ? slot - 2 : slot * 0.75);
  const scale = (value) => (plotHeight * value) / top;
  const baseline = CHART.top + plotHeight;
  const minutes = Math.round(throughput.bucketSeconds / 60);
  const unit = minutes === 1 ? "minute" : `${minutes} minutes`;
  const sums = outcomes.map((o) => [o, buckets.reduce((sum, b) => sum + (b.counts[o] || 0), 0)]);
  const summary = sums.map(([o, n]) => `${o} ${count(n)}`).join(", ");

  return html`
    <figure class="throughput" ref=${box} data-finished=${totals.reduce((a, b) => a + b, 0)}>
      <svg viewBox=${`0 0 ${CHART.width} ${CHART.height}`} width=${CHART.width}
        height=${CHART.height} role="img" aria-labelledby="throughput-name throughput-desc">
        <title id="throughput-name">Jobs finished per ${unit} by outcome, last hour</title>
        <desc id="throughput-desc">In all: ${summary}.</desc>
        <line class="axis" x1=${CHART.left} y1=${baseline} x2=${CHART.width - CHART.right}
          y2=${baseline} />
        <line class="axis" x1=${CHART.left} y1=${CHART.top} x2=${CHART.left} y2=${baseline} />
        <line class="grid" x1=${CHART.left} y1=${CHART.top} x2=${CHART.width - CHART.right}
          y2=${CHART.top} />
        <text class="tick" x=${CHART.left - 6} y=${CHART.top + 4} text-anchor="end">${count(top)}</text>
        <text class="tick" x=${CHART.left - 6} y=${baseline} text-anchor="end">0</text>
        <text class="tick" x=${CHART.left} y=${CHART.height - 6}>
          ${buckets.length ? clockTime(buckets[0].at) : ""}
        </text>
        <text class="tick" x=${CHART.width - CHART.right} y=${CHART.height - 6}
          text-anchor="end">now</text>
        <text class="tick" x=${CHART.left + plotWidth / 2} y=${CHART.height - 6}
          text-anchor="middle">per ${unit}</text>
        ${buckets.map((bucket, index) => {
          const x = CHART.left + index * slot + 1;
          let y = baseline;
          const parts = outcomes.map((o) => `${o} ${count(bucket.counts[o] || 0)}`).join(", ");
          return html`
            <g class="bar" data-total=${totals[index]}>
              <title>${dateTime(bucket.at)}: ${parts}</title>
              <rect class="hit" x=${x} y=${CHART.top} width=${barWidth} height=${plotHeight} />
              ${outcomes.map((outcome) => {
                const value = bucket.counts[outcome] || 0;
                if (!value) return null;
                const height = scale(value);
                y -= height;
                return html`<rect class=${`tp tp-${outcome}`} data-outcome=${outcome}
                  x=${x} y=${y} width=${barWidth} height=${height} />`;
              })}
            </g>`;
        })}
      </svg>
      <figcaption>
        <p class="muted chart-note">Attempts that ended, by outcome: a failed one is retried, a
          dead one is not. A job purged with its attempts is no longer counted.</p>
        <ul class="legend">
          ${sums.map(
            ([outcome, total]) => html`<li>
              <svg class="swatch" width="12" height="12" viewBox="0 0 12 12" aria-hidden="true">
                <rect class=${`tp tp-${outcome}`} width="12" height="12" rx="2" />
              </svg>
              ${outcome} <span class="muted">${count(total)}</span>
            </li>`,
          )}
        </ul>
      </figcaption>
    </figure>
  `;
}

const clockFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });

function clockTime(iso) {
  return clockFormat.format(new Date(iso));
}

// The smallest of 1, 2, 5 times a power of ten at or above `value`: a round top for the axis.
function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function Workers({ workers }) {
  const now = useNow(1000);
  const live = workers.filter((worker) => !worker.gone).length;
  return html`
    <section class="card" aria-labelledby="workers-title">
      <h2 id="workers-title">Workers <span class="muted">${live} live, ${workers.length - live} gone</span></h2>
      ${workers.length === 0
        ? html`<p class="muted">No worker, supervisor or beat has registered.</p>`
        : html`<div class="table-wrap">
            <table class="workers">
              <thead><tr>
                <th>Role</th><th>Host</th><th>PID</th><th>Module</th><th>Queues</th>
                <th>Slots</th><th>Running</th><th>Last heartbeat</th>
              </tr></thead>
              <tbody>
                ${workers.map(
                  (worker) => html`
                    <tr key=${worker.id} data-worker=${worker.id} class=${worker.gone ? "gone" : ""}>
                      <td>
                        <span class="badge">${worker.role}</span>
                        ${worker.gone && html` <span class="badge gone-badge">gone</span>`}
                      </td>
                      <td class="mono">${worker.host}</td>
                      <td class="mono">${worker.pid}</td>
                      <td class="mono">${worker.module || "–"}</td>
                      <td>${worker.role === "beat" ? "–" : worker.queues.length ? worker.queues.join(", ") : "all"}</td>
                      <td>${count(worker.slots)}</td>
                      <td>${count(worker.running)}</td>
                      <td>
                        <time datetime=${worker.lastHeartbeat} title=${dateTime(worker.lastHeartbeat)}
                          data-heartbeat>${ago(worker.lastHeartbeat, now)}</time>
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>
          </div>`}
    </section>
  `;
}

function Beat({ beat }) {
  return html`
    <section class="card beat" aria-labelledby="beat-title" data-beat=${beat ? "leader" : "none"}>
      <h2 id="beat-title">Beat</h2>
      ${beat
        ? html`<dl class="fields">
            <dt>Leader</dt><dd class="mono">${beat.leader}</dd>
            <dt>Mechanism</dt><dd data-mechanism=${beat.mechanism}>${beat.mechanism}</dd>
            <dt>Since</dt><dd><${Time} iso=${beat.since} /></dd>
            <dt>Renewed</dt><dd><${Time} iso=${beat.renewedAt} /></dd>
          </dl>`
        : html`<p class="notice warn">No beat leader: recurring jobs are not fired. Workers do
            the maintenance (lease rescue, purging) themselves meanwhile.</p>`}
    </section>
  `;
}

function Instance({ instance }) {
  return html`
    <section class="card instance" aria-labelledby="instance-title">
      <h2 id="instance-title">This instance</h2>
      <dl class="fields">
        <dt>Storage</dt><dd>${instance.storage}</dd>
        <dt>Bus</dt><dd>${instance.bus}</dd>
        <dt>Version</dt><dd class="mono">${instance.version}</dd>
        <dt>Process</dt><dd class="mono">${instance.host} · ${instance.pid}</dd>
      </dl>
    </section>
  `;
}
