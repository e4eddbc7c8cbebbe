"""S15-S16: concurrency (a burst of starts without cross-talk; create/delete stress without leaks)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from k8s_suite import naming, nodeproc, podstate, runstate
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh


def test_s15_concurrent_starts(kube):
    n = 4
    markers = {kube.name(f"burst{i}"): f"burst-{i}-{kube.token}" for i in range(n)}
    pods = [kube.pod(f"burst{i}", ["/bin/echo", markers[kube.name(f"burst{i}")]]) for i in range(n)]
    with ThreadPoolExecutor(n) as pool:  # one burst: all creates in flight at once
        list(pool.map(kube.create, pods))
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda nm: kube.wait_phase(nm, "Succeeded"), markers))
    for name, marker in markers.items():
        lines = kube.log_lines(name)
        assert lines == [marker], f"{name}: expected exactly [{marker!r}] (its own marker, no other pod's), got {lines!r}"


@pytest.mark.slow
@pytest.mark.node_wide(stage=1)
def test_s16_create_delete_stress(node_wide, ctx, kube, evidence):
    n = 6
    node = ctx.info.nodes[0]
    seconds = naming.sleep_seconds(kube.token, "s16")
    marker = ["sleep", str(seconds)]
    before_procs = ctx.ps(node)
    before_state = ctx.state_entries(node)
    names = [kube.name(f"stress{i}") for i in range(n)]
    manifests = [kube.pod(f"stress{i}", sh(f"echo started-{i}; exec sleep {seconds}"), grace=2, node_name=node)
                 for i in range(n)]
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(kube.create, manifests))
    # half while still starting, the other half once running
    early, late = names[: n // 2], names[n // 2:]
    for name in early:
        kube.delete_pod(name)
    for name in late:
        kube.wait_running(name)
        kube.delete_pod(name)
    # all gone within the deadline; meanwhile keep recording this namespace's shims (a sandbox can
    # appear after its pod's delete was requested)
    deadline = time.monotonic() + T.POD_DELETE
    left = names
    while True:
        kube.record_ids()
        left = [p["metadata"]["name"] for p in ctx.list_pods(kube.ns).get("items", [])]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert not left, f"pods not gone {T.POD_DELETE}s after their delete: " + "; ".join(
        podstate.describe(kube.get(nm)) for nm in left)

    problems = []
    ids = runstate.ids_of(e for e in ctx.run.recorded() if e.get("ns") == kube.ns) | kube.seen_ids
    print(f"{len(ids)} container/sandbox ids seen for the {n} pods")
    assert ids, "no container or sandbox id was seen for these pods: the leak checks below would prove nothing"

    shims = _settle(lambda: nodeproc.leftover_shims(ctx.scan_shims(node), ids, kube.ns), T.SHIM_EXIT)
    if shims:
        problems.append(f"{len(shims)} shim(s) of these pods still running: " + "; ".join(s.line() for s in shims))
    procs = _settle(lambda: nodeproc.with_args(ctx.ps(node), marker), T.NODE_PROCESS)
    if procs:
        problems.append(f"{len(procs)} `{' '.join(marker)}` process(es) left: " + "; ".join(p.line() for p in procs))
    zs: list = []

    def new_zombies():
        nonlocal zs
        now = ctx.ps(node)
        zs = nodeproc.new_zombies(before_procs, now)
        return nodeproc.zombie_report(now, zs) if zs else ""

    report = _settle(new_zombies, T.ZOMBIE_SETTLE)
    if report:
        problems.append(f"{len(zs)} new zombie(s):\n{report}")
    if before_state is None:
        print(f"runtime {ctx.info.runtime} declares no state folder: state-entry check skipped")
    else:
        def unexplained_entries():
            new = ctx.state_entries(node) - before_state
            if not new:
                return []
            foreign = _other_namespaces_ids(ctx, node, kube.ns)  # another run's live pods (parallel runs)
            return sorted(e for e in new if e not in foreign or e in ids)

        new = _settle(unexplained_entries, T.STATE_CLEANUP)
        evidence.append(f"state entries before: {sorted(before_state)}")
        if new:
            ours = [e for e in new if e in ids]
            problems.append(f"{len(new)} new runtime state entr(y/ies) in {ctx.info.runtime_state_dir} not "
                            f"explained by another live pod ({len(ours)} named by these pods' ids): {new}")
    assert not problems, "\n".join(problems)


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
