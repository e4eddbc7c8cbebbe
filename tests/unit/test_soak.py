"""The soak's judgements and its watch loop, on recorded API/node answers (no cluster)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ci import config
from ci.errors import UsageError
from ci.phases.soak import progress_every
from ci.soak import checks, pods
from ci.soak.watch import Soak
from ci.tools import Result

RUN = pods.Run(token="abc123", runtime_class="reaper-v2", image="busybox:t", node="n1")


def test_counter_contiguous_gap_and_restart():
    assert checks.counter_problem("1\n2\n3\n", "log") == (3, None)
    assert checks.counter_problem("", "log") == (0, None)
    last, problem = checks.counter_problem("1\n2\n4\n", "log")
    assert last == 2 and "jumped to 4 after 2" in problem
    last, problem = checks.counter_problem("1\n2\n3\n1\n2\n", "hostlog file")
    assert last == 3 and "started again after 3 (line 4)" in problem and problem.startswith("hostlog file:")
    assert "not the next number" in checks.counter_problem("1\nboom\n", "log")[1]


def _status(restarts=0, cid="containerd://aaa", state=None, last=None):
    cs = {"name": "counter", "restartCount": restarts, "containerID": cid, "state": state or {"running": {}}}
    if last:
        cs["lastState"] = {"terminated": last}
    return {"phase": "Running", "containerStatuses": [cs]}


def test_container_restart_names_the_previous_exit_and_its_moment():
    last = {"exitCode": 1, "reason": "Error", "startedAt": "2026-12-04T09:50:00Z", "finishedAt": "2026-12-04T09:51:01Z"}
    moment, text = checks.container_problem("counter", _status(1, "containerd://bbb", last=last), "containerd://aaa")
    assert moment == datetime(2026, 12, 4, 9, 51, 1, tzinfo=timezone.utc)
    assert text == ("counter: restarted (restartCount 1) at 09:51:01Z: the container ended with exit code 1 (Error) "
                    "after 61s")


def test_container_ok_changed_ended_waiting():
    assert checks.container_problem("counter", _status(), "containerd://aaa") is None
    assert "id changed (aaa -> bbb)" in checks.container_problem("counter", _status(cid="containerd://bbb"), "containerd://aaa")[1]
    ended = _status(state={"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": "2026-12-04T10:00:00Z"}})
    assert checks.container_problem("counter", ended, "containerd://aaa")[1] == "counter: ended at 10:00:00Z: the container ended with exit code 137 (Error)"
    waiting = _status(state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}})
    assert "waiting (CrashLoopBackOff" in checks.container_problem("counter", waiting, "containerd://aaa")[1]


PS = """  PID  PPID COMMAND
    1     0 /sbin/init
  100     1 containerd-shim-reaper-v2 -id x
  200   100 /bin/sh -c i=0; while :; do i=$((i+1)); echo "$i"; sleep 1; done soak-abc123-counter
  201   200 sleep 1
  300     1 /bin/sh -c i=0; while :; do i=$((i+1)); echo "$i"; sleep 1; done soak-abc123-counter
  400     1 grep soak-abc123-counterx
"""


def test_processes_one_tree_per_workload():
    procs = checks.parse_ps(PS)
    assert [p.pid for p in checks.roots(procs, "soak-abc123-counter")] == [200, 300]
    problem = checks.process_problem("counter", procs, "soak-abc123-counter")
    assert problem == "counter: 2 copies of the workload on the node, one is not the pod's own: pid 200 (parent 100); pid 300 (parent 1)"
    assert checks.process_problem("counter", procs[:4], "soak-abc123-counter") is None
    assert "no process of the pod" in checks.process_problem("probe", procs, "soak-abc123-probe")


def test_log_window_reads_containerd_reaper_and_klog_times():
    text = "\n".join([
        'time="2026-12-04T09:50:00.1Z" level=info msg="too early"',
        'time="2026-12-04T09:50:45.123456789Z" level=info msg="TaskExit event"',
        "  continuation of the line above",
        "2026-12-04T09:51:01.000001Z  WARN wait() polling timeout after 1h for container c1",
        "I1204 09:51:05.123456   1234 kuberuntime_container.go:1] restarting",
        'time="2026-12-04T09:52:00Z" level=info msg="too late"',
    ])
    picked = checks.window(text, datetime(2026, 12, 4, 9, 51, 1, tzinfo=timezone.utc))
    assert picked == text.splitlines()[1:5]
    assert checks.loud(picked) == [picked[2]]  # reaper's WARN line
    assert checks.loud(["a", "b"]) == ["a", "b"]


def test_duration_option_and_progress_interval():
    assert config.parse(["--duration", "3m"]).soak_duration == 180
    assert config.parse([]).soak_duration == 4500  # past one hour by default
    assert config.parse(["--duration", "1h5m"]).soak_duration == 3900
    with pytest.raises(UsageError, match="at least 60 seconds"):
        config.parse(["--duration", "30s"])
    with pytest.raises(UsageError, match="like 75m"):
        config.parse(["--duration", "3 min"])
    assert progress_every(180) == 30 and progress_every(4500) == 300


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _pod(name, pod_name=None, **status):
    st = _status(**status)
    st["containerStatuses"][0]["name"] = name
    return {"metadata": {"name": pod_name or name, "labels": {"app": name}, "resourceVersion": "7"}, "status": st}


class FakeApi:
    """Pods that run; a counter that advances with the clock; ``restart_at``: the counter pod's
    container ends with exit 1 at that clock time and restarts."""

    def __init__(self, clock, restart_at=None):
        self.clock, self.restart_at, self.created, self.execs = clock, restart_at, [], []
        self.deleted = []

    def namespaces(self, selector):
        return ["reaper-ci-soak-old"]

    def delete_namespace(self, name):
        self.deleted.append(name)

    def create(self, manifest):
        self.created.append(manifest["metadata"]["name"])

    def pods(self, ns):
        return [_pod(n, "counter-7d9f-x" if n == "counter" else n) for n in pods.NAMES], "5"

    def watch_pods(self, ns, since, timeout):
        start = self.clock.t
        self.clock.t += timeout
        if self.restart_at and start < self.restart_at <= self.clock.t:
            self.clock.t = self.restart_at
            last = {"exitCode": 1, "reason": "Error", "startedAt": "2026-12-04T09:50:00Z", "finishedAt": "2026-12-04T09:51:00Z"}
            yield _pod("counter", "counter-7d9f-x", restarts=1, cid="containerd://new", last=last)

    def count(self):
        return "".join(f"{i}\n" for i in range(1, int(self.clock.t - 1000) + 2))

    def log(self, ns, pod, container):
        return self.count()

    def namespace_events(self, ns):
        return []

    def exec(self, ns, pod, container, argv, timeout=30):
        self.execs.append(container)
        return 0, argv[-1] + "\n"


class FakeNode:
    def __init__(self, api):
        self.api = api

    def read_file(self, node, path, timeout=30):
        assert path == RUN.host_log
        return self.api.count()

    def run(self, node, argv, timeout=30):
        if argv[0] == "ps":
            rows = [f"{10 + i} 1 /bin/sh -c loop {RUN.tag(n)}" for i, n in enumerate(pods.NAMES)]
            return Result(0, "PID PPID COMMAND\n" + "\n".join(rows) + "\n")
        return Result(0, "")


def _soak(restart_at=None, duration=180):
    clock = FakeClock()
    api = FakeApi(clock, restart_at)
    s = Soak(api, FakeNode(api), RUN, duration, progress_every=30, clock=clock, say=lambda line: None)
    return s, api


def test_watch_passes_when_everything_lasts():
    s, api = _soak()
    s.start()
    assert api.deleted == ["reaper-ci-soak-old"] and api.created[0] == RUN.namespace
    assert s.watch() is None
    assert len(s.state.progress) == 6 and s.state.counters["hostlog"] >= 180
    assert api.execs[-3:] == list(pods.NAMES)  # every workload answers an exec at the end


def test_a_restart_fails_its_workload_with_its_exit_and_the_others_go_on():
    s, api = _soak(restart_at=1061.0)
    s.start()
    f = s.watch()
    assert f is not None and f.at == pytest.approx(61.0)
    assert f.text == "counter: restarted (restartCount 1) at 09:51:00Z: the container ended with exit code 1 (Error) after 60s"
    assert list(s.failures) == ["counter"]  # probe and hostlog were judged to the end, and answered
    assert api.execs[-2:] == ["probe", "hostlog"] and s.state.counters["probe"] >= 180


def test_a_hostlog_that_never_reaches_the_node_is_named():
    s, api = _soak()
    node = s.node
    node.read_file = lambda n, path, timeout=30: ""  # the node's file stays empty...
    echo = api.exec
    api.exec = lambda ns, pod, c, argv, timeout=30: (0, "42\n") if "wc" in argv[-1] else echo(ns, pod, c, argv)  # the pod sees its lines
    s.start()
    s.watch()
    f = s.failures["hostlog"]
    assert f.text == ("hostlog: the pod has written 42 lines to its hostPath file, the node's "
                      "/var/tmp/reaper-ci-soak/abc123/count.log holds 0: the pod's writes to the hostPath volume do "
                      "not reach the node")
    assert 30 < f.at <= 45 and list(s.failures) == ["hostlog"]


def test_report_names_each_failure_with_its_log_lines(tmp_path, capsys):
    from ci.cluster.base import ClusterInfo
    from ci.phases import soak as phase
    from ci.soak.watch import Failure

    s, _ = _soak()
    s.state.counters = {"counter": 3600, "probe": 3600}
    s.failures["counter"] = Failure(3601.0, datetime(2026, 12, 4, 10, 17, 1, tzinfo=timezone.utc),
                                    "counter: ended at 10:17:01Z: the container ended with exit code 1 (Error) after 3601s")
    lines = {"counter": {"reaper-shim": ["2026-12-04T10:17:01Z  WARN wait() polling timeout after 1h for container c1"]}}
    info = ClusterInfo("local", "c", "/kc", "reaper", "reaper-v2", "s", ("n1",), "img", "local", source_commit="d8d19feff4e6aa")
    cfg = config.parse(["--duration", "75m", "--artifacts", str(tmp_path)])
    assert phase.report(cfg, info, s, lines) == 1
    out = capsys.readouterr().out
    assert "counter   failed at 60m01s" in out and "WARN wait() polling timeout after 1h" in out
    data = __import__("json").loads((tmp_path / "soak.json").read_text())
    assert not data["passed"] and data["failures"]["counter"]["at"] == 3601.0
    xml = (tmp_path / "soak.xml").read_text()
    assert xml.count("<testcase") == 3 and xml.count("<failure") == 1
