"""The GitHub Actions workflow: actionlint clean, least privilege, SHA pins, artifacts always
uploaded, and every ``nox -s X`` it runs is a session the noxfile defines.

actionlint comes from PATH or is built once through the Go module proxy (ci/actionlint.py);
if neither works the test fails: nothing here is skipped.
"""

from __future__ import annotations

import ast
import re
import subprocess

import pytest
import yaml

from ci import actionlint
from ci.config import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
NOX_CALL = re.compile(r"\bnox\s+(?:[^\n]*?\s)?-s\s+([A-Za-z0-9_-]+)")


@pytest.fixture(scope="module")
def wf() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def _steps(wf: dict):
    for job_name, job in wf["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def noxfile_sessions() -> set[str]:
    """Session names defined in noxfile.py (decorator ``name=`` or the function name)."""
    tree = ast.parse((REPO_ROOT / "noxfile.py").read_text())
    names = set()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            call = dec if isinstance(dec, ast.Call) else None
            target = call.func if call else dec
            if isinstance(target, ast.Attribute) and target.attr == "session":
                named = [k.value.value for k in (call.keywords if call else []) if k.arg == "name" and isinstance(k.value, ast.Constant)]
                names.add(named[0] if named else node.name)
    return names


def test_actionlint_is_clean():
    binary = actionlint.ensure()
    proc = subprocess.run([str(binary), "-no-color", "-oneline", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"actionlint found problems:\n{proc.stdout}{proc.stderr}"


def test_least_privilege(wf):
    assert wf["permissions"] == {}, "top-level permissions must be {} (grant per job)"
    for name, job in wf["jobs"].items():
        assert job.get("permissions") == {"contents": "read"}, f"job {name}: permissions {job.get('permissions')}"


def test_every_action_is_pinned_to_a_commit_sha_with_a_version_comment(wf):
    text = WORKFLOW.read_text()
    uses = [(j, s["uses"]) for j, s in _steps(wf) if "uses" in s]
    assert uses, "no actions found (parsing went wrong?)"
    for job, ref in uses:
        if ref.startswith("./"):
            continue
        assert SHA_PIN.match(ref), f"job {job}: {ref} is not pinned to a full commit SHA"
        line = next(ln for ln in text.splitlines() if ref in ln)
        assert re.search(r"#\s*v\d+(\.\d+)*\s*$", line), f"job {job}: {ref} has no `# vX.Y.Z` comment"


def test_checkout_does_not_persist_credentials(wf):
    checkouts = [(j, s) for j, s in _steps(wf) if s.get("uses", "").startswith("actions/checkout@")]
    assert {j for j, _ in checkouts} == set(wf["jobs"]), "every job checks out the source"
    for job, step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False, f"job {job}: persist-credentials must be false"


def test_concurrency_and_timeouts(wf):
    assert wf["concurrency"]["cancel-in-progress"] is True
    assert "github.ref" in wf["concurrency"]["group"]
    for name, job in wf["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int) and 0 < job["timeout-minutes"] <= 120, f"job {name}: timeout-minutes"


def test_artifacts_are_uploaded_always(wf):
    for name, job in wf["jobs"].items():
        uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
        assert uploads, f"job {name} uploads no artifacts"
        for s in uploads:
            assert s.get("if") == "always()", f"job {name}: upload runs only on success ({s.get('if')})"
            assert s["with"]["path"].rstrip("/") == "artifacts"
        assert job["steps"][-1] in uploads, f"job {name}: the upload must be the last step"


def test_caches_are_keyed_on_lock_and_requirements(wf):
    for name, job in wf["jobs"].items():
        caches = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
        cargo = [s for s in caches if "~/.cargo/registry" in s["with"]["path"]]
        nox_ = [s for s in caches if s["with"]["path"].strip() == ".nox"]
        assert cargo and "Cargo.lock" in cargo[0]["with"]["key"] and "target" in cargo[0]["with"]["path"].split(), f"job {name}: cargo cache"
        assert nox_ and "requirements*.txt" in nox_[0]["with"]["key"], f"job {name}: .nox cache"


def test_every_nox_session_run_exists(wf):
    sessions = noxfile_sessions()
    assert {"phase1", "k8s", "ci", "tests"} <= sessions  # the parser finds what the noxfile defines
    called = [(j, m) for j, s in _steps(wf) for m in NOX_CALL.findall(s.get("run", ""))]
    assert called, "the workflow runs no nox session"
    for job, session in called:
        assert session in sessions, f"job {job} runs `nox -s {session}` but noxfile.py has no such session ({sorted(sessions)})"


def test_entrypoints_are_phase1_and_k8s_on_kind(wf):
    runs = {j: " ".join(s.get("run", "") for s in job["steps"]) for j, job in wf["jobs"].items()}
    assert "nox -s phase1" in runs["phase1"]
    assert "nox -s k8s -- --provisioner kind" in runs["k8s"]


def test_kind_and_tools_are_pinned(wf):
    assert re.fullmatch(r"v\d+\.\d+\.\d+", wf["env"]["KIND_VERSION"])
    k8s_runs = " ".join(s.get("run", "") for s in wf["jobs"]["k8s"]["steps"])
    assert 'go install "sigs.k8s.io/kind@${KIND_VERSION}"' in k8s_runs
    assert "musl-tools" in k8s_runs and "unknown-linux-musl" in k8s_runs
    assert re.fullmatch(r"\d{4}\.\d+\.\d+", wf["env"]["NOX_VERSION"])
    for job in wf["jobs"].values():
        py = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
        assert py and str(py[0]["with"]["python-version"]) == "3.11"


def test_nox_call_pattern_sees_sessions():
    assert NOX_CALL.findall("nox -s phase1") == ["phase1"]
    assert NOX_CALL.findall("nox --no-color -s k8s -- --provisioner kind") == ["k8s"]
    assert NOX_CALL.findall("python -m pip install nox") == []
