"""A pod's process tree with a child in the shell's process group and one in a session of its own.

Kubernetes ends a container as a whole (runc: every process of its cgroup, the PID namespace's
init first); a runtime that signals only the container's process group (``kill(-pgid)``) misses a
child that called ``setsid`` (a daemon, ``nohup setsid``, a supervisor's worker). S12, S32 and S37
end such a tree three ways (delete, SIGKILL after the grace period, activeDeadlineSeconds) and
require every child gone: each child has its own ``sleep N`` marker, so what is left is named.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from k8s_suite import naming, nodeproc
from k8s_suite import timeouts as T
from k8s_suite.streams import WaitError

KILL_SLACK = 5.0  # seconds by which the rest of a tree is gone once one of it was killed (S32: past SIGKILL's due time)

WHAT = {"group": "the child in the shell's process group",
        "setsid": "the child in a session of its own (setsid)"}


@dataclass(frozen=True)
class Tree:
    markers: dict[str, list[str]]  # WHAT key -> the child's command line (``sleep N``)

    def script(self, prefix: str = "") -> str:
        """``[prefix; ]sleep A & setsid sleep B & wait``: the shell waits for both children."""
        g, s = (" ".join(self.markers[k]) for k in ("group", "setsid"))
        return f"{prefix + '; ' if prefix else ''}{g} & setsid {s} & wait"


def tree(kube, sid: str) -> Tree:
    """The tree of scenario ``sid``, its markers registered (a child left after the scenario is its leak)."""
    return Tree({k: kube.marker(["sleep", str(naming.sleep_seconds(kube.token, f"{sid}-{k}"))]) for k in WHAT})


def wait_started(kube, node: str, t: Tree) -> list[nodeproc.Proc]:
    """Until each child runs once; the setsid child must lead its own session (ps STAT ``s``) and the
    other must not, or the scenario would not test what it names."""
    deadline = time.monotonic() + T.NODE_PROCESS
    while True:
        procs = kube.ctx.ps(node)
        found = {k: nodeproc.with_args(procs, argv) for k, argv in t.markers.items()}
        if all(len(v) == 1 for v in found.values()):
            break
        if time.monotonic() > deadline:
            raise WaitError(f"node {node}: the process tree did not start within {T.NODE_PROCESS}s: "
                            + "; ".join(f"{WHAT[k]}: {len(v)} `{' '.join(t.markers[k])}`" for k, v in found.items()))
        time.sleep(0.25)
    leads = {k: "s" in v[0].stat for k, v in found.items()}
    assert leads == {"group": False, "setsid": True}, (
        f"node {node}: expected only the setsid child to lead a session (ps STAT 's'): "
        + "; ".join(f"{WHAT[k]}: {v[0].line()}" for k, v in found.items()))
    return [p for v in found.values() for p in v]


def left(kube, node: str, t: Tree) -> dict[str, list[nodeproc.Proc]]:
    """The children on the node now (empty: all gone)."""
    procs = kube.ctx.ps(node)
    return {k: found for k, argv in t.markers.items() if (found := nodeproc.with_args(procs, argv))}


def wait_gone(kube, node: str, t: Tree, before: list[nodeproc.Proc], bound: float,
              timeout: float, gone_at: dict[str, float] | None = None) -> tuple[dict[str, list[nodeproc.Proc]], str]:
    """Until no child is left. A child still there ``bound`` seconds from now is judged if the
    runtime's kill has reached the tree by then (a process of it, a child of ``before`` from
    :func:`wait_started` or the shell, their parent, is gone; at least KILL_SLACK seconds before):
    it was not killed. With none gone (the kill not there yet: a slow node), it waits on until
    ``timeout``. Returns the children still there (empty: all gone) and what the verdict rests on;
    ``gone_at`` (when given) gets the monotonic time each child was first seen gone (one poll late at most)."""
    members = {p.pid for p in before} | {p.ppid for p in before if p.ppid > 1}
    start = time.monotonic()
    killed_at = None
    while True:
        procs = kube.ctx.ps(node)
        there = {k: found for k, argv in t.markers.items() if (found := nodeproc.with_args(procs, argv))}
        now = time.monotonic() - start
        if gone_at is not None:
            for k in t.markers.keys() - there.keys():
                gone_at.setdefault(k, start + now)
        if not there:
            return there, ""
        table = nodeproc.by_pid(procs)
        if killed_at is None and any(pid not in table or table[pid].zombie for pid in members):
            killed_at = now
        if killed_at is not None and now >= max(bound, killed_at + KILL_SLACK):
            return there, "another process of its tree was killed"
        if now > timeout:
            return there, "no process of its tree was killed"
        time.sleep(0.25)  # poll interval until the evidence or the deadline


def describe(left: dict[str, list[nodeproc.Proc]]) -> str:
    return "; ".join(f"{WHAT[k]} ({', '.join(p.line().strip() for p in procs)})" for k, procs in left.items())
