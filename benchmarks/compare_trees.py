"""Two checkouts of jobworker drained side by side: the ratio of their drain rates.

Usage (B is usually this tree, A a `git worktree add --detach /tmp/base <commit>` of the base):

    python benchmarks/compare_trees.py --tree /tmp/base --tree . --repeat 5 \
        [--backend sqlite] [--jobs 20000] [--concurrency 2] [--parallelism 10]

Each round runs each tree's own `benchmarks/throughput.py --json` once (its jobworker first on
`PYTHONPATH`, this interpreter), in alternating order (A B, then B A, ...), so that the shared
machine's slow spells fall on both. It prints each tree's steady drain rates, their medians and
spread, and the ratio of the medians (each tree over the first), and the same for the CPU time
the whole run took per job (its enqueue, supervisor and workers: user + system, all cores),
which a busy machine disturbs far less than the rate. With `--huey` (SQLite), each
round also drains Huey's SQLite storage (`benchmarks/peers/huey_bench.py`, `--concurrency`
consumer processes, from the peers' venv), and each tree's ratio to Huey's median is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path


def drain_once(tree: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(steady drain rate, CPU µs per job of the whole run: its enqueue, supervisor, workers)."""
    command = [
        sys.executable,
        str(tree / "benchmarks" / "throughput.py"),
        "--backend",
        args.backend,
        "--jobs",
        str(args.jobs),
        "--concurrency",
        str(args.concurrency),
        "--parallelism",
        str(args.parallelism),
        "--single",
        "10",
        "--latency",
        "0",
        "--json",
    ]
    env = dict(os.environ, PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # In the tree (cwd): the workers run as `python -m jobworker`, which imports jobworker from
    # the working directory before PYTHONPATH; from another checkout they would run its code.
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tree, timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{tree}: the benchmark failed:\n{result.stderr[-3000:]}")
    steady: float = json.loads(result.stdout)["drain"]["steady_per_s"] or 0.0
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return steady, cpu / args.jobs * 1e6


def huey_once(args: argparse.Namespace) -> float:
    peers = Path(__file__).resolve().parent / ".venv-peers" / "bin" / "python"
    script = Path(__file__).resolve().parent / "peers" / "huey_bench.py"
    command = [str(peers), str(script), "--jobs", str(args.jobs), "--workers"]
    command += [str(args.concurrency), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"the Huey benchmark failed:\n{result.stderr[-3000:]}")
    steady: float = json.loads(result.stdout)["steady_per_s"] or 0.0
    return steady


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, action="append", required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--parallelism", type=int, default=10)
    parser.add_argument("--huey", action="store_true", help="also drain Huey each round")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.tree]
    runs: dict[Path, list[float]] = {tree: [] for tree in trees}
    cpu: dict[Path, list[float]] = {tree: [] for tree in trees}
    huey: list[float] = []
    for round_ in range(args.repeat):
        order = trees if round_ % 2 == 0 else list(reversed(trees))
        for tree in order:
            rate, per_job = drain_once(tree, args)
            runs[tree].append(rate)
            cpu[tree].append(per_job)
            print(
                f"round {round_ + 1}: {tree}: {rate:,.0f} jobs/s, CPU {per_job:.0f} us/job",
                file=sys.stderr,
            )
        if args.huey:
            huey.append(huey_once(args))
            print(f"round {round_ + 1}: Huey: {huey[-1]:,.0f} jobs/s", file=sys.stderr)
    base = statistics.median(runs[trees[0]])
    base_cpu = statistics.median(cpu[trees[0]])
    for tree in trees:
        values = sorted(runs[tree])
        median = statistics.median(values)
        spread = ", ".join(f"{v:,.0f}" for v in values)
        cpu_median = statistics.median(cpu[tree])
        cpu_spread = ", ".join(f"{v:.0f}" for v in sorted(cpu[tree]))
        print(
            f"{tree}: CPU median {cpu_median:.0f} us/job ({cpu_spread}); "
            f"ratio {cpu_median / base_cpu:.2f}x"
        )
        vs_huey = f"; vs Huey {median / statistics.median(huey):.2f}x" if huey else ""
        print(
            f"{tree}: median {median:,.0f} jobs/s ({spread}); ratio {median / base:.2f}x{vs_huey}"
        )
    if huey:
        spread = ", ".join(f"{v:,.0f}" for v in sorted(huey))
        print(f"Huey (SqliteHuey): median {statistics.median(huey):,.0f} jobs/s ({spread})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
