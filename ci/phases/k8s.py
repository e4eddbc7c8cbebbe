"""Phases 2-4: provision a cluster, install the runtime under test, run tests/k8s, report.

Setup failures (cluster never ready, image import failed, runtime build failed) are reported
as SETUP ERRORS with exit 3, distinct from scenario failures (exit 1): infrastructure
failures are not product failures.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

from ci import config as config_mod
from ci import console
from ci import expect as expect_mod
from ci.cluster import get_provisioner
from ci.cluster.base import ClusterInfo, info_path
from ci.config import Config
from ci.contract import EXIT_SETUP
from ci.errors import CIError, RuntimeFailure, SetupError, UsageError



def check_runtime_choice(cfg: Config, prog: str = "k8s") -> None:
    """Under CI=true, ``--runtime auto`` that would fall back to runc (no Cargo workspace found) is
    an error, before anything is created: a green job must not have tested the reference runtime
    when nobody asked for it (Phase 1 fails the same way without a workspace)."""
    if cfg.ci and cfg.runtime_requested == "auto" and cfg.source is None and cfg.provisioner != "existing":
        raise UsageError(f"{prog}: CI=true and --runtime auto found no Cargo workspace (no --source or REAPER_SOURCE, "
                         f"no Cargo.toml in the current folder), so it would test runc only; pass --source PATH "
                         f"--runtime reaper, or --runtime runc to test the reference runtime on purpose")


def expectations(cfg: Config, runtime: str) -> expect_mod.Expectations:
    """The expected-outcomes file in effect (``--expect``, else the project's for the runtime and
    the source's commit), checked: a bad file is one line, exit 2."""
    from ci.cluster.runtime import source_commit

    if cfg.expect == "none":
        return expect_mod.Expectations(None)
    path = Path(cfg.expect) if cfg.expect else expect_mod.default_path(runtime, source_commit(cfg.source) if runtime == "reaper" else None)
    return expect_mod.load(path)


def run(cfg: Config) -> int:
    from ci.phases import scenarios

    check_runtime_choice(cfg)
    # before anything is created: a bad expected file is a usage error (existing + auto: after the probe)
    exp = expectations(cfg, cfg.runtime) if cfg.runtime in ("reaper", "runc") else None

    def suite(info: ClusterInfo, path: Path) -> int:
        nonlocal exp
        if exp is None or info.runtime != cfg.runtime:
            exp = expectations(cfg, info.runtime)
        console.info(f"expected outcomes: {exp.label}")
        if cfg.repeat > 1:
            return scenarios.run_repeated(cfg, path, exp)
        with console.phase("Phase 4: scenario suite (tests/k8s)"):
            return scenarios.run(cfg, path, exp=exp)

    return provisioned(cfg, suite)


def provisioned(cfg: Config, body: Callable[[ClusterInfo, Path], int], prog: str = "k8s") -> int:
    """Phases 2-3 (a cluster with the runtime under test, its ClusterInfo saved into the
    artifacts), then ``body(info, path)``, then the logs on failure and the tear-down (unless
    ``--keep-cluster``). The setup's failures are SetupError (exit 3), the runtime failing the smoke
    pod a product failure (exit 1)."""
    cfg.artifacts.mkdir(parents=True, exist_ok=True)
    prov = get_provisioner(cfg)
    prov.check_prerequisites()
    started, began = time.monotonic(), time.time()
    rc = 1
    access = None
    try:
        with console.phase(f"Phases 2-3: {prov.name} cluster + runtime '{cfg.runtime}' behind RuntimeClass {cfg.runtime_class}"):
            try:
                info = prov.up()
            except RuntimeFailure as e:  # the runtime under test failed the smoke pod: a product failure
                raise RuntimeFailure(f"product failure: {e}") from None
            except CIError as e:
                raise SetupError(f"setup error (not a product failure): {e}") from None
        if cfg.node_access == "pods" or info.node_access == "pods":  # removed at the end, whatever happens
            access = dataclasses.replace(info, node_access="pods").node_access_impl()
        info = for_run(cfg, info, access)
        path = info.save(cfg.artifacts / "cluster.json")
        console.info(f"runtime under test: {info.runtime} (shim {info.shim_process}) on {', '.join(info.nodes)}")
        rc = body(info, path)
        return rc
    except SetupError:
        rc = EXIT_SETUP
        raise
    finally:
        if rc != 0 or any_failure(cfg.artifacts, since=began):  # a listed (gate-passed) failure is still one to look into
            _collect(prov, cfg.artifacts / "cluster-logs")
        if access is not None:  # the host-exec pods go at the end of every run, kept cluster or not
            try:
                access.close()
            except CIError as e:
                console.error(f"removing the host-exec pods failed: {e}")
        if cfg.keep_cluster and prov.name != "existing":  # existing: down removes only the run's own objects
            console.info(f"--keep-cluster: cluster left running (kubeconfig in {info_path(cfg.state_dir).parent})")
        else:
            with console.phase("Tear-down"):
                try:
                    prov.down()
                except CIError as e:
                    console.error(f"tear-down failed: {e}")
        console.info(f"{prog}: finished in {time.monotonic() - started:.1f}s")


def for_run(cfg: Config, info: ClusterInfo, access=None) -> ClusterInfo:
    """The cluster as this run uses it: only the nodes ``--node-selector`` picks, and node access
    through host-exec pods when ``--node-access pods`` asks (every pod made and running before the
    suite starts, so no scenario's before/after process listing sees one appear)."""
    if cfg.node_selector and info.provisioner != "existing":  # existing picks its nodes by the selector itself
        from ci.cluster.verify import Verifier

        picked = {n["metadata"]["name"] for n in Verifier(info.kubeconfig, info.context).nodes(cfg.node_selector)}
        nodes = tuple(n for n in info.nodes if n in picked)
        if not nodes:
            raise SetupError(f"--node-selector {cfg.node_selector!r} matches none of the cluster's nodes {list(info.nodes)}")
        info = dataclasses.replace(info, nodes=nodes)
    if cfg.node_access == "pods" and info.node_access != "pods":
        info = dataclasses.replace(info, node_access="pods")
    if info.node_access == "pods":
        began = time.monotonic()
        access = access or info.node_access_impl()
        for node in info.nodes:
            access.ensure(node)
        console.info(f"node access: host-exec pods running on {len(info.nodes)} node(s) in {time.monotonic() - began:.1f}s")
    return info


def any_failure(artifacts: Path, since: float = 0.0) -> bool:
    """Whether a suite run of this invocation (its verdict files under ``artifacts`` written at
    ``since`` or later, repeats included) had a scenario that failed, errored or failed on the cluster."""
    import json

    for path in Path(artifacts).glob("**/k8s-run/*/verdict.json"):
        try:
            if path.stat().st_mtime < since:
                continue
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return True  # unreadable: look at the logs
        if any(doc.get(k) for k in ("failed", "errors", "infrastructure")):
            return True
    return False


def _collect(prov, dest: Path) -> None:
    try:
        files = prov.collect_logs(dest)
        console.info(f"collected {len(files)} log file(s) into {dest}")
    except CIError as e:
        console.error(f"could not collect cluster logs: {e}")


def setup_error_is_exit_3(run_fn, cfg: Config) -> int:
    """``run_fn(cfg)``, a SetupError shown as its one line with exit 3 (other errors: ci.__main__)."""
    try:
        return run_fn(cfg)
    except SetupError as e:
        console.error(str(e))
        return EXIT_SETUP


def main(argv: list[str]) -> int:
    return setup_error_is_exit_3(run, config_mod.parse(argv, prog="k8s"))
