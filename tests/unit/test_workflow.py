"""The GitHub Actions workflow: actionlint clean, least privilege, SHA pins of the current action
releases, artifacts always uploaded, every ``nox -s X`` it runs is a session the noxfile defines;
it checks reaper out itself (inputs, pinned default, .github/reaper-source.sh run for each of its
rules), names the runtime, and runs the pipeline's own tests.

actionlint comes from PATH or is built once through the Go module proxy (ci/actionlint.py);
if neither works the test fails: nothing here is skipped.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ci import actionlint
from ci.config import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
SOURCE_SCRIPT = REPO_ROOT / ".github" / "reaper-source.sh"
# current releases (tag -> commit read from each action's repository), bumped by hand
PINS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/setup-go": ("b7ad1dad31e06c5925ef5d2fc7ad053ef454303e", "v7.0.0"),
    "actions/cache": ("27d5ce7f107fe9357f9df03efb73ab90386fccae", "v5.0.5"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
}
REAPER_PIN = "a8a0d2873e2c412096a9f1579d51c24ea384fa8b"  # miguelgila/reaper v0.2.27
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
            # a setup failure shows as one red step, not a second one for the missing artifacts
            assert s["with"]["if-no-files-found"] == "warn", f"job {name}: if-no-files-found {s['with'].get('if-no-files-found')}"
        assert job["steps"][-1] in uploads, f"job {name}: the upload must be the last step"


def test_caches_are_keyed_on_reapers_lock_and_no_nox_cache(wf):
    for name in ("phase1", "k8s"):
        caches = [s for s in wf["jobs"][name]["steps"] if s.get("uses", "").startswith("actions/cache@")]
        (cargo,) = [s for s in caches if "~/.cargo/registry" in s["with"]["path"]]
        assert "hashFiles(format('{0}/Cargo.lock', steps.reaper.outputs.dir))" in cargo["with"]["key"], f"job {name}: cargo cache key"
        assert "${{ steps.reaper.outputs.dir }}/target" in cargo["with"]["path"].splitlines(), f"job {name}: the target folder of reaper's checkout"
    for name, job in wf["jobs"].items():  # nox recreates its virtualenvs on every run: a .nox cache only costs time
        assert not any(".nox" in str(s.get("with", {}).get("path", "")) for s in job["steps"]), f"job {name} caches .nox"
    (build,) = [s for s in wf["jobs"]["tests"]["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert build["with"]["path"] == "${{ runner.temp }}/reaper-ci-cache"
    assert "ci/config.py" in build["with"]["key"] and "ci/cluster/k8s_build.py" in build["with"]["key"]


def test_every_nox_session_run_exists(wf):
    sessions = noxfile_sessions()
    assert {"phase1", "k8s", "ci", "tests"} <= sessions  # the parser finds what the noxfile defines
    called = [(j, m) for j, s in _steps(wf) for m in NOX_CALL.findall(s.get("run", ""))]
    assert called, "the workflow runs no nox session"
    for job, session in called:
        assert session in sessions, f"job {job} runs `nox -s {session}` but noxfile.py has no such session ({sorted(sessions)})"


def test_entrypoints_test_the_checked_out_reaper_with_the_runtime_named(wf):
    runs = {j: " ".join(s.get("run", "") for s in job["steps"]) for j, job in wf["jobs"].items()}
    assert 'nox -s phase1 -- --source "$REAPER_SOURCE"' in runs["phase1"]
    # --runtime reaper explicit: `auto` without a workspace would have tested runc only
    assert 'nox -s k8s -- --provisioner kind --runtime reaper --source "$REAPER_SOURCE"' in runs["k8s"]
    for job in ("phase1", "k8s"):
        (step,) = [s for s in wf["jobs"][job]["steps"] if "nox -s" in s.get("run", "") and "--source" in s["run"]]
        assert step["env"]["REAPER_SOURCE"] == "${{ steps.reaper.outputs.source }}"


def _reaper_steps(job: dict) -> tuple[dict, dict]:
    steps = job["steps"]
    (which,) = [s for s in steps if s.get("id") == "reaper"]
    (checkout,) = [s for s in steps if s.get("uses", "").startswith("actions/checkout@") and "repository" in s.get("with", {})]
    assert steps.index(which) < steps.index(checkout) < min(i for i, s in enumerate(steps) if "nox -s" in s.get("run", ""))
    return which, checkout


def test_reaper_is_checked_out_from_the_inputs_or_the_pinned_default(wf):
    inputs = wf["on"]["workflow_dispatch"]["inputs"]
    assert inputs["reaper-repository"]["default"] == wf["env"]["REAPER_DEFAULT_REPOSITORY"] == "miguelgila/reaper"
    assert inputs["reaper-ref"]["default"] == wf["env"]["REAPER_DEFAULT_REF"] == REAPER_PIN  # a commit SHA, not a branch
    for name in ("phase1", "k8s"):
        which, checkout = _reaper_steps(wf["jobs"][name])
        assert which["run"].strip() == ".github/reaper-source.sh"
        assert which["env"] == {"EVENT": "${{ github.event_name }}", "INPUT_REPOSITORY": "${{ inputs.reaper-repository }}",
                                "INPUT_REF": "${{ inputs.reaper-ref }}"}
        assert checkout["if"] == "steps.reaper.outputs.repository != ''"  # in reaper's own repository: no second checkout
        assert checkout["with"] == {"repository": "${{ steps.reaper.outputs.repository }}", "ref": "${{ steps.reaper.outputs.ref }}",
                                    "path": "${{ env.REAPER_CHECKOUT }}", "persist-credentials": False}


def test_inputs_never_reach_a_script_unquoted(wf):
    # script injection: inputs and event fields go through env, never ${{ }} inside run
    for job, step in _steps(wf):
        assert not re.search(r"\$\{\{\s*(inputs|github\.event)\.", step.get("run", "")), f"job {job}: {step.get('name')}"


def _source(tmp_path: Path, event: str, repo: str = "", ref: str = "", cargo: bool = False) -> tuple[int, dict, str]:
    work = tmp_path / "ws"
    work.mkdir(exist_ok=True)
    if cargo:
        (work / "Cargo.toml").write_text("[workspace]\n")
    out = tmp_path / "out"
    out.write_text("")
    env = {"PATH": os.environ["PATH"], "GITHUB_WORKSPACE": str(work), "GITHUB_OUTPUT": str(out), "EVENT": event,
           "INPUT_REPOSITORY": repo, "INPUT_REF": ref, "REAPER_CHECKOUT": "reaper-src",
           "REAPER_DEFAULT_REPOSITORY": "miguelgila/reaper", "REAPER_DEFAULT_REF": REAPER_PIN}
    proc = subprocess.run([str(SOURCE_SCRIPT)], cwd=work, env=env, capture_output=True, text=True, timeout=30)
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    return proc.returncode, outputs, proc.stdout + proc.stderr


@pytest.mark.parametrize("event, repo, ref, cargo, expected", [
    # push / pull_request here (no Cargo.toml): the pinned default
    ("push", "", "", False, {"repository": "miguelgila/reaper", "ref": REAPER_PIN, "dir": "reaper-src", "source": "<ws>/reaper-src"}),
    ("pull_request", "", "", False, {"repository": "miguelgila/reaper", "ref": REAPER_PIN, "dir": "reaper-src", "source": "<ws>/reaper-src"}),
    # workflow_dispatch with inputs: those
    ("workflow_dispatch", "someone/reaper-fork", "v0.2.26", False,
     {"repository": "someone/reaper-fork", "ref": "v0.2.26", "dir": "reaper-src", "source": "<ws>/reaper-src"}),
    # in reaper's own repository (Cargo.toml at the root), inputs empty: this checkout
    ("push", "", "", True, {"repository": "", "ref": "", "dir": ".", "source": "<ws>"}),
    ("workflow_dispatch", "", "", True, {"repository": "", "ref": "", "dir": ".", "source": "<ws>"}),
    # ... but given inputs still win there
    ("workflow_dispatch", "miguelgila/reaper", REAPER_PIN, True,
     {"repository": "miguelgila/reaper", "ref": REAPER_PIN, "dir": "reaper-src", "source": "<ws>/reaper-src"}),
])
def test_reaper_source_script_rules(tmp_path, event, repo, ref, cargo, expected):
    rc, outputs, log = _source(tmp_path, event, repo, ref, cargo)
    assert rc == 0, log
    assert {k: v.replace(str(tmp_path / "ws"), "<ws>") for k, v in outputs.items()} == expected


@pytest.mark.parametrize("repo, ref, message", [
    ("", "", "nothing to test"),  # dispatch, inputs emptied, not reaper's repository
    ("miguelgila/reaper; rm -rf /", "", "is not owner/name"),
    ("miguelgila/reaper", "main$(id)", "is not a commit SHA"),
])
def test_reaper_source_script_refuses_in_one_line(tmp_path, repo, ref, message):
    rc, outputs, log = _source(tmp_path, "workflow_dispatch", repo, ref)
    assert rc != 0 and outputs == {}
    (error,) = [ln for ln in log.splitlines() if ln.startswith("::error::")]
    assert message in error


def test_pipelines_own_tests_run_in_a_job(wf):
    job = wf["jobs"]["tests"]
    runs = [s.get("run", "") for s in job["steps"]]
    (plain,) = [r for r in runs if "nox -s tests" in r and "sudo" not in r]
    roots = [r for r in runs if "nox -s tests" in r and "sudo" in r]
    assert "tests/unit" in plain.split() and "tests/self/test_phase1.py" in plain.split()
    # the local cluster needs root (containerd, kubelet, iptables on the host): sudo, PATH kept for go and nox
    assert [r.split()[-2] for r in roots] == ["tests/self/test_local_cluster.py", "tests/self/test_ci_fresh_machine.py"]
    assert all('env "PATH=$PATH" nox' in r and "CI" in r for r in roots), roots
    named = {Path(w) for r in (plain, *roots) for w in r.split() if w.startswith("tests/")}
    for f in sorted((REPO_ROOT / "tests").glob("*/test_*.py")):
        rel = f.relative_to(REPO_ROOT)
        if rel.parts[1] in ("unit", "self"):
            assert rel in named or rel.parent in named, f"{rel} runs in no job"
    assert any(s.get("uses", "").startswith("actions/setup-go@") for s in job["steps"])  # actionlint + the local cluster build


def test_runners_and_action_pins_are_current(wf):
    for name, job in wf["jobs"].items():
        assert job["runs-on"] == "ubuntu-24.04", f"job {name}: runs-on {job['runs-on']} (a fixed image, not -latest)"
    text = WORKFLOW.read_text()
    for job, step in _steps(wf):
        if "uses" not in step:
            continue
        action, sha = step["uses"].split("@")
        assert action in PINS, f"job {job}: {action} has no known current release"
        assert sha == PINS[action][0], f"job {job}: {action}@{sha} is not {PINS[action][1]} ({PINS[action][0]})"
        assert re.search(rf"{re.escape(step['uses'])}\s*#\s*{re.escape(PINS[action][1])}\s*$", text, re.M)


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


def test_small_kind_matrix_on_push_and_the_full_matrix_weekly_or_by_hand(wf):
    include = wf["jobs"]["k8s"]["strategy"]["matrix"]["include"]
    images = {e["image"] for e in include}
    assert len(images) == 2 and all("@sha256:" in i for i in images)  # two node images, digest-pinned
    assert {e["nodes"] for e in include} == {1, 2}  # and the multi-node logic
    step = next(s for s in wf["jobs"]["k8s"]["steps"] if "nox -s k8s" in s.get("run", ""))
    assert step["env"]["REAPER_KIND_NODE_IMAGE"] == "${{ matrix.image }}" and step["env"]["REAPER_KIND_NODES"] == "${{ matrix.nodes }}"
    job = wf["jobs"]["weekly"]
    assert "schedule" in wf["on"] and job["if"] == "github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'"
    run = " ".join(s.get("run", "") for s in job["steps"])
    assert 'nox -s ${{ matrix.session }} -- --runtime reaper --source "$REAPER_SOURCE"' in run and run.count("sudo") == 1
    # the weekly sessions: the full version matrix and the soak at its default duration (past one hour)
    sessions = [e["session"] for e in job["strategy"]["matrix"]["include"]]
    assert sessions == ["matrix", "soak"] and set(sessions) <= noxfile_sessions()
    assert job["strategy"]["fail-fast"] is False and job["timeout-minutes"] >= 75 + 30


def test_pull_requests_into_reaper_are_compared_against_their_merge_base(wf):
    job = wf["jobs"]["compare"]
    assert job["if"] == "github.event_name == 'pull_request'"
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0  # both commits
    (run,) = [s["run"] for s in job["steps"] if "nox -s compare" in s.get("run", "")]
    assert 'git merge-base "$BASE_SHA" "$HEAD_SHA"' in run and '--base "$MERGE_BASE" --head "$HEAD_SHA"' in run
    assert "sudo" in run and "--provisioner local" in run  # root: a local cluster on the runner
    gate = [s for s in job["steps"] if s.get("id") == "workspace"][0]["run"]
    assert "Cargo.toml" in gate  # only where the checkout is reaper itself
