"""An exec whose stream stays open after its process is gone: judged at once, not after EXEC.

containerd's CRI gives every exec the container's environment, ``HOSTNAME=<pod hostname>`` in it
(any runtime). Before an exec is requested, :func:`script` lists the pod's processes on its node
(the baseline); while the exec's stream is open, the same list is read again: when every process
of the pod was already there before the exec (and none runs the exec's command line), nothing of
the exec is left and its end is the runtime's to report. Seen twice, ``CONFIRM`` seconds apart,
after the exec had ``AFTER`` seconds to start and end: judged. A slow start, a concurrent exec, a
long command or a workload that keeps starting processes leaves a new process in the pod, so the
wait goes on to the exec's own deadline.
"""

from __future__ import annotations

import shlex
import time
from typing import Any, Callable, Sequence

AFTER = 10  # seconds an exec's stream may stay open before the pod's processes are looked at
CONFIRM = 2  # seconds between the two looks that find nothing of it
EVERY = 2  # seconds between looks


def script(hostname: str) -> str:
    """Print ``<pid> <args>`` for each process whose environment holds HOSTNAME=<hostname>."""
    env = shlex.quote(f"HOSTNAME={hostname}")
    return (f"for f in $(grep -l -a -z -x -F -e {env} /proc/[0-9]*/environ 2>/dev/null); do d=${{f%/environ}}; "
            "a=$(tr '\\0' ' ' < \"$d/cmdline\" 2>/dev/null) && echo \"${d#/proc/} $a\"; done; true")


def parse(text: str) -> dict[int, str]:
    out = {}
    for ln in text.splitlines():
        pid, _, args = ln.partition(" ")
        if pid.isdigit():
            out[int(pid)] = args.strip()
    return out


def judge(procs: dict[int, str], argv: Sequence[str], baseline: set[int]) -> str | None:
    """Why nothing of the exec is left in the pod, or None (a process of the pod came since the
    baseline, or runs the exec's command line)."""
    line = " ".join(argv)
    if any(pid not in baseline or args == line for pid, args in procs.items()):
        return None
    return f"every process of the pod ({len(procs)}) was there before the exec, none of it is left"


class Watch:
    """``check()`` for :func:`k8s_suite.attach.feed_and_wait`: None while the exec may still run,
    else why its open stream is the runtime's fault. ``look()`` runs the node script."""

    def __init__(self, argv: Sequence[str], look: Callable[[], str], clock: Callable[[], float] = time.monotonic):
        self.argv, self.look, self.clock = list(argv), look, clock
        try:  # none of the pod's processes found: the lookup proves nothing, no early judgement
            self.baseline: set[int] | None = set(parse(look())) or None
        except Exception:  # noqa: BLE001 - no baseline, no early judgement: the exec's own deadline stays
            self.baseline = None
        self.began = clock()
        self.last = 0.0
        self.empty_since: float | None = None

    def check(self) -> str | None:
        now = self.clock()
        if self.baseline is None or now - self.began < AFTER or now - self.last < EVERY:
            return None
        self.last = now
        try:
            why = judge(parse(self.look()), self.argv, self.baseline)
        except Exception:  # noqa: BLE001 - a failed look proves nothing; the exec's own deadline stays
            why = None
        if why is None:
            self.empty_since = None
            return None
        if self.empty_since is None:
            self.empty_since = now
            return None
        return why if now - self.empty_since >= CONFIRM else None


def for_pod(kube: Any, name: str, argv: Sequence[str]) -> Watch:
    """A watch of pod ``name`` for the exec ``argv``, its baseline read now (call it before the
    exec is requested). The pod's hostname and node are read once per pod."""
    where = kube.exec_where.get(name)
    if where is None:
        pod = kube.get(name) or {}
        where = kube.exec_where[name] = ((pod.get("spec") or {}).get("hostname") or name,
                                         (pod.get("spec") or {}).get("nodeName"))
    host, node = where

    def look() -> str:
        if not node:
            raise LookupError(f"pod {name} has no node")
        return kube.ctx.node_sh(node, script(host), ok=None).stdout

    return Watch(argv, look)
