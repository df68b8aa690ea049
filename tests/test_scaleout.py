"""Two `jobworker run` hosts, each in its own network namespace, drain one private PostgreSQL
cluster: every job runs exactly once. Uses `benchmarks/scaleout.py`'s hosts and cluster; skipped
where network namespaces cannot be created (not root, no iproute2)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import scaleout

pytestmark = pytest.mark.slow

JOBS = 300


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_two_hosts_run_each_job_exactly_once() -> None:
    reason = scaleout.netns_available()
    if reason is not None:
        pytest.skip(reason)
    args = argparse.Namespace(jobs=JOBS, concurrency=1, parallelism=10, timeout=60.0)
    with scaleout.hosts_network(2) as net, scaleout.private_cluster(net) as cluster:
        # run_drain raises unless every job succeeded on its first attempt with one attempt row.
        drain = scaleout.run_drain(cluster, net, 2, "test", args)
        names = list(net.namespaces)
        data = cluster.data
    assert drain.exactly_once
    assert drain.workers_that_ran_jobs >= 1
    listed = namespaces()
    assert not any(name in listed for name in names)
    assert not data.exists()
