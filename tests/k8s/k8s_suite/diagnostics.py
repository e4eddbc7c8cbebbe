"""The failure dump: what the cluster and the node showed when a scenario failed.

Pod status and container states, events sorted by time, container logs, and node evidence (the
runtime's log, kubelet/containerd log lines naming the namespace or containers, ``ps`` of the
shims and of this run's processes, the runtime's state entries). Every part is best-effort: a
part that cannot be read says why, and the dump itself never raises.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable, Iterable, Sequence

from k8s_suite import nodeproc, podstate
from k8s_suite.kube import RunContext

LOG_TAIL = 200  # container log lines per container
NODE_LOG_LINES = 80  # matching lines per component log
NODE_LOG_TAIL = 30  # plain tail per component log
MAX_REPORT_CHARS = 60_000  # the part attached to the test report (the file keeps everything)


def _section(title: str, body: str) -> str:
    return f"===== {title} =====\n{body.rstrip()}\n"


def _safe(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a dump must not fail
        return f"(could not read: {type(e).__name__}: {e})"


def namespace_dump(ctx: RunContext, ns: str) -> tuple[str, set[str], set[str]]:
    """Pods, events and logs of ``ns``; also returns the container ids and nodes seen."""
    out, cids, nodes = [], set(), set()
    try:
        pods = ctx.list_pods(ns).get("items", [])
    except Exception as e:  # noqa: BLE001
        return _section(f"namespace {ns}", f"(could not list pods: {e})"), cids, nodes
    for pod in pods:
        name = pod["metadata"]["name"]
        cids.update(podstate.container_ids(pod))
        if pod.get("spec", {}).get("nodeName"):
            nodes.add(pod["spec"]["nodeName"])
        out.append(_section(f"pod {ns}/{name}", podstate.describe(pod) + "\n" + podstate.dump(pod)))
        for c in pod.get("spec", {}).get("containers", []):
            out.append(_section(f"log {ns}/{name}/{c['name']} (last {LOG_TAIL} lines)",
                                _safe(lambda: ctx.logs(ns, name, c["name"], tail=LOG_TAIL) or "(empty)")))
    if not pods:
        out.append(_section(f"namespace {ns}", "(no pods)"))
    out.append(_section(f"events in {ns} (by time)", _safe(lambda: podstate.format_events(ctx.events(ns)))))
    return "".join(out), cids, nodes


def node_dump(ctx: RunContext, node: str, patterns: Sequence[str]) -> str:
    """Node-side evidence filtered by ``patterns`` (namespace, token, container ids)."""
    info, out = ctx.info, []
    pats = [p for p in patterns if p]

    def procs() -> str:
        table = ctx.ps(node)
        shim_pids = {s.pid for s in nodeproc.shims(table, info.shim_process)}
        keep = [p for p in table if p.pid in shim_pids or p.ppid in shim_pids or p.zombie
                or any(x in p.args for x in pats)]
        return "    PID    PPID STAT  COMMAND\n" + "\n".join(p.line() for p in keep) if keep else "(none)"

    out.append(_section(f"node {node}: shims, their children, zombies and this run's processes", _safe(procs)))
    if info.runtime_state_dir:
        d = info.runtime_state_dir
        ids = [p for p in pats if len(p) == 64]
        script = f"ls -la {shlex.quote(d)}; " + "".join(
            f"for f in {shlex.quote(d)}/{i}/*.json; do [ -f \"$f\" ] && echo \"--- $f\" && head -c 4000 \"$f\" && echo; done; "
            for i in ids)
        out.append(_section(f"node {node}: runtime state {d}", _safe(lambda: _sh(ctx, node, script))))
    logs = {}
    if info.runtime_log:
        logs["runtime"] = info.runtime_log
    for name in ("kubelet", "containerd", *sorted(k for k in info.component_logs if "shim" in k)):
        if name in info.component_logs:
            logs[name] = info.component_logs[name]
    grep = " ".join(f"-e {shlex.quote(p)}" for p in pats)
    for name, path in logs.items():
        q = shlex.quote(path)
        script = (f"echo '--- lines naming this test (last {NODE_LOG_LINES}):'; "
                  + (f"grep -F {grep} {q} | tail -n {NODE_LOG_LINES}; " if pats else "")
                  + f"echo '--- tail {NODE_LOG_TAIL}:'; tail -n {NODE_LOG_TAIL} {q}")
        out.append(_section(f"node {node}: {name} log {path}", _safe(lambda: _sh(ctx, node, script))))
    return "".join(out)


def _sh(ctx: RunContext, node: str, script: str) -> str:
    r = ctx.node_sh(node, script, ok=None)
    return (r.stdout + (f"\n(stderr: {r.stderr.strip()})" if r.stderr.strip() else "")) or "(empty)"


def collect(ctx: RunContext, namespaces: Iterable[str], *, extra: str = "", patterns: Sequence[str] = ()) -> str:
    """The whole dump for some namespaces (plus free text from the test)."""
    parts, cids, nodes = [], set(), set()
    namespaces = list(namespaces)
    for ns in namespaces:
        text, c, n = namespace_dump(ctx, ns)
        parts.append(text)
        cids |= c
        nodes |= n
    if extra:
        parts.append(_section("scenario notes", extra))
    for node in sorted(nodes or set(ctx.info.nodes)):
        parts.append(node_dump(ctx, node, [*namespaces, *sorted(cids), ctx.token, *patterns]))
    return "\n".join(parts)


def for_report(text: str, path: Path | None) -> str:
    where = f"(full dump: {path})\n" if path else ""
    if len(text) <= MAX_REPORT_CHARS:
        return where + text
    return where + text[:MAX_REPORT_CHARS] + f"\n[... cut at {MAX_REPORT_CHARS} characters; see the file ...]\n"
