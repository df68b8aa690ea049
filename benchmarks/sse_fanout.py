"""SSE fan-out benchmark: many browsers following jobs live through one `jobworker web` process.

Usage:

    python benchmarks/sse_fanout.py [--scenario a|b|both] [--clients 1000] [--rate 1000] \
        [--seconds 10] [--jobs 100] [--lag-every 1] [--server-cmd CMD] [--stream-url URL] \
        [--cookie COOKIE] [--json]

What it runs, on a fresh PostgreSQL database (on $JOBWORKER_BENCH_PG_URL, default the local
server; dropped afterwards) with the Redis bus ($JOBWORKER_REDIS_URL, default the local one,
under a key prefix of its own whose keys are deleted afterwards):

- one worker, `jobworker run sse_jobs` (benchmarks/sse_jobs.py), whose job `bench.sse_emit`
  waits at a gate, then emits chunk events at a steady rate, each carrying its emit time;
- per scenario, a fresh server started with `--server-cmd` (by default `jobworker web sse_jobs
  --routes sse_jobs:web_routes --prefix /jobs`: the job routes with no authorization, under
  `/jobs/{job_id}/stream`); `--stream-url` is the URL pattern the clients follow, `--cookie` a
  Cookie header they send (for a stream behind a login);
- clients in CLIENT_PROCESSES processes of their own: raw asyncio protocols on uvloop, one
  connection each, that undo the chunked transfer encoding and look at each piece of stream
  they receive as a whole (counting its chunk events, reading the id of the first and last, and
  parsing the data of the first, the oldest, for the lag), so that they cost little per event.

Scenario A: `--clients` clients on one job emitting `--rate` events/s. Scenario B: `--jobs`
jobs, `--clients / --jobs` clients each, the jobs emitting `--rate` events/s between them.
Every job emits for `--seconds`; all clients are connected before the gate opens.

Printed per scenario: events delivered to clients per second (over gate open -> last client
done); lag from emit to client, p50 / p99 / max (on the oldest event of every `--lag-every`th
piece a client reads, which is the largest lag in that piece); clients dropped (a `reconnect`
event, or a stream that ended before the job's terminal event, or that could not connect);
events missing per client (max and total, against what the jobs emitted) and duplicated;
server CPU (user + system, over the run, in % of one core) and server RSS per idle client
((RSS with every client connected and idle - RSS before they connected) / clients); the
client processes' CPU, to show whether they were the bound; pieces read per client and events
per piece (how much the server batches per write); the 1-minute load average before and after
(on a shared machine, other work shows there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
import psutil

from jobworker import App, JobStatus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sse_jobs  # noqa: F401  (registers the job this process enqueues)
from throughput import (
    BENCH_DIR,
    REPO_ROOT,
    BenchmarkError,
    PostgresBackend,
    percentile,
    positive_int,
    stop_supervisor,
)

JOB_TYPE = "bench.sse_emit"
CLIENT_PROCESSES = 2
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_STREAM_URL = "http://127.0.0.1:{port}/jobs/{job_id}/stream"
DEFAULT_SERVER_CMD = (
    "{python} -m jobworker --log-level WARNING web sse_jobs --routes sse_jobs:web_routes "
    "--prefix /jobs --host 127.0.0.1 --port {port} --database-url {database_url} --no-access-log"
)
LAG_SAMPLES_KEPT = 100_000  # per client process: a random subset of them goes to the report
SETTLE_S = 1.0  # idle time with every client connected before RSS is read
READY_TIMEOUT = 60.0
CONNECT_TIMEOUT = 120.0

GOAL_LAG_P99_MS = 100.0
GOAL_KIB_PER_CLIENT = 50.0

TERMINAL_STATUSES = (b'"status":"succeeded"', b'"status":"dead"', b'"status":"cancelled"')


# Clients (in the client processes) ----------------------------------------------------------


class _ChunkValue(msgspec.Struct):
    t: float


class _ChunkData(msgspec.Struct):
    value: _ChunkValue


_decode_chunk = msgspec.json.Decoder(_ChunkData).decode


class SSEClient(asyncio.Protocol):
    """One connection following one stream: the HTTP response head, the chunked body, and the
    SSE text in it, looked at once per piece received."""

    def __init__(self, request: bytes, lags: array[float], lag_every: int) -> None:
        self.request = request
        self.lags = lags
        self.lag_every = lag_every
        self.connected: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.head = b""
        self.raw = b""  # chunked body not yet decoded
        self.text = b""  # SSE text after the last complete event
        self.chunks = 0
        self.last_id = 0
        self.duplicates = 0
        self.pieces = 0
        self.reconnect = False
        self.terminal = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  (uvloop's is no subclass)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end], self.head[end + 4 :]
            self.status = int(head.split(b" ", 2)[1])
            self.head = b""
            if not self.connected.done():
                self.connected.set_result(self.status == 200)
        if data:
            self.raw += data
            self._dechunk()

    def _dechunk(self) -> None:
        raw = self.raw
        position = 0
        body: list[bytes] = []
        while True:
            line_end = raw.find(b"\r\n", position)
            if line_end < 0:
                break
            size = int(raw[position:line_end], 16)
            if size == 0:  # the response's end: the connection would stay open, kept alive
                position = len(raw)
                self._finish()
                break
            start = line_end + 2
            if len(raw) < start + size + 2:
                break
            body.append(raw[start : start + size])
            position = start + size + 2
        self.raw = raw[position:]
        if body:
            self._events(b"".join(body))

    def _events(self, text: bytes) -> None:
        text = self.text + text
        end = text.rfind(b"\n\n")
        if end < 0:
            self.text = text
            return
        piece, self.text = text[: end + 2], text[end + 2 :]
        received_at = time.time()
        count = piece.count(b"event: chunk\n")
        if count:
            first = piece.find(b"event: chunk\n")
            id_at = piece.find(b"id: ", first) + 4
            first_id = int(piece[id_at : piece.find(b"\n", id_at)])
            if first_id <= self.last_id:
                self.duplicates += 1
            self.chunks += count
            self.pieces += 1
            if self.pieces % self.lag_every == 0:
                data_at = piece.find(b"data: ", id_at) + 6
                data = _decode_chunk(piece[data_at : piece.find(b"\n", data_at)])
                self.lags.append((received_at - data.value.t) * 1000)
        last_id_at = piece.rfind(b"\nid: ")
        if last_id_at >= 0:
            last_id_at += 5
            self.last_id = max(self.last_id, int(piece[last_id_at : piece.find(b"\n", last_id_at)]))
        if b"event: reconnect\n" in piece:
            self.reconnect = True
        if b"event: lifecycle\n" in piece and any(s in piece for s in TERMINAL_STATUSES):
            self.terminal = True

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_result(False)
        if not self.done.done():
            self.done.set_result(None)


@dataclass
class ClientReport:
    """What one client process saw."""

    clients: int
    connected: int
    chunks: list[int]  # chunk events each connected client received
    duplicates: int  # pieces whose first chunk event came again or out of order
    pieces: int  # pieces of stream with chunk events, all clients together
    reconnects: int
    short: int  # streams that ended (or were still open at the deadline) before the terminal
    lag_samples: int
    lags_ms: list[float]  # a random subset of the samples
    started: float  # the gate opened
    ended: float  # every stream ended (or the deadline came)
    cpu_s: float


def request_bytes(url: str, cookie: str | None) -> tuple[str, int, bytes]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise BenchmarkError(f"--stream-url must be an http:// URL, got {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Accept: text/event-stream",
        "Cache-Control: no-cache",
    ]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return parts.hostname, parts.port or 80, ("\r\n".join(lines) + "\r\n\r\n").encode()


async def run_clients(spec: dict[str, Any]) -> ClientReport:
    loop = asyncio.get_running_loop()
    lags: array[float] = array("d")
    clients: list[SSEClient] = []

    async def open_one(url: str) -> SSEClient:
        host, port, request = request_bytes(url, spec["cookie"])
        client = SSEClient(request, lags, spec["lag_every"])
        clients.append(client)
        try:
            await loop.create_connection(lambda: client, host, port)
            await asyncio.wait_for(asyncio.shield(client.connected), CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            if not client.connected.done():
                client.connected.set_result(False)
            if not client.done.done():
                client.done.set_result(None)
        return client

    opened = await asyncio.gather(*(open_one(url) for url in spec["urls"]))
    connected = sum(1 for c in opened if c.connected.result())
    print(json.dumps({"connected": connected}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # the gate is open
    cpu_started = time.process_time()
    started = time.time()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(spec["timeout"]):
            await asyncio.gather(*(c.done for c in opened))
    ended = time.time()
    for client in opened:
        if client.transport is not None:
            client.transport.close()
    ok = [c for c in opened if c.connected.result()]
    sample = list(lags)
    if len(sample) > LAG_SAMPLES_KEPT:
        sample = random.sample(sample, LAG_SAMPLES_KEPT)
    return ClientReport(
        clients=len(opened),
        connected=connected,
        chunks=[c.chunks for c in ok],
        duplicates=sum(c.duplicates for c in ok),
        pieces=sum(c.pieces for c in ok),
        reconnects=sum(1 for c in ok if c.reconnect),
        short=sum(1 for c in ok if not c.terminal and not c.reconnect),
        lag_samples=len(lags),
        lags_ms=sample,
        started=started,
        ended=ended,
        cpu_s=time.process_time() - cpu_started,
    )


def client_main(spec_json: str) -> None:
    import uvloop

    report = uvloop.run(run_clients(json.loads(spec_json)))
    print(json.dumps(asdict(report)), flush=True)


# Figures ------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    jobs: int
    clients: int
    rate: float  # events/s emitted, all jobs together
    seconds: float
    emitted: int = 0  # chunk events the jobs emitted
    expected: int = 0  # chunk events the clients should have received, all together
    delivered: int = 0
    delivered_per_s: float = 0.0
    run_s: float = 0.0
    lag_samples: int = 0
    lag_every: int = 1
    lag_p50_ms: float = math.inf
    lag_p99_ms: float = math.inf
    lag_max_ms: float = math.inf
    connected: int = 0
    dropped: int = 0  # not connected, reconnect events, short streams
    reconnects: int = 0
    short: int = 0
    missing_total: int = 0
    missing_max_per_client: int = 0
    clients_missing_events: int = 0
    duplicates: int = 0
    pieces_per_client: float = 0.0  # reads with chunk events: at most the server's writes
    events_per_piece: float = 0.0
    load_average: list[float] = field(default_factory=list)  # 1-minute, before and after
    server_cpu_percent: float = 0.0  # of one core, gate open -> clients done
    server_rss_before_mib: float = 0.0
    server_rss_idle_mib: float = 0.0
    server_kib_per_idle_client: float = 0.0
    client_cpu_percent: list[float] = field(default_factory=list)
    worker_cpu_percent: float = 0.0
    server_log: list[str] = field(default_factory=list)


@dataclass
class Results:
    scenarios: list[Scenario]
    server_cmd: str
    stream_url: str
    client_processes: int = CLIENT_PROCESSES
    goals: dict[str, float] = field(
        default_factory=lambda: {
            "lag_p99_ms": GOAL_LAG_P99_MS,
            "kib_per_idle_client": GOAL_KIB_PER_CLIENT,
            "dropped": 0,
            "missing": 0,
        }
    )
    cpus: int = os.cpu_count() or 1


# Processes ----------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(redis_url: str, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWORKER_")}
    paths = [str(BENCH_DIR), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["JOBWORKER_REDIS_URL"] = redis_url
    env["JOBWORKER_REDIS_PREFIX"] = prefix
    return env


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def rss_bytes(pid: int) -> int:
    total = 0
    for process in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return int(total)


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """Until an HTTP answer (any status) comes from the stream URL of a job that does not
    exist."""
    host, port, request = request_bytes(url, None)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"the server exited {process.returncode}: {read_log(log)}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 1) as sock:
            sock.sendall(request.replace(b"Accept: text/event-stream", b"Connection: close"))
            if sock.recv(16).startswith(b"HTTP/1.1 "):
                return
        time.sleep(0.1)
    raise BenchmarkError(f"the server did not answer in {READY_TIMEOUT:.0f}s")


def read_log(log: IO[bytes]) -> list[str]:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace").splitlines()[-20:]


def enqueue_jobs(app: App, count: int, rate: float, seconds: float, gate: str) -> list[str]:
    arguments = {"rate": rate, "seconds": seconds, "gate": gate}
    handles = [app.client.enqueue(JOB_TYPE, arguments) for _ in range(count)]
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:  # every job running, waiting at the gate
        jobs = [app.client.get(h.job_id) for h in handles]
        if all(job is not None and job.status is JobStatus.RUNNING for job in jobs):
            return [str(h.job_id) for h in handles]
        time.sleep(0.1)
    raise BenchmarkError("the jobs did not start running in time")


def start_clients(urls: list[str], args: argparse.Namespace) -> list[subprocess.Popen[str]]:
    shares = [urls[i::CLIENT_PROCESSES] for i in range(CLIENT_PROCESSES)]
    timeout = args.seconds + 60
    processes = []
    for share in shares:
        spec = {"urls": share, "cookie": args.cookie, "lag_every": args.lag_every}
        spec["timeout"] = timeout
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--client-process", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    return processes


def read_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise BenchmarkError(f"a client process exited {process.wait()} without a report")
    value: dict[str, Any] = json.loads(line)
    return value


def run_scenario(
    scenario: Scenario,
    args: argparse.Namespace,
    url: str,
    env: dict[str, str],
    app: App,
    worker_pid: int,
    workdir: Path,
) -> Scenario:
    port = free_port()
    command = args.server_cmd.format(
        python=shlex.quote(sys.executable), port=port, database_url=shlex.quote(url)
    )
    gate = workdir / f"gate-{scenario.name}"
    per_job_rate = scenario.rate / scenario.jobs
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            shlex.split(command), env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_until_serving(args.stream_url.format(port=port, job_id=uuid.uuid4()), server, log)
            job_ids = enqueue_jobs(app, scenario.jobs, per_job_rate, scenario.seconds, str(gate))
            urls = [
                args.stream_url.format(port=port, job_id=job_ids[i % scenario.jobs])
                for i in range(scenario.clients)
            ]
            rss_before = rss_bytes(server.pid)
            progress(f"{scenario.name}: connecting {scenario.clients} clients")
            clients = start_clients(urls, args)
            scenario.connected = sum(read_line(c)["connected"] for c in clients)
            time.sleep(SETTLE_S)
            rss_idle = rss_bytes(server.pid)
            cpu_before = cpu_seconds(server.pid)
            worker_before = cpu_seconds(worker_pid)
            progress(f"{scenario.name}: {scenario.connected} connected; the jobs emit now")
            scenario.load_average = [os.getloadavg()[0]]
            began = time.time()
            gate.touch()
            for client in clients:
                assert client.stdin is not None
                client.stdin.write("go\n")
                client.stdin.flush()
            reports = [ClientReport(**read_line(c)) for c in clients]
            for client in clients:
                client.wait(30)
            scenario.run_s = max(r.ended for r in reports) - began
            scenario.load_average.append(os.getloadavg()[0])
            scenario.server_cpu_percent = (
                (cpu_seconds(server.pid) - cpu_before) / scenario.run_s * 100
            )
            scenario.worker_cpu_percent = (
                (cpu_seconds(worker_pid) - worker_before) / scenario.run_s * 100
            )
            results = [app.client.result(job_id, timeout=60) for job_id in job_ids]
        finally:
            stop_supervisor(server)
            scenario.server_log = read_log(log)
    scenario.server_rss_before_mib = rss_before / 2**20
    scenario.server_rss_idle_mib = rss_idle / 2**20
    if scenario.connected:
        scenario.server_kib_per_idle_client = (rss_idle - rss_before) / 1024 / scenario.connected
    return measure(scenario, args, reports, results)


def measure(
    scenario: Scenario,
    args: argparse.Namespace,
    reports: list[ClientReport],
    results: list[dict[str, Any]],
) -> Scenario:
    per_job = [int(r["emitted"]) for r in results]
    scenario.emitted = sum(per_job)
    clients_per_job = scenario.clients // scenario.jobs
    scenario.expected = sum(n * clients_per_job for n in per_job)
    chunks = [n for report in reports for n in report.chunks]
    scenario.delivered = sum(chunks)
    scenario.delivered_per_s = scenario.delivered / scenario.run_s if scenario.run_s else 0
    wanted = per_job[0] if len(set(per_job)) == 1 else max(per_job)
    missing = [max(0, wanted - n) for n in chunks] + [wanted] * (
        scenario.clients - scenario.connected
    )
    scenario.missing_total = sum(missing)
    scenario.missing_max_per_client = max(missing, default=0)
    scenario.clients_missing_events = sum(1 for n in missing if n)
    scenario.duplicates = sum(r.duplicates for r in reports)
    pieces = sum(r.pieces for r in reports)
    if scenario.connected:
        scenario.pieces_per_client = pieces / scenario.connected
    if pieces:
        scenario.events_per_piece = scenario.delivered / pieces
    scenario.reconnects = sum(r.reconnects for r in reports)
    scenario.short = sum(r.short for r in reports)
    scenario.dropped = scenario.clients - scenario.connected + scenario.reconnects + scenario.short
    lags = sorted(lag for r in reports for lag in r.lags_ms)
    scenario.lag_samples = sum(r.lag_samples for r in reports)
    scenario.lag_every = args.lag_every
    if lags:
        scenario.lag_p50_ms = percentile(lags, 50)
        scenario.lag_p99_ms = percentile(lags, 99)
        scenario.lag_max_ms = lags[-1]
    scenario.client_cpu_percent = [r.cpu_s / scenario.run_s * 100 for r in reports]
    return scenario


def run_benchmark(args: argparse.Namespace) -> Results:
    scenarios = []
    if args.scenario in ("a", "both"):
        scenarios.append(Scenario("A", 1, args.clients, args.rate, args.seconds))
    if args.scenario in ("b", "both"):
        if args.clients % args.jobs:
            raise BenchmarkError("--clients must be a multiple of --jobs for scenario B")
        scenarios.append(Scenario("B", args.jobs, args.clients, args.rate, args.seconds))
    redis_url = os.environ.get("JOBWORKER_REDIS_URL", DEFAULT_REDIS_URL)
    prefix = f"jw_bench_sse_{uuid.uuid4().hex[:10]}:"
    env = process_env(redis_url, prefix)
    backend = PostgresBackend()
    try:
        url = backend.new_database("sse")
        app = App(url, redis_url=redis_url, redis_prefix=prefix, bind=False)
        with (
            contextlib.closing(app),
            tempfile.TemporaryDirectory() as workdir,
            tempfile.TemporaryFile() as worker_log,
        ):
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jobworker",
                    "--log-level",
                    "WARNING",
                    "run",
                    "sse_jobs",
                    "--concurrency",
                    "1",
                    "--parallelism",
                    str(max(s.jobs for s in scenarios) + 2),
                    "--database-url",
                    url,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
            try:
                done = [
                    run_scenario(s, args, url, env, app, worker.pid, Path(workdir))
                    for s in scenarios
                ]
            finally:
                stop_supervisor(worker)
        return Results(done, args.server_cmd, args.stream_url)
    finally:
        backend.close()
        asyncio.run(delete_redis_keys(redis_url, prefix))


async def delete_redis_keys(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


# Report -------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def sampled(every: int) -> str:
    which = "each piece" if every == 1 else f"every {every}th piece"
    return f"the oldest event of {which} a client read"


def format_scenario(s: Scenario) -> str:
    per_job = s.clients // s.jobs
    lines = [
        f"Scenario {s.name}: {s.jobs} job(s) x {per_job} client(s) = {s.clients} clients, "
        f"{s.rate:g} events/s emitted in all ({s.rate / s.jobs:g}/s per job) for {s.seconds:g} s",
        f"  emitted                 {s.emitted} chunk events; {s.expected} deliveries expected",
        f"  delivered               {s.delivered} ({s.delivered_per_s:,.0f} events/s over "
        f"{s.run_s:.1f} s)",
        f"  lag emit -> client      p50 {s.lag_p50_ms:.1f} ms, p99 {s.lag_p99_ms:.1f} ms, "
        f"max {s.lag_max_ms:.1f} ms ({s.lag_samples} samples: {sampled(s.lag_every)})   "
        f"goal p99 < {GOAL_LAG_P99_MS:g} ms: "
        f"{verdict(s.lag_p99_ms < GOAL_LAG_P99_MS)}",
        f"  clients dropped         {s.dropped} (not connected {s.clients - s.connected}, "
        f"reconnect events {s.reconnects}, short streams {s.short})   goal 0: "
        f"{verdict(s.dropped == 0)}",
        f"  events missing          {s.missing_total} in all, at most {s.missing_max_per_client} "
        f"for one client, {s.clients_missing_events} client(s) missing some; "
        f"{s.duplicates} duplicated   goal 0: {verdict(s.missing_total == 0)}",
        f"  pieces read             {s.pieces_per_client:.0f} per client, "
        f"{s.events_per_piece:.1f} events each (a piece is one read; the server writes at "
        "least as often)",
        f"  server CPU              {s.server_cpu_percent:.0f}% of one core "
        f"(worker {s.worker_cpu_percent:.0f}%, client processes "
        f"{', '.join(f'{c:.0f}%' for c in s.client_cpu_percent)}); load average "
        f"{' -> '.join(f'{x:.2f}' for x in s.load_average)}",
        f"  server RSS              {s.server_rss_before_mib:.1f} MiB before, "
        f"{s.server_rss_idle_mib:.1f} MiB with {s.connected} idle clients: "
        f"{s.server_kib_per_idle_client:.1f} KiB per client   goal < {GOAL_KIB_PER_CLIENT:g} "
        f"KiB: {verdict(s.server_kib_per_idle_client < GOAL_KIB_PER_CLIENT)}",
    ]
    return "\n".join(lines)


def format_report(r: Results) -> str:
    head = [
        f"SSE fan-out on {r.cpus} CPU(s); clients in {r.client_processes} processes",
        f"server: {r.server_cmd}",
        f"stream: {r.stream_url}",
        "",
    ]
    return "\n".join(head) + "\n\n".join(format_scenario(s) for s in r.scenarios)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["a", "b", "both"], default="both")
    parser.add_argument("--clients", type=positive_int, default=1000, help="in all")
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="events/s emitted, all jobs together"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each job emits")
    parser.add_argument("--jobs", type=positive_int, default=100, help="jobs in scenario B")
    parser.add_argument(
        "--lag-every",
        type=positive_int,
        default=1,
        metavar="N",
        help="measure the lag on every Nth piece a client reads",
    )
    parser.add_argument("--server-cmd", default=DEFAULT_SERVER_CMD, help="{python} {port} ...")
    parser.add_argument("--stream-url", default=DEFAULT_STREAM_URL, help="{port} and {job_id}")
    parser.add_argument("--cookie", default=None, help="a Cookie header the clients send")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client-process"]:
        client_main(argv[1])
        return 0
    args = parse_args(argv)
    try:
        results = run_benchmark(args)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(results), indent=2) if args.json else format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
