"""S11-S14: signals and process management (node access needed).

S11 and S12 watch one pod; S13 and S14 are node-wide (``node_wide(stage=2)``): their own pod's
part runs beside the other scenarios, their node-wide checks after everything else: no zombies (under a live pod's shim after execs and orphans, and below
containerd/shims/runtime once every pod is gone), and no shim left for any deleted pod of this run.
"""

from __future__ import annotations

import time

import pytest

from k8s_suite import manifests, naming, nodecheck, nodeproc, podstate, runstate, trees
from k8s_suite import timeouts as T
from k8s_suite.kube import failing_with, log_lines, without_stream_end_error
from k8s_suite.manifests import sh


@pytest.mark.slow
def test_s11_sigterm_graceful(kube):
    grace = 30
    name = kube.name("sigterm")
    # the suite's finalizer keeps the pod object (and its final status) after the kubelet is done
    kube.create(kube.pod("sigterm", sh("trap 'echo SIGTERM-received; exit 0' TERM; echo ready; "
                                       "while true; do sleep 1; done"),
                         grace=grace, finalizers=manifests.hold_finalizers()))
    kube.wait_running(name)
    # the log stream is open before the delete: nothing the container prints can be missed
    follower = kube.follow_logs(name, timeout=grace + 120)
    follower.wait_for_line("ready", T.POD_START)  # the trap is installed before `echo ready`
    started = time.monotonic()
    answer = kube.delete_pod(name)
    pod = kube.wait_terminated(name, timeout=grace + T.POD_TERMINATE)
    observed = time.monotonic() - started
    follower.wait_ended(T.LOG_REQUEST)
    term = podstate.terminated(pod)
    lines, kubelet_note = without_stream_end_error(log_lines(follower.text), podstate.container_ids(pod))
    if kubelet_note:
        print(f"the follow stream ended with the kubelet's own error line (not the container's): {kubelet_note}")
    # A runtime that signals the whole process group (reaper's design; S12 demands the group dies)
    # also ends the foreground `sleep 1`, and busybox sh reports it as "Terminated" on stderr: that
    # exact line, once, may appear anywhere (stderr and stdout are two pipes, their order is not defined).
    core = [ln for ln in lines if ln != "Terminated"]
    assert core == ["ready", "SIGTERM-received"] and len(lines) - len(core) <= 1, (
        f"log: expected ['ready', 'SIGTERM-received'] (plus at most the shell's 'Terminated' for its killed "
        f"foreground child), got {lines!r} (stream: {follower.error or 'ended'})")
    assert term.get("exitCode") == 0, f"exitCode: expected 0 (trap ran), got {term.get('exitCode')!r}: {podstate.describe(pod)}"
    # the delete answer carries deletionTimestamp = request time + grace (server clock, like finishedAt)
    requested = podstate.parse_time(answer["metadata"]["deletionTimestamp"])
    asked = int(answer["metadata"].get("deletionGracePeriodSeconds", grace))
    finished = podstate.parse_time(term.get("finishedAt"))
    took = (finished - requested).total_seconds() + asked
    assert asked == grace, f"delete used grace period {asked}s, expected {grace}s"
    # Decided on the server's clock (the delete's time vs the container's finishedAt): how long this
    # test took to *see* the terminated state is the kubelet's status latency, not the runtime's
    # signal delivery (a runtime whose sandbox stop hangs delays the status by tens of seconds).
    assert -2 <= took < grace / 2, (
        f"the container ended {took:.0f}s (server clock) after the delete (seen {observed:.1f}s after it): not "
        f"well before the {grace}s grace period, so SIGKILL may have ended it: {podstate.describe(pod)}")
    print(f"SIGTERM handled: container ended {took:.0f}s after the delete (observed {observed:.1f}s), exitCode 0")


@pytest.mark.slow
def test_s12_process_group_kill(kube, evidence):
    """Deleting a pod ends its whole tree: a child in the shell's process group and one that left it
    (setsid): :mod:`k8s_suite.trees`."""
    tree = trees.tree(kube, "s12")
    name = kube.name("pgkill")
    kube.create(kube.pod("pgkill", sh(tree.script()), grace=5))
    pod = kube.wait_running(name)
    node = kube.node_of(pod)
    before = trees.wait_started(kube, node, tree)
    evidence.append("before delete:\n" + "\n".join(p.line() for p in before))
    # proven to run on the runtime under test (the children's parent chain, or the runtime's log)
    print(kube.runtime_evidence(kube.get(name), [p.pid for p in before]))
    asked = time.monotonic()
    kube.delete_pod(name)
    # judged KILL_SLACK after SIGKILL was due (the grace period's end) once the kill has reached the tree
    # (trees.wait_gone), else KILL_SETTLE after it (a slow node)
    left, why = trees.wait_gone(kube, node, tree, before, bound=5 + trees.KILL_SLACK, timeout=5 + T.KILL_SETTLE)
    assert not left, (f"processes of the deleted pod live on {time.monotonic() - asked:.0f}s after its delete (grace 5s; "
                      f"{why}): {trees.describe(left)}")
    kube.wait_gone(name, timeout=T.POD_DELETE)


def _wait_run_pods_gone(ctx, keep_ns: str | None = None, timeout: float = T.RUN_PODS_GONE) -> list[dict]:
    """Pods of this run that are still there after ``timeout`` (ignoring ``keep_ns`` and the pods a
    node-wide scenario of this stage keeps live: runstate.live_beside), or at once when each of them
    outlives its kill (:class:`k8s_suite.stuck.Judge`)."""
    deadline = time.monotonic() + timeout
    while True:
        skip = runstate.live_beside(ctx.run.recorded()).namespaces | {keep_ns}
        left = [p for p in ctx.run_pods() if p["metadata"]["namespace"] not in skip]
        if not left or time.monotonic() > deadline or ctx.stuck.all(left):
            return left
        time.sleep(0.5)


@pytest.mark.node_wide(stage=2)
def test_s13_no_defunct(ctx, node_wide, kube, evidence):
    problems: list[str] = []
    with failing_with(problems):
        _zombies_while_alive(kube, problems, evidence)  # its own pod, beside the other scenarios
        node_wide.wait()
        began = time.monotonic()
        left = _wait_run_pods_gone(ctx)
        if left:
            problems.append(f"{len(left)} pod(s) of this run still exist {time.monotonic() - began:.0f}s after their "
                            f"namespaces were deleted{ctx.stuck.note(left)}, so the check could not "
                            "run on a settled node: "
                            + "; ".join(podstate.describe(p) for p in left[:5]))
        # after every pod of the run is gone: no new zombie below containerd, a shim or the runtime
        # (zombies elsewhere on the host are not this run's and are only reported)
        owners = ("containerd", ctx.info.shim_process, ctx.info.runtime_binary)
        for node in ctx.info.nodes:
            baseline_text = ctx.run.read(f"ps-before-{node}.txt")
            assert baseline_text, f"no process table of node {node} from the start of the run"
            baseline = nodeproc.parse_ps(baseline_text)
            deadline = time.monotonic() + T.ZOMBIE_SETTLE
            while True:
                procs = ctx.ps(node)
                new = nodeproc.new_zombies(baseline, procs)
                # below another run's shims (two runs on one cluster), or the shim of a pod a scenario of
                # this stage keeps live (S41's): that run's or that scenario's to judge, not this one's
                live = runstate.live_beside(ctx.run.recorded())
                foreign = {s.pid for s in ctx.scan_shims(node) if naming.other_run(s.namespace, ctx.token) or live.holds(s)}
                ours = nodeproc.judged_zombies(baseline, procs, owners, foreign)
                if not ours or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            others = [z for z in new if z not in ours]
            print(f"node {node}: {len(procs)} processes, {len(nodeproc.zombies(procs))} zombie(s), {len(new)} new since "
                  f"the run started, {len(ours)} of them below {'/'.join(o for o in owners if o)}")
            if others:
                print(f"node {node}: zombies not below containerd/shims/runtime (not this run's to judge):\n"
                      + nodeproc.zombie_report(procs, others))
            if ours:
                problems.append(f"node {node}: {len(ours)} zombie process(es) below containerd/shims/runtime not "
                                f"reaped within {T.ZOMBIE_SETTLE}s:\n" + nodeproc.zombie_report(procs, ours))
                evidence.append(nodeproc.zombie_report(procs, ours))
    assert not problems, "\n".join(problems)


def _zombies_while_alive(kube, problems: list[str], evidence: list[str]) -> None:
    """A live pod whose exec'd processes and orphans have certainly exited: none may stay a zombie
    under a shim or runtime process (they vanish with the pod, so this is checked while it lives)."""
    seconds = naming.sleep_seconds(kube.token, "s13")
    orphan = ["sleep", f"0.{naming.sleep_seconds(kube.token, 's13-orphan')}"]  # a fraction of a second, unique
    name = kube.name("reap")
    kube.create(kube.pod("reap", sh(f"for i in 1 2 3; do ({' '.join(orphan)} &); done; echo orphans-started; "
                                    f"exec sleep {seconds}"), grace=2))
    kube.marker(["sleep", str(seconds)])
    pod = kube.wait_running(name)
    node = kube.node_of(pod)
    kube.follow_logs(name, timeout=T.POD_START).wait_for_line("orphans-started", T.POD_START)
    for i in range(3):
        res = kube.exec(name, ["true"])
        assert res.exit_code == 0, f"exec {i + 1} of `true`: {res.describe()}"
    res = kube.exec(name, ["/bin/sh", "-c", f"({' '.join(orphan)} &); exit 0"])
    assert res.exit_code == 0, f"exec starting an orphan: {res.describe()}"
    kube.wait_processes(node, orphan, "the orphans have exited", lambda n: n == 0)
    # every exec returned and every orphan exited: a zombie left under a shim/runtime process now is
    # one its parent will not reap (a healthy one reaps at once; the settle window absorbs latency)
    report = nodecheck.live_zombies(kube, require_reapers=True)
    if report:
        problems.append(f"zombie(s) under the shim/runtime of a live pod (4 execs and 4 orphans exited) not reaped "
                        f"within {T.ZOMBIE_SETTLE}s:\n{report}")
        evidence.append(report)
    kube.delete_pod(name)
    kube.wait_gone(name, timeout=T.POD_DELETE)
    kube.note_gone()  # S14 counts this pod's shim from here


@pytest.mark.node_wide(stage=2)
def test_s14_shim_cleanup(ctx, node_wide, kube, evidence):
    problems: list[str] = []
    with failing_with(problems):
        _s14(ctx, kube, node_wide, evidence, problems)
    assert not problems, "\n".join(problems)


def _s14(ctx, kube, node_wide, evidence, problems: list[str]) -> None:
    # a running pod of our own first: proves that shims are found and matched to pods on this node
    name = kube.name("shim")
    kube.create(kube.pod("shim", ["sleep", str(naming.sleep_seconds(kube.token, "s14"))], grace=2))
    pod = kube.wait_running(name)
    node = kube.node_of(pod)
    entry = kube.record_ids()
    assert entry["shims"], (f"no {ctx.info.shim_process} process on node {node} names namespace {kube.ns} in its "
                            f"bundle while its pod exists: shim matching cannot work; shims: "
                            + "; ".join(s.line() for s in ctx.scan_shims(node)))
    kube.delete_pod(name)
    try:
        kube.wait_gone(name, timeout=T.POD_DELETE)
        kube.note_gone()  # its shim's SHIM_CONFIRM counts from here, as another scenario's from its teardown
    except AssertionError as e:
        problems.append(str(e))
    node_wide.wait()  # the rest judges every shim of the run
    left = _wait_run_pods_gone(ctx, keep_ns=None)
    if left:
        problems.append(f"{len(left)} deleted pod(s) of this run still exist{ctx.stuck.note(left)}: "
                        + "; ".join(podstate.describe(p) for p in left[:5]))
    recorded = ctx.run.recorded()
    ids = ctx.run.recorded_ids()
    print(f"{len(recorded)} namespace records, {len(ids)} container/sandbox/shim ids of this run")
    prefix = naming.run_namespace_prefix(ctx.token)
    # every pod of the run is gone by now (or outlives its kill): the shim of a stuck pod will not exit
    # while the pod is there (judged at once), and one whose pod is gone gets SHIM_CONFIRM seconds
    stuck = {p["metadata"]["namespace"] for p in left if ctx.stuck(p)}
    # a shim of a namespace whose teardown saw its pods gone counts from then (its SHIM_CONFIRM may be over)
    gone_at = {e["ns"]: e["gone_at"] for e in recorded if "gone_at" in e}
    for n in ctx.info.nodes:
        began, first_seen = time.monotonic(), {}
        while True:
            # the shim of a pod a scenario of this stage keeps live (S41's) is its teardown's to judge
            live = runstate.live_beside(ctx.run.recorded())
            leftovers = [s for s in nodeproc.leftover_shims(ctx.scan_shims(n), ids, prefix) if not live.holds(s)]
            now = time.monotonic()
            for s in leftovers:
                since = gone_at.get(s.namespace)  # wall clock, written by another worker
                first_seen.setdefault(s.pid, now - max(0.0, time.time() - since) if since else now)
            settled = all(s.namespace in stuck or now - first_seen[s.pid] >= T.SHIM_CONFIRM for s in leftovers)
            if not leftovers or now > began + T.SHIM_EXIT or settled:
                break
            time.sleep(0.5)
        if leftovers:
            text = "\n".join("  " + s.line() + "\n    " + s.args for s in leftovers)
            early = " (their pods outlive their kill)" if all(s.namespace in stuck for s in leftovers) else ""
            problems.append(f"node {n}: {len(leftovers)} {ctx.info.shim_process} process(es) of this run's deleted "
                            f"pods still running {time.monotonic() - began:.0f}s later{early}:\n{text}")
            evidence.append(text)
