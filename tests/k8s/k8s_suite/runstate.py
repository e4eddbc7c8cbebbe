"""The run folder shared by pytest-xdist workers, the node-wide barrier and the summary table.

``<artifacts>/k8s-run/<token>/`` holds, for one run:

* ``ids.jsonl`` - container, sandbox and shim ids of this run's pods, recorded while the pods
  existed (S14 and S16 match leftover shims by id, not by count);
* ``done/`` - one marker per finished test (the node-wide barrier waits on them);
* ``zombies-before.txt`` - the node's process table when the run started (zombies that were
  already there are reported, not blamed on this run);
* ``setup-error.txt`` - the one line of an infrastructure failure, for ``ci/phases/scenarios.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from ci.console import Row
from ci.contract import read_durations

from k8s_suite.naming import dns_label, scenario_id
from k8s_suite.timeouts import BARRIER

T_ = TypeVar("T_")


@dataclass(frozen=True)
class RunDir:
    path: Path

    def ensure(self) -> "RunDir":
        (self.path / "done").mkdir(parents=True, exist_ok=True)
        return self

    # ids ---------------------------------------------------------------------------------------
    def record(self, entry: Mapping[str, Any]) -> None:
        """Append one JSON line (a single O_APPEND write: safe across processes)."""
        line = (json.dumps(dict(entry), sort_keys=True) + "\n").encode()
        fd = os.open(self.path / "ids.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def recorded(self) -> list[dict]:
        p = self.path / "ids.jsonl"
        if not p.exists():
            return []
        return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]

    def recorded_ids(self) -> set[str]:
        return ids_of(self.recorded())

    # done markers ------------------------------------------------------------------------------
    def mark_done(self, nodeid: str) -> None:
        (self.path / "done" / _digest(nodeid)).write_text(nodeid)

    def done(self) -> set[str]:
        d = self.path / "done"
        return {p.read_text() for p in d.iterdir()} if d.is_dir() else set()

    def mark_arrived(self, nodeid: str) -> None:
        """A node-wide scenario reached its barrier: its own pods' part is over (they are gone)."""
        d = self.path / "arrived"
        d.mkdir(exist_ok=True)
        (d / _digest(nodeid)).write_text(nodeid)

    def arrived(self) -> set[str]:
        d = self.path / "arrived"
        return {p.read_text() for p in d.iterdir()} if d.is_dir() else set()

    # small files -------------------------------------------------------------------------------
    def write(self, name: str, text: str) -> Path:
        p = self.path / name
        p.write_text(text)
        return p

    def read(self, name: str) -> str | None:
        p = self.path / name
        return p.read_text() if p.exists() else None


def ids_of(entries: Iterable[Mapping[str, Any]]) -> set[str]:
    out: set[str] = set()
    for e in entries:
        out.update(i for i in e.get("container_ids", []) if i)
        out.update(s.get("id") for s in e.get("shims", []) if s.get("id"))
        out.update(s.get("sandbox_id") for s in e.get("shims", []) if s.get("sandbox_id"))
    return out


LIVE_BESIDE = "live_beside_node_wide"  # a run record's key: this namespace's pods live on through its stage's checks


@dataclass(frozen=True)
class LiveBeside:
    """Namespaces (and their recorded ids) whose pod a node-wide scenario keeps running beside the
    other node-wide checks of its stage (S41's survivor, across its containerd restart): those
    checks leave it alone; its own teardown judges what it leaves."""

    namespaces: frozenset[str]
    ids: frozenset[str]

    def holds(self, shim: Any) -> bool:
        """``shim`` (a :class:`k8s_suite.nodeproc.Shim`) is one of those pods'."""
        return shim.namespace in self.namespaces or shim.id in self.ids or shim.sandbox_id in self.ids


def live_beside(entries: Iterable[Mapping[str, Any]]) -> LiveBeside:
    entries = list(entries)
    live = {e["ns"] for e in entries if e.get(LIVE_BESIDE) and e.get("ns")}
    return LiveBeside(frozenset(live), frozenset(ids_of(e for e in entries if e.get("ns") in live)))


def _digest(nodeid: str) -> str:
    return hashlib.sha1(nodeid.encode()).hexdigest()[:20]


# --- node-wide ordering --------------------------------------------------------------------------

def stage_of(node_wide: Any | None) -> int:
    """0 for ordinary scenarios; a node-wide scenario's ``stage`` (default 1) otherwise."""
    if node_wide is None:
        return 0
    return int(getattr(node_wide, "kwargs", {}).get("stage", 1))


def beside_of(node_wide: Any | None) -> bool:
    """``node_wide(stage=N, beside=True)``: the scenario's node-wide part runs beside stage N-1's
    (it needs their own pods gone, not their checks over: S41's restart beside S13/S14/S16's checks)."""
    return bool(node_wide is not None and getattr(node_wide, "kwargs", {}).get("beside", False))


SLOW_GUESS = 60.0  # seconds assumed for a scenario marked slow that has no measured duration yet


def order_key(stage: int, slow: bool, index: int, seconds: float | None = None) -> tuple[int, float, int]:
    """Collection order: by stage; within a stage the longest first (they bound the wall time under
    pytest-xdist; a node-wide one's own pods run before its barrier, beside the stage before): the
    duration measured last time on this runtime, else slow-marked ones first; otherwise as written."""
    return (stage, -(seconds if seconds is not None else (SLOW_GUESS if slow else 0.0)), index)


def for_workers(ordered: Sequence[T_], stage0: int, workers: int) -> list[T_]:
    """``ordered`` (stage 0 first, longest first; then the node-wide ones) rearranged for
    pytest-xdist's load scheduling, which gives worker k the pair at positions 2k and 2k+1 and
    then one item at a time to whichever worker finishes first. A worker always holds the item it
    will run next, so without this the two longest share worker 0 and the last short ones wait
    behind long ones while other workers idle. Here worker k starts the k-th longest with one of
    the shortest queued behind it; the rest keep the longest-first order."""
    head, tail = list(ordered[:stage0]), list(ordered[stage0:])
    if workers < 2 or len(head) < 2 * workers:
        return head + tail
    longest, middle, shortest = head[:workers], head[workers:-workers], head[-workers:][::-1]
    paired = [x for pair in zip(longest, shortest) for x in pair]
    return paired + middle + tail


HISTORY = 5  # runs whose durations a scenario's start order weighs


def _history(path: Path | None) -> dict[str, list[float]]:
    return {k: v[-HISTORY:] for k, v in read_durations(path).items()}


def load_durations(path: Path | None) -> dict[str, float]:
    """Scenario row name -> the longest of its last HISTORY durations on this runtime ({} when
    none): a scenario whose time varies from run to run (one that waits for the kubelet's next
    sync) starts as early as its slow runs need, not as its last run said."""
    return {k: max(v) for k, v in _history(path).items()}


def save_durations(path: Path | None, outcomes: Iterable["Outcome"]) -> None:
    """Append this run's finished scenarios' durations to ``path`` (the last HISTORY kept, atomically)."""
    if not path:
        return
    data = _history(path)
    for o in outcomes:
        if o.result in ("passed", "failed"):
            data[row_name(o.nodeid)] = (data.get(row_name(o.nodeid), []) + [round(o.seconds, 1)])[-HISTORY:]
    tmp = Path(path).with_suffix(".tmp")
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:
        pass


def must_finish_before(stages: Mapping[str, int], stage: int, beside: bool = False) -> set[str]:
    """Test ids that have to be done before a node-wide test of ``stage`` starts (``beside``: but
    those of the stage just before it, see :func:`must_arrive_before`)."""
    return {nid for nid, s in stages.items() if s < stage - (1 if beside and stage > 1 else 0)}


def must_arrive_before(stages: Mapping[str, int], stage: int, beside: bool = False) -> set[str]:
    """``beside``: the node-wide tests of the stage just before ``stage``, which have to reach their
    own barrier (or be done) before it starts; none otherwise."""
    return {nid for nid, s in stages.items() if beside and stage > 1 and s == stage - 1}


class BarrierTimeout(AssertionError):
    pass


def wait_done(run: RunDir, needed: set[str], timeout: float, poll: float = 0.5,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
              arrived: set[str] = frozenset()) -> float:
    """Block until every test in ``needed`` has a done marker and every one in ``arrived`` an arrival
    (or a done) marker; return the seconds waited."""
    start = clock()
    while True:
        done = run.done()
        missing = (needed - done) | (arrived - done - (run.arrived() if arrived else set()))
        if not missing:
            return clock() - start
        if clock() - start > timeout:
            shown = ", ".join(sorted(missing)[:10])
            raise BarrierTimeout(f"node-wide check: {len(missing)} other scenario(s) still not finished after "
                                 f"{timeout:.0f}s: {shown}")
        sleep(poll)


class Barrier:
    """``wait()``: the node-wide barrier of one scenario (see the ``node_wide`` fixture)."""

    def __init__(self, ctx, test: str, nodeid: str, stage: int, stages: dict, beside: bool = False):
        self.ctx, self.test, self.nodeid, self.stage, self.stages, self.beside = ctx, test, nodeid, stage, stages, beside
        self.waited: float | None = None

    def wait(self) -> float:
        self.ctx.run.mark_arrived(self.nodeid)
        needed = must_finish_before(self.stages, self.stage, self.beside)
        arrive = must_arrive_before(self.stages, self.stage, self.beside)
        waited = wait_done(self.ctx.run, needed, BARRIER, arrived=arrive)
        if needed or arrive:
            print(f"node-wide stage {self.stage}: waited {waited:.1f}s for {len(needed)} other scenario(s) to finish"
                  + (f", {len(arrive)} to reach their barrier" if arrive else ""))
        from k8s_suite.runlock import Runs  # the API client: only node-wide scenarios need it

        said: list[str] = []
        other = Runs(self.ctx.api, self.ctx.token).enter("node-wide", log=said.append)  # no other run's scenarios now
        if other >= 1:  # shown in the summary (a worker's output is not)
            said.append(f"{self.test}: node-wide stage {self.stage} waited {other:.1f}s for other runs of the suite")
            self.ctx.run.write(f"coordination-{dns_label(self.test)}.txt", "\n".join(said) + "\n")
        self.waited = waited + other
        return self.waited


# --- summary -------------------------------------------------------------------------------------

@dataclass
class Outcome:
    nodeid: str
    phases: dict[str, str] = field(default_factory=dict)  # when -> passed/failed/skipped
    seconds: float = 0.0
    detail: str = ""
    infrastructure: bool = False  # failed on an InfrastructureError: the cluster/node, not the runtime
    leak: bool = False  # the teardown found what the scenario's pods left on the node (a product failure)
    failures: dict[str, str] = field(default_factory=dict)  # when -> the failure's first line (call, teardown...)

    def add(self, when: str, outcome: str, duration: float, detail: str = "", message: str = "") -> None:
        self.phases[when] = outcome
        self.seconds += duration
        if detail and not self.detail:
            self.detail = detail
        if outcome == "failed":
            self.failures[when] = message

    @property
    def result(self) -> str:
        if self.phases.get("setup") == "failed" or self.phases.get("teardown") == "failed":
            # a failing call with a failing teardown is still a failure first; a leak found at
            # teardown is the scenario's own product failure
            if self.phases.get("call") == "failed" or (self.leak and self.phases.get("setup") != "failed"):
                return "failed"
            return "error"
        if "skipped" in (self.phases.get("setup"), self.phases.get("call")):
            return "skipped"
        if self.phases.get("call") == "failed":
            return "error" if self.infrastructure else "failed"
        if self.phases.get("call") == "passed":
            return "passed"
        return "error"  # started but never reached a verdict (crashed worker, interrupted)


def verdict_doc(outcomes: Iterable[Outcome]) -> dict:
    """Scenario names by verdict; ``infrastructure`` are failures the suite blamed on the cluster."""
    doc: dict[str, list[str]] = {"passed": [], "failed": [], "infrastructure": [], "errors": [], "skipped": []}
    for o in outcomes:
        res = o.result
        key = ("infrastructure" if o.infrastructure and res in ("failed", "error") else
               {"passed": "passed", "failed": "failed", "skipped": "skipped"}.get(res, "errors"))
        doc[key].append(row_name(o.nodeid))
    out: dict = {k: sorted(v) for k, v in doc.items()}
    # per failed scenario, each failing phase's first line: what an expected-outcome file matches
    out["failures"] = {row_name(o.nodeid): dict(o.failures) for o in outcomes if o.failures}
    return out


def row_name(nodeid: str) -> str:
    """``tests/k8s/test_lifecycle.py::test_s01_echo_stdout`` -> ``S01 echo_stdout``."""
    name = nodeid.rsplit("::", 1)[-1]
    sid = scenario_id(name)
    if not sid:
        return name
    return f"{sid.upper()} {name[len('test_') + len(sid) + 1:]}"


def rows(outcomes: Iterable[Outcome]) -> list[Row]:
    out = [Row(row_name(o.nodeid), o.result, o.seconds, o.detail) for o in outcomes]
    return sorted(out, key=lambda r: (r.name.split(" ", 1)[0], r.name))


_SKIP_REASON = re.compile(r"^Skipped: ")


def skip_detail(longrepr: Any) -> str:
    """The reason of a skip report (``(file, line, 'Skipped: why')``)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return _SKIP_REASON.sub("", str(longrepr[2]))
    return ""


def skipped_lines(rows_: Sequence[Row]) -> list[str]:
    return [f"  {r.name}: {r.detail}" for r in rows_ if r.result == "skipped" and r.detail]
