"""S08-S10: exec into a running pod (stdout, exit status, a binary that does not exist); S63: an
exec still running when its container ends ends with it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from k8s_suite import naming, podstate
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh
from k8s_suite.streams import WaitError

EXEC_ENDS = 10  # seconds after its container ended by which an exec still running in it must be gone


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


def test_s63_a_containers_end_ends_its_execs(kube):
    """The main process ends (exit 3) while two execs run ``sleep N`` in the container, one with a
    terminal: each exec's process ends with the container (runc: the container's PID namespace goes
    with its init; a runtime without one must end the container's processes itself, as containerd's
    runc shim does for a container sharing a PID namespace), each stream ends, and not with exit 0."""
    fifo = f"/tmp/reaper-ci-{kube.token}-s63"
    paths = {"exec": False, "exec with a terminal": True}
    marks = {what: str(naming.sleep_seconds(kube.token, f"s63-{what}")) for what in paths}
    name = kube.name("end")
    for m in marks.values():
        kube.marker(["sleep", m])  # the teardown looks for them too
    kube.create(kube.pod("end", sh(f"rm -f {fifo}; mkfifo {fifo} || exit 2; read -r _ < {fifo}; exit 3"), grace=2))
    node = kube.node_of(kube.wait_running(name))
    problems: list[str] = []
    t_end = None
    with ThreadPoolExecutor(len(paths)) as pool:
        held = {what: pool.submit(kube.exec, name, ["/bin/sh", "-c", f"exec sleep {marks[what]}"], tty=tty)
                for what, tty in paths.items()}
        try:
            for what in paths:
                kube.wait_processes(node, ["sleep", marks[what]], f"the {what}'s process running", lambda n: n == 1)
            # the release: a line into the FIFO, opened read-write (never blocks), once the main made it
            rel = kube.exec(name, ["/bin/sh", "-c", f"i=0; while [ ! -p {fifo} ] && [ $i -lt 50 ]; do sleep 0.1; "
                                   f"i=$((i+1)); done; exec 3<>{fifo}; echo go >&3"])
            print(f"the release: {rel.describe()}")  # its own status is S43's to judge: only its effect counts here
            ended = kube.wait_terminated(name)
            st = podstate.container_status(ended).get("state", {}).get("terminated") or {}
            assert st.get("exitCode") == 3, f"the main process must end with exit 3: {podstate.describe(ended)}"
            t_end = time.monotonic()
            for what in paths:  # one deadline for both: they end together or not at all
                left = max(0.5, t_end + EXEC_ENDS - time.monotonic())
                try:
                    kube.wait_processes(node, ["sleep", marks[what]], f"the {what}'s process gone with its container",
                                        lambda n: n == 0, timeout=left)
                except WaitError as e:
                    problems.append(f"the {what}'s process still runs {EXEC_ENDS}s after its container ended "
                                    f"(exit 3): {e}")
        finally:
            # never leave an exec (and this worker) waiting out its deadline: end its process on the node
            kube.ctx.node_sh(node, "; ".join(f"pkill -KILL -f '^sleep {m}$'" for m in marks.values()), ok=None)
        for what, fut in held.items():
            try:
                res = fut.result()
            except WaitError as e:
                problems.append(f"the {what}'s stream did not end once its process was gone: {e}")
                continue
            after = f" ({time.monotonic() - t_end:.1f}s after its container ended)" if t_end else ""
            print(f"the {what}: {res.describe()}{after}")
            if res.exit_code == 0:
                problems.append(f"the {what} ended with exit 0 though its process was killed: {res.describe()}")
    assert not problems, "; ".join(problems)
