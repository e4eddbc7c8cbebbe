"""S08-S10: exec into a running pod (stdout, exit status, a binary that does not exist)."""

from __future__ import annotations

from k8s_suite import podstate


def test_s08_exec_stdout(kube):
    name, pod, seconds = kube.sleeping_pod("exec")
    res = kube.exec(name, ["echo", "exec works"])
    assert res.status == "Success" and res.exit_code == 0, res.describe()
    assert res.stdout == "exec works\n", f"stdout: expected 'exec works\\n', got {res.stdout!r} ({res.describe()})"
    assert res.stderr == "", f"stderr: expected nothing, got {res.stderr!r}"
    # proven to run on the runtime under test: the workload process on the node
    node = kube.node_of(pod)
    procs = kube.wait_processes(node, ["sleep", str(seconds)], "workload process present", lambda n: n == 1)
    print(kube.runtime_evidence(kube.get(name), [p.pid for p in procs]))


def test_s09_exec_exit_code(kube):
    name, _, _ = kube.sleeping_pod("exec")
    res = kube.exec(name, ["/bin/sh", "-c", "exit 7"])
    assert res.exit_code == 7, f"exec exit code: expected 7, got {res.exit_code!r} ({res.describe()})"


def test_s10_exec_nonexistent(kube):
    name, pod, seconds = kube.sleeping_pod("exec")
    node = kube.node_of(pod)
    marker = ["sleep", str(seconds)]
    before = kube.get(name)
    cs_before = podstate.container_status(before)
    assert podstate.phase(before) == "Running" and podstate.running(before), f"before: {podstate.describe(before)}"
    main_before = kube.wait_processes(node, marker, "the main process present", lambda n: n == 1)
    res = kube.exec(name, ["/nonexistent/binary"])
    failed_with_code = res.exit_code is not None and res.exit_code != 0
    failed_to_start = res.exit_code is None and res.status == "Failure" and "/nonexistent/binary" in res.message
    assert failed_with_code or failed_to_start, (
        f"exec of a missing binary must fail (non-zero exit, or a start error naming it): {res.describe()}")
    # the user is told which binary is missing (runc: the exec's error names it), not just "exit 1"
    told = " ".join(x or "" for x in (res.message, res.stderr, res.stdout))
    assert "/nonexistent/binary" in told, (
        f"exec of a missing binary failed without naming it (message, stderr and stdout say nothing of "
        f"/nonexistent/binary): {res.describe()}")
    # the kubelet's status lags the node: the decisive facts are on the node (the same main process,
    # by pid) and in a second exec that must still work
    again = kube.exec(name, ["echo", "second exec works"])
    assert again.exit_code == 0 and again.stdout == "second exec works\n", (
        f"a second exec after the failed one must work: {again.describe()}")
    main_after = kube.wait_processes(node, marker, "the main process still present", lambda n: n == 1)
    assert [p.pid for p in main_after] == [p.pid for p in main_before], (
        f"the main process changed: before {[p.line() for p in main_before]}, after {[p.line() for p in main_after]}")
    after = kube.get(name)
    cs_after = podstate.container_status(after)
    assert podstate.phase(after) == "Running" and podstate.running(after), f"after the exec: {podstate.describe(after)}"
    assert (cs_after.get("containerID"), cs_after.get("restartCount")) == (
        cs_before.get("containerID"), cs_before.get("restartCount")), (
        f"the container changed: before {podstate.describe(before)}; after {podstate.describe(after)}")
    print(f"{res.describe()}; main process pid {main_after[0].pid} unchanged; second exec ok")
