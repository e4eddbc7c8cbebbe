"""S33, S34, S37-S39: what the kubelet does with a pod's containers over its life (restarts, init
containers, deadlines, probes, hooks). Catalogue: ``docs/CONTRACT.md``."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

from k8s_suite import manifests as m
from k8s_suite import naming, podstate, trees
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh

DEADLINE = 5  # activeDeadlineSeconds of S37
PROBE_RUNS = 3  # a probe has run this often before its effect (or its absence) is judged


def test_s33_restart_on_failure(kube):
    name = kube.name("restart")
    w = _volume_path(kube, "restart")
    first, second = f"first-run-{kube.token}", f"second-run-{kube.token}"
    # the emptyDir outlives the container: the second run finds the first run's file, then holds
    # (its own 0.1 s poll) until the test has read the first run's log and releases it
    kube.create(kube.pod("restart", sh(f"if [ -f {w}/ran ]; then echo {second}; "
                                       f"while [ ! -f {w}/release ]; do sleep 0.1; done; exit 0; fi; "
                                       f"touch {w}/ran; echo {first}; exit 1"),
                         restart="OnFailure", volumes=[m.emptydir_volume("w")], mounts=[m.mount("w", w)]))
    # CrashLoopBackOff between the runs is expected here: a terminal phase ends the wait early, and so
    # does a second restart (the second run ended too: it will never be the one running)
    pod = kube.wait(name, lambda p: podstate.phase(p) == "Running" and podstate.running(p) is not None
                    and (podstate.container_status(p) or {}).get("restartCount") == 1,
                    "the second run running (restartCount 1)", T.POD_FINISH, stop=_second_run_ended)
    last = ((podstate.container_status(pod) or {}).get("lastState") or {}).get("terminated") or {}
    assert last.get("exitCode") == 1, f"the first run's exit code (lastState): expected 1: {last or podstate.describe(pod)}"
    previous = kube.ctx.logs(kube.ns, name, previous=True)
    assert previous == f"{first}\n", f"the previous run's log (previous=True): expected {first!r}, got {previous!r}"
    kube.follow_logs(name, timeout=T.POD_START).wait_for_line(second, T.POD_START)
    # the release exec lets the container end: a runtime that fails the exec because its container
    # exited meanwhile has a bug of its own, reported with the restart checks (which still run)
    problems = []
    res = kube.exec(name, ["touch", f"{w}/release"])
    if res.exit_code != 0:
        problems.append(f"the release exec (its container exits right after it) failed: {res.describe()}")
    try:
        pod = kube.wait_phase(name, "Succeeded")
    except AssertionError as e:  # WaitError included: reported with the release's problem, if any
        pod = None
        problems.append(str(e))
    if pod is not None:
        cs = podstate.container_status(pod) or {}
        if not (cs.get("restartCount") == 1 and (podstate.terminated(pod) or {}).get("exitCode") == 0):
            problems.append(f"expected one restart and a final exit 0: {podstate.describe(pod)}")
        if kube.log_lines(name) != [second]:
            problems.append(f"the current run's log: expected [{second!r}], got {kube.log_lines(name)!r}")
    assert not problems, "\n".join(problems)


def _second_run_ended(pod, seen: bool) -> str | None:  # noqa: ARG001 - a podstate.Stop
    if podstate.phase(pod) in podstate.TERMINAL:
        return f"the pod reached phase {podstate.phase(pod)}"
    cs = podstate.container_status(pod) or {}
    if (cs.get("restartCount") or 0) >= 2:
        return (f"the container restarted {cs['restartCount']} times: its second run ended too (last run: "
                f"{podstate.describe_state(cs.get('lastState') or {})} before restart {cs['restartCount']})")
    return None


def test_s34_init_containers(kube):
    name = kube.name("init")
    lines = [f"init1-{kube.token}", f"init2-{kube.token}"]
    w = _volume_path(kube, "init")
    vol, mnt = [m.emptydir_volume("w")], [m.mount("w", w)]
    inits = [kube.container(f"init{i + 1}", sh(f"echo {line} >> {w}/order; echo {line}"), mounts=mnt)
             for i, line in enumerate(lines)]
    main = f"main-{kube.token}"
    kube.create(kube.pod("init", containers=[kube.container("main", sh(f"cat {w}/order; echo {main}"), mounts=mnt)],
                         volumes=vol, spec_extra={"initContainers": inits}))
    kube.wait_exited(name)
    assert kube.log_lines(name) == lines + [main], (
        f"main container: expected the init containers' lines in order, then its own: {lines + [main]}, got "
        f"{kube.log_lines(name)!r}")
    for i, line in enumerate(lines):
        got = kube.log_lines(name, f"init{i + 1}")
        assert got == [line], f"init container init{i + 1}'s log: expected [{line!r}], got {got!r}"

    # a failing init container: the pod fails and its main container never runs
    blocked = kube.name("blocked")
    kube.create(kube.pod("blocked", containers=[kube.container("main", sh(f"echo must-not-run-{kube.token}"))],
                         spec_extra={"initContainers": [kube.container("init1", sh("exit 7"))]}))
    pod = kube.wait_phase(blocked, "Failed")
    init = ((pod["status"].get("initContainerStatuses") or [{}])[0].get("state") or {}).get("terminated") or {}
    main_state = podstate.container_status(pod, "main") or {}
    assert init.get("exitCode") == 7, f"the failing init container's exit code: expected 7: {_init_states(pod)}"
    assert not (main_state.get("state") or {}).get("running") and not (main_state.get("state") or {}).get("terminated") \
        and not main_state.get("containerID"), (
        f"the main container ran although its init container failed: {podstate.describe(pod)}")


def _init_states(pod: dict) -> str:
    return "; ".join(f"{cs.get('name')}: {podstate.describe_state(cs.get('state') or {})}"
                     for cs in pod["status"].get("initContainerStatuses") or []) or "no init container status"


def test_s37_active_deadline(kube, evidence):
    """activeDeadlineSeconds ends the whole tree: a child in the shell's process group and one in a
    session of its own (:mod:`k8s_suite.trees`)."""
    tree = trees.tree(kube, "s37")
    name = kube.name("deadline")
    kube.create(kube.pod("deadline", sh(tree.script()), grace=2))
    pod = kube.wait_running(name)
    node = kube.node_of(pod)
    before = trees.wait_started(kube, node, tree)
    evidence.append("before the deadline:\n" + "\n".join(p.line() for p in before))
    # the deadline is set once the tree is seen (it counts from the pod's start; one in the manifest
    # raced the suite's first look at the node: on a loaded node the kill could come first, so the
    # tree was never seen whole, on any runtime): DEADLINE seconds from now
    since_start = datetime.now(timezone.utc) - podstate.parse_time(pod["status"]["startTime"])
    kube.ctx.core.patch_namespaced_pod(name, kube.ns, {"spec": {"activeDeadlineSeconds":
                                                                math.ceil(since_start.total_seconds()) + DEADLINE}})
    # the processes first: they are the runtime's part (the kubelet kills the pod at the deadline with
    # its 2 s grace period); a tree that outlives it keeps the container running, so the phase waits forever
    started = time.monotonic()
    # the kubelet notices the deadline within its 1 s sync tick; judged as S12 (trees.wait_gone)
    left, why = trees.wait_gone(kube, node, tree, before, bound=DEADLINE + 2 + 2 * trees.KILL_SLACK,
                                timeout=DEADLINE + 2 + T.KILL_SETTLE)
    assert not left, (f"processes of the pod live on {time.monotonic() - started:.0f}s after its activeDeadlineSeconds was set "
                      f"to end it {DEADLINE}s later, past that and its grace period (2s) ({why}): {trees.describe(left)}: "
                      f"{podstate.describe(kube.get(name))}")
    pod = kube.wait_phase(name, "Failed", timeout=DEADLINE + T.POD_FINISH)
    reason = pod["status"].get("reason")
    assert reason == "DeadlineExceeded", f"status.reason: expected DeadlineExceeded, got {reason!r}: {podstate.describe(pod)}"


def _ready(pod: dict | None) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in ((pod or {}).get("status") or {}).get("conditions") or [])


def _probe(script: str, **kw) -> dict:
    return {"exec": {"command": sh(script)}, "periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 5, **kw}


def test_s38_exec_probes(kube):
    seconds = naming.sleep_seconds(kube.token, "s38")
    token = kube.token
    w = {what: _volume_path(kube, what) for what in ("ready", "unready", "dead")}  # a mount path per pod
    mnt = {what: [m.mount("w", path)] for what, path in w.items()}
    # ready: its readiness probe passes once the container wrote its file; its liveness probe always passes
    kube.marker(["sleep", str(seconds)])
    good = kube.container("main", sh(f"touch {w['ready']}/ready-{token}; exec sleep {seconds}"), mounts=mnt["ready"])
    good["readinessProbe"] = _probe(f"echo r >> {w['ready']}/ready-probes; test -f {w['ready']}/ready-{token}")
    good["livenessProbe"] = _probe(f"echo l >> {w['ready']}/live-probes; exit 0")
    # never ready: its readiness probe exits 1; it must stay unready however often the probe runs
    bad = kube.container("main", kube.marker(["sleep", str(seconds + 1)]), mounts=mnt["unready"])
    bad["readinessProbe"] = _probe(f"echo r >> {w['unready']}/ready-probes; exit 1")
    # dead: its liveness probe exits 1: the kubelet must restart it
    dead = kube.container("main", kube.marker(["sleep", str(seconds + 2)]), mounts=mnt["dead"])
    dead["livenessProbe"] = _probe(f"echo l >> {w['dead']}/live-probes; exit 1", terminationGracePeriodSeconds=1)
    for what, c in (("ready", good), ("unready", bad), ("dead", dead)):
        kube.create(kube.pod(what, containers=[c], volumes=[m.emptydir_volume("w")], grace=1, restart="Always"))
    pod = kube.wait(kube.name("ready"), _ready, "condition Ready=True (exec readiness probe exit 0)", T.POD_START,
                    stop=podstate.stop_unless(("Running",)))
    dead_pod = kube.wait(kube.name("dead"), lambda p: (podstate.container_status(p) or {}).get("restartCount", 0) >= 1,
                         "restarted by its failing exec liveness probe", T.POD_START,
                         stop=podstate.stop_unless(("Running",)))
    last = ((podstate.container_status(dead_pod) or {}).get("lastState") or {}).get("terminated")
    assert last, f"restarted container without a last terminated state: {podstate.describe(dead_pod)}"
    # the restart is the probe's: the kubelet's own evidence (a restart for any other reason proves nothing)
    _wait_liveness_evidence(kube, kube.name("dead"))
    # the probes ran in the containers: their side effects are in each pod's own emptyDir
    for what, file in (("unready", "ready-probes"), ("ready", "live-probes")):
        runs = _wait_probe_runs(kube, kube.name(what), f"{w[what]}/{file}")
        print(f"{what}: {runs} probe runs recorded in {w[what]}/{file}")
    unready = kube.get(kube.name("unready"))
    assert not _ready(unready), f"a pod whose readiness probe exits 1 became Ready: {podstate.describe(unready)}"
    assert podstate.phase(unready) == "Running", podstate.describe(unready)
    pod = kube.get(kube.name("ready"))
    assert _ready(pod) and (podstate.container_status(pod) or {}).get("restartCount") == 0, (
        f"a pod whose liveness probe exits 0 must stay Ready and never restart: {podstate.describe(pod)}")


def _wait_liveness_evidence(kube, name: str) -> None:
    """The kubelet's events for ``name``: Unhealthy "Liveness probe failed" and Killing "failed liveness
    probe" (events are written asynchronously: polled until the deadline)."""
    deadline = time.monotonic() + T.POD_START
    while True:
        evs = [e for e in kube.ctx.events(kube.ns) if (e.get("involvedObject") or {}).get("name") == name]
        seen = {e.get("reason"): e.get("message") or "" for e in evs}
        if "Liveness probe failed" in seen.get("Unhealthy", "") and "failed liveness probe" in seen.get("Killing", ""):
            return
        assert time.monotonic() < deadline, (
            f"{name} restarted, but the kubelet recorded no failed liveness probe and kill for it within "
            f"{T.POD_START}s (events: {[(e.get('reason'), (e.get('message') or '')[:80]) for e in evs]})")
        time.sleep(0.5)  # poll interval until the deadline


def _volume_path(kube, what: str) -> str:
    """A mount path unique to this run, scenario and pod: a runtime whose pods share one mount
    namespace (reaper) must not let concurrent pods' volumes at one path stand in for each other."""
    return f"/w-{kube.sid}-{what}-{kube.token}"


def _wait_probe_runs(kube, name: str, path: str) -> int:
    """Poll (by exec) until the probe has run PROBE_RUNS times in ``name`` (lines in ``path``); the count."""
    deadline = time.monotonic() + T.POD_START
    while True:
        res = kube.exec(name, ["/bin/sh", "-c", f"cat {path} 2>/dev/null | wc -l"])
        runs = int(res.stdout.strip() or 0) if res.exit_code == 0 else -1
        if runs >= PROBE_RUNS:
            return runs
        assert time.monotonic() < deadline, (
            f"{name}: the exec probe recorded {runs} run(s) in {path} within {T.POD_START}s, {PROBE_RUNS} expected "
            f"({res.describe()})")
        time.sleep(0.25)  # poll interval until the deadline


def test_s39_lifecycle_hooks(kube):
    node = kube.info.nodes[0]
    folder = kube.node_dir(node, "hooks")  # on the node: read after the pod is gone
    token, seconds = kube.token, naming.sleep_seconds(kube.token, "s39")
    kube.marker(["sleep", str(seconds)])
    c = kube.container("main", sh(
        # the kubelet runs postStart after the start; the container waits (its own 0.1 s poll) for its effect
        f"i=0; while [ ! -f /h/poststart ] && [ $i -lt 300 ]; do i=$((i+1)); sleep 0.1; done; "
        f"cat /h/poststart 2>/dev/null || echo no-poststart-effect; "
        f"trap 'echo term-{token} >> /h/order; kill $!; exit 0' TERM; echo ready; sleep {seconds} & wait"),
        mounts=[m.mount("h", "/h")])
    c["lifecycle"] = {"postStart": {"exec": {"command": sh(f"echo poststart-{token} > /h/poststart")}},
                      "preStop": {"exec": {"command": sh(f"echo prestop-{token} >> /h/order")}}}
    name = kube.name("hooks")
    kube.create(kube.pod("hooks", containers=[c], node_name=node, grace=20,
                         volumes=[m.hostpath_volume("h", folder, "DirectoryOrCreate")]))
    kube.wait_running(name)
    kube.follow_logs(name, timeout=T.POD_START).wait_for_line("ready", T.POD_START)  # the TERM trap is set
    assert kube.log_lines(name) == [f"poststart-{token}", "ready"], (
        f"the postStart hook's effect must be visible to the main process: log {kube.log_lines(name)!r}")
    kube.delete_pod(name)
    kube.wait_gone(name)
    order = kube.ctx.node_sh(node, f"cat {folder}/order", ok=None).stdout.splitlines()
    assert order == [f"prestop-{token}", f"term-{token}"], (
        f"the preStop hook must run before TERM reaches the main process: {folder}/order holds {order!r}")
