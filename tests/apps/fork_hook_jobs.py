"""A job module whose forked processes misbehave as they start, as a module that sets up
something of its own after fork can: `FORK_HOOK=exit` ends every forked process at once with
exit code 3; `FORK_HOOK=hoard:MB` makes every forked process take MB of memory first."""

from __future__ import annotations

import os

from jobworker import JobContext, job

_hoard: list[bytearray] = []


def _after_fork() -> None:
    hook = os.environ.get("FORK_HOOK", "")
    if hook == "exit":
        os._exit(3)
    if hook.startswith("hoard:"):
        _hoard.append(bytearray(int(hook.removeprefix("hoard:")) * 1024 * 1024))
        for i in range(0, len(_hoard[-1]), 4096):  # touched, so resident
            _hoard[-1][i] = 1


os.register_at_fork(after_in_child=_after_fork)


@job(name="fork_hook.noop")
async def noop(ctx: JobContext) -> None:
    pass
