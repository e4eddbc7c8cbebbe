"""The shared wait loop (ci.wait.until), the provider-agnostic smoke pod (ci.cluster.verify.smoke)
on a fake API, and the local cluster's in-place restart of a component (S41's containerd restart)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from ci.cluster import restart_local, verify
from ci.cluster.base import ClusterInfo
from ci.errors import RuntimeFailure, SetupError
from ci.wait import until


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_until_returns_when_done_and_times_out_with_the_last_state_and_detail():
    c = Clock()
    answers = iter(["starting", "starting", True])
    until("thing", lambda: next(answers), 10, clock=c, sleep=c.sleep)
    assert c.now == 1.0  # two unready polls of 0.5 s
    with pytest.raises(SetupError, match=r"thing not ready after 3s \(last seen: phase Pending\); log tail"):
        until("thing", lambda: "phase Pending", 3, clock=c, sleep=c.sleep, detail=lambda: "; log tail")


def test_until_keeps_probe_errors_as_state_but_not_definite_ones_and_check_ends_early():
    c = Clock()
    with pytest.raises(SetupError, match="ConnectionError: refused"):
        until("api", lambda: (_ for _ in ()).throw(ConnectionError("refused")), 1, clock=c, sleep=c.sleep)
    with pytest.raises(RuntimeFailure):
        until("smoke", lambda: (_ for _ in ()).throw(RuntimeFailure("exit 1")), 60, definite=(RuntimeFailure,),
              clock=c, sleep=c.sleep)

    def died():
        raise SetupError("etcd exited")
    start = c.now
    with pytest.raises(SetupError, match="etcd exited"):
        until("api", lambda: False, 60, check=died, clock=c, sleep=c.sleep)
    assert c.now == start  # no sleep before the check ended it


def test_nodes_verdict_names_missing_and_not_ready_nodes():
    ready = {"metadata": {"name": "a"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    not_ready = {"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]}}
    assert verify.nodes_verdict([]) == "no nodes registered yet"
    assert verify.nodes_verdict([ready], ("a", "c")) == "node(s) c not registered yet"
    assert "b Ready=False (KubeletNotReady" in verify.nodes_verdict([ready, not_ready])
    assert verify.nodes_verdict([ready, not_ready], ("a",)) is True


class FakeApi:
    def __init__(self, statuses, log=verify.SMOKE_TEXT + "\n"):
        self.statuses, self.log, self.calls, self.exists = list(statuses), log, [], True

    def pod_status(self, ns, name):
        self.calls.append("status")
        if not self.exists:
            return None
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def delete_pod(self, ns, name, *, now=False):
        self.calls.append(f"delete now={now}")
        self.exists = False

    def create_pod(self, manifest):
        self.calls.append(f"create {manifest['spec']['runtimeClassName']}")
        self.exists = True

    def pod_log(self, ns, name):
        return self.log

    def events(self, ns, name):
        return ["FailedCreatePodSandBox: no runtime for handler"]


INFO = ClusterInfo(provisioner="local", name="c", kubeconfig="k", runtime="reaper", runtime_class="reaper-v2",
                   shim_process="s", nodes=("n",), image="busybox", node_access="local")


def _wait(c):
    return lambda what, probe, timeout: until(what, probe, timeout, definite=(RuntimeFailure,), clock=c, sleep=c.sleep)


def test_smoke_deletes_an_old_pod_creates_waits_reads_back_and_cleans_up():
    c = Clock()
    exited = {"phase": "Running", "containerStatuses": [{"state": {"terminated": {"exitCode": 0}}}]}
    api = FakeApi([{"phase": "Pending"}, exited, {"phase": "Succeeded"}])
    verify.smoke(api, INFO, _wait(c), timeout=60, phase_timeout=10, clock=c)
    assert api.calls[:3] == ["delete now=True", "status", "create reaper-v2"] and api.calls[-1] == "delete now=False"


def test_smoke_failure_on_the_runtime_under_test_is_a_runtime_failure_with_events():
    c = Clock()
    failed = {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 255}}}]}
    with pytest.raises(RuntimeFailure, match="(?s)pod Failed.*events: FailedCreatePodSandBox"):
        verify.smoke(FakeApi([failed]), INFO, _wait(c), timeout=60, phase_timeout=10, clock=c)


def test_smoke_output_that_does_not_read_back_is_a_setup_error():
    c = Clock()
    with pytest.raises(SetupError, match="log reads ''"):
        verify.smoke(FakeApi([{"phase": "Succeeded"}], log=""), INFO, _wait(c), timeout=60, phase_timeout=10, clock=c)


def test_restart_local_restarts_in_place_with_the_same_argv_and_env(tmp_path):
    sock, pidfile, log = tmp_path / "s.sock", tmp_path / "p.pid", tmp_path / "p.log"
    server = ("import os, socket, sys, time; s = socket.socket(socket.AF_UNIX); p = sys.argv[1]\n"
              "os.path.exists(p) and os.unlink(p); s.bind(p); s.listen(); print('env', os.environ['RCI_MARK'], flush=True)\n"
              "while True: s.accept()[0].close()")
    proc = subprocess.Popen([sys.executable, "-c", server, str(sock)], env={"RCI_MARK": "kept", "PATH": "/usr/bin:/bin"},
                            stdout=open(log, "ab"), start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline, "the fake component never listened"
            time.sleep(0.05)
        pidfile.write_text(f"{proc.pid} {restart_local.start_time(proc.pid)}\n")
        msg = restart_local.restart(pidfile, str(sock), log)
        new_pid = int(pidfile.read_text().split()[0])
        assert new_pid != proc.pid and f"restarted pid {proc.pid} -> {new_pid}" in msg
        assert proc.wait(5) is not None  # the old one is gone
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))  # the new one answers
        assert log.read_text().count("env kept") == 2  # same environment
        assert restart_local.main([str(tmp_path / "nope.pid"), str(sock), str(log)]) == 1
    finally:
        for pid in {proc.pid, int(pidfile.read_text().split()[0]) if pidfile.exists() else proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


MOUNTINFO_V1 = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
"""
CGROUP_V1 = "4:memory:/kubepods/x\n3:cpu,cpuacct:/sys/c\n2:name=systemd:/sys/c\n0::/sys/c\n"


def test_restart_joins_the_old_process_cgroups_v1_and_v2():
    """A restart run from a host-exec pod must not leave containerd in that pod's cgroup (it would
    die with the pod): the new process joins every cgroup of the old one."""
    assert restart_local.cgroup_procs_files(1, MOUNTINFO_V1, CGROUP_V1) == [
        "/sys/fs/cgroup/memory/kubepods/x/cgroup.procs",
        "/sys/fs/cgroup/cpu,cpuacct/sys/c/cgroup.procs",
        "/sys/fs/cgroup/systemd/sys/c/cgroup.procs",
        "/sys/fs/cgroup/unified/sys/c/cgroup.procs",
    ]
    v2 = "40 25 0:31 /kubelet.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert restart_local.cgroup_procs_files(1, v2, "0::/kubelet.slice/containerd\n") == [
        "/sys/fs/cgroup/containerd/cgroup.procs"]


def test_a_client_without_the_called_interface_is_a_usage_error_at_once_not_an_unready_api():
    # seen with kubernetes 36 installed instead of the pinned 37: the readiness probe failed for 10 s and
    # the local cluster was recreated as "not healthy"
    from ci.errors import ClientMismatch, UsageError

    v = verify.Verifier.__new__(verify.Verifier)
    v.api = object()  # no param_serialize
    c = Clock()
    with pytest.raises(ClientMismatch, match=r"kubernetes Python client .* cannot build a request \(AttributeError"):
        until("kube-apiserver /readyz", v.readyz, 10, clock=c, sleep=c.sleep)
    assert c.now == 0.0 and issubclass(ClientMismatch, UsageError)
