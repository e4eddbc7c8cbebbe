"""S28-S32, S35, S40: the runtime contract beyond the plan, exec and process paths (what Kubernetes
expects of any CRI runtime). The catalogue of S28-S43 (pod, must hold, bug class) is
``docs/CONTRACT.md``; runc is the reference and every row holds for every runtime.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from k8s_suite import manifests, podstate, trees
from k8s_suite import timeouts as T
from k8s_suite import manifests as m
from k8s_suite.manifests import sh

SANDBOX_STOP_BOUND = 5.0  # seconds; runc needs about 1


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
    # `kubectl exec -it … sh`: what is typed reaches the shell through the terminal, its stdout and
    # stderr come back on it, and the exec ends with the status of the typed `exit` (the typed text is
    # echoed too: the expected lines are printed from pieces, so the echo never equals them); stdin
    # stays open as a user's does (containerd hangs a terminal up when its stdin ends)
    t = kube.token
    typed = f"printf '%s-%s\\n' tty-in {t}; printf '%s-%s\\n' tty-err {t} >&2; exit 3\n"
    res = kube.exec(name, ["sh"], tty=True, stdin=typed, typed=True, timeout=30)
    lines = [ln.rstrip("\r") for ln in res.stdout.splitlines()]
    assert res.exit_code == 3 and {f"tty-in-{t}", f"tty-err-{t}"} <= set(lines), (
        f"exec `sh` with a terminal, typed {typed!r}: expected the lines tty-in-{t} and tty-err-{t} on the terminal "
        f"and exit 3, got {res.describe()}")
    # a long output through the terminal arrives whole, its last (unterminated) line included
    many = 2000
    res = kube.exec(name, ["/bin/sh", "-c", f"i=0; while [ $i -lt {many} ]; do echo tty-line-$i; i=$((i+1)); done; "
                                            f"printf tty-last-{t}"], tty=True, timeout=60)
    want = [f"tty-line-{i}" for i in range(many)] + [f"tty-last-{t}"]
    got = [ln.rstrip("\r") for ln in res.stdout.splitlines()]
    assert res.exit_code == 0 and got == want, (
        f"exec with a terminal printing {many} lines and an unterminated last one: got {len(got)} line(s), last "
        f"{got[-2:]!r}, first difference at {_first_difference(chr(10).join(got), chr(10).join(want))} ({res.describe()})")


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
    """A tree ignoring TERM (inherited by a child in the shell's process group and one in a session of
    its own): every process ends by SIGKILL when the grace period is over, not before, not much later."""
    grace = 3
    tree = trees.tree(kube, "s32")
    name = kube.name("stubborn")
    # TERM is ignored by the shell and (inherited across fork and exec) by both children
    kube.create(kube.pod("stubborn", sh(tree.script("trap '' TERM")), grace=grace,
                         finalizers=manifests.hold_finalizers()))
    pod = kube.wait_running(name)
    node = kube.node_of(pod)
    before = trees.wait_started(kube, node, tree)
    evidence.append("before delete:\n" + "\n".join(p.line() for p in before))
    asked = time.monotonic()
    kube.delete_pod(name, grace=grace)
    # judged as S12 (trees.wait_gone): a child still there 5 s after SIGKILL's due time fails once another
    # process of its tree is gone (the kill reached the tree); with none gone (a slow node), KILL_SETTLE
    # past the grace
    seen: dict[str, float] = {}
    left, why = trees.wait_gone(kube, node, tree, before, bound=grace + trees.KILL_SLACK,
                                timeout=grace + T.KILL_SETTLE, gone_at=seen)
    gone_at = {k: t - asked for k, t in seen.items()}
    print(f"TERM-ignoring tree (grace {grace}s): " + ", ".join(f"{trees.WHAT[k]} gone {t:.1f}s after the delete"
                                                               for k, t in sorted(gone_at.items())))
    assert not left, (
        f"processes ignoring TERM were still there {time.monotonic() - asked:.0f}s after a delete with a {grace}s grace "
        f"period ({why}): SIGKILL came late or not at all for {trees.describe(left)}")
    early = {k: t for k, t in gone_at.items() if t < grace - 0.5}
    assert not early, (
        "processes ignoring TERM were killed before the grace period ended: "
        + ", ".join(f"{trees.WHAT[k]} gone {t:.1f}s after a delete with a {grace}s grace period" for k, t in early.items()))
    pod = kube.wait_terminated(name)
    term = podstate.terminated(pod) or {}
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
