"""``nox -s cluster -- up|down|status|logs``: the cluster life cycle on its own.

``up`` creates (or reuses a healthy) cluster with the runtime under test behind the
RuntimeClass and prints where its kubeconfig and ClusterInfo are; ``down`` removes it;
``status`` says what runs; ``logs`` copies every component log into ``<artifacts>/cluster-logs``.
"""

from __future__ import annotations

import time

from ci import config as config_mod
from ci import console
from ci.cluster import get_provisioner
from ci.cluster.base import info_path
from ci.errors import UsageError

ACTIONS = ("up", "down", "status", "logs")


def main(argv: list[str]) -> int:
    cfg = config_mod.parse(argv, prog="cluster", actions=ACTIONS, allow_pytest_args=False)
    if cfg.action is None:
        raise UsageError(f"cluster: say what to do: {' | '.join(ACTIONS)} (e.g. `nox -s cluster -- up --runtime runc`)")
    if cfg.action == "up":
        from ci.phases.k8s import check_runtime_choice

        check_runtime_choice(cfg, prog="cluster up")
    prov = get_provisioner(cfg)
    started = time.monotonic()
    if cfg.action == "up":
        prov.check_prerequisites()
        with console.phase(f"cluster up ({prov.name}, runtime {cfg.runtime})"):
            info = prov.up()
        console.info(f"ready: {info.runtime} (shim {info.shim_process}) behind RuntimeClass {info.runtime_class} on {', '.join(info.nodes)}")
        console.info(f"kubeconfig: {info.kubeconfig}")
        console.info(f"cluster info: {info_path(cfg.state_dir)}")
    elif cfg.action == "down":
        with console.phase(f"cluster down ({prov.name})"):
            prov.down()
    elif cfg.action == "status":
        print(prov.status())
    elif cfg.action == "logs":
        dest = cfg.artifacts / "cluster-logs"
        files = prov.collect_logs(dest)
        console.info(f"copied {len(files)} log file(s) into {dest}")
    console.info(f"cluster {cfg.action}: {time.monotonic() - started:.1f}s")
    return 0
