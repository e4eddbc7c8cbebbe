"""S28-S32, S35, S40: the runtime contract beyond the plan, exec and process paths (what Kubernetes
expects of any CRI runtime). The catalogue of S28-S43 (pod, must hold, bug class) is
``docs/CONTRACT.md``; runc is the reference and every row holds for every runtime.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from k8s_suite import manifests, naming, podstate
from k8s_suite import manifests as m
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh

SANDBOX_STOP_BOUND = 5.0  # seconds; runc needs about 1
GRACE_SLACK = 5.0  # seconds past the grace period by which SIGKILL must have ended a TERM-ignoring tree


def test_s28_exec_streams(kube):
    name, _, _ = kube.sleeping_pod("streams")
    res = kube.exec(name, ["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (res.stdout, res.stderr, res.exit_code) == ("out\n", "err\n", 3), (
        f"expected stdout 'out\\n', stderr 'err\\n', exit 3: {res.describe()}")


def test_s29_exec_inherits_the_container(kube):
    value, cwd = f"s29-value-{kube.token}", f"/s29-cwd-{kube.token}"
    name, _, _ = kube.sleeping_pod("inherit", env={"S29_VAR": value}, working_dir=cwd,
                            volumes=[m.emptydir_volume("cwd")], mounts=[m.mount("cwd", cwd)],
                            pod_security={"runAsUser": 1000, "runAsGroup": 1000})
    res = kube.exec(name, ["/bin/sh", "-c", 'printf "%s\\n" "$S29_VAR"; pwd; id -u; id -g'])
    want = [value, cwd, "1000", "1000"]
    assert res.exit_code == 0 and res.stdout.splitlines() == want, (
        f"exec must run with the container's env, workingDir and identity: expected {want}, got "
        f"{res.stdout.splitlines()} ({res.describe()})")


def test_s30_exec_stdin_and_tty(kube):
    name, _, _ = kube.sleeping_pod("stdin")
    data = "".join(f"line-{i}-{kube.token}\n" for i in range(200)) + f"no-newline-{kube.token}"
    res = kube.exec(name, ["cat"], stdin=data, timeout=30)
    assert res.exit_code == 0 and res.stdout == data and res.stderr == "", (
        f"exec `cat` with {len(data)} bytes on stdin, then stdin closed: expected them echoed exactly and exit 0; got "
        f"{len(res.stdout)} bytes (first difference at {_first_difference(res.stdout, data)}), {res.describe()}")
    res = kube.exec(name, ["tty"], tty=True, timeout=30)
    assert res.exit_code == 0 and re.fullmatch(r"/dev/pts/\d+\r?\n", res.stdout), (
        f"exec `tty` with a terminal: expected a /dev/pts/N path and exit 0, got {res.describe()}")
    res = kube.exec(name, ["tty"], timeout=30)
    assert res.exit_code == 1 and res.stdout.strip() == "not a tty", (
        f"exec `tty` without a terminal (the control): expected 'not a tty' and exit 1, got {res.describe()}")


def _first_difference(got: str, want: str) -> str:
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return f"byte {i}: {got[max(0, i - 20):i + 20]!r} vs {want[max(0, i - 20):i + 20]!r}"
    return "none" if len(got) == len(want) else f"byte {min(len(got), len(want))} (one is a prefix of the other)"


def test_s31_killed_by_a_signal(kube):
    # shareProcessNamespace: the pod's pause process is PID 1, so the shell can be killed from inside
    # (a PID-namespace init ignores signals it has no handler for, even SIGKILL from inside)
    cases = {"kill": ("KILL", 137), "term": ("TERM", 143)}
    for what, (sig, _) in cases.items():
        # "$$$$": the kubelet expands $(VAR) in commands and turns "$$" into "$"
        kube.create(kube.pod(what, sh(f"echo before-{sig}; kill -{sig} $$$$; echo after-{sig}"),
                             spec_extra={"shareProcessNamespace": True}))
    with ThreadPoolExecutor(len(cases)) as pool:
        pods = dict(zip(cases, pool.map(lambda w: kube.wait_exited(kube.name(w), require_zero=False), cases)))
    for what, (sig, code) in cases.items():
        term = podstate.terminated(pods[what]) or {}
        assert term.get("exitCode") == code, (
            f"kill -{sig} $$: exit code must be {code} (128+SIG{sig}), got {term.get('exitCode')!r}: "
            f"{podstate.describe(pods[what])}")
        assert kube.log_lines(kube.name(what)) == [f"before-{sig}"], f"kill -{sig}: log {kube.log_lines(kube.name(what))!r}"
    for what in cases:
        kube.wait_phase(kube.name(what), "Failed")


def test_s32_grace_period_ends_in_sigkill(kube, evidence):
    grace = 3
    seconds = naming.sleep_seconds(kube.token, "s32")
    marker = kube.marker(["sleep", str(seconds)])
    name = kube.name("stubborn")
    # TERM is ignored by the shell and (inherited) by both children: only SIGKILL ends them
    kube.create(kube.pod("stubborn", sh(f"trap '' TERM; sleep {seconds} & sleep {seconds} & wait"), grace=grace,
                         finalizers=manifests.hold_finalizers()))
    pod = kube.wait_running(name)
    node = kube.node_of(pod)
    before = kube.wait_processes(node, marker, "both children started", lambda n: n >= 2)
    evidence.append("before delete:\n" + "\n".join(p.line() for p in before))
    asked = time.monotonic()
    kube.delete_pod(name, grace=grace)
    kube.wait_processes(node, marker, "the TERM-ignoring processes killed", lambda n: n == 0,
                        timeout=grace + GRACE_SLACK + T.NODE_PROCESS)
    took = time.monotonic() - asked
    pod = kube.wait_terminated(name)
    term = podstate.terminated(pod) or {}
    print(f"TERM-ignoring tree gone {took:.1f}s after the delete (grace {grace}s); exitCode {term.get('exitCode')}")
    assert took >= grace - 0.5, (
        f"the processes ignoring TERM were gone {took:.1f}s after a delete with a {grace}s grace period: the runtime "
        "killed them before the grace period ended")
    assert took <= grace + GRACE_SLACK, (
        f"the processes ignoring TERM were still there {took:.1f}s after a delete with a {grace}s grace period "
        f"(bound: grace + {GRACE_SLACK:.0f}s): SIGKILL came late or not at all")
    assert term.get("exitCode") == 137, (
        f"the container ended by SIGKILL must report exit code 137, got {term.get('exitCode')!r}: {podstate.describe(pod)}")


def test_s35_multi_container_pod(kube):
    name = kube.name("multi")
    a, b = [f"a-{i}-{kube.token}" for i in (1, 2)], [f"b-1-{kube.token}"]
    kube.create(kube.pod("multi", containers=[
        kube.container("a", sh(f"echo {a[0]}; echo {a[1]}")),
        kube.container("b", sh(f"echo {b[0]}; exit 5")),
    ]))
    pod = kube.wait_exited(name, require_zero=False)
    codes = {cs["name"]: ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
             for cs in pod["status"]["containerStatuses"]}
    assert codes == {"a": 0, "b": 5}, f"exit codes: expected a=0, b=5, got {codes}: {podstate.describe(pod)}"
    assert kube.log_lines(name, "a") == a, f"container a's log: {kube.log_lines(name, 'a')!r}"
    assert kube.log_lines(name, "b") == b, f"container b's log: {kube.log_lines(name, 'b')!r}"


def test_s40_sandbox_stop(kube):
    name = kube.name("stop")
    kube.create(kube.pod("stop", ["true"], grace=30))
    kube.wait_exited(name)
    exited = time.monotonic()
    kube.wait_phase(name, "Succeeded", timeout=120)
    to_phase = time.monotonic() - exited
    asked = time.monotonic()
    kube.delete_pod(name)
    kube.wait_gone(name, timeout=120)
    to_gone = time.monotonic() - asked
    print(f"exit seen -> Succeeded {to_phase:.1f}s; delete -> gone {to_gone:.1f}s")
    assert to_phase <= SANDBOX_STOP_BOUND, (
        f"the pod reached Succeeded {to_phase:.1f}s after its container's exit was reported (bound "
        f"{SANDBOX_STOP_BOUND:.0f}s): the runtime's StopPodSandbox is slow or hangs until containerd gives up")
    assert to_gone <= SANDBOX_STOP_BOUND, (
        f"deleting the finished pod took {to_gone:.1f}s (bound {SANDBOX_STOP_BOUND:.0f}s)")
