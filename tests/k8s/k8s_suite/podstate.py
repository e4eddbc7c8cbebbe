"""Reading pod objects (the API's JSON as dicts, camelCase keys) without a cluster.

The suite reads pods as raw JSON (``_preload_content=False``; watch ``raw_object``), so what a
test asserts on is exactly what ``kubectl get -o json`` would show.
"""

from __future__ import annotations

import time

import json
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

Pod = Mapping[str, Any]
TERMINAL = ("Succeeded", "Failed")
# Waiting reasons that never resolve by themselves for a pod of this suite: stop waiting at once.
FATAL_WAITING = frozenset({"ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                           "CreateContainerConfigError"})


def phase(pod: Pod | None) -> str | None:
    return (pod or {}).get("status", {}).get("phase")


def statuses(pod: Pod | None) -> list[Mapping[str, Any]]:
    st = (pod or {}).get("status", {})
    return list(st.get("initContainerStatuses") or []) + list(st.get("containerStatuses") or [])


def container_status(pod: Pod | None, name: str | None = None) -> Mapping[str, Any] | None:
    """Status of container ``name`` (default: the first regular container)."""
    regular = list((pod or {}).get("status", {}).get("containerStatuses") or [])
    if name is None:
        return regular[0] if regular else None
    for cs in statuses(pod):
        if cs.get("name") == name:
            return cs
    return None


def state(pod: Pod | None, name: str | None = None, which: str = "terminated") -> Mapping[str, Any] | None:
    cs = container_status(pod, name)
    return ((cs or {}).get("state") or {}).get(which)


def terminated(pod: Pod | None, name: str | None = None) -> Mapping[str, Any] | None:
    return state(pod, name, "terminated")


def running(pod: Pod | None, name: str | None = None) -> Mapping[str, Any] | None:
    return state(pod, name, "running")


def container_id(cs: Mapping[str, Any] | None) -> str | None:
    """``containerd://abc..`` -> ``abc..``."""
    raw = (cs or {}).get("containerID") or ""
    return raw.split("://", 1)[-1] or None


def container_ids(pod: Pod | None) -> list[str]:
    out = []
    for cs in statuses(pod):
        for key in ("containerID",):
            if cs.get(key):
                out.append(container_id(cs))
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if last.get("containerID"):
            out.append(container_id(last))
        term = (cs.get("state") or {}).get("terminated") or {}
        if term.get("containerID"):
            out.append(container_id(term))
    seen: list[str] = []
    for i in out:
        if i and i not in seen:
            seen.append(i)
    return seen


def fatal_waiting(pod: Pod | None) -> str | None:
    """``reason: message`` of a container waiting for a reason that will not resolve, else None."""
    for cs in statuses(pod):
        w = (cs.get("state") or {}).get("waiting") or {}
        if w.get("reason") in FATAL_WAITING:
            return f"container {cs.get('name')}: {w.get('reason')}: {w.get('message', '')}".strip()
    return None


def describe(pod: Pod | None, *, gone_note: str = "pod not found") -> str:
    """One paragraph: phase, node, deletion, conditions that are not True, each container's state."""
    if not pod:
        return gone_note
    meta, spec, st = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    parts = [f"pod {meta.get('namespace', '?')}/{meta.get('name', '?')}: phase={st.get('phase')}"]
    if spec.get("nodeName"):
        parts.append(f"node={spec['nodeName']}")
    if spec.get("runtimeClassName"):
        parts.append(f"runtimeClassName={spec['runtimeClassName']}")
    if meta.get("deletionTimestamp"):
        parts.append(f"deletionTimestamp={meta['deletionTimestamp']}")
    if meta.get("finalizers"):
        parts.append(f"finalizers={meta['finalizers']}")
    if st.get("reason") or st.get("message"):
        parts.append(f"reason={st.get('reason')} message={st.get('message')!r}")
    bad = [f"{c.get('type')}={c.get('status')}({c.get('reason') or ''})" for c in st.get("conditions") or []
           if c.get("status") != "True"]
    if bad:
        parts.append("conditions: " + ", ".join(bad))
    for cs in statuses(pod):
        parts.append(f"container {cs.get('name')}: {describe_state(cs.get('state') or {})}"
                     f" restarts={cs.get('restartCount', 0)}")
    return "; ".join(parts)


def describe_state(s: Mapping[str, Any]) -> str:
    if "terminated" in s and s["terminated"] is not None:
        t = s["terminated"]
        return (f"terminated exitCode={t.get('exitCode')} reason={t.get('reason')}"
                + (f" signal={t['signal']}" if t.get("signal") else "")
                + (f" message={t.get('message')!r}" if t.get("message") else "")
                + f" started={t.get('startedAt')} finished={t.get('finishedAt')}")
    if "running" in s and s["running"] is not None:
        return f"running since {s['running'].get('startedAt')}"
    if "waiting" in s and s["waiting"] is not None:
        w = s["waiting"]
        return f"waiting reason={w.get('reason')}" + (f" message={w.get('message')!r}" if w.get("message") else "")
    return "no state yet"


# --- conditions for the wait helper ------------------------------------------------------------------

Condition = Callable[[Pod | None], bool]
Stop = Callable[[Pod | None, bool], str | None]  # (pod, seen_before) -> why waiting is pointless, or None


def phase_in(*phases: str) -> Condition:
    return lambda pod: pod is not None and phase(pod) in phases


def gone(pod: Pod | None) -> bool:
    return pod is None


def container_terminated(name: str | None = None) -> Condition:
    return lambda pod: terminated(pod, name) is not None


def all_exited(pod: Pod | None) -> bool:
    """Every regular container of the pod (as many as its spec has) is in state terminated."""
    if pod is None:
        return False
    want = len((pod.get("spec") or {}).get("containers") or [])
    regular = list((pod.get("status") or {}).get("containerStatuses") or [])
    return want > 0 and len(regular) == want and all((cs.get("state") or {}).get("terminated") for cs in regular)


def stuck_after_exit(pod: Pod | None) -> str:
    """Why a pod whose containers all exited is not in a terminal phase ('' when that is not the case)."""
    if not all_exited(pod) or phase(pod) in TERMINAL:
        return ""
    return (f"every container has exited but the pod is still {phase(pod)}: the kubelet reports a terminal phase "
            "only once the pod sandbox has stopped, so the runtime's StopPodSandbox has not finished (look for "
            "KillPodSandbox / StopPodSandbox errors in the kubelet and containerd logs below)")


def nonzero_exits(pod: Pod | None) -> list[str]:
    """``name: exitCode N (reason)`` for every regular container that did not exit 0."""
    out = []
    for cs in (pod or {}).get("status", {}).get("containerStatuses") or []:
        t = (cs.get("state") or {}).get("terminated") or {}
        if t.get("exitCode") != 0:
            out.append(f"{cs.get('name')}: exitCode {t.get('exitCode')!r} ({t.get('reason')})")
    return out


def container_running(name: str | None = None) -> Condition:
    return lambda pod: pod is not None and phase(pod) == "Running" and running(pod, name) is not None


def stop_unless(targets: Sequence[str]) -> Stop:
    """Default early stop while waiting for a phase in ``targets``: another terminal phase, a
    waiting reason that never resolves, or the pod deleted after it was seen."""

    def stop(pod: Pod | None, seen: bool) -> str | None:
        if pod is None:
            return "the pod was deleted while waiting" if seen else None
        ph = phase(pod)
        if ph in TERMINAL and ph not in targets:
            return f"the pod reached phase {ph}, not {'/'.join(targets)}"
        fatal = fatal_waiting(pod)
        if fatal:
            return fatal
        return None

    return stop


def running_longer_than(container: str, seconds: float, clock=time.monotonic) -> Stop:
    """Stop waiting when ``container`` has been seen running for ``seconds`` (a short command that
    does not end will not end): measured from the first observation, not the node's clock."""
    first: dict[str, float] = {}

    def stop(pod: Pod | None, seen: bool) -> str | None:
        cs = container_status(pod, container) or {}
        if not (cs.get("state") or {}).get("running"):
            return stop_if_deleted(pod, seen)
        since = first.setdefault(_cid(cs), clock())
        if clock() - since >= seconds:
            return f"container {container} still running {seconds:.0f}s after it was first seen running"
        return None
    return stop


def _cid(cs: Mapping[str, Any]) -> str:
    return str(cs.get("containerID") or "")


def outliving_its_kill(pod: Pod | None, settle: float, now: datetime | None = None) -> str | None:
    """The API's view of why a pod being deleted will not go by waiting: one of its containers is
    still running ``settle`` seconds after its deletionTimestamp (the delete's time plus its grace
    period, when the kubelet's SIGKILL is due), or None. A runtime whose kill reaches the container
    ends it at once; one that cannot (processes outside the killed group, a wait that never returns)
    does not end it later either. Judged on the API server's timestamp against this machine's
    clock: a skew of a few seconds is far inside ``settle``. The API's state is the kubelet's
    report, which can lag: :class:`k8s_suite.stuck.Judge` confirms it with containerd's."""
    deleting = parse_time(((pod or {}).get("metadata") or {}).get("deletionTimestamp"))
    if deleting is None:
        return None
    late = ((now or datetime.now(timezone.utc)) - deleting).total_seconds()
    running = [cs.get("name") for cs in statuses(pod) if "running" in (cs.get("state") or {})]
    if running and late >= settle:
        return f"container(s) {', '.join(running)} still running {late:.0f}s after the grace period of its delete ended"
    return None


def never_stop(pod: Pod | None, seen: bool) -> str | None:
    return None


def stop_if_deleted(pod: Pod | None, seen: bool) -> str | None:
    return "the pod was deleted while waiting" if (pod is None and seen) else None


# --- events ----------------------------------------------------------------------------------------


def event_time(ev: Mapping[str, Any]) -> str:
    """The best timestamp of an event (RFC 3339 strings sort chronologically)."""
    series = ev.get("series") or {}
    return (series.get("lastObservedTime") or ev.get("lastTimestamp") or ev.get("eventTime")
            or ev.get("firstTimestamp") or ev.get("metadata", {}).get("creationTimestamp") or "")


def _event_sort_key(ev: Mapping[str, Any]) -> datetime:
    try:
        return parse_time(event_time(ev)) or datetime.min.replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)


def format_events(events: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for ev in sorted(events, key=_event_sort_key):
        obj = ev.get("involvedObject") or {}
        src = (ev.get("source") or {}).get("component") or ev.get("reportingComponent") or ""
        count = ev.get("count") or (ev.get("series") or {}).get("count") or 1
        rows.append(f"{event_time(ev)}  {ev.get('type') or '-':7} {ev.get('reason') or '-':22} "
                    f"{obj.get('kind', '')}/{obj.get('name', '')}  (x{count}, {src})  {ev.get('message', '')}")
    return "\n".join(rows) if rows else "(no events)"


def parse_time(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def dump(pod: Pod | None) -> str:
    """The pod's status as indented JSON (for diagnostics)."""
    if not pod:
        return "(pod not found)"
    return json.dumps({"metadata": {k: pod.get("metadata", {}).get(k) for k in
                                    ("name", "namespace", "uid", "deletionTimestamp", "finalizers")},
                       "spec": {k: pod.get("spec", {}).get(k) for k in ("nodeName", "runtimeClassName")},
                       "status": pod.get("status", {})}, indent=1, sort_keys=True)
