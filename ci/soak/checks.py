"""The soak's judgements, pure functions over what the API and the node said (unit-tested).

Each returns the first problem as one line (None: none); the watcher stops at the first one and
names its moment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time of the API (``2026-12-04T09:51:02Z``) as an aware datetime."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def counter_problem(text: str, source: str) -> tuple[int, str | None]:
    """The last value of a 1, 2, 3... counter, and its first break: a gap, or a start again."""
    last = 0
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not line.isdigit():
            return last, f"{source}: line {n} is {line[:60]!r}, not the next number ({last + 1})"
        value = int(line)
        if value != last + 1:
            what = "started again" if value == 1 else f"jumped to {value}" if value > last else f"went back to {value}"
            return last, f"{source}: the counter {what} after {last} (line {n}): the workload was restarted or lost output"
        last = value
    return last, None


def container_problem(name: str, status: dict, first_id: str | None) -> tuple[datetime | None, str] | None:
    """A container that restarted, was replaced, or is not running: the moment and the cause,
    with the previous container's exit as the kubelet recorded it."""
    cs = next((c for c in status.get("containerStatuses") or [] if c.get("name") == name), None)
    if cs is None:
        return None
    restarts = int(cs.get("restartCount") or 0)
    if restarts:
        term = (cs.get("lastState") or {}).get("terminated") or {}
        moment = parse_time(term.get("finishedAt"))
        cause = _ended(term) if term else "the previous container's end is not recorded"
        return moment, f"{name}: restarted (restartCount {restarts}) at {_clock(moment)}: {cause}"
    state = cs.get("state") or {}
    if first_id and cs.get("containerID") and cs["containerID"] != first_id:
        return None, f"{name}: the container id changed ({_short(first_id)} -> {_short(cs['containerID'])}) without a restart counted"
    if "terminated" in state:
        t = state["terminated"]
        moment = parse_time(t.get("finishedAt"))
        return moment, f"{name}: ended at {_clock(moment)}: {_ended(t)}"
    if "waiting" in state and first_id:
        w = state["waiting"]
        return None, f"{name}: the container is waiting ({w.get('reason')}: {(w.get('message') or '')[:200]})"
    return None


def _ended(term: dict) -> str:
    """``the container ended with exit code 1 (Error) after 61s``, from a terminated state."""
    started, finished = parse_time(term.get("startedAt")), parse_time(term.get("finishedAt"))
    ran = f" after {(finished - started).total_seconds():.0f}s" if started and finished else ""
    message = f": {term['message'].strip()[:200]}" if (term.get("message") or "").strip() else ""
    return f"the container ended with exit code {term.get('exitCode')} ({term.get('reason') or 'no reason'}{message}){ran}"


def _short(cid: str) -> str:
    return cid.split("://", 1)[-1][:12]


def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%SZ") if moment else "an unrecorded moment"


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    args: str


def parse_ps(text: str) -> list[Proc]:
    """``ps -ww -eo pid,ppid,args`` (header first)."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            out.append(Proc(int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else ""))
    return out


def roots(procs: list[Proc], tag: str) -> list[Proc]:
    """The processes carrying ``tag`` whose parent does not: one per copy of the workload."""
    tagged = {p.pid for p in procs if tag in p.args.split()}
    return [p for p in procs if p.pid in tagged and p.ppid not in tagged]


def process_problem(name: str, procs: list[Proc], tag: str) -> str | None:
    found = roots(procs, tag)
    if len(found) == 1:
        return None
    if not found:
        return f"{name}: no process of the pod on the node (nothing carries {tag})"
    listed = "; ".join(f"pid {p.pid} (parent {p.ppid})" for p in found)
    return f"{name}: {len(found)} copies of the workload on the node, one is not the pod's own: {listed}"


_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
_KLOG = re.compile(r"^[IWEF](\d{2})(\d{2}) (\d{2}:\d{2}:\d{2})(\.\d+)?")


def line_time(line: str, year: int) -> datetime | None:
    """The time a log line was written: RFC 3339 anywhere in it (containerd, reaper's tracing), or klog's prefix."""
    m = _ISO.search(line)
    if m:
        zone = m.group(4) or "Z"
        frac = (m.group(3) or "")[:7]
        try:
            return datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{frac}{'+00:00' if zone == 'Z' else zone}")
        except ValueError:
            return None
    m = _KLOG.match(line)
    if m:
        try:
            return datetime.fromisoformat(f"{year}-{m.group(1)}-{m.group(2)}T{m.group(3)}{(m.group(4) or '')[:7]}+00:00")
        except ValueError:
            return None
    return None


def window(text: str, moment: datetime, before: float = 30, after: float = 15, limit: int = 60) -> list[str]:
    """The lines of a log written within [moment - before, moment + after] (a line without a time
    belongs to the one above it), at most ``limit``, the nearest to the moment kept."""
    lo, hi = moment - timedelta(seconds=before), moment + timedelta(seconds=after)
    picked: list[tuple[float, str]] = []
    current: datetime | None = None
    for line in text.splitlines():
        current = line_time(line, moment.year) or current
        if current is not None and lo <= current <= hi:
            picked.append((abs((current - moment).total_seconds()), line))
    if len(picked) > limit:
        keep = sorted(range(len(picked)), key=lambda i: picked[i][0])[:limit]
        picked = [picked[i] for i in sorted(keep)]
    return [line for _, line in picked]


_LOUD = re.compile(r"\b(WARN|ERROR|level=(warning|error|fatal))\b|^[EW]\d{4} ")


def loud(lines: list[str], limit: int = 8) -> list[str]:
    """The warnings and errors among ``lines`` (at most ``limit``), else the last ``limit`` lines."""
    picked = [ln for ln in lines if _LOUD.search(ln)]
    return picked[:limit] if picked else lines[-limit:]


def now() -> datetime:
    return datetime.now(timezone.utc)
