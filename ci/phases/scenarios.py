"""Phase 4: the Kubernetes scenario suite (``tests/k8s``) against a ready cluster.

:func:`run` is called by ``ci/phases/k8s.py`` once the provisioner has written ClusterInfo. It
runs pytest on ``tests/k8s`` in a subprocess with

* ``REAPER_CI_CLUSTER_INFO`` pointing at that ClusterInfo, ``CI_ARTIFACTS_DIR`` at the artifacts
  folder and ``REAPER_CI_RUN_TOKEN`` set to a fresh run token (all workers share it);
* JUnit at ``<artifacts>/k8s-junit.xml``, the console log at ``<artifacts>/k8s-scenarios.log``;
* pytest-xdist (``-n``, from ``$REAPER_CI_K8S_WORKERS``, default ``auto``) unless the pytest
  arguments choose their own ``-n`` / ``-p no:xdist``; ``cfg.pytest_args`` are passed on
  (``-k s11``, ``-x``).

Exit: 0 all passed, 1 scenario failures. A cluster the suite cannot use (the suite exits with
``SETUP_EXIT``) is a :class:`SetupError`; no scenario collected (pytest exit 5), an interrupted
run, a usage or internal error of pytest are :class:`CIError` - never a pass.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from ci import console
from ci.cluster.base import CLUSTER_INFO_ENV
from ci.config import REPO_ROOT, Config
from ci.errors import CIError, SetupError, UsageError

SUITE = REPO_ROOT / "tests" / "k8s"
RUN_TOKEN_ENV = "REAPER_CI_RUN_TOKEN"
WORKERS_ENV = "REAPER_CI_K8S_WORKERS"
SETUP_EXIT = 8  # the suite's exit code for "this cluster cannot run scenarios" (pytest uses 0-5)
SETUP_ERROR_FILE = "setup-error.txt"  # in the run folder: the suite's one-line reason
VERDICT_FILE = "verdict.json"  # in the run folder: scenario names by verdict (passed/failed/infrastructure/...)
JUNIT_NAME = "k8s-junit.xml"
LOG_NAME = "k8s-scenarios.log"


def new_token() -> str:
    """A fresh run token (6 characters, [a-z0-9], starting with a letter)."""
    import secrets
    import string

    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))


def _chooses_parallelism(args: Sequence[str]) -> bool:
    for i, a in enumerate(args):
        if a in ("-n", "--numprocesses") or a.startswith(("-n", "--numprocesses=", "--dist")):
            return True
        if a == "-p" and i + 1 < len(args) and args[i + 1] == "no:xdist":
            return True
        if a == "-pno:xdist":
            return True
    return False


def pytest_argv(pytest_args: Sequence[str], junit: Path, workers: str = "auto") -> list[str]:
    """The pytest command line (after ``python -m pytest``)."""
    argv = [str(SUITE), "-v", "-rfEs", f"--junitxml={junit}", "-o", "junit_suite_name=k8s-scenarios",
            "-o", "junit_duration_report=total"]
    if not _chooses_parallelism(pytest_args) and workers not in ("0", "", "no"):
        argv += ["-n", workers]
    return argv + list(pytest_args)


def verdict(rc: int, setup_line: str | None, junit: Path, doc: dict | None = None) -> int:
    """pytest's exit code (and the suite's verdict file) -> this phase's (0 or 1), or the error that
    describes it. Failures the suite blamed on the cluster only (no scenario failed on the runtime)
    are a setup error: infrastructure failures are not product failures."""
    if rc == 0:
        return 0
    if rc == 1:
        doc = doc or {}
        infra = doc.get("infrastructure") or []
        if infra and not doc.get("failed") and not doc.get("errors"):
            raise SetupError(f"setup error (not a product failure): the cluster/node failed under "
                             f"{len(infra)} scenario(s): {', '.join(infra)} (details: {junit})")
        if infra:
            console.error(f"also {len(infra)} infrastructure error(s), not counted as product failures: "
                          + ", ".join(infra))
        return 1
    if rc == SETUP_EXIT:
        raise SetupError(f"setup error (not a product failure): {(setup_line or 'the cluster cannot run scenarios').strip()}")
    if rc == 5:
        raise CIError("scenario suite: no scenario was collected/selected (pytest exit 5): that is an error, not a pass")
    if rc == 2:
        raise CIError(f"scenario suite interrupted (pytest exit 2); partial results in {junit}")
    if rc == 4:
        raise UsageError("scenario suite: pytest usage error (exit 4); check the pytest arguments")
    raise CIError(f"scenario suite: pytest internal error (exit {rc}); see the log")


def run(cfg: Config, info_path: Path) -> int:
    """Run tests/k8s against the cluster described by ``info_path``; 0 passed, 1 failures."""
    from ci.tools import run as run_tool, tool

    artifacts = cfg.artifacts
    artifacts.mkdir(parents=True, exist_ok=True)
    junit = artifacts / JUNIT_NAME
    token = os.environ.get(RUN_TOKEN_ENV) or new_token()
    env = {CLUSTER_INFO_ENV: str(Path(info_path).resolve()), "CI_ARTIFACTS_DIR": str(artifacts),
           RUN_TOKEN_ENV: token, "PYTHONDONTWRITEBYTECODE": "1"}
    argv = ["-m", "pytest", *pytest_argv(cfg.pytest_args, junit, os.environ.get(WORKERS_ENV, "auto"))]
    console.info(f"scenario suite: run token {token}; pytest {' '.join(argv[2:])}")
    started = time.monotonic()
    result = run_tool(tool(sys.executable), *argv, log=artifacts / LOG_NAME, cwd=REPO_ROOT, env=env,
                      ok_code=range(256), what="pytest tests/k8s")
    rc = int(result.exit_code)
    run_dir = artifacts / "k8s-run" / token
    setup_line = _read(run_dir / SETUP_ERROR_FILE)
    doc_text = _read(run_dir / VERDICT_FILE)
    console.info(f"scenario suite: pytest exit {rc} after {time.monotonic() - started:.1f}s; JUnit {junit}")
    return verdict(rc, setup_line, junit, json.loads(doc_text) if doc_text else None)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def main(argv: list[str]) -> int:
    """``python -m ci scenarios [pytest args]``: Phase 4 alone, against the cluster already up."""
    from ci import config as config_mod
    from ci.cluster.base import find_cluster_info

    cfg = config_mod.parse(argv, prog="scenarios")
    path = find_cluster_info(cfg.state_dir)
    if path is None:
        raise SetupError(f"no cluster: {CLUSTER_INFO_ENV} is not set and {cfg.state_dir / 'cluster.json'} does not "
                         "exist (`nox -s cluster -- up` first)")
    return run(cfg, path)
