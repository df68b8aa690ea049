"""Split a py-spy profile of a drain by the worker's phases, in µs per job.

    python benchmarks/spy_phases.py /tmp/spy.txt --jobs 20000 --rate 200

The input is `py-spy record --subprocesses -f raw` over `benchmarks/profile_drain.py`: one
collapsed stack and its sample count a line. Only the worker processes' samples count (their
stacks name the process `jobworker: worker`); each goes to the innermost frame that names a
phase. Two buckets are not CPU for certain: the event loop's own frame as the leaf (`Runner.run`:
the loop waiting in epoll, when py-spy does not see the thread as idle) and asyncpg's
`Connection._do_execute` as the leaf (its Cython encodes, sends, and waits there, which py-spy
cannot tell apart). Compare the total with the processes' own CPU time (profile_drain.py).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

LEAVES = {
    "Connection._do_execute (": "asyncpg _do_execute as the leaf (encode and send, or a wait)",
    "Runner.run (": "the event loop as the leaf (waiting, or the loop's C code)",
}
PHASES = [
    (
        "completer's write: complete_many, end params, end events",
        ("PostgresJobs.complete_many (", "Endings.end_attempts (", "Endings.settle ("),
    ),
    (
        "recorder: round, take, publish",
        ("Recorder._round (", "Recorder._publish (", "Recorder._take (", "Recorder.run ("),
    ),
    ("completion building: Completions.of", ("Completions.of (",)),
    ("handler: Executor.execute", ("Executor.execute (",)),
    ("start: Worker._start", ("Worker._start (",)),
    ("claim: PostgresJobs.claim", ("PostgresJobs.claim (",)),
    ("job task rest: Worker._run_job", ("Worker._run_job (",)),
    ("claim loop rest", ("Worker._claim_loop (",)),
    (
        "side tasks",
        ("_renew_leases", "_heartbeat", "while_no_beat_leads", "Registration", "_watch_"),
    ),
]
OTHER = "event loop callbacks, asyncpg protocol, other"


def phase_of(frames: list[str]) -> str:
    for key, name in LEAVES.items():
        if key in frames[-1]:
            return name
    for frame in reversed(frames):
        for name, keys in PHASES:
            if any(key in frame for key in keys):
                return name
    return OTHER


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--rate", type=float, default=100.0, help="py-spy's --rate")
    args = parser.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    for line in args.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "jobworker: worker" in stack and count.isdigit():
            counts[phase_of(stack.split(";"))] += int(count)
    total = sum(counts.values())
    per_job = 1e6 / args.rate / args.jobs
    print(f"worker samples: {total} ({total * per_job:.1f} µs/job)")
    for name, count in counts.most_common():
        print(f"  {count / max(total, 1):6.1%} {count * per_job:7.1f} µs/job  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
