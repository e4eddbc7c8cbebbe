"""Scenario suite: reading pod JSON (states, ids, descriptions, early-stop rules, events)."""

from __future__ import annotations

import _k8s_path  # noqa: F401

from k8s_suite import podstate as ps

CID = "containerd://" + "b" * 64


def pod(phase="Running", state=None, name="p", deletion=None, conditions=None, waiting=None):
    st = state or ({"waiting": waiting} if waiting else {"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    meta = {"name": name, "namespace": "ns"}
    if deletion:
        meta["deletionTimestamp"] = deletion
    return {"metadata": meta, "spec": {"nodeName": "vm", "runtimeClassName": "reaper-v2"},
            "status": {"phase": phase, "conditions": conditions or [],
                       "containerStatuses": [{"name": "main", "state": st, "containerID": CID, "restartCount": 0}]}}


def test_states_and_ids():
    p = pod("Failed", {"terminated": {"exitCode": 42, "reason": "Error", "containerID": CID}})
    assert ps.phase(p) == "Failed"
    assert ps.terminated(p)["exitCode"] == 42
    assert ps.running(p) is None
    assert ps.container_ids(p) == ["b" * 64]
    assert ps.container_status(p, "nope") is None
    assert ps.container_id({"containerID": ""}) is None


def test_describe_names_what_matters():
    p = pod("Failed", {"terminated": {"exitCode": 128, "reason": "StartError", "message": "exec: not found"}},
            deletion="2026-01-01T00:00:30Z",
            conditions=[{"type": "Ready", "status": "False", "reason": "PodFailed"}, {"type": "X", "status": "True"}])
    text = ps.describe(p)
    for part in ("pod ns/p: phase=Failed", "node=vm", "deletionTimestamp=2026-01-01T00:00:30Z", "Ready=False(PodFailed)",
                 "terminated exitCode=128 reason=StartError", "'exec: not found'"):
        assert part in text, (part, text)
    assert "X=True" not in text
    assert ps.describe(None) == "pod not found"
    assert "waiting reason=ContainerCreating" in ps.describe(pod("Pending", waiting={"reason": "ContainerCreating"}))


def test_conditions():
    assert ps.phase_in("Succeeded")(pod("Succeeded"))
    assert not ps.phase_in("Succeeded")(None)
    assert ps.gone(None) and not ps.gone(pod())
    assert ps.container_running()(pod())
    assert not ps.container_running()(pod("Pending", waiting={"reason": "ContainerCreating"}))
    assert ps.container_terminated()(pod("Failed", {"terminated": {"exitCode": 1}}))


def test_early_stop_rules():
    stop = ps.stop_unless(("Succeeded",))
    assert stop(pod("Running"), True) is None
    assert "phase Failed" in stop(pod("Failed", {"terminated": {"exitCode": 1}}), True)
    assert stop(pod("Succeeded", {"terminated": {"exitCode": 0}}), True) is None
    assert "ErrImageNeverPull" in stop(pod("Pending", waiting={"reason": "ErrImageNeverPull", "message": "m"}), True)
    assert stop(pod("Pending", waiting={"reason": "ContainerCreating"}), True) is None
    assert stop(None, False) is None  # not created yet: keep waiting
    assert "deleted" in stop(None, True)
    assert ps.stop_if_deleted(None, True) and ps.stop_if_deleted(None, False) is None


def test_events_sorted_by_time():
    evs = [{"reason": "Started", "lastTimestamp": "2026-01-01T00:00:03Z", "involvedObject": {"kind": "Pod", "name": "p"}},
           {"reason": "Scheduled", "eventTime": "2026-01-01T00:00:01.000000Z", "involvedObject": {"kind": "Pod", "name": "p"}},
           {"reason": "Pulled", "firstTimestamp": "2026-01-01T00:00:02Z", "count": 2},
           {"reason": "Late", "lastTimestamp": "2026-01-01T00:00:03.5Z"}]
    lines = ps.format_events(evs).splitlines()
    assert [ln.split()[2] for ln in lines] == ["Scheduled", "Pulled", "Started", "Late"]
    assert "(x2," in lines[1]
    assert ps.format_events([]) == "(no events)"


def test_parse_time():
    t = ps.parse_time("2026-01-01T00:00:30Z")
    assert (t - ps.parse_time("2026-01-01T00:00:00Z")).total_seconds() == 30
    assert ps.parse_time(None) is None


def _two(states, spec_containers=2, phase="Pending"):
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": f"c{i}"} for i in range(spec_containers)]},
            "status": {"phase": phase, "containerStatuses": [{"name": f"c{i}", "state": s} for i, s in enumerate(states)]}}


def test_all_exited_needs_every_container_of_the_spec_terminated():
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    run = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    assert ps.all_exited(_two([done, done])) is True  # phase still Pending: the sandbox has not stopped
    assert ps.all_exited(_two([done, run])) is False
    assert ps.all_exited(_two([done])) is False, "a container with no status yet has not exited"
    assert ps.all_exited(_two([], spec_containers=0)) is False
    assert ps.all_exited(None) is False


def test_nonzero_exits_are_named():
    ok = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    bad = {"terminated": {"exitCode": 3, "reason": "Error"}}
    assert ps.nonzero_exits(_two([ok, ok])) == []
    assert ps.nonzero_exits(_two([ok, bad])) == ["c1: exitCode 3 (Error)"]


def test_stuck_after_exit_explains_a_pod_held_by_its_sandbox():
    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    run = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    hint = ps.stuck_after_exit(_two([done, done], phase="Running"))
    assert hint.startswith("every container has exited but the pod is still Running") and "StopPodSandbox" in hint
    assert ps.stuck_after_exit(_two([done, done], phase="Succeeded")) == ""
    assert ps.stuck_after_exit(_two([done, run], phase="Running")) == ""
    assert ps.stuck_after_exit(None) == ""


def test_running_longer_than_counts_from_the_first_sighting():
    now = [100.0]
    stop = ps.running_longer_than("main", 15, clock=lambda: now[0])
    running = {"metadata": {"name": "p"}, "status": {"phase": "Running", "containerStatuses": [
        {"name": "main", "containerID": CID, "state": {"running": {"startedAt": "2000-01-01T00:00:00Z"}}}]}}
    assert stop(running, True) is None  # first seen now (the node's startedAt is not this clock)
    now[0] = 114.9
    assert stop(running, True) is None
    now[0] = 115.0
    assert stop(running, True) == "container main still running 15s after it was first seen running"
    done = {"metadata": {"name": "p"}, "status": {"phase": "Succeeded", "containerStatuses": [
        {"name": "main", "containerID": CID, "state": {"terminated": {"exitCode": 0}}}]}}
    assert stop(done, True) is None and stop(None, True) == "the pod was deleted while waiting"


def test_a_deleted_pod_whose_container_outlives_its_kill_is_judged_at_once():
    from datetime import datetime, timezone

    now = datetime(2026, 12, 4, 12, 0, 40, tzinfo=timezone.utc)
    running = {"metadata": {"name": "p", "deletionTimestamp": "2026-12-04T12:00:00Z"},
               "status": {"containerStatuses": [{"name": "main", "state": {"running": {}}}]}}
    why = ps.outliving_its_kill(running, 30, now)
    assert why == "container(s) main still running 40s after the grace period of its delete ended"
    assert ps.outliving_its_kill(running, 45, now) is None  # not yet past the settle time
    ended = {**running, "status": {"containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 137}}}]}}
    assert ps.outliving_its_kill(ended, 30, now) is None  # stopped: the sandbox may still be going away
    alive = {**running, "metadata": {"name": "p"}}
    assert ps.outliving_its_kill(alive, 30, now) is None  # not being deleted
