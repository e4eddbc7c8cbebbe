"""The soak's watch: start the long-lived workloads, then judge them for the whole duration.

Pod changes arrive through a watch (a restart is seen the moment the kubelet records it); the
counters, the events and the node's process table are read every ``check_every`` seconds; a
progress line (elapsed, restarts, last counters, exec latency) every ``progress_every``. Each
workload is judged until its first problem (kept with its moment); the others go on being
watched, so one bug does not hide another. At the end every workload still standing must answer
an exec.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from ci import console
from ci.cluster.base import NodeAccess
from ci.errors import SetupError
from ci.soak import checks, pods
from ci.soak.api import SoakApi

START_TIMEOUT = 180  # seconds for every workload to be running
STALL = 30  # seconds a counter may stand still before it is a failure
PROBLEM_EVENTS = ("Unhealthy", "BackOff", "Killing", "Failed", "FailedKillPod", "FailedSync", "FailedCreatePodSandBox")


@dataclass
class Failure:
    at: float  # seconds into the soak
    moment: datetime  # wall clock (the kubelet's record when it has one)
    text: str


@dataclass
class State:
    ids: dict[str, str] = field(default_factory=dict)  # workload -> first container id
    pod_names: dict[str, str] = field(default_factory=dict)  # workload -> pod name
    counters: dict[str, int] = field(default_factory=dict)  # source -> last value
    advanced: dict[str, float] = field(default_factory=dict)  # source -> clock of its last advance
    restarts: int = 0
    exec_latency: list[float] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, api: SoakApi, node: NodeAccess, run: pods.Run, duration: float, *, check_every: float = 15,
                 progress_every: float = 300, clock: Callable[[], float] = time.monotonic,
                 say: Callable[[str], None] = console.info):
        self.api, self.node, self.run, self.duration = api, node, run, duration
        self.check_every, self.progress_every = check_every, progress_every
        self.clock, self.say = clock, say
        self.state = State()
        self.failures: dict[str, Failure] = {}  # workload -> its first problem
        self.t0 = 0.0
        self.rv = ""

    @property
    def failure(self) -> Failure | None:
        """The earliest problem of any workload (None: none)."""
        return min(self.failures.values(), key=lambda f: f.at, default=None)

    def standing(self) -> list[str]:
        return [n for n in pods.NAMES if n not in self.failures]

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """The namespace and the three workloads; every container running (SetupError if the API
        refuses them; a workload that never runs on the handler is its failure)."""
        for stale in self.api.namespaces(f"{pods.LABEL_CLASS}={self.run.runtime_class}"):
            self.say(f"removing namespace {stale} of an earlier soak on {self.run.runtime_class}")
            self.api.delete_namespace(stale)
        for manifest in [pods.namespace(self.run), *pods.manifests(self.run)]:
            self.api.create(manifest)
        deadline = self.clock() + START_TIMEOUT
        while self.clock() < deadline:
            items, self.rv = self.api.pods(self.run.namespace)
            running = {self._workload(p): p for p in items if self._started(p)}
            for name, p in running.items():
                self.state.pod_names.setdefault(name, p["metadata"]["name"])
                self.state.ids.setdefault(name, p["status"]["containerStatuses"][0]["containerID"])
            for p in items:  # a container that already restarted or failed will not start cleanly
                self._judge_pod(p)
            if not [n for n in self.standing() if n not in running]:
                return
            for _ in self.api.watch_pods(self.run.namespace, self.rv, min(10, deadline - self.clock())):
                break
        items, _ = self.api.pods(self.run.namespace)
        phases = {self._workload(p): p.get("status", {}).get("phase") for p in items}
        for name in self.standing():
            if name not in self.state.pod_names:
                self._fail(name, f"{name}: not running within {START_TIMEOUT}s (phase {phases.get(name, 'no pod')})")

    @staticmethod
    def _workload(pod: dict) -> str:
        return pod["metadata"].get("labels", {}).get("app", "?")

    @staticmethod
    def _started(pod: dict) -> bool:
        st = pod.get("status", {})
        cs = (st.get("containerStatuses") or [{}])[0]
        return st.get("phase") == "Running" and "running" in (cs.get("state") or {}) and bool(cs.get("containerID"))

    # ------------------------------------------------------------------ watch

    def watch(self) -> Failure | None:
        self.t0 = now = self.clock()
        end = self.t0 + self.duration
        for name in pods.NAMES:
            self.state.advanced[name] = now
        next_check, next_progress = now + self.check_every, now + self.progress_every
        while self.standing() and now < end:
            for pod in self.api.watch_pods(self.run.namespace, self.rv, min(next_check, next_progress, end) - now):
                self.rv = pod["metadata"].get("resourceVersion", self.rv)
                self._judge_pod(pod)
            now = self.clock()
            if now >= next_check:
                self.check()
                next_check = now + self.check_every
            if now >= next_progress and self.standing():
                self.progress()
                next_progress = now + self.progress_every
        if self.standing():
            self.check()
        for name in self.standing():
            self.state.exec_latency.append(self._exec(name))
        return self.failure

    def _judge_pod(self, pod: dict) -> None:
        name = self._workload(pod)
        if name not in self.standing():
            return
        if pod.get("_event") == "DELETED" or pod["metadata"].get("deletionTimestamp"):
            return self._fail(name, f"{name}: pod {pod['metadata']['name']} is being deleted")
        known = self.state.pod_names.get(name)
        if known and pod["metadata"]["name"] != known:
            return self._fail(name, f"{name}: pod {known} was replaced by {pod['metadata']['name']}")
        found = checks.container_problem(name, pod.get("status", {}), self.state.ids.get(name))
        if found:
            moment, text = found
            self.state.restarts += 1 if "restarted" in text else 0
            self._fail(name, text, moment)

    def _readings(self) -> dict[str, Callable[[], str]]:
        ns, names = self.run.namespace, self.state.pod_names
        return {
            "counter": lambda: self.api.log(ns, names["counter"], "counter"),
            "probe": lambda: self.api.log(ns, names["probe"], "probe"),
            "hostlog": lambda: self.node.read_file(self.run.node, self.run.host_log, timeout=30) or "",
        }

    def check(self) -> None:
        """Counters contiguous and moving, no problem event, one process tree per workload."""
        now = self.clock()
        for name, read in self._readings().items():
            if name not in self.standing():
                continue
            last, problem = checks.counter_problem(read(), SOURCES[name])
            if problem:
                self._fail(name, problem)
            elif last > self.state.counters.get(name, 0):
                self.state.counters[name], self.state.advanced[name] = last, now
            elif now - self.state.advanced[name] > STALL:
                self._fail(name, self._stalled(name, last, now - self.state.advanced[name]))
        by_pod = {v: k for k, v in self.state.pod_names.items()}
        for e in self.api.namespace_events(self.run.namespace):
            name = by_pod.get(e.get("involvedObject", {}).get("name", ""))
            if e.get("reason") in PROBLEM_EVENTS and name in self.standing():
                moment = checks.parse_time(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp"))
                self._fail(name, f"{name}: event {e.get('reason')}: {(e.get('message') or '').strip()[:300]}", moment)
        r = self.node.run(self.run.node, ["ps", "-ww", "-eo", "pid,ppid,args"], timeout=30)
        if r.returncode != 0:
            raise SetupError(f"listing the node's processes failed: {(r.stderr or r.stdout).strip()[:200]}")
        procs = checks.parse_ps(r.stdout)
        for name in self.standing():
            problem = checks.process_problem(name, procs, self.run.tag(name))
            if problem:
                self._fail(name, problem)

    def _stalled(self, name: str, last: int, seconds: float) -> str:
        """A counter that stands still; for the hostPath log, what the pod itself sees in the file
        tells a workload that stopped from writes that never reach the node."""
        text = f"{SOURCES[name]}: the counter stood still at {last} for {seconds:.0f}s"
        if name != "hostlog":
            return text
        rc, out = self.api.exec(self.run.namespace, self.state.pod_names[name], name,
                                ["/bin/sh", "-c", "wc -l < /soak-log/count.log"])
        seen = out.strip()
        if rc == 0 and seen.isdigit() and int(seen) > last:
            return (f"hostlog: the pod has written {seen} lines to its hostPath file, the node's {self.run.host_log} "
                    f"holds {last}: the pod's writes to the hostPath volume do not reach the node")
        return f"{text} (the pod's own view of the file: exit {rc}, {seen[:80]!r})"

    def _exec(self, name: str) -> float:
        began = self.clock()
        word = f"soak-exec-{int(began)}"
        rc, out = self.api.exec(self.run.namespace, self.state.pod_names[name], name, ["/bin/echo", word])
        took = self.clock() - began
        if rc != 0 or out.strip() != word:
            self._fail(name, f"{name}: exec answered exit {rc} with {out.strip()[:120]!r} (expected {word!r}) after {took:.1f}s")
        return took

    def progress(self) -> None:
        latency = self._exec(self.standing()[0])
        self.state.exec_latency.append(latency)
        c = self.state.counters
        failed = f", failed: {', '.join(self.failures)}" if self.failures else ""
        line = (f"soak {mmss(self.clock() - self.t0)}/{mmss(self.duration)}: restarts {self.state.restarts}, "
                f"counters {c.get('counter', 0)}/{c.get('probe', 0)}/{c.get('hostlog', 0)} "
                f"(counter/probe/hostlog), exec {latency:.2f}s{failed}")
        self.state.progress.append(line)
        self.say(line)

    def _fail(self, name: str, text: str, moment: datetime | None = None) -> None:
        if name not in self.failures:
            at = self.clock() - self.t0 if self.t0 else 0.0
            self.failures[name] = Failure(at, moment or checks.now(), text)
            self.say(f"soak {mmss(at)}: FAILED {text}")

    def cleanup(self) -> None:
        self.api.delete_namespace(self.run.namespace)
        self.node.run(self.run.node, ["rm", "-rf", self.run.host_dir], timeout=30)


SOURCES = {"counter": "counter log", "probe": "probe log", "hostlog": "hostlog file"}


def mmss(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"
