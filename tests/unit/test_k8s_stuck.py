"""k8s_suite.stuck: a deleted pod outlives its kill only when containerd's CRI record still has its
container running too (the task's state says why); when containerd recorded the end, the kubelet
is lagging and the wait goes on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import _k8s_path  # noqa: F401

from k8s_suite import stuck

CID = "a" * 64
OTHER = "b" * 64
TASKS = f"""TASK                                                                PID      STATUS
{CID}    14121    RUNNING
{OTHER}    31825    STOPPED
"""
API_WHY = "container(s) main still running 40s after the grace period of its delete ended"
RUNNING_REC = '{"Version":"v1","Pid":15645,"CreatedAt":1,"StartedAt":2,"FinishedAt":0,"ExitCode":0}'
ENDED_REC = '{"Version":"v1","Pid":15645,"CreatedAt":1,"StartedAt":2,"FinishedAt":1796431958951674331,"ExitCode":0}'


NOW = datetime(2026, 12, 5, 2, 0, 40, tzinfo=timezone.utc)


def _pod(name="p", cid=CID, late=40, state="running"):
    deleted = (NOW - timedelta(seconds=late)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"name": name, "deletionTimestamp": deleted}, "spec": {"nodeName": "n1"},
            "status": {"containerStatuses": [{"name": "main", "containerID": f"containerd://{cid}",
                                              "state": {state: {}}}]}}


def _judge(records=None, tasks=TASKS, calls=None, fail=None, clock=None):
    records = records if records is not None else {CID: RUNNING_REC, OTHER: RUNNING_REC}

    def status(node, ids):
        if calls is not None:
            calls.append(("status", node, tuple(ids)))
        if fail:
            raise RuntimeError(fail)
        text = "".join(f"=== {i}\n{records.get(i, 'cat: no such file')}\n" for i in ids)
        return stuck.parse_status(text)

    def task_list(node):
        if calls is not None:
            calls.append(("tasks", node))
        return stuck.parse_tasks(tasks)
    return stuck.Judge(30, status, task_list, now=lambda: NOW, **({"clock": clock} if clock else {}))


def test_parsers():
    assert stuck.parse_tasks(TASKS) == {CID: "RUNNING", OTHER: "STOPPED"}
    assert stuck.parse_tasks("") == {} and stuck.parse_tasks("ctr: failed to dial\n") == {}
    text = f"=== {CID}\n{RUNNING_REC}\n\n=== {OTHER}\n{ENDED_REC}\n\n=== {'c' * 64}\ncat: x: No such file or directory\n\n"
    assert stuck.parse_status(text) == {CID: False, OTHER: True, "c" * 64: "cat: x: No such file or directory"}
    script = stuck.status_script("/var/lib/containerd/", [CID, "../etc", ""])
    assert script == f'echo "=== {CID}"; cat /var/lib/containerd/io.containerd.grpc.v1.cri/containers/{CID}/status 2>&1; echo; '
    assert stuck.status_script("/x", ["not-an-id"]) == "true"


def test_running_for_containerd_and_its_task_the_kill_did_not_end_it():
    why = _judge()(_pod())
    assert why == (f"{API_WHY} (containerd: running, its task too; the kill did not end it)")
    assert _judge().all([_pod(), _pod("q")])
    assert _judge().note([_pod()]) == f" (ended early: {why})"


def test_running_for_containerd_with_its_task_stopped_the_runtime_did_not_report_the_end():
    for cid, state in ((OTHER, "stopped"), ("c" * 64, "gone")):
        why = _judge(records={cid: RUNNING_REC})(_pod(cid=cid))
        assert why == (f"{API_WHY} (containerd still reports it running to the kubelet; main: task {state}: "
                       "the runtime did not report its end)")


def test_an_end_containerd_recorded_is_the_kubelet_lagging_not_a_failed_kill():
    pod = _pod()
    j = _judge(records={CID: ENDED_REC})
    assert j(pod) is None and not j.all([pod])
    assert j.note([pod]) == (" (containerd recorded the end of container(s) the kubelet still reports running 30s+ "
                             "after the grace period: p: main)")


def test_before_the_settle_time_or_not_running_the_node_is_not_asked():
    calls: list = []
    j = _judge(calls=calls)
    assert j(_pod(late=10)) is None and j(_pod(state="terminated")) is None and j(None) is None
    assert calls == [] and j.note([_pod(late=10)]) == "" and not j.all([])


def test_node_access_failing_keeps_the_api_view_and_says_so():
    why = _judge(fail="ctr: connection refused")(_pod())
    assert why == f"{API_WHY} (containerd's view unavailable: RuntimeError: ctr: connection refused)"
    nowhere = _pod()
    del nowhere["spec"]["nodeName"]
    assert _judge()(nowhere) == f"{API_WHY} (containerd's view unavailable: the pod names no node)"


def test_one_read_per_node_and_poll_round():
    calls: list = []
    now = [0.0]
    j = _judge(calls=calls, clock=lambda: now[0])
    j.all([_pod(), _pod("q"), _pod("r")])
    assert calls == [("status", "n1", (CID,)), ("tasks", "n1")]
    now[0] = stuck.FRESH
    j(_pod())
    assert len(calls) == 4


def test_one_pod_that_may_still_go_keeps_the_wait_going():
    j = _judge()
    assert not j.all([_pod(), _pod("q", state="terminated")])
    assert j.note([_pod(), _pod("q", state="terminated")]) == ""
