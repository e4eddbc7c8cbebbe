"""Supervision logic of the local provisioner: waits with deadlines, dead components, pid files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ci import config
from ci.cluster import local
from ci.cluster.local import provisioner as local_provisioner
from ci.errors import SetupError


@pytest.fixture
def prov(tmp_path: Path) -> local.LocalProvisioner:
    cfg = config.parse([], {}, prog="cluster", cwd=tmp_path).with_(state_dir=tmp_path / "state")
    p = local.LocalProvisioner(cfg)
    p.lay.logs.mkdir(parents=True)
    p.lay.pids.mkdir(parents=True)
    return p


def test_start_records_pid_with_start_time_and_log(prov):
    prov._start("worker", [sys.executable, "-c", "print('hello from worker'); import time; time.sleep(30)"])
    try:
        pid = local.pid_alive(prov.lay.pidfile("worker"))
        assert pid == prov._procs["worker"].pid
        deadline = time.monotonic() + 10
        while "hello from worker" not in prov.lay.log("worker").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "hello from worker" in prov.lay.log("worker").read_text()
    finally:
        prov._procs["worker"].kill()
        prov._procs["worker"].wait()
    assert local.pid_alive(prov.lay.pidfile("worker")) is None


def test_pid_reuse_is_not_mistaken_for_our_process(prov):
    prov.lay.pidfile("ghost").write_text(f"{1} 999999999\n")  # pid 1 exists, but started at another time
    assert local.pid_alive(prov.lay.pidfile("ghost")) is None


def test_wait_ends_early_with_the_log_tail_of_a_dead_component(prov):
    prov._start("crasher", [sys.executable, "-c", "import sys; print('fatal: port in use'); sys.exit(3)"])
    prov._procs["crasher"].wait()
    started = time.monotonic()
    with pytest.raises(SetupError) as e:
        prov._wait("crasher ready", lambda: "not yet", timeout=60, watch=("crasher",))
    assert time.monotonic() - started < 5, "a dead component must end the wait at once"
    assert "crasher exited while waiting for crasher ready" in str(e.value)
    assert "fatal: port in use" in str(e.value)


def test_wait_timeout_reports_the_last_state(prov):
    states = iter(["phase Pending", "phase ContainerCreating"] + ["phase Running, not Ready"] * 100)
    with pytest.raises(SetupError) as e:
        prov._wait("pod Ready", lambda: next(states), timeout=1.2)
    assert "not ready after 1s" in str(e.value) and "phase Running, not Ready" in str(e.value)


def test_wait_treats_probe_errors_as_not_ready_and_returns_on_success(prov):
    calls = {"n": 0}

    def probe():
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionRefusedError("nobody listens")
        return True

    prov._wait("api", probe, timeout=10)
    assert calls["n"] == 3


def test_descendants_follow_the_process_tree():
    tree = {1: [10, 11], 10: [100], 100: [1000], 11: []}
    assert sorted(local.descendants(1, tree)) == [10, 11, 100, 1000]
    assert local.descendants(11, tree) == []


def test_kill_wait_escalates_to_sigkill():
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ok', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ok"  # SIGTERM handler installed
    killed = [p for p in local._kill_wait([proc.pid], 0.5)]
    proc.wait(timeout=5)
    assert killed == [proc.pid] and proc.returncode == -9


def _terminated(code, reason="Completed"):
    return {"state": {"terminated": {"exitCode": code, "reason": reason}}}


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Succeeded", "containerStatuses": [_terminated(0)]},
        # sandbox not stopped yet (the handler's StopPodSandbox hangs): the container's clean exit counts
        {"phase": "Pending", "containerStatuses": [_terminated(0)]},
        {"phase": "Running", "containerStatuses": [_terminated(0)]},
    ],
)
def test_smoke_verdict_done(status):
    assert local.smoke_verdict(status, "reaper-v2") is True


@pytest.mark.parametrize(
    "status",
    [
        {"phase": "Pending"},
        {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
        {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]},
    ],
)
def test_smoke_verdict_not_yet_reports_the_state(status):
    got = local.smoke_verdict(status, "reaper-v2")
    assert isinstance(got, str) and f"phase {status['phase']}" in got


@pytest.mark.parametrize(
    "status, needle",
    [
        ({"phase": "Failed", "containerStatuses": [_terminated(1, "Error")]}, "Failed"),
        ({"phase": "Pending", "containerStatuses": [_terminated(127, "Error")]}, "exited 127"),
    ],
)
def test_smoke_verdict_failure_raises(status, needle):
    from ci.errors import RuntimeFailure, SmokeFailed

    # on the reference runtime the cluster is broken (a setup error) ...
    with pytest.raises(SmokeFailed, match=needle):
        local.smoke_verdict(status, "reaper-v2")
    # ... on the runtime under test it is the product that failed (exit 1, never "setup error")
    with pytest.raises(RuntimeFailure, match=needle) as e:
        local.smoke_verdict(status, "reaper-v2", "reaper")
    assert not isinstance(e.value, SetupError) and "runtime under test (reaper)" in str(e.value)


def test_a_definite_smoke_verdict_ends_the_wait_at_once(tmp_path):
    from ci.errors import RuntimeFailure

    prov = local.LocalProvisioner.__new__(local.LocalProvisioner)
    prov._dead = lambda watch: None
    calls = []

    def probe():
        calls.append(1)
        raise RuntimeFailure("the runtime under test (reaper) failed the smoke pod")

    with pytest.raises(RuntimeFailure):
        prov._wait("smoke", probe, timeout=600)
    assert len(calls) == 1


def test_footprint_lines_say_nothing_or_list_what_is_left():
    from ci.cluster.local import footprint_lines

    empty = {"processes": [], "mounts": [], "links": [], "dirs": []}
    assert footprint_lines(empty) == [
        "  on this host: nothing (no process, mount, link, netns, iptables chain, cgroup or folder of ours)"]
    left = dict(empty, processes=[f"{i} kubelet" for i in range(10)], links=["rci0"])
    lines = footprint_lines(left, most=3)
    assert lines[0] == "  on this host: 10 processes, 1 links"
    assert lines[1:4] == ["    processes: 0 kubelet", "    processes: 1 kubelet", "    processes: 2 kubelet"]
    assert lines[4] == "    processes: ... and 7 more" and lines[5] == "    links: rci0"


def test_a_changed_runtime_build_is_never_reused(prov, tmp_path, monkeypatch):
    from ci.cluster import runtime as rt
    from ci.cluster.base import ClusterInfo

    def built(content: bytes) -> rt.Built:
        d = tmp_path / content.decode()
        d.mkdir()
        (d / "shim").write_bytes(content)
        (d / "runtime").write_bytes(content)
        return rt.Built(d / "shim", d / "runtime")

    old, new = built(b"old"), built(b"new")
    info = ClusterInfo(provisioner="local", name="reaper-ci", kubeconfig="k", runtime="reaper", runtime_class="reaper-v2",
                       shim_process="containerd-shim-reaper-v2", nodes=("vm",), image=prov.cfg.image,
                       node_access="local", runtime_build=old.digest(), versions=prov._versions())
    info.save(prov.lay.info)
    # every component alive and the API healthy: only the build decides
    monkeypatch.setattr(local_provisioner, "pid_alive", lambda path: 4242)
    monkeypatch.setattr(prov, "_wait", lambda *a, **k: None)
    monkeypatch.setattr(rt, "source_commit", lambda source: None)
    assert prov._reuse("reaper", new) is None
    reused = prov._reuse("reaper", old)
    assert reused is not None and reused.runtime_build == old.digest()
    # ... and other versions (a matrix cell) never reuse it either
    prov.cfg = prov.cfg.with_(containerd_version="v2.2.9")
    assert prov._reuse("reaper", old) is None


def test_down_at_a_state_folder_without_a_cluster_touches_nothing_host_wide(tmp_path, monkeypatch):
    """`down --state-dir <elsewhere>` while a cluster runs must not remove its bridge, cgroups, netns,
    iptables chains or processes (they are host-wide): with no state folder it is a no-op."""
    from ci.cluster.local import host

    prov = local.LocalProvisioner.__new__(local.LocalProvisioner)
    prov.cfg = config.parse(["--state-dir", str(tmp_path / "absent")], {}, cwd=tmp_path)
    prov.lay = local.Layout(tmp_path / "absent")
    touched = []
    for name in ("_children", "cgroup_pids", "our_netns", "unmount_all", "remove_iptables_chains", "our_processes",
                 "kubepods_cgroups", "restore_sysctls", "link_exists"):
        monkeypatch.setattr(host, name, lambda *a, _n=name, **k: touched.append(_n) or [])
    monkeypatch.setattr(prov, "_stop", lambda comp: touched.append(f"stop {comp}"), raising=False)
    prov._down()
    assert touched == []
