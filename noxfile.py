"""Reaper CI: build, test and prove a containerd shim v2 runtime (reaper by default).

Every session is a thin call into the ``ci`` package (``python -m ci <command>``), which
owns the logic and prints one clear line on any user error. Options go after ``--``:
``nox -s phase1 -- --source ../reaper``. See README.md.
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "venv"
nox.options.sessions = ["phase1"]
nox.options.error_on_external_run = True

PYTHON = "3.11"


def _install(session: nox.Session, requirements: str = "requirements.txt") -> None:
    session.install("-r", requirements)


def _ci(session: nox.Session, command: str) -> None:
    _install(session)
    session.run("python", "-m", "ci", command, *session.posargs)


@nox.session(python=PYTHON, tags=["rust"])
def phase1(session: nox.Session) -> None:
    """Phase 1: cargo fmt/clippy, one build, every cargo test target (per-test JUnit)."""
    _ci(session, "phase1")


@nox.session(python=PYTHON, default=False, tags=["cluster"])
def cluster(session: nox.Session) -> None:
    """Cluster life cycle: `-- up|down|status|logs` (local native cluster or kind)."""
    _ci(session, "cluster")


@nox.session(python=PYTHON, default=False, tags=["cluster"])
def k8s(session: nox.Session) -> None:
    """Phases 2-4: provision, install the runtime behind RuntimeClass, run tests/k8s, report."""
    _ci(session, "k8s")


@nox.session(python=PYTHON, default=False, tags=["cluster"])
def critest(session: nox.Session) -> None:
    """cri-tools' critest against the local cluster's containerd handler; judged by tests/critest/expected-<runtime>.yaml."""
    _ci(session, "critest")


@nox.session(python=PYTHON, default=False, tags=["cluster"])
def matrix(session: nox.Session) -> None:
    """Phases 2-4 once per containerd x Kubernetes version cell, a fresh local cluster each; one table."""
    _ci(session, "matrix")


@nox.session(python=PYTHON, default=False, tags=["cluster"])
def compare(session: nox.Session) -> None:
    """Two commits of the workspace (--base, --head) through the suite on one cluster: regressions, fixes."""
    _ci(session, "compare")


@nox.session(python=PYTHON, default=False, tags=["cluster"])
def bisect(session: nox.Session) -> None:
    """git bisect (--good, --bad) with the selected scenarios (-k) as the test: the first bad commit."""
    _ci(session, "bisect")


@nox.session(python=PYTHON, default=False, tags=["cluster"])
def conformance(session: nox.Session) -> None:
    """Kubernetes' own NodeConformance e2e specs, every pod on the handler under test; vs tests/conformance/expected-<runtime>.yaml."""
    _ci(session, "conformance")


@nox.session(python=PYTHON, default=False, tags=["cluster"])
def soak(session: nox.Session) -> None:
    """Long-lived pods on the runtime under test for --duration (default 75m): restarts, gaps, exec, processes."""
    _ci(session, "soak")


@nox.session(name="ci", python=PYTHON, default=False)
def ci_all(session: nox.Session) -> None:
    """Phase 1 then Phases 2-4: what the GitHub Actions workflow runs."""
    _ci(session, "ci")


@nox.session(python=PYTHON, default=False, tags=["self"])
def tests(session: nox.Session) -> None:
    """The pipeline's own tests: unit, fixture workspaces, workflow lint, local cluster."""
    _install(session, "requirements-dev.txt")
    session.run("python", "-m", "pytest", *(session.posargs or ["tests/unit", "tests/self"]))
