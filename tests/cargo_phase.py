"""Phase 1's pytest module: one test per cargo test target (id = target id, e.g. ``integration_io``).

Run through ``nox -s phase1`` / ``python -m ci phase1``, which lints, builds every target once and
points ``REAPER_CI_PHASE1_MANIFEST`` at the build manifest (targets, executables, environment).
Each test runs one target's test binary the way ``cargo test`` would, streams its results live,
writes them per Rust test case to ``<artifacts>/phase1/results/<target>.json`` (the phase turns
those into JUnit), and fails naming every failing Rust test as ``target::test``.

``-k integration_io`` selects targets; ``-n 2`` (pytest-xdist) runs targets in parallel.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from pathlib import Path

import pytest

from ci.cargo import Target
from ci.cargo_env import run_env
from ci.cargo_libtest import TargetResult, result_filename, run_target
from ci.hostguard import HostGuard

MANIFEST_ENV = "REAPER_CI_PHASE1_MANIFEST"

_path = os.environ.get(MANIFEST_ENV)
if not _path:
    pytest.skip(f"needs {MANIFEST_ENV}: run through `nox -s phase1` or `python -m ci phase1`",
                allow_module_level=True)
MANIFEST = json.loads(Path(_path).read_text(encoding="utf-8"))
TARGETS = [Target.from_json(t) for t in MANIFEST["targets"]]
MISSING = list(MANIFEST.get("missing", []))
_GUARD = MANIFEST.get("guard")
GUARD = HostGuard.for_host(_GUARD["private_paths"], [tuple(x) for x in _GUARD["state_env"]],
                           _GUARD.get("private_ns", True)) if _GUARD else None


def _params():
    took = MANIFEST.get("durations") or {}
    # the longest first, as last measured (under pytest-xdist the last to start ends the phase)
    for t in sorted(TARGETS, key=lambda t: -float(took.get(t.id, 0.0))):
        yield pytest.param(t, id=t.id)
    for name in MISSING:
        yield pytest.param(name, id=name.split(" ", 1)[0])


def _echo(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _echoer(target_id: str):
    """Live output: stdout, or under pytest-xdist (whose workers' output is not shown) a file per
    target that the phase prints and logs, in target order, once the run is over."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _echo
    folder = Path(MANIFEST["results_dir"]).parent / "echo"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result_filename(target_id)}.log"
    path.write_text("", encoding="utf-8")

    def echo(text: str) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    return echo


SERIAL = set(MANIFEST.get("serial_targets", []))


@contextlib.contextmanager
def _turn(target_id: str, name: str):
    """Targets run at once (pytest-xdist) hold a shared lock; a ``--serial-targets`` one takes it
    exclusively, so it runs alone."""
    lock = MANIFEST.get("lock")
    if not lock:
        yield
        return
    with open(lock, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX if (target_id in SERIAL or name in SERIAL) else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.mark.parametrize("target", list(_params()))
def test_target(target):
    if isinstance(target, str):
        pytest.fail(f"required cargo test target {target!r} is missing from the workspace "
                    f"(targets: {', '.join(t.id for t in TARGETS)})", pytrace=False)
    out = Path(MANIFEST["results_dir"]) / f"{result_filename(target.id)}.json"
    if target.skip_reason:  # cargo did not build it (required-features); a required one is in MISSING
        out.write_text(json.dumps(TargetResult(target.id, target.package, target.kind, [], target.manifest_dir,
                                               fmt="not-built", note=target.skip_reason).to_json()), encoding="utf-8")
        pytest.skip(f"{target.id}: {target.skip_reason}")
    cmd = [target.executable or "cargo"]
    # marker: if this process dies mid-target, the phase reports the target as interrupted
    out.write_text(json.dumps(TargetResult(target.id, target.package, target.kind, cmd, target.manifest_dir)
                              .to_json()), encoding="utf-8")
    # libtest runs a binary's tests in threads (as many as CPUs by default); tests that mostly wait
    # finish sooner with more (#[serial] ones still take their lock); the caller's RUST_TEST_THREADS wins
    threads = {} if os.environ.get("RUST_TEST_THREADS") else {"RUST_TEST_THREADS": str(MANIFEST.get("test_threads", 8))}
    env = run_env(target, MANIFEST["package_env"][target.package_id], cargo_path=MANIFEST["cargo"],
                  sysroot_libs=MANIFEST.get("sysroot_libs", []), config_dir=Path(MANIFEST["source"]), extra=threads)
    echo = _echoer(target.id)
    echo(f"\n--- {target.id} ({target.kind} of {target.package}): {target.executable or 'cargo test --doc'}\n")
    with _turn(target.id, target.name):
        result = run_target(target, env=env, timeout=float(MANIFEST["target_timeout"]),
                            raw_log=Path(MANIFEST["raw_dir"]) / f"{result_filename(target.id)}.log", echo=echo,
                            cargo=MANIFEST["cargo"], workspace_root=MANIFEST["source"],
                            shim_dir=Path(MANIFEST["shim_dir"]) if MANIFEST.get("shim_dir") else None,
                            # in a private namespace the guard finds (and ends) what a binary left; a scan
                            # of the host would take a target running beside it for this one's leftovers
                            leftovers_under=Path(MANIFEST["target_directory"])
                            if MANIFEST.get("target_directory") and not (GUARD and GUARD.namespace) else None,
                            # with pytest-xdist other targets run at the same time: report, never kill
                            kill_leftovers="PYTEST_XDIST_WORKER" not in os.environ, guard=GUARD)
    out.write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
    c = result.counts()
    echo(f"--- {target.id}: {c['passed']} passed, {c['failed'] + c['error']} failed, {c['ignored']} ignored "
          f"in {result.seconds:.1f}s (exit {result.exit_code}{', TIMED OUT' if result.timed_out else ''})\n")
    problems = []
    if not result.ok:
        lines = [f"{target.id}::{f.name}: {f.message}" for f in result.failures] or [
            f"{target.id}: test binary exit {result.exit_code}"]
        problems.append(f"{len(result.failures)} Rust test(s) failed in {target.id}:\n  " + "\n  ".join(lines))
    if result.host_leftovers:
        who = [f"{target.id}::{n}" for n in sorted(result.leftover_tests)] or [target.id]
        problems.append(f"{target.id} left state behind ({'; '.join(result.host_leftovers[:6])}), left by: "
                        f"{', '.join(who)}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
