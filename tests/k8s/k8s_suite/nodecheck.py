"""Per-scenario node checks run by :class:`k8s_suite.kube.Kube`: runtime identity from containerd's
records, zombies under the scenario's shims while its pods live, what its pods left on the node
after they are gone, and the one-line diagnosis of an unreadable runtime state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable

from kubernetes.client.exceptions import ApiException

from k8s_suite import invariants, naming, nodeproc, podstate, proof
from k8s_suite import timeouts as T
from k8s_suite.context import NodeCommandError
from k8s_suite.streams import TRANSIENT, _short

if TYPE_CHECKING:  # pragma: no cover
    from k8s_suite.kube import Kube


# --- runtime identity --------------------------------------------------------------------------------

def prove(kube: "Kube", ids: Iterable[str]) -> list[str]:
    """Read containerd's records of ``ids`` (and their sandboxes) on the node; add what proves the
    runtime to ``kube.proofs`` and what contradicts it to ``kube.proof_problems``. Returns the proofs."""
    ids = sorted({i for i in ids if i} - kube.control_ids)
    if not ids:
        return []
    info = kube.info
    found: list[str] = []
    for n in info.nodes:  # a container another node runs is "not found" here, neither proof nor problem
        r = kube.ctx.node_sh(n, proof.info_script(info.ctr, info.containerd_address, ids), ok=None)
        records = proof.parse_infos(r.stdout)
        sandboxes = {rec.sandbox_id for rec in records.values() if isinstance(rec, proof.Record) and rec.sandbox_id}
        missing = sorted(s for s in sandboxes if s not in records)
        if missing:
            r2 = kube.ctx.node_sh(n, proof.info_script(info.ctr, info.containerd_address, missing), ok=None)
            records.update(proof.parse_infos(r2.stdout))
        kube.sandbox_ids.update(sandboxes)
        proofs, problems = proof.judge(records, ids, info.runtime_handler, info.runtime_type)
        found += proofs
        kube.proof_problems += [f"node {n}: {p}" for p in problems]
    kube.proofs.update(found)
    return found


def require_proof(kube: "Kube", pods: list[dict]) -> list[str]:
    """Teardown: every pod of the scenario ran behind the handler under test. Problems, if any."""
    problems = []
    for p in pods:
        name = p["metadata"]["name"]
        if name in kube.controls:
            continue
        rc = p.get("spec", {}).get("runtimeClassName")
        if rc != kube.info.runtime_class:
            problems.append(f"pod {name}: runtimeClassName {rc!r}, expected {kube.info.runtime_class!r}")
    ids = set(kube.seen_ids)
    for p in pods:
        if p["metadata"]["name"] not in kube.controls:
            ids.update(podstate.container_ids(p))
    ids -= kube.control_ids
    prove(kube, ids)
    problems += kube.proof_problems
    if not kube.proofs and ids:
        problems.append(f"no container of this scenario could be proven to run behind handler "
                        f"{kube.info.runtime_handler} (containerd no longer knew any of {len(ids)} id(s))")
    return problems


# --- zombies while the pods live ---------------------------------------------------------------------

def live_zombies(kube: "Kube", timeout: float = T.ZOMBIE_SETTLE, *, require_reapers: bool = False) -> str:
    """Zombies whose parent is a shim or runtime process of this scenario's pods that are still
    there after ``timeout``; '' when none. ``require_reapers``: the scenario's pods are alive, so
    finding none of their shims is a failure (the check would prove nothing)."""
    owner = owner_of(kube)
    names = [kube.info.runtime_binary, kube.info.shim_process]
    deadline = time.monotonic() + timeout
    while True:
        report, found = "", 0
        for node in kube.info.nodes:
            procs = kube.ctx.ps(node)
            shims = kube.ctx.scan_shims(node, procs)
            pids = invariants.reapers(procs, shims, owner, names)
            found += len(pids)
            zs = invariants.owned_zombies(procs, pids)
            if zs:
                report += f"node {node}:\n" + nodeproc.zombie_report(procs, zs) + "\n"
        assert found or not require_reapers, (
            f"no {kube.info.shim_process} of namespace {kube.ns} found on the node while its pods live: "
            "the zombie check would prove nothing")
        if not report or time.monotonic() > deadline:
            return report
        time.sleep(0.25)  # poll interval until the deadline


# --- what the pods left after they are gone ------------------------------------------------------------

def owner_of(kube: "Kube") -> invariants.Owner:
    ids = set(kube.seen_ids) | set(kube.sandbox_ids)
    for e in kube.ctx.run.recorded():
        if e.get("ns") == kube.ns:
            ids.update(e.get("container_ids", []))
            for s in e.get("shims", []):
                ids.update(x for x in (s.get("id"), s.get("sandbox_id")) if x)
    return invariants.Owner(kube.ns, frozenset(i for i in ids if i), frozenset(kube.pod_uids),
                            frozenset(kube.pod_names), tuple(tuple(m) for m in kube.markers))


def scan(kube: "Kube", node: str, owner: invariants.Owner) -> invariants.Leaks:
    ctx, leaks = kube.ctx, invariants.Leaks()
    procs = ctx.ps(node)
    r = ctx.node_sh(node, invariants.pid_match_script(owner.hostnames, owner.patterns), ok=None)
    leaks.processes = invariants.leaked_processes(procs, invariants.parse_pid_matches(r.stdout), owner,
                                                  (kube.info.runtime_binary,))
    leaks.shims = [s.line() for s in invariants.owned_shims(ctx.scan_shims(node, procs), owner)]
    if kube.info.runtime_state_dir:
        leaks.state = [f"{kube.info.runtime_state_dir}/{e}" for e in
                       invariants.leaked_state(ctx.state_entries(node, required=False), owner)]
    r = ctx.node_sh(node, invariants.mounts_script(owner.patterns), ok=None, timeout=T.NODE_COMMAND)
    leaks.mounts = invariants.leaked_mounts(r.stdout, procs, (kube.info.runtime_binary,))
    return leaks


def after_delete(kube: "Kube", marks: list[str] | None = None) -> str:
    """Wait for the namespace's pods to be gone, then for the node to be clean of them; the leak
    report ('' when clean)."""
    started = time.monotonic()
    left = kube.wait_no_pods(T.POD_DELETE)
    if left:
        kube.leak_summary.append("pods not gone")
        return (f"{len(left)} pod(s) still exist {time.monotonic() - started:.0f}s after namespace {kube.ns} was deleted"
                f"{kube.ctx.stuck.note(left)}: " + "; ".join(podstate.describe(p) for p in left[:5]))
    gone = time.monotonic()
    kube.note_gone()  # S14: since when its shims are due to be gone
    owner = owner_of(kube)
    deadline = time.monotonic() + T.LEAK_SETTLE
    judged_since: float | None = None
    while True:
        found = {node: scan(kube, node, owner) for node in kube.info.nodes}
        bad = {n: lk for n, lk in found.items() if lk}
        now = time.monotonic()
        # judged as soon as proven (Leaks.confirm_after): mounts only the runtime's own long-lived
        # namespace keeps, none of the pods' processes, seen again LEAK_CONFIRM later; a shim whose
        # pods are gone, seen again SHIM_CONFIRM later. Anything else gets the whole settle time.
        need = [lk.confirm_after(T.LEAK_CONFIRM, T.SHIM_CONFIRM) for lk in bad.values()]
        judged_since = (judged_since or now) if bad and None not in need else None
        if not bad or now > deadline or (judged_since is not None and now - judged_since >= max(need)):
            break
        time.sleep(0.5)  # poll interval until the node is clean, a leak is judged, or the deadline
    if marks is not None:
        marks.append(f"pods gone +{gone - started:.1f}s, node scan {time.monotonic() - gone:.1f}s")
    kube.leak_summary += [lk.summary() for lk in bad.values()]
    return "\n".join(lk.describe(n) for n, lk in bad.items())


# --- the scenario's teardown -------------------------------------------------------------------------

def teardown(kube: "Kube", keep: bool = False) -> tuple[list[str], list[str]]:
    """Prove the runtime, check for zombies under the scenario's shims, record ids, release held
    pods, delete the namespace and this test's node paths, then check that the pods left nothing
    on the node. Returns (problems, leaks): the caller fails the teardown with them (not
    swallowed); leaks and an unproven runtime are product failures of this scenario."""
    problems: list[str] = []
    leaks: list[str] = []
    if not kube.created_ns:
        return problems, leaks
    t0 = time.monotonic()
    marks: list[str] = []
    try:
        kube.record_ids()
    except Exception as e:  # noqa: BLE001 - reported below
        problems.append(f"recording ids of {kube.ns}: {e}")
    if not keep:
        try:
            pods = kube.ctx.list_pods(kube.ns).get("items", [])
            for p in pods:
                kube._observe(p)
            unproven = require_proof(kube, pods)
            leaks += [f"runtime not proven: {x}" for x in unproven]
            if unproven:
                kube.leak_summary.append("runtime not proven")
            marks.append(f"proof {time.monotonic() - t0:.1f}s")
            zombies = live_zombies(kube)
            marks.append(f"zombies {time.monotonic() - t0:.1f}s")
            if zombies:
                kube.leak_summary.append("zombies")
                leaks.append(f"zombie(s) under this scenario's shims/runtime processes, not reaped within "
                             f"{T.ZOMBIE_SETTLE}s while its pods existed:\n{zombies}")
        except (NodeCommandError, ApiException, *TRANSIENT) as e:
            problems.append(f"node checks of {kube.ns} before its deletion: {e}")
    try:
        for p in kube.ctx.list_pods(kube.ns).get("items", []):
            if naming.FINALIZER in (p["metadata"].get("finalizers") or []):
                kube.release(p["metadata"]["name"])
    except (ApiException, *TRANSIENT) as e:
        problems.append(f"releasing held pods in {kube.ns}: {_short(e)}")
    for node, path in kube.node_paths:
        try:
            kube.ctx.node_run(node, ["rm", "-rf", "--", path])
        except NodeCommandError as e:
            problems.append(str(e))
    if keep:
        return problems, leaks
    try:
        # the pods first, directly: the namespace controller gets to them only after it has
        # enumerated every resource type (seconds), and the node checks below wait for them; the
        # Jobs before them, so that no Job controller replaces a deleted pod
        for job in sorted(kube.jobs):
            try:
                kube.ctx.batch.delete_namespaced_job(job, kube.ns, propagation_policy="Orphan",
                                                     _preload_content=False, _request_timeout=T.LOG_REQUEST)
            except ApiException as e:
                if e.status != 404:
                    raise
        # with a short grace period: the scenario is over, and a workload that ignores SIGTERM (or a
        # runtime that does not deliver it) must not cost the run the pod's whole grace period; the
        # kill path is the same (SIGTERM, then SIGKILL), and a pod already deleting keeps its earlier end
        kube.ctx.core.delete_collection_namespaced_pod(kube.ns, grace_period_seconds=T.TEARDOWN_GRACE,
                                                       _preload_content=False, _request_timeout=T.LOG_REQUEST)
        kube.ctx.core.delete_namespace(kube.ns, propagation_policy="Background", _preload_content=False,
                                       _request_timeout=T.LOG_REQUEST)
    except ApiException as e:
        if e.status != 404:
            problems.append(f"deleting namespace {kube.ns}: HTTP {e.status} {e.reason}")
            return problems, leaks
    except TRANSIENT as e:
        problems.append(f"deleting namespace {kube.ns}: {_short(e)}")
        return problems, leaks
    marks.append(f"deleted {time.monotonic() - t0:.1f}s")
    try:
        report = after_delete(kube, marks)
        if report:
            leaks.append(f"left on the node after its pods were gone (up to {T.LEAK_SETTLE}s settle; a mount "
                         f"in the runtime's own namespace at once):\n  {report}")
    except (NodeCommandError, ApiException, *TRANSIENT) as e:
        problems.append(f"node checks of {kube.ns} after its deletion: {e}")
    print(f"teardown of {kube.ns}: {time.monotonic() - t0:.1f}s ({', '.join(marks)})")
    return problems, leaks


# --- one-line diagnosis of the runtime's state race -----------------------------------------------------

STATE_PARSE_ERROR = "Failed to parse state output"


def unreadable_state(kube: "Kube", pod: dict | None) -> str:
    """One line when a container of ``pod`` ended because the runtime's state could not be parsed
    (the runtime returned an unreadable state): its terminated message says so (a failed start,
    exit 128), or it ended with exit 255 while containerd logged that for it. Else ''."""
    if not pod:
        return ""
    suspects = []
    for cs in podstate.statuses(pod):
        for st in ((cs.get("state") or {}).get("terminated"), (cs.get("lastState") or {}).get("terminated")):
            if not st:
                continue
            cid = podstate.container_id(st) or podstate.container_id(cs)
            message = st.get("message") or ""
            if STATE_PARSE_ERROR in message:
                return (f"the runtime returned an unreadable state: container {cs.get('name')} ({(cid or '?')[:12]}) "
                        f"exit {st.get('exitCode')} {st.get('reason')}: {message.strip()[:200]}")
            if st.get("exitCode") == 255 and cid:
                suspects.append((cs.get("name"), cid))
    for name, cid in suspects:
        try:
            node = kube.node_of(pod)
        except Exception:  # noqa: BLE001 - a hint must not hide the failure it explains
            continue
        line = containerd_log_line(kube, node, STATE_PARSE_ERROR, [cid])
        if line:
            return (f"the runtime returned an unreadable state: container {name} ({cid[:12]}) ended with exit 255 "
                    f"while containerd logged '{STATE_PARSE_ERROR}' for it: {line[-240:]}")
    return ""


def containerd_log_line(kube: "Kube", node: str, needle: str, ids: Iterable[str]) -> str:
    """The last line of containerd's log on ``node`` holding ``needle`` and one of the container
    ``ids``; '' when there is none, no containerd log is known (kind) or the node cannot be read
    (a hint must not hide the failure it explains)."""
    path = kube.info.component_logs.get("containerd")
    ids = list(ids)
    if not path or not ids:
        return ""
    pattern = " ".join(f"-e {i}" for i in ids)
    try:
        r = kube.ctx.node_sh(node, f"grep -F '{needle}' {path} | grep -F {pattern} | tail -n 1", ok=None)
    except Exception:  # noqa: BLE001
        return ""
    return r.stdout.strip()


LOST_EXIT = "failed to get task exit status for"  # containerd's CRI, when the runtime's task Wait fails


def lost_exit_status(kube: "Kube", ids: Iterable[str] | None = None) -> str:
    """One line when containerd could not get the exit status of one of ``ids`` (default: every
    container the scenario saw) from the runtime: its task Wait failed. containerd then records
    exit 255 and kills the container's processes (its CRI exit monitor), whatever the scenario
    expected of them, so that is the first thing a failure of the scenario must say. Else ''."""
    wanted = sorted(set(ids if ids is not None else kube.seen_ids))
    for node in kube.info.nodes:
        line = containerd_log_line(kube, node, LOST_EXIT, wanted)
        cid = next((i for i in wanted if i in line), None) if line else None
        if cid:
            why = line.split("error=", 1)[1] if "error=" in line else line[-200:]
            return (f"containerd lost the exit status of container {cid[:12]}: the runtime's task Wait failed "
                    f"({why.strip()[:200]}), so containerd recorded exit 255 and killed the container's processes")
    return ""


def lost_exit_first(kube: "Kube", rep, notes: list) -> None:
    """A failed call's report (``rep``): when containerd lost the exit status of a container of the
    scenario (and so killed it), its crash message, whose first line the summary and the gate read,
    starts with that; ``notes`` (the failure dump's extra text) gets it too."""
    try:
        hint = lost_exit_status(kube)
    except Exception:  # noqa: BLE001 - a hint must never replace the failure
        hint = ""
    crash = getattr(getattr(rep, "longrepr", None), "reprcrash", None)
    if hint and crash is not None and isinstance(getattr(crash, "message", None), str):
        crash.message = f"{hint}\n{crash.message}"
        notes.append(hint)
