"""Whether a deleted pod will not go by waiting: the API's view, confirmed by containerd's.

The API's container state is the kubelet's report, and the kubelet can lag behind containerd: a
pod worker busy with slow sandbox stops reports a container "running" many seconds after
containerd recorded its exit. So a container the API still shows running past its delete's grace
period (:func:`k8s_suite.podstate.outliving_its_kill`) outlives its kill only when containerd's CRI
record of it says so too: its status file (``<containerd root>/io.containerd.grpc.v1.cri/
containers/<id>/status``, what containerd answers the kubelet from) has no finish time. The
task's own state (``ctr tasks ls``, the shim's answer) is added to the verdict: RUNNING means the
kill did not end it; STOPPED means the shim holds a process that ended without reporting its exit.
When containerd recorded the end, the wait goes on (the kubelet may yet catch up), and a pod still
there at the deadline is reported with that, not as a kill that failed.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from datetime import datetime
from typing import Callable, Iterable, Mapping, Sequence

from k8s_suite import podstate
from k8s_suite.podstate import Pod

FRESH = 1.0  # seconds a node's answer is reused within one poll round
CRI_CONTAINERS = "io.containerd.grpc.v1.cri/containers"  # under containerd's root (1.x and 2.x)
_ID = re.compile(r"^[0-9a-f]{64}$")


def status_script(root: str, ids: Iterable[str]) -> str:
    """Prints ``=== <id>`` then containerd's CRI status record of each container id."""
    safe = [i for i in ids if _ID.match(i or "")]
    base = f"{root.rstrip('/')}/{CRI_CONTAINERS}"
    return "".join(f'echo "=== {i}"; cat {shlex.quote(base)}/{i}/status 2>&1; echo; ' for i in safe) or "true"


def parse_status(text: str) -> dict[str, bool | str]:
    """``status_script`` output -> {id: True when containerd recorded the container's end, False
    when it has it running, or the text found instead of a record}."""
    out: dict[str, bool | str] = {}
    for block in re.split(r"^=== ", text, flags=re.M)[1:]:
        cid, _, body = block.partition("\n")
        try:
            rec = json.loads(body.strip())
            out[cid.strip()] = bool(rec.get("FinishedAt"))
        except (ValueError, AttributeError):
            out[cid.strip()] = (body.strip()[:200] or "(empty)")
    return out


def tasks_argv(ctr: str, address: str) -> list[str]:
    return [ctr, "--address", address, "-n", "k8s.io", "tasks", "ls"]


def parse_tasks(text: str) -> dict[str, str]:
    """``ctr tasks ls`` output -> {task (container) id: STATUS}."""
    out: dict[str, str] = {}
    for ln in text.splitlines():
        parts = ln.split()
        if len(parts) >= 3 and _ID.match(parts[0]):
            out[parts[0]] = parts[2]
    return out


def _running(pod: Pod | None) -> list[tuple[str, str]]:
    """(name, container id) of the containers the API shows running."""
    return [(str(cs.get("name")), podstate.container_id(cs) or "") for cs in podstate.statuses(pod)
            if "running" in (cs.get("state") or {})]


class Judge:
    """``judge(pod)``: why ``pod`` will not go by waiting, or None (see the module).
    ``status(node, ids)`` reads containerd's CRI records on ``node`` (:func:`parse_status`),
    ``tasks(node)`` its task list (:func:`parse_tasks`); either raises when it cannot."""

    def __init__(self, settle: float, status: Callable[[str, Sequence[str]], Mapping[str, bool | str]],
                 tasks: Callable[[str], Mapping[str, str]], clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime | None] = lambda: None):
        self.settle, self._status, self._tasks, self._clock, self._now = settle, status, tasks, clock, now
        self._cache: dict[tuple[str, str], tuple[float, object]] = {}

    def _cached(self, key: tuple[str, str], read: Callable[[], object]) -> object:
        hit = self._cache.get(key)
        if hit and self._clock() - hit[0] < FRESH:
            return hit[1]
        try:
            got = read()
        except Exception as e:  # noqa: BLE001 - node access failing: the API's view stands, said so
            got = f"{type(e).__name__}: {str(e)[:200]}"
        self._cache[key] = (self._clock(), got)
        return got

    def _view(self, pod: Pod | None) -> tuple[str | None, list[tuple[str, str]], list[str]]:
        """(the API's reason, or None; the (name, id) of the containers containerd still has running,
        when the API's reason stands; the names of those whose end containerd recorded), with
        ``reason`` carrying why containerd's view is missing when it cannot be read."""
        why = podstate.outliving_its_kill(pod, self.settle, self._now())
        if not why:
            return None, [], []
        node = ((pod or {}).get("spec") or {}).get("nodeName")
        running = _running(pod)
        recs = self._cached((node, ",".join(sorted(c for _, c in running))),
                            lambda: self._status(node, [c for _, c in running])) if node else "the pod names no node"
        if isinstance(recs, str):
            return f"{why} (containerd's view unavailable: {recs})", [], []
        live = [(name, cid) for name, cid in running if recs.get(cid) is not True]
        return why, live, [name for name, cid in running if recs.get(cid) is True]

    def __call__(self, pod: Pod | None) -> str | None:
        why, live, ended = self._view(pod)
        if not why or (ended and not live):
            return None  # not past its kill, or containerd recorded the end: the kubelet has not caught up yet
        if not live:
            return why  # containerd's view unavailable: the API's stands, said so
        node = pod["spec"]["nodeName"]
        tasks = self._cached((node, "tasks"), lambda: self._tasks(node))
        states = {cid: (tasks.get(cid, "gone") if isinstance(tasks, Mapping) else "unknown") for _, cid in live}
        if all(s == "RUNNING" for s in states.values()):
            return f"{why} (containerd: running, its task too; the kill did not end it)"
        shown = ", ".join(f"{name}: task {states[cid].lower()}" for name, cid in live)
        return f"{why} (containerd still reports it running to the kubelet; {shown}: the runtime did not report its end)"

    def all(self, pods: Sequence[Pod]) -> bool:
        """Every pod of ``pods`` outlives its kill (so a wait for them to go is over)."""
        return bool(pods) and all(self(p) for p in pods)

    def note(self, pods: Sequence[Pod]) -> str:
        """'' or why a wait for ``pods`` ended early (every one outlives its kill), or which of their
        containers the API still shows running though containerd recorded their end."""
        whys = [self(p) for p in pods]
        if pods and all(whys):
            return f" (ended early: {whys[0]})"
        lagging = [f"{p['metadata']['name']}: {', '.join(ended)}" for p in pods if (ended := self._view(p)[2])]
        if lagging:
            return (" (containerd recorded the end of container(s) the kubelet still reports running "
                    f"{self.settle:.0f}s+ after the grace period: {'; '.join(lagging[:5])})")
        return ""
