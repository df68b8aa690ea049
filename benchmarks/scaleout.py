"""Scale-out benchmark: one, two and three `jobworker run` hosts against one PostgreSQL.

Usage (as root: it creates network namespaces and a private PostgreSQL cluster):

    python benchmarks/scaleout.py --jobs 20000 --hosts 1,2,3 --repeat 3 \
        [--concurrency 1] [--parallelism 10] [--timeout 600] [--json]

What it does:

1. A bridge in the root namespace and, per host, a network namespace joined to it by a veth
   pair, with addresses in a private /24 chosen from this process's id. Nothing outside this
   machine is reachable or addressed.
2. A private PostgreSQL cluster (`initdb` into a temporary directory, run as the `postgres` OS
   user) listening on 127.0.0.1 and the bridge address, with `pg_stat_statements` loaded.
3. For each repeat and each host count (the order alternates between repeats): a fresh
   database, `--jobs` no-op jobs (`benchmarks/noop_jobs.py`, `bench.anoop`) enqueued with
   `throughput.enqueue_batches`, then one `jobworker run noop_jobs` supervisor per host, each
   started inside its namespace with `ip netns exec` and connecting to the bridge address.
   The drain rate is the steady state (first -> last success seen by the poll, as in
   `throughput.py`).
4. Exactly once: every job succeeded with `attempt = 1`, and `job_attempts` holds exactly one
   row per job, with outcome `succeeded`, and none for other jobs.
5. Where the time goes, over the steady window: CPU seconds of the worker processes
   (supervisors and their children, psutil) and of the PostgreSQL server processes (psutil),
   and `pg_stat_statements` execution time over the whole drain.
6. For the capacity model, per job: rows inserted/updated/deleted (`pg_stat_user_tables`
   deltas, read after the writers disconnected so their statistics are flushed), WAL bytes
   (`pg_current_wal_lsn` difference), table and index bytes kept (the schema's
   `pg_total_relation_size` after the drain less before the enqueue), for the enqueue and for
   the drain; and the connections each host held (`pg_stat_activity` by client address, the
   most seen by any poll).

Every namespace, the bridge and the cluster are removed in `finally`. The hosts share this
machine's cores: more hosts add worker processes, not CPUs, so the ratio to one host shows
where one database stops scaling only when the database, not the workers, uses the cores up.
The CPU figures say which it was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # benchmarks/ is not a package: its directory is on sys.path

from jobworker import App, JobFunction

SCHEMA = "jobworker"
POLL_INTERVAL = 0.1
PG_USER = "postgres"


class ScaleoutError(Exception):
    """The scale-out environment could not be set up (not root, no `ip netns`, no initdb)."""


# Hosts: network namespaces ------------------------------------------------------------------


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def netns_available() -> str | None:
    """None when this process can create network namespaces, else the reason it cannot."""
    if os.geteuid() != 0:
        return "not root: creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"jwprobe{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"`ip netns add` is not permitted: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class Network:
    """A bridge in the root namespace and one namespace per host, in 10.231.<n>.0/24."""

    tag: str
    subnet: str  # "10.231.<n>"
    bridge: str
    namespaces: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)

    @property
    def server_address(self) -> str:
        return f"{self.subnet}.1"

    def host_address(self, index: int) -> str:
        return f"{self.subnet}.{10 + index}"


@contextlib.contextmanager
def hosts_network(count: int) -> Iterator[Network]:
    """`count` namespaces `jwso<tag>h<i>` bridged to the root namespace; all removed at exit."""
    pid = os.getpid()
    tag = str(pid % 10000)
    net = Network(tag=tag, subnet=f"10.231.{pid % 250 + 1}", bridge=f"jwso{tag}b")
    try:
        ip("link", "add", net.bridge, "type", "bridge")
        ip("addr", "add", f"{net.server_address}/24", "dev", net.bridge)
        ip("link", "set", net.bridge, "up")
        for i in range(1, count + 1):
            ns, veth = f"jwso{tag}h{i}", f"jwso{tag}v{i}"
            ip("netns", "add", ns)
            net.namespaces.append(ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            net.veths.append(veth)
            ip("link", "set", veth, "master", net.bridge)
            ip("link", "set", veth, "up")
            ip("-n", ns, "addr", "add", f"{net.host_address(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield net
    finally:
        for veth in net.veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        for ns in net.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", net.bridge], capture_output=True)


# The database: a private cluster -------------------------------------------------------------


def pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise ScaleoutError(f"PostgreSQL's {name} is not installed under /usr/lib/postgresql")
    return str(found[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running private PostgreSQL cluster."""

    directory: Path
    port: int
    listen: str  # the bridge address the hosts connect to

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str, host: str = "127.0.0.1") -> str:
        return f"postgresql://{PG_USER}@{host}:{self.port}/{database}"

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])


def as_postgres(command: list[str]) -> None:
    result = subprocess.run(
        ["runuser", "-u", PG_USER, "--", *command], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ScaleoutError(f"{command[0]} failed:\n{result.stdout}\n{result.stderr}")


@contextlib.contextmanager
def private_cluster(net: Network, max_connections: int = 300) -> Iterator[Cluster]:
    """initdb + pg_ctl start as the postgres OS user; stopped and deleted at exit."""
    directory = Path(tempfile.mkdtemp(prefix="jobworker-scaleout-"))
    entry = pwd.getpwnam(PG_USER)
    os.chown(directory, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(directory=directory, port=free_port(), listen=net.server_address)
    started = False
    try:
        as_postgres(
            [pg_bin("initdb"), "-D", str(cluster.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8"]
        )
        with (cluster.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {net.subnet}.0/24 trust\n")
        options = " ".join(
            [
                f"-p {cluster.port}",
                f"-k {directory}",
                f"-c listen_addresses='127.0.0.1,{cluster.listen}'",
                f"-c max_connections={max_connections}",
                "-c shared_preload_libraries=pg_stat_statements",
                "-c pg_stat_statements.track=all",
                "-c track_io_timing=on",
            ]
        )
        as_postgres(
            [
                pg_bin("pg_ctl"),
                "-D",
                str(cluster.data),
                "-o",
                options,
                "-l",
                str(directory / "server.log"),
                "-w",
                "start",
            ]
        )
        started = True
        yield cluster
    finally:
        if started:
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    PG_USER,
                    "--",
                    pg_bin("pg_ctl"),
                    "-D",
                    str(cluster.data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
            )
        shutil.rmtree(directory, ignore_errors=True)


async def sql_value(url: str, sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def sql_execute(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def new_database(cluster: Cluster, name: str) -> str:
    """A fresh, migrated database; its URL on 127.0.0.1."""
    admin = cluster.url("postgres")
    asyncio.run(sql_execute(admin, f'CREATE DATABASE "{name}"'))
    url = cluster.url(name)
    asyncio.run(throughput.PostgresBackend()._migrate(url))
    asyncio.run(sql_execute(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    return url


def drop_database(cluster: Cluster, name: str) -> None:
    asyncio.run(
        sql_execute(cluster.url("postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    )


# Figures of the database ---------------------------------------------------------------------


@dataclass
class DbState:
    inserted: int
    updated: int
    deleted: int
    wal_lsn: str
    relation_bytes: int


async def db_state(url: str) -> DbState:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """
            SELECT coalesce(sum(n_tup_ins), 0) AS ins, coalesce(sum(n_tup_upd), 0) AS upd,
                   coalesce(sum(n_tup_del), 0) AS del
            FROM pg_stat_user_tables WHERE schemaname = $1
            """,
            SCHEMA,
        )
        size = await conn.fetchval(
            """
            SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind = 'r'
            """,
            SCHEMA,
        )
        lsn = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
        return DbState(int(row["ins"]), int(row["upd"]), int(row["del"]), lsn, int(size))
    finally:
        await conn.close()


async def wal_bytes(url: str, start: str, end: str) -> int:
    return int(await sql_value(url, f"SELECT pg_wal_lsn_diff('{end}', '{start}')::bigint"))


@dataclass
class Writes:
    """What a phase (enqueue or drain) wrote, per job."""

    rows_inserted: float
    rows_updated: float
    rows_deleted: float
    wal_bytes: float
    relation_bytes: float  # table + index bytes added (kept), per job


def writes_per_job(url: str, before: DbState, after: DbState, jobs: int) -> Writes:
    wal = asyncio.run(wal_bytes(url, before.wal_lsn, after.wal_lsn))
    return Writes(
        rows_inserted=(after.inserted - before.inserted) / jobs,
        rows_updated=(after.updated - before.updated) / jobs,
        rows_deleted=(after.deleted - before.deleted) / jobs,
        wal_bytes=wal / jobs,
        relation_bytes=(after.relation_bytes - before.relation_bytes) / jobs,
    )


def settle_statistics() -> None:
    """Backends flush their table statistics when they exit; a moment after the clients closed
    their connections, every counter is in."""
    time.sleep(1.5)


# CPU ------------------------------------------------------------------------------------------


def tree_cpu(roots: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each live process under (and including) `roots`."""
    seconds: dict[int, float] = {}
    for root in roots:
        try:
            parent = psutil.Process(root)
            procs = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                seconds[proc.pid] = times.user + times.system
    return seconds


def machine_busy() -> float:
    """CPU seconds this machine's cores have spent not idle (every process, ours or not)."""
    times = psutil.cpu_times()
    # guest time is already counted in user time; iowait and steal are not this machine's work.
    parts = ("user", "nice", "system", "irq", "softirq")
    return float(sum(getattr(times, part, 0.0) for part in parts))


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two snapshots (processes started in between count from zero)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


# A drain -------------------------------------------------------------------------------------


@dataclass
class Drain:
    hosts: int
    jobs: int
    steady_s: float
    steady_jobs: int
    steady_per_s: float
    worker_cpu_s: float  # steady window, all supervisors and children
    db_cpu_s: float  # steady window, all PostgreSQL server processes
    db_exec_s: float  # pg_stat_statements total_exec_time over the whole drain
    db_enqueue_cpu_s: float  # the enqueue (batches of 1000, COPY), all PostgreSQL processes
    statements: list[dict[str, Any]]  # the drain's costliest statements
    machine_cpu_s: float  # steady window, every process on the machine
    connections_per_host: list[int]
    exactly_once: bool
    workers_that_ran_jobs: int  # distinct job_attempts.worker (host name and process id)
    enqueue: Writes
    drain: Writes


def host_command(net: Network, index: int, url: str, args: argparse.Namespace) -> list[str]:
    command = throughput.worker_command(url, args.concurrency, args.parallelism)
    return ["ip", "netns", "exec", net.namespaces[index - 1], *command]


POLL_SQL = f"""
    SELECT count(*) FILTER (WHERE status = 'succeeded') AS done,
           count(*) FILTER (WHERE status IN ('failed', 'dead', 'cancelled')) AS bad
    FROM {SCHEMA}.jobs
"""
ACTIVITY_SQL = """
    SELECT host(client_addr) AS addr, count(*) AS n FROM pg_stat_activity
    WHERE datname = current_database() AND client_addr IS NOT NULL
    GROUP BY 1
"""
# pg_stat_statements' total over the drain, less the benchmark's own polling statements; top
# level only, as track=all also counts the statements inside functions (the claim's).
EXEC_SQL = """
    SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements
    WHERE toplevel AND query NOT LIKE '%count(*) FILTER%' AND query NOT LIKE '%pg_stat_activity%'
"""

TOP_SQL = """
    SELECT calls, total_exec_time, rows, toplevel,
           left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS query
    FROM pg_stat_statements
    WHERE query NOT LIKE '%count(*) FILTER%' AND query NOT LIKE '%pg_stat_activity%'
    ORDER BY total_exec_time DESC LIMIT 6
"""


async def top_statements(url: str) -> list[dict[str, Any]]:
    """The drain's costliest statements (pg_stat_statements, reset before the drain)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [dict(row) for row in await conn.fetch(TOP_SQL)]
    finally:
        await conn.close()


async def poll_counts(conn: Any) -> tuple[int, int, dict[str, int]]:
    """(succeeded, failed-like, connections by client address)."""
    row = await conn.fetchrow(POLL_SQL)
    activity = await conn.fetch(ACTIVITY_SQL)
    return int(row["done"]), int(row["bad"]), {r["addr"]: int(r["n"]) for r in activity}


def check_exactly_once(url: str, jobs: int) -> tuple[bool, str, int]:
    """Every job succeeded on its first attempt, with exactly one attempt row, and no other;
    also the number of worker processes that ran them."""

    async def check() -> tuple[bool, str, int]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            row = await conn.fetchrow(
                f"""
                SELECT
                  (SELECT count(*) FROM {SCHEMA}.jobs) AS jobs,
                  (SELECT count(*) FROM {SCHEMA}.jobs
                   WHERE status = 'succeeded' AND attempt = 1) AS once,
                  (SELECT count(*) FROM {SCHEMA}.job_attempts) AS attempts,
                  (SELECT count(DISTINCT job_id) FROM {SCHEMA}.job_attempts
                   WHERE outcome = 'succeeded') AS attempted_jobs,
                  (SELECT count(*) FROM {SCHEMA}.job_attempts a
                   WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.jobs j WHERE j.id = a.job_id))
                   AS strays,
                  (SELECT count(DISTINCT worker) FROM {SCHEMA}.job_attempts) AS workers
                """
            )
        finally:
            await conn.close()
        figures = dict(row)
        ok = (
            figures["jobs"] == jobs
            and figures["once"] == jobs
            and figures["attempts"] == jobs
            and figures["attempted_jobs"] == jobs
            and figures["strays"] == 0
        )
        detail = ", ".join(f"{k}={v}" for k, v in figures.items())
        return ok, detail, int(figures["workers"])

    return asyncio.run(check())


@dataclass
class Watched:
    """What the poll saw while the hosts drained."""

    steady_s: float
    steady_jobs: int
    worker_cpu_s: float
    db_cpu_s: float
    machine_cpu_s: float  # every process on the machine, other users' too
    connections: dict[str, int]  # the most seen per client address


def watch(
    url: str,
    processes: list[subprocess.Popen[bytes]],
    logs: Sequence[IO[bytes]],
    postmaster: int,
    args: argparse.Namespace,
) -> Watched:
    """Poll (on one connection, whose server process is left out of the database's CPU) until
    every job succeeded; CPU over the steady window (first -> last success)."""
    import asyncpg

    async def run() -> Watched:
        conn = await asyncpg.connect(url)
        try:
            return await poll_until_done(conn, processes, logs, postmaster, args)
        finally:
            await conn.close()

    return asyncio.run(run())


async def poll_until_done(
    conn: Any,
    processes: list[subprocess.Popen[bytes]],
    logs: Sequence[IO[bytes]],
    postmaster: int,
    args: argparse.Namespace,
) -> Watched:
    pids = [p.pid for p in processes]
    poller = conn.get_server_pid()

    def database_cpu() -> dict[int, float]:
        return {pid: s for pid, s in tree_cpu([postmaster]).items() if pid != poller}

    started = time.perf_counter()
    first: tuple[float, int, dict[int, float], dict[int, float], float] | None = None
    most: dict[str, int] = {}
    while True:
        now = time.perf_counter()
        done, bad, connections = await poll_counts(conn)
        for addr, n in connections.items():
            most[addr] = max(most.get(addr, 0), n)
        if done and first is None:
            first = (now, done, tree_cpu(pids), database_cpu(), machine_busy())
        if first is not None and done >= args.jobs:
            return Watched(
                steady_s=now - first[0],
                steady_jobs=args.jobs - first[1],
                worker_cpu_s=cpu_between(first[2], tree_cpu(pids)),
                db_cpu_s=cpu_between(first[3], database_cpu()),
                machine_cpu_s=machine_busy() - first[4],
                connections=most,
            )
        if bad:
            raise throughput.BenchmarkError(f"{bad} job(s) did not succeed")
        for process, log in zip(processes, logs, strict=True):
            if process.poll() is not None:
                output = "\n".join(throughput.read_log(log)[-30:])
                raise throughput.BenchmarkError(
                    f"a supervisor exited early (code {process.returncode}) "
                    f"with {done}/{args.jobs} done:\n{output}"
                )
        if now - started > args.timeout:
            raise throughput.BenchmarkError(f"timed out with {done}/{args.jobs} job(s) succeeded")
        await asyncio.sleep(POLL_INTERVAL)


def drain_with_hosts(
    cluster: Cluster, net: Network, name: str, hosts: int, args: argparse.Namespace
) -> Watched:
    """Start one supervisor per host, watch the drain, stop them (SIGTERM) before returning."""
    host_url = cluster.url(name, host=cluster.listen)
    processes: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(hosts)]
        try:
            for i, log in enumerate(logs, start=1):
                processes.append(
                    subprocess.Popen(
                        host_command(net, i, host_url, args),
                        env=throughput.worker_env(),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            return watch(cluster.url(name), processes, logs, cluster.postmaster_pid(), args)
        finally:
            for process in processes:
                throughput.stop_supervisor(process)


def enqueue(url: str, jobs: int, postmaster: int | None = None) -> float:
    """Enqueue `jobs` no-op jobs in batches; the PostgreSQL server's CPU seconds meanwhile
    (taken before the client disconnects, while its server process still exists)."""
    module = throughput.load_jobs()
    fn: JobFunction[Any, Any] = module.anoop
    app = App(database_url=url)
    try:
        app.client.counts()  # connect outside the measure
        before = tree_cpu([postmaster]) if postmaster else {}
        throughput.enqueue_batches(app, fn, jobs)
        return cpu_between(before, tree_cpu([postmaster])) if postmaster else 0.0
    finally:
        app.close()


def run_drain(
    cluster: Cluster, net: Network, hosts: int, label: str, args: argparse.Namespace
) -> Drain:
    """Enqueue `--jobs` jobs into a fresh database and drain them with `hosts` hosts."""
    name = f"jw_scaleout_{label}_{os.getpid()}"
    url = new_database(cluster, name)
    try:
        before_enqueue = asyncio.run(db_state(url))
        enqueue_cpu = enqueue(url, args.jobs, cluster.postmaster_pid())
        settle_statistics()
        before_drain = asyncio.run(db_state(url))
        asyncio.run(sql_execute(url, "SELECT pg_stat_statements_reset()"))
        watched = drain_with_hosts(cluster, net, name, hosts, args)
        db_exec_ms = asyncio.run(sql_value(url, EXEC_SQL))
        statements = asyncio.run(top_statements(url))
        settle_statistics()
        after_drain = asyncio.run(db_state(url))
        ok, detail, workers = check_exactly_once(url, args.jobs)
        if not ok:
            raise throughput.BenchmarkError(f"not exactly once with {hosts} host(s): {detail}")
        return Drain(
            hosts=hosts,
            jobs=args.jobs,
            steady_s=watched.steady_s,
            steady_jobs=watched.steady_jobs,
            steady_per_s=throughput.rate(watched.steady_jobs, watched.steady_s),
            worker_cpu_s=watched.worker_cpu_s,
            db_cpu_s=watched.db_cpu_s,
            db_exec_s=float(db_exec_ms) / 1000,
            db_enqueue_cpu_s=enqueue_cpu,
            statements=statements,
            machine_cpu_s=watched.machine_cpu_s,
            connections_per_host=[
                watched.connections.get(net.host_address(i), 0) for i in range(1, hosts + 1)
            ],
            exactly_once=ok,
            workers_that_ran_jobs=workers,
            enqueue=writes_per_job(url, before_enqueue, before_drain, args.jobs),
            drain=writes_per_job(url, before_drain, after_drain, args.jobs),
        )
    finally:
        drop_database(cluster, name)


# Running and the report ----------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    reason = netns_available()
    if reason is not None:
        raise throughput.BenchmarkError(reason)
    counts: list[int] = args.hosts
    runs: dict[int, list[Drain]] = {n: [] for n in counts}
    with hosts_network(max(counts)) as net, private_cluster(net) as cluster:
        for repeat in range(1, args.repeat + 1):
            order = counts if repeat % 2 else list(reversed(counts))
            for hosts in order:
                throughput.progress(
                    f"[{repeat}/{args.repeat}] {args.jobs:,} jobs, {hosts} host(s) x "
                    f"{args.concurrency} process(es) x {args.parallelism} slot(s) ..."
                )
                drain = run_drain(cluster, net, hosts, f"{hosts}h{repeat}", args)
                throughput.progress(
                    f"    {drain.steady_per_s:,.0f} jobs/s, exactly once "
                    f"({drain.workers_that_ran_jobs} worker processes ran jobs), worker CPU "
                    f"{drain.worker_cpu_s:.1f} s, database CPU {drain.db_cpu_s:.1f} s"
                )
                runs[hosts].append(drain)
    return {"args": vars(args), "runs": runs, "cpus": os.cpu_count()}


def median(values: list[float]) -> float:
    return statistics.median(values)


def format_report(results: dict[str, Any]) -> str:
    runs: dict[int, list[Drain]] = results["runs"]
    args = results["args"]
    base = median([d.steady_per_s for d in runs[min(runs)]])
    lines = [
        "jobworker scale-out benchmark (hosts = network namespaces on one machine, "
        f"{results['cpus']} CPUs shared by every host and the database)",
        f"  {args['jobs']:,} no-op async jobs per drain; each host: {args['concurrency']} "
        f"process(es) x {args['parallelism']} slot(s); medians of {args['repeat']} repeat(s); "
        "every drain checked exactly once",
        "",
        f"  {'hosts':>5}  {'jobs/s':>8}  {'x 1 host':>8}  {'runs (jobs/s)':<26}"
        f"  {'worker CPU/job':>14}  {'db CPU/job':>10}  {'db exec/job':>11}  "
        f"{'cores busy: workers + db / machine':>34}  conns/host",
    ]
    for hosts in sorted(runs):
        ds = runs[hosts]
        rate = median([d.steady_per_s for d in ds])
        worker = median([d.worker_cpu_s / d.steady_jobs * 1e6 for d in ds])
        db = median([d.db_cpu_s / d.steady_jobs * 1e6 for d in ds])
        exec_ = median([d.db_exec_s / d.jobs * 1e6 for d in ds])
        cores_w = median([d.worker_cpu_s / d.steady_s for d in ds])
        cores_db = median([d.db_cpu_s / d.steady_s for d in ds])
        cores_all = median([d.machine_cpu_s / d.steady_s for d in ds])
        conns = ds[len(ds) // 2].connections_per_host
        spread = ", ".join(
            f"{d.steady_per_s:,.0f}" for d in sorted(ds, key=lambda d: d.steady_per_s)
        )
        lines.append(
            f"  {hosts:>5}  {rate:>8,.0f}  {rate / base:>7.2f}x  {spread:<26}"
            f"  {worker:>11,.0f} µs  {db:>7,.0f} µs  {exec_:>8,.0f} µs  "
            f"{cores_w:>13.2f} + {cores_db:.2f} / {cores_all:<4.2f} of {results['cpus']}"
            f"  {conns}"
        )
    every = [d for ds in runs.values() for d in ds]
    lines.append("")
    lines.append("  per job, medians over every drain:")
    for phase in ("enqueue", "drain"):
        w = [getattr(d, phase) for d in every]
        lines.append(
            f"    {phase:<8} rows inserted {median([x.rows_inserted for x in w]):.2f}, "
            f"updated {median([x.rows_updated for x in w]):.2f}, "
            f"deleted {median([x.rows_deleted for x in w]):.2f}; "
            f"WAL {median([x.wal_bytes for x in w]):,.0f} B; "
            f"table+index bytes kept {median([x.relation_bytes for x in w]):+,.0f} B"
        )
    drain_us = median([d.db_cpu_s / d.steady_jobs * 1e6 for d in every])
    enqueue_us = median([d.db_enqueue_cpu_s / d.jobs * 1e6 for d in every])
    lines.append(
        f"    database CPU: {enqueue_us:,.0f} µs per job enqueued (batches of "
        f"{throughput.BATCH_CHUNK}) + {drain_us:,.0f} µs per job drained -> about "
        f"{1e6 / (enqueue_us + drain_us):,.0f} jobs/s (enqueued and run) per database core"
    )
    per_process = median(
        [c / args["concurrency"] for d in every for c in d.connections_per_host if c]
    )
    lines.append(
        f"    connections: {per_process:.1f} per worker process "
        "(most seen per host / processes per host; the supervisor's included)"
    )
    last = every[-1]
    lines.append(
        f"  the costliest statements of the last drain ({last.hosts} host(s), "
        "pg_stat_statements; µs of execution per job drained):"
    )
    for st in last.statements:
        lines.append(
            f"    {st['total_exec_time'] * 1000 / last.jobs:>6.1f} µs  {st['calls']:>7,} calls  "
            f"{st['rows']:>7,} rows  {'' if st['toplevel'] else '(nested) '}{st['query']}"
        )
    return "\n".join(lines)


def to_json(results: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "args": results["args"],
        "cpus": results["cpus"],
        "runs": {str(k): [asdict(d) for d in v] for k, v in results["runs"].items()},
    }


def host_counts(text: str) -> list[int]:
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("host counts are positive integers, e.g. 1,2,3")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Drain no-op jobs with 1, 2, 3 hosts (network namespaces) on one PostgreSQL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=throughput.positive_int, default=20_000)
    parser.add_argument("--hosts", type=host_counts, default=[1, 2, 3], help="host counts")
    parser.add_argument(
        "--concurrency", type=throughput.positive_int, default=1, help="processes per host"
    )
    parser.add_argument(
        "--parallelism", type=throughput.positive_int, default=10, help="slots per process"
    )
    parser.add_argument("--repeat", type=throughput.positive_int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run_benchmark(args)
    except (throughput.BenchmarkError, ScaleoutError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json

        print(json.dumps(to_json(results), indent=2))
    else:
        print(format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
