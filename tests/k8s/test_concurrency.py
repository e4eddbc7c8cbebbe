"""S15-S16: concurrency (a burst of starts without cross-talk; create/delete stress without leaks)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from k8s_suite import manifests as m
from k8s_suite import naming, nodeproc, podstate, runstate
from k8s_suite import timeouts as T
from k8s_suite.kube import failing_with
from k8s_suite.manifests import sh


HOLD = 2  # S15: seconds a pod runs on after it saw every start (see the script)


def test_s15_concurrent_starts(kube):
    n = 4
    node = kube.info.nodes[0]
    sync = kube.node_dir(node, "sync")  # a hostPath folder all pods see (created by the kubelet)
    wait_steps = 600  # x 0.1 s: how long a pod waits for the others to have started
    markers = {kube.name(f"burst{i}"): f"burst-{i}-{kube.token}" for i in range(n)}
    # Each pod marks its start, then waits until all n have: it prints its marker only if all n
    # containers ran at the same time (a runtime that serialises starts, or holds a start lock while
    # a container runs, makes them time out). The 0.1 s sleep is the pod's own poll interval. Having
    # seen every start, a pod runs on HOLD seconds before it ends: the API records whole seconds, and a
    # start when the runtime's start call returned, which on a loaded node can be after the process ran
    # and another pod ended (runc, 2026-12-05 02:03: recorded last start 18 s, first end 17 s, every
    # marker printed); so the windows the API shows overlap on any runtime that reports them truly.
    # Each pod mounts the folder at a path of its own: a runtime whose pods share one mount namespace
    # (reaper) must not have one pod's mount replace another's here; that is a volume matter, not this
    # scenario's (S15 is about starts).
    script = ("touch /sync{i}/{i}; k=0; while [ \"$(ls /sync{i} | wc -l)\" -lt {n} ]; do k=$((k+1)); "
              "if [ $k -gt {steps} ]; then echo \"timeout: saw $(ls /sync{i} | wc -l) of {n} starts\"; exit 1; fi; "
              "sleep 0.1; done; sleep {hold}; echo {marker}")
    pods = [kube.pod(f"burst{i}", sh(script.format(i=i, n=n, steps=wait_steps, hold=HOLD,
                                                   marker=markers[kube.name(f"burst{i}")])),
                     node_name=node, volumes=[m.hostpath_volume("sync", sync, "DirectoryOrCreate")],
                     mounts=[m.mount("sync", f"/sync{i}")])
            for i in range(n)]
    with ThreadPoolExecutor(n) as pool:  # one burst: all creates in flight at once
        list(pool.map(kube.create, pods))
    with ThreadPoolExecutor(n) as pool:
        done = list(pool.map(lambda nm: kube.wait_phase(nm, "Succeeded"), markers))
    for name, marker in markers.items():
        lines = kube.log_lines(name)
        assert lines == [marker], f"{name}: expected exactly [{marker!r}] (its own marker, no other pod's), got {lines!r}"
    # the start windows, as the API server recorded them (second resolution): all overlap
    windows = {p["metadata"]["name"]: (podstate.parse_time(podstate.terminated(p).get("startedAt")),
                                       podstate.parse_time(podstate.terminated(p).get("finishedAt"))) for p in done}
    latest_start = max(w[0] for w in windows.values())
    earliest_end = min(w[1] for w in windows.values())
    print("container windows: " + "; ".join(f"{nm}: {a:%H:%M:%S}-{b:%H:%M:%S}" for nm, (a, b) in windows.items()))
    assert latest_start <= earliest_end, (
        f"the containers did not run at the same time: the last started at {latest_start} after the first ended at "
        f"{earliest_end}")


@pytest.mark.slow
@pytest.mark.node_wide(stage=2)  # beside S13/S14: their pods' zombies are told apart by their shims
def test_s16_create_delete_stress(node_wide, ctx, kube, evidence):
    problems: list[str] = []
    with failing_with(problems):
        _s16(ctx, kube, node_wide, evidence, problems)
    assert not problems, "\n".join(problems)


def _s16(ctx, kube, node_wide, evidence, problems: list[str]) -> None:
    n = 6
    node = ctx.info.nodes[0]
    seconds = naming.sleep_seconds(kube.token, "s16")
    marker = kube.marker(["sleep", str(seconds)])
    before_procs = ctx.ps(node)
    before_state = ctx.state_entries(node)  # a declared state folder that does not exist fails here
    names = [kube.name(f"stress{i}") for i in range(n)]
    manifests = [kube.pod(f"stress{i}", sh(f"echo started-{i}; exec sleep {seconds}"), grace=2, node_name=node)
                 for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(kube.create, manifests))
    early, late = names[: n // 2], names[n // 2:]

    # half as soon as their sandbox is ready on the node (its shim is up: the sandbox shim comes
    # first, the container is created and started after it), so the delete races the start
    at_delete = _delete_at_sandbox_ready(ctx, kube, node, early)
    print("early pods deleted as soon as their sandbox's shim was up; their containers then (API view): "
          + " | ".join(f"{k}: {v}" for k, v in sorted(at_delete.items())))
    # the other half once running; while they run, their containers ARE in the runtime's state folder
    # (the positive control: a leak check on a folder the runtime does not use would prove nothing)
    late_ids = []
    for name in late:
        late_ids += [i for i in podstate.container_ids(kube.wait_running(name)) if i]
    if before_state is not None:
        deadline = time.monotonic() + T.NODE_PROCESS
        while True:
            missing = [i for i in late_ids if i not in ctx.state_entries(node)]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert not missing, (f"running containers {[i[:12] for i in missing]} have no entry in the runtime's state "
                             f"folder {ctx.info.runtime_state_dir}: the state checks would prove nothing")
        print(f"positive control: the {len(late_ids)} running containers have state entries in "
              f"{ctx.info.runtime_state_dir}")
    for name in late:
        kube.delete_pod(name)
    # all gone within the deadline; meanwhile keep recording this namespace's shims (a sandbox can
    # appear after its pod's delete was requested)
    began = time.monotonic()
    left = kube.wait_no_pods(T.POD_DELETE, record=True)
    assert not left, (f"pods not gone {time.monotonic() - began:.0f}s after their delete"
                      f"{kube.ctx.stuck.note(left)}: ") + "; ".join(
        podstate.describe(p) for p in left)
    kube.note_gone()  # S14 counts these pods' shims from here

    ids = runstate.ids_of(e for e in ctx.run.recorded() if e.get("ns") == kube.ns) | kube.seen_ids | kube.sandbox_ids
    print(f"{len(ids)} container/sandbox ids seen for the {n} pods")
    assert ids, "no container or sandbox id was seen for these pods: the leak checks below would prove nothing"

    shims = _settle(lambda: nodeproc.leftover_shims(ctx.scan_shims(node), ids, kube.ns), T.SHIM_EXIT)
    if shims:
        problems.append(f"{len(shims)} shim(s) of these pods still running: " + "; ".join(s.line() for s in shims))
    procs = _settle(lambda: nodeproc.with_args(ctx.ps(node), marker), T.NODE_PROCESS)
    if procs:
        problems.append(f"{len(procs)} `{' '.join(marker)}` process(es) left: " + "; ".join(p.line() for p in procs))
    if before_state is None:
        print(f"runtime {ctx.info.runtime} declares no state folder: state-entry check skipped")
    else:
        def unexplained_entries():
            # container-id entries only: a runtime may keep other files there (locks, per-namespace state)
            new = nodeproc.container_ids_in(ctx.state_entries(node)) - before_state
            if not new:
                return []
            # another live pod's (this run's other scenarios, another run), or one another scenario of
            # this run recorded (its teardown judges that pod's entries)
            foreign = _other_namespaces_ids(ctx, node, kube.ns) | _others_recorded_ids(ctx, kube.ns)
            return sorted(e for e in new if e not in foreign or e in ids)

        new = _settle(unexplained_entries, T.STATE_CLEANUP)
        evidence.append(f"state entries before: {sorted(before_state)}")
        if new:
            ours = [e for e in new if e in ids]
            problems.append(f"{len(new)} new runtime state entr(y/ies) in {ctx.info.runtime_state_dir} not "
                            f"explained by another live pod ({len(ours)} named by these pods' ids): {new}")
    # its own pods' part ran beside the other scenarios; a new zombie anywhere on the node is judged
    # once no other scenario (but S13/S14, told apart by their shims) runs
    node_wide.wait()
    zs: list = []

    owners = ("containerd", ctx.info.shim_process, ctx.info.runtime_binary)

    def new_zombies():
        # below containerd, a shim or the runtime (as S13: a zombie of init's, such as an exited shim
        # init has not reaped yet, is the host's); below another scenario's shim they are its pod's (S13's,
        # running beside this one; or a shim that outlived its pod, named by the ids its scenario recorded):
        # that scenario judges them
        nonlocal zs
        now = ctx.ps(node)
        foreign = nodeproc.others_shims(ctx.scan_shims(node, now), kube.ns, _others_recorded_ids(ctx, kube.ns))
        zs = nodeproc.judged_zombies(before_procs, now, owners, foreign)
        return nodeproc.zombie_report(now, zs) if zs else ""

    report = _settle(new_zombies, T.ZOMBIE_SETTLE)
    if report:
        problems.append(f"{len(zs)} new zombie(s):\n{report}")


def _delete_at_sandbox_ready(ctx, kube, node: str, names: list[str]) -> dict[str, str]:
    """Delete each pod of ``names`` the moment a shim whose bundle names it runs on ``node``; returns
    each pod's container states as the API showed them right then."""
    pending, states = set(names), {}
    deadline = time.monotonic() + T.POD_START
    while pending:
        for shim in ctx.scan_shims(node):
            if shim.namespace == kube.ns and shim.pod in pending:
                pending.discard(shim.pod)
                kube.delete_pod(shim.pod)
                pod = kube.get(shim.pod)
                states[shim.pod] = "; ".join(f"{cs.get('name')} {podstate.describe_state(cs.get('state') or {})}"
                                             for cs in podstate.statuses(pod)) or "no container status yet"
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"no sandbox shim appeared on node {node} for {sorted(pending)} within "
                                 f"{T.POD_START}s: {'; '.join(podstate.describe(kube.get(n)) for n in sorted(pending))}")
        time.sleep(0.05)
    return states


def _others_recorded_ids(ctx, ns: str) -> set[str]:
    """Container, sandbox and shim ids the run's other scenarios recorded (their teardowns judge them)."""
    return runstate.ids_of(e for e in ctx.run.recorded() if e.get("ns") != ns)


def _settle(probe, timeout: float):
    """Poll ``probe`` until it returns nothing (settled) or ``timeout`` passes; return its last answer."""
    end = time.monotonic() + timeout
    while True:
        found = probe()
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.5)


def _other_namespaces_ids(ctx, node: str, ns: str) -> set[str]:
    """Container and sandbox ids of pods that exist now in namespaces other than ``ns``."""
    out: set[str] = set()
    for p in ctx.list_pods(None).get("items", []):
        if p["metadata"]["namespace"] != ns:
            out.update(podstate.container_ids(p))
    for s in ctx.scan_shims(node):
        if s.namespace and s.namespace != ns:
            out.update(i for i in (s.id, s.sandbox_id) if i)
    return out
