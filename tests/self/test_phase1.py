"""Phase 1 end to end on tiny dependency-free cargo workspaces (tests/fixtures/*), offline.

Each test runs ``python -m ci phase1 --source <fixture> --artifacts <tmp>`` as a user would and
asserts the exit status, the one-line verdict and the JUnit file. Fixtures are copied once per
session (cargo writes Cargo.lock next to them) and share one CARGO_TARGET_DIR, so each is built
once however many tests use it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"

pytestmark = pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed")


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    artifacts: Path
    seconds: float

    @property
    def code(self) -> int:
        return self.proc.returncode

    @property
    def error_lines(self) -> list[str]:
        return [l for l in self.proc.stderr.splitlines() if l.strip()]

    def junit(self) -> ET.Element:
        return ET.parse(self.artifacts / "phase1-junit.xml").getroot()

    def suites(self) -> dict[str, ET.Element]:
        return {s.get("name"): s for s in self.junit().iter("testsuite")}

    def cases(self, suite: str) -> dict[str, ET.Element]:
        return {c.get("name"): c for c in self.suites()[suite].iter("testcase")}

    def outcome(self, suite: str) -> dict[str, str]:
        out = {}
        for name, c in self.cases(suite).items():
            out[name] = next((tag for tag in ("failure", "error", "skipped") if c.find(tag) is not None), "passed")
        return out


@pytest.fixture(scope="session")
def workspaces(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fixtures")
    copies = {}
    for src in sorted(FIXTURES.iterdir()):
        if (src / "Cargo.toml").is_file():
            copies[src.name] = Path(shutil.copytree(src, root / src.name))
    return copies


@pytest.fixture(scope="session")
def target_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cargo-target")


@pytest.fixture
def phase1(workspaces, target_dir, tmp_path):
    def run(fixture: str, *args: str, env: dict | None = None) -> Run:
        artifacts = tmp_path / f"artifacts-{fixture}"
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "CARGO_TARGET_DIR": str(target_dir), **(env or {})}
        for var in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "REAPER_REQUIRED_TARGETS", "REAPER_NO_LINT",
                    "CI_ARTIFACTS_DIR", "REAPER_SOURCE", "REAPER_TARGET_TIMEOUT", "RUSTC_BOOTSTRAP"):
            if var not in (env or {}):
                full_env.pop(var, None)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "ci", "phase1", "--source", str(workspaces[fixture]),
                               "--artifacts", str(artifacts), *args], cwd=REPO, env=full_env, capture_output=True,
                              text=True, timeout=600)
        return Run(proc, artifacts, time.monotonic() - start)

    return run


def assert_one_line(run: Run, code: int, *needles: str) -> str:
    assert run.code == code, (run.code, run.proc.stdout[-3000:], run.proc.stderr)
    assert "Traceback" not in run.proc.stdout + run.proc.stderr
    assert len(run.error_lines) == 1, run.error_lines
    for n in needles:
        assert n in run.error_lines[0], (n, run.error_lines[0])
    return run.error_lines[0]


def test_fixtures_are_their_own_workspaces():
    """cargo must never resolve a fixture into a workspace above it (there is none at the repo root)."""
    assert not (REPO / "Cargo.toml").exists()
    for d in FIXTURES.iterdir():
        if (d / "Cargo.toml").is_file():
            assert "[workspace]" in (d / "Cargo.toml").read_text(), d


def test_all_pass(phase1):
    run = phase1("pass")
    assert run.code == 0, (run.proc.stdout[-4000:], run.proc.stderr)
    assert run.proc.stderr.strip() == ""
    suites = run.suites()
    assert set(suites) == {"phase1.steps", "alpha", "beta", "alpha-tool", "alpha-extra", "integration_io",
                           "integration_exec", "custom_main", "doc:alpha"}
    assert run.outcome("alpha-extra") == {"<not built>": "skipped"}  # required-features not enabled
    assert "needs feature(s) extra" in run.cases("alpha-extra")["<not built>"].find("skipped").get("message")
    assert run.outcome("phase1.steps") == {"cargo fmt --check": "passed", "cargo clippy -D warnings": "passed",
                                           "cargo test --no-run": "passed"}
    assert run.outcome("alpha") == {"tests::doubles": "passed", "tests::slow_and_ignored": "skipped",
                                    "tests::expected_panic": "passed"}
    assert run.cases("alpha")["tests::slow_and_ignored"].find("skipped").get("message") == "too slow for every run"
    # cwd = package folder, cargo's runtime env, CARGO_BIN_EXE_* binary: all asserted inside the Rust tests
    assert run.outcome("integration_io") == {"runs_in_the_package_folder": "passed",
                                             "sees_cargo_runtime_env": "passed", "runs_the_built_binary": "passed"}
    assert run.outcome("integration_exec") == {"greets": "passed", "takes_a_little_time": "passed",
                                               "nested_cargo_is_plain_stable": "passed"}
    assert float(run.cases("integration_exec")["takes_a_little_time"].get("time")) >= 0.3
    assert run.outcome("alpha-tool") == {"tests::bin_unit_test": "passed"}
    assert run.outcome("custom_main") == {"custom_main": "passed"}  # harness = false: one case
    assert run.outcome("doc:alpha") == {"crates/alpha/src/lib.rs - double (line 5)": "passed"}
    assert run.outcome("beta") == {}  # a lib without tests is still run (and reported empty)
    assert "Rust tests: 11 passed, 0 failed, 1 ignored in 7 target(s)" in run.proc.stdout
    log = (run.artifacts / "phase1.log").read_text()
    assert "cargo fmt --all -- --check" in log and "cargo clippy" in log and "cargo test --workspace --no-run" in log
    assert "ok       integration_io::runs_the_built_binary" in log  # test output reaches the log too
    assert (run.artifacts / "phase1" / "targets.json").is_file()


def test_failing_panicking_ignored_and_crashing_tests(phase1):
    run = phase1("fail")
    line = assert_one_line(run, 1, "3 Rust test(s) failed: crash::aborts_the_process, integration_io::fails_on_purpose, "
                                   "integration_io::panics_on_purpose",
                           "cargo fmt --check failed: rustfmt would reformat 1 file(s): src/lib.rs",
                           "cargo clippy -D warnings failed: error: writing `&Vec` instead of `&[_]`")
    assert "phase1-junit.xml" in line
    assert run.outcome("integration_io") == {"passes": "passed", "fails_on_purpose": "failure",
                                             "panics_on_purpose": "failure", "ignored_on_purpose": "skipped"}
    io = run.cases("integration_io")
    fail = io["fails_on_purpose"].find("failure")
    assert fail.get("message") == "assertion `left == right` failed: the answer is wrong"
    assert "captured stdout of the failing test" in fail.text
    assert io["fails_on_purpose"].get("file") == "tests/integration_io.rs"
    assert io["panics_on_purpose"].find("failure").get("message") == "an empty vector has no first element"
    assert io["ignored_on_purpose"].find("skipped").get("message") == "needs a real node"
    crash = run.cases("crash")["aborts_the_process"].find("failure")
    assert crash.get("message") == "did not finish: the test binary stopped (killed by SIGABRT)"
    assert run.outcome("integration_exec") == {"exec_passes": "passed"}
    steps = run.cases("phase1.steps")
    assert steps["cargo fmt --check"].find("failure") is not None
    assert steps["cargo clippy -D warnings"].get("file") == "src/lib.rs"
    assert steps["cargo test --no-run"].find("failure") is None


def test_no_lint_skips_fmt_and_clippy(phase1):
    run = phase1("fail", "--no-lint", "-k", "integration_exec")
    assert run.code == 0, (run.proc.stdout[-3000:], run.proc.stderr)
    assert run.outcome("phase1.steps") == {"cargo test --no-run": "passed"}
    assert set(run.suites()) == {"phase1.steps", "integration_exec"}  # -k selected one target


def test_k_selects_targets(phase1):
    run = phase1("pass", "--no-lint", "-k", "integration_io or custom_main")
    assert run.code == 0, (run.proc.stdout[-3000:], run.proc.stderr)
    assert set(run.suites()) == {"phase1.steps", "integration_io", "custom_main"}


def test_selecting_nothing_is_an_error(phase1):
    assert_one_line(phase1("pass", "--no-lint", "-k", "no_such_target"), 1,
                    "no cargo test target selected by the pytest arguments '-k no_such_target'")


def test_missing_required_target(phase1):
    run = phase1("missing")
    assert_one_line(run, 1, "required cargo test target(s) missing: integration_exec")
    assert run.outcome("phase1.required") == {"integration_exec": "error"}
    assert run.outcome("integration_io") == {"io_passes": "passed"}  # the others still ran


def test_required_targets_option_and_env(phase1):
    assert phase1("missing", "--required-targets", "integration_io").code == 0
    # a target named explicitly that the workspace does not have is a usage error (exit 2), said at
    # once from cargo metadata: before fmt, clippy or any build (the default targets missing is a
    # product failure, exit 1: test_missing_required_target above)
    run = phase1("missing", env={"REAPER_REQUIRED_TARGETS": "integration_io,lib_that_is_not_there"})
    assert_one_line(run, 2, "--required-targets names target(s) the workspace", "lib_that_is_not_there")
    assert "cargo fmt" not in run.proc.stdout and "cargo test --no-run" not in run.proc.stdout


def test_compile_error(phase1):
    run = phase1("broken", "--no-lint")
    assert_one_line(run, 1, "cargo test --no-run failed: error[E0308]: mismatched types at tests/integration_io.rs:3:18")
    step = run.cases("phase1.steps")["cargo test --no-run"]
    assert "expected `u32`, found `&str`" in step.find("failure").text  # the full compiler output
    assert (step.get("file"), step.get("line")) == ("tests/integration_io.rs", "3")
    assert set(run.suites()) == {"phase1.steps"}  # nothing ran
    assert "expected `u32`, found `&str`" in (run.artifacts / "phase1.log").read_text()
    assert "expected `u32`, found `&str`" in run.proc.stdout  # streamed live


def test_hanging_test_hits_the_target_deadline(phase1):
    run = phase1("hang", "--no-lint", "--target-timeout", "3")
    assert_one_line(run, 1, "1 Rust test(s) failed: integration_exec::hangs_forever")
    assert run.outcome("integration_exec") == {"finishes": "passed", "hangs_forever": "failure"}
    assert run.cases("integration_exec")["hangs_forever"].find("failure").get("message") == \
        "did not finish: timed out after 3s"
    assert run.outcome("integration_io") == {"io_passes": "passed"}
    assert run.seconds < 120


def test_github_actions_output(phase1, tmp_path):
    summary = tmp_path / "step-summary.md"
    run = phase1("fail", "--no-lint", "-k", "integration_io",
                 env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert run.code == 1
    out = run.proc.stdout
    assert "::group::Phase 1: build every test target once (cargo test --no-run)" in out
    assert "::error file=tests/integration_io.rs,line=9,title=integration_io%3A%3Afails_on_purpose::" in out
    md = summary.read_text()
    assert "| `integration_io` | ❌ failed | 1 | 2 | 1 |" in md
    assert "- `integration_io::panics_on_purpose`" in md


@pytest.mark.parametrize("args, code, needle", [
    (["--source", "/nonexistent/ws"], 2, "--source /nonexistent/ws: no such directory"),
    (["--target-timeout", "soon"], 2, "--target-timeout soon: not a number of seconds"),
    (["--bogus-option"], 2, "pytest rejected the arguments '--bogus-option'"),
    (["--no-lnt"], 2, "did you mean --no-lint?"),
])
def test_bad_input_is_one_line(args, code, needle, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ci", "phase1", "--source", str(FIXTURES / "pass"),
                           "--artifacts", str(tmp_path / "a"), *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert_one_line(Run(proc, tmp_path / "a", 0), code, needle)
    assert not (FIXTURES / "pass" / "Cargo.lock").exists()  # nothing was built in the fixture itself


def test_folder_without_cargo_toml_and_no_source(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REAPER_SOURCE"}
    proc = subprocess.run([sys.executable, "-m", "ci", "phase1", "--source", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO)}, timeout=60)
    assert_one_line(Run(proc, tmp_path, 0), 2, "no Cargo.toml there")
    proc = subprocess.run([sys.executable, "-m", "ci", "phase1"], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO)}, timeout=60)
    assert_one_line(Run(proc, tmp_path, 0), 2, "no Cargo workspace: pass --source DIR")


def test_no_cargo_on_path(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ci", "phase1", "--source", str(FIXTURES / "pass"), "--artifacts",
                           str(tmp_path / "a")], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO), "PATH": "/nonexistent"})
    assert_one_line(Run(proc, tmp_path, 0), 1, "`cargo` not found on PATH")


def test_help_lists_the_options():
    proc = subprocess.run([sys.executable, "-m", "ci", "phase1", "--help"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    for opt in ("--source", "--artifacts", "--required-targets", "--no-lint", "--target-timeout", "-k integration_io"):
        assert opt in proc.stdout


def test_targets_in_parallel_with_xdist(phase1):
    pytest.importorskip("xdist")
    run = phase1("fail", "--no-lint", "-n", "2")
    assert_one_line(run, 1, "3 Rust test(s) failed: crash::aborts_the_process, integration_io::fails_on_purpose, "
                            "integration_io::panics_on_purpose")
    assert run.outcome("integration_exec") == {"exec_passes": "passed"}


def _reaper_home() -> set[str]:
    root = Path("/run/reaper")
    return {str(p) for p in root.rglob("*")} | {str(root)} if root.exists() else set()


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="the leaky fixture leaves state only as root")
def test_state_a_test_leaves_is_contained_and_named(phase1):
    """The fixture's test writes reaper's overlay state (variables, else /run/reaper) and /run/reaper/merged,
    and bind-mounts a file: each binary's private namespace keeps all of it off the host, and the finding
    names the one test that leaves it, with each item by the variable that pointed there."""
    live_reaper = Path("/run/reaper/merged").exists()  # a cluster's reaper writes there meanwhile
    before = _reaper_home()
    run = phase1("leaky", "--no-lint")
    line = assert_one_line(run, 1, "1 test(s) left state behind: integration_io::leaves_overlay_state_like_reaper")
    if not live_reaper:
        assert _reaper_home() == before, "Phase 1 changed /run/reaper on the host"
    assert run.outcome("phase1.host-leftovers") == {"integration_io::leaves_overlay_state_like_reaper": "failure"}
    items = run.cases("phase1.host-leftovers")["integration_io::leaves_overlay_state_like_reaper"].find("failure").text
    lines = items.splitlines()
    mounts = [l for l in lines if l.startswith("mount ")]
    assert len(mounts) == 1 and mounts[0].startswith("mount $REAPER_OVERLAY_NS ("), lines  # (its filesystem type)
    assert set(lines) - set(mounts) == {"file /run/reaper/merged/", "file $REAPER_OVERLAY_BASE/",
                                        "file $REAPER_OVERLAY_BASE/upper/", "file $REAPER_OVERLAY_LOCK",
                                        "file $REAPER_OVERLAY_NS"}, lines
    assert run.outcome("integration_io") == {"leaves_overlay_state_like_reaper": "passed", "leaves_nothing": "passed"}
    assert "integration_io             left state" in run.proc.stdout
    assert "leaves_nothing" not in line


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="the leaky fixture leaves state only as root")
def test_without_a_private_namespace_state_on_the_host_is_named_and_left(phase1, tmp_path):
    """--no-private-ns (as without root): the binary runs on the host; what it writes there is found and
    named, never removed (the folder may be someone else's); the test removes it itself."""
    if Path("/run/reaper/merged").exists():
        pytest.skip("/run/reaper/merged exists: a reaper runs on this host, and the fixture's write there is no news")
    before = _reaper_home()
    try:
        run = phase1("leaky", "--no-lint", "--no-private-ns", "-k", "integration_io")
        assert_one_line(run, 1, "2 test(s) left state behind: integration_io::leaves_overlay_state_like_reaper, "
                                "integration_io")
        cases = run.cases("phase1.host-leftovers")
        test_items = cases["integration_io::leaves_overlay_state_like_reaper"].find("failure").text.splitlines()
        assert "file $REAPER_OVERLAY_LOCK" in test_items, test_items  # scratch: fresh for every run, so attributed
        # on the host the single runs find it already there: named with the target
        assert "file /run/reaper/merged/ (on the host)" in cases["integration_io"].find("failure").text.splitlines()
        assert "/run/reaper/merged" in _reaper_home() - before
    finally:
        for p in sorted(_reaper_home() - before, reverse=True):
            os.rmdir(p)
