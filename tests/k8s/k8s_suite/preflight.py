"""The controller's look at the cluster before any scenario starts: one line saying why it cannot
run scenarios (API, nodes, RuntimeClass, node access), or None; writes the node's process table
(``ps-before-<node>.txt``) the node-wide scenarios compare against."""

from __future__ import annotations

import json
from pathlib import Path

from ci.cluster.base import ClusterInfo

from k8s_suite import nodeproc
from k8s_suite import timeouts as T
from k8s_suite.runstate import RunDir


def problem(info: ClusterInfo, run: RunDir) -> str | None:
    """One line saying why the cluster cannot run scenarios, or None."""
    try:
        from k8s_suite.kube import connect
        from k8s_suite.rest import Api
    except ImportError as e:
        return f"the kubernetes Python client is not installed ({e}); pip install -r requirements.txt"
    if not Path(info.kubeconfig).is_file():
        return f"kubeconfig {info.kubeconfig} (from the cluster info) does not exist"
    try:
        api = connect(info)
    except Exception as e:  # noqa: BLE001 - any config problem is one line
        return f"kubeconfig {info.kubeconfig} is unusable: {type(e).__name__}: {e}"
    host = api.configuration.host
    calls = Api(api)
    try:
        calls.get_code(_request_timeout=T.API_PROBE)
        nodes = json.loads(calls.list_node(_request_timeout=T.API_PROBE).data).get("items") or []
        rcs = json.loads(calls.list_runtime_class(_request_timeout=T.API_PROBE).data).get("items") or []
    except Exception as e:  # noqa: BLE001
        reason = getattr(e, "reason", None) or (str(e).splitlines() or [""])[0][:200]
        return f"the API server at {host} does not answer: {type(e).__name__}: {reason}"
    ready = {n["metadata"]["name"]: any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in (n.get("status") or {}).get("conditions") or [])
             for n in nodes}
    for name in info.nodes:
        if name not in ready:
            return f"node {name} (from the cluster info) is not registered; nodes: {sorted(ready)}"
        if not ready[name]:
            return f"node {name} is not Ready"
    handlers = {rc["metadata"]["name"]: rc.get("handler") for rc in rcs}
    if info.runtime_class not in handlers:
        return f"RuntimeClass {info.runtime_class} does not exist (have: {sorted(handlers) or 'none'})"
    if handlers[info.runtime_class] != info.runtime_handler:
        return (f"RuntimeClass {info.runtime_class} names handler {handlers[info.runtime_class]!r}, not the handler "
                f"under test {info.runtime_handler!r}: its pods would not run on the runtime under test")
    access = info.node_access_impl()
    for name in info.nodes:
        try:
            r = access.run(name, nodeproc.PS_ARGV, timeout=T.NODE_COMMAND)
            procs = nodeproc.parse_ps(r.stdout)
        except Exception as e:  # noqa: BLE001
            return f"node {name} cannot be inspected through {info.node_access} access ({type(e).__name__}: {e})"
        run.write(f"ps-before-{name}.txt", r.stdout)
        if len(procs) < 3:
            return f"node {name}: ps listed {len(procs)} process(es); node checks would be meaningless"
    api.close()
    return None


# --- collection: skips, order, timeouts -------------------------------------------------------------
