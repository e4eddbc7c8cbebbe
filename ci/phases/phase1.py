"""Phase 1: lint, build every cargo test target once, run each one, report per Rust test case.

Steps (each reported on its own, a failure in one does not hide the others):

1. ``cargo fmt --all -- --check`` and ``cargo clippy --workspace --all-targets -- -D warnings``
   (``--no-lint`` skips both);
2. ``cargo metadata``: the targets ``cargo test --workspace`` runs; a required one
   (``--required-targets``) that is absent is an error;
3. ``cargo test --workspace --no-run``: one build of all of them; a compile error stops here with
   the compiler's first error;
4. ``pytest tests/cargo_phase.py``: one pytest test per target (id = target name, so
   ``-k integration_io`` selects), each running that target's test binary and recording its
   Rust test cases;
5. ``<artifacts>/phase1-junit.xml`` (per Rust test case), a console table, and under GitHub
   Actions ``::error`` annotations and a step summary.

Files in ``<artifacts>``: ``phase1.log`` (all cargo and test output), ``phase1-junit.xml``,
``phase1/targets.json`` (the build manifest the pytest module reads), ``phase1/results/*.json``
(per-target results) and ``phase1/raw/*.log`` (each binary's raw output).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ci import cargo as cargo_mod
from ci import config as config_mod
from ci import console, phase1_report
from ci.cargo_env import package_env, sysroot_libs
from ci.cargo_libtest import TargetResult
from ci.cargo_proc import processes_under, terminate, write_shims
from ci.config import DEFAULT_REQUIRED_TARGETS, REPO_ROOT, Config
from ci.errors import CIError, UsageError
from ci.hostguard import HostGuard
from ci.tools import run as run_tool
from ci.tools import tool, which

MANIFEST_ENV = "REAPER_CI_PHASE1_MANIFEST"
PYTEST_MODULE = REPO_ROOT / "tests" / "cargo_phase.py"


def _paths(cfg: Config) -> dict[str, Path]:
    base = cfg.artifacts / "phase1"
    return {"log": cfg.artifacts / "phase1.log", "junit": cfg.artifacts / "phase1-junit.xml", "dir": base,
            "manifest": base / "targets.json", "results": base / "results", "raw": base / "raw",
            "summary": base / "summary.txt"}


def _clean(paths: dict[str, Path]) -> None:
    """Remove this phase's own outputs from an earlier run (never anything else in artifacts)."""
    shutil.rmtree(paths["dir"], ignore_errors=True)
    for key in ("log", "junit"):
        paths[key].unlink(missing_ok=True)
    for key in ("results", "raw"):
        paths[key].mkdir(parents=True, exist_ok=True)


def check_pytest_args(args: tuple[str, ...]) -> None:
    """Reject pytest arguments pytest does not know, before minutes of building (one line)."""
    if not args:
        return
    env = {k: v for k, v in os.environ.items() if k != MANIFEST_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-m", "pytest", str(PYTEST_MODULE), "--collect-only", "-q",
                           "-p", "no:cacheprovider", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode == 4:
        lines = [l.strip() for l in (proc.stderr + proc.stdout).splitlines() if l.strip()]
        why = next((l for l in lines if "error:" in l.lower()), lines[-1] if lines else "usage error")
        raise UsageError(f"phase1: pytest rejected the arguments {' '.join(args)!r}: {why.removeprefix('ERROR: ')}")


def run(cfg: Config) -> int:
    if cfg.source is None:
        raise UsageError("phase1: no Cargo workspace: pass --source DIR (or set REAPER_SOURCE), "
                         "or run from a folder holding Cargo.toml")
    cargo = tool("cargo")
    check_pytest_args(cfg.pytest_args)
    paths = _paths(cfg)
    _clean(paths)
    log = paths["log"]
    started = time.monotonic()
    console.info(f"phase1: workspace {cfg.source}; artifacts in {cfg.artifacts}")
    steps: list[cargo_mod.Step] = []

    # the targets first (cargo metadata --no-deps answers at once): a target named on the command
    # line that the workspace does not have is a usage error before anything slow starts
    with console.phase("Phase 1: discover cargo test targets (cargo metadata)"):
        ws = cargo_mod.discover(cargo, cfg.source, log=log)
        missing = cargo_mod.missing_required(ws.targets, cfg.required_targets)
        console.info(f"{len(ws.targets)} target(s): {', '.join(t.id for t in ws.targets) or 'none'}")
        if missing and tuple(cfg.required_targets) != tuple(DEFAULT_REQUIRED_TARGETS):
            raise UsageError(f"phase1: --required-targets names target(s) the workspace {cfg.source} does not have: "
                             f"{', '.join(missing)} (it has: {', '.join(t.id for t in ws.targets) or 'none'})")
        if missing:
            console.info(console.paint(f"required cargo test target(s) missing: {', '.join(missing)} "
                                       f"(required: {', '.join(cfg.required_targets)}; see --required-targets); "
                                       "the other targets still run", "failed"))

    if cfg.lint:
        with console.phase("Phase 1: cargo fmt --check, cargo clippy -D warnings"):
            for s in cargo_mod.lint(cargo, cfg.source, log=log):
                steps.append(s)
                _say_step(s)
    else:
        console.info("phase1: --no-lint: cargo fmt and clippy skipped")

    with console.phase("Phase 1: build every test target once (cargo test --no-run)"):
        build, _ = cargo_mod.build_tests(cargo, cfg.source, ws.targets, log=log)
        steps.append(build)
        _say_step(build)

    if not build.ok:
        verdict = phase1_report.Verdict(steps, [], missing, [])
        _report(cfg, paths, verdict)
        raise CIError(f"phase1: {verdict.headline(cfg.artifacts)}")

    for t in ws.targets:  # a required target cargo did not build (unmet features) is missing too
        if t.skip_reason and _is_required(cfg, t) and t.id not in missing:
            missing.append(f"{t.id} ({t.skip_reason})")
    _write_manifest(cfg, paths, ws, missing)

    with console.phase("Phase 1: run every cargo test target (pytest tests/cargo_phase.py)"):
        guard = HostGuard.for_host(cfg.private_paths, cfg.state_env, cfg.private_ns)
        n_jobs = jobs(cfg, guard)
        console.info(f"host guard: {guard.describe()}; {n_jobs} test binar{'ies' if n_jobs > 1 else 'y'} at once"
                     + (f"; alone: {', '.join(cfg.serial_targets)}" if cfg.serial_targets else ""))
        made = guard.prepare()
        before = processes_under(ws.target_directory)
        try:
            rc = _pytest(cfg, paths, n_jobs)
        finally:
            guard.restore(made)
            strays = _end_strays(ws.target_directory, before)
        _replay_echo(paths, ws)
    results, not_run, skipped = _collect(paths, ws)
    _save_durations(cfg, ws, results)
    verdict = phase1_report.Verdict(steps, results, missing, not_run, skipped, strays)
    _report(cfg, paths, verdict)
    if rc == 5:
        raise CIError(f"phase1: no cargo test target selected by the pytest arguments {' '.join(cfg.pytest_args)!r} "
                      f"(targets: {', '.join(t.id for t in ws.targets)})")
    if rc not in (0, 1):
        raise CIError(f"phase1: pytest stopped with exit {rc} (interrupted or internal error; see {log})")
    console.info(f"phase1: finished in {time.monotonic() - started:.1f}s")
    if not verdict.ok:
        raise CIError(f"phase1: {verdict.headline(cfg.artifacts)}")
    if rc != 0:  # pytest says something failed that the results do not show: never green
        raise CIError(f"phase1: pytest reported a failure (exit {rc}) not seen in the per-target results; see {log}")
    return 0


def _replay_echo(paths: dict[str, Path], ws: cargo_mod.Workspace) -> None:
    """Targets run at once write their live lines to a file each: shown and logged now, in target order."""
    from ci.cargo_libtest import result_filename

    folder = paths["dir"] / "echo"
    if not folder.is_dir():
        return
    text = "".join((folder / f"{result_filename(t.id)}.log").read_text(encoding="utf-8", errors="replace")
                   for t in ws.targets if (folder / f"{result_filename(t.id)}.log").is_file())
    print(text, end="", flush=True)
    with open(paths["log"], "a", encoding="utf-8") as f:
        f.write(text)


def _is_required(cfg: Config, t: cargo_mod.Target) -> bool:
    return t.name in cfg.required_targets or t.id in cfg.required_targets


def _say_step(s: cargo_mod.Step) -> None:
    if s.ok:
        console.info(f"{s.name}: {console.paint('passed', 'passed')} in {s.seconds:.1f}s")
    else:
        console.info(f"{s.name}: {console.paint('FAILED', 'failed')} in {s.seconds:.1f}s: {s.message}")


def _end_strays(target_dir: Path, before: dict[int, str]) -> list[str]:
    """Processes running a binary of the workspace's target folder that Phase 1's targets started and
    left: a test's daemon that left both the guard's mount namespace and its session (reaper-runtime
    joins reaper's own overlay namespace) escapes the per-target scan. Looked for once every target
    has ended (so none is another target's live work), reported, and ended."""
    left = {pid: cmd for pid, cmd in processes_under(target_dir).items() if pid not in before}
    if left:
        console.error(f"phase1: {len(left)} process(es) of the workspace's binaries outlived every test target; "
                      "ending them: " + "; ".join(f"{p} {c[:120]}" for p, c in sorted(left.items())[:5]))
        terminate(list(left))
    return [f"{pid} {cmd}" for pid, cmd in sorted(left.items())]


def _durations_file(cfg: Config, ws: cargo_mod.Workspace) -> Path:
    return cfg.cache_dir / "phase1-durations" / f"{hashlib.sha256(str(ws.root).encode()).hexdigest()[:16]}.json"


def _durations(cfg: Config, ws: cargo_mod.Workspace) -> dict[str, float]:
    """Seconds each target took the last time Phase 1 ran this workspace (the longest start first)."""
    try:
        return {str(k): float(v) for k, v in json.loads(_durations_file(cfg, ws).read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _save_durations(cfg: Config, ws: cargo_mod.Workspace, results: list[TargetResult]) -> None:
    took = {**_durations(cfg, ws), **{r.target: round(r.seconds, 2) for r in results if r.seconds}}
    try:
        f = _durations_file(cfg, ws)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(took, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # an order hint only


def _write_manifest(cfg: Config, paths: dict[str, Path], ws: cargo_mod.Workspace, missing: list[str]) -> None:
    data = {
        "version": 1,
        "source": str(cfg.source),
        "workspace_root": str(ws.root),
        "target_directory": str(ws.target_directory),
        "cargo": which("cargo") or "cargo",
        "sysroot_libs": sysroot_libs(cfg.source),
        "target_timeout": cfg.target_timeout,
        "shim_dir": str(write_shims(paths["dir"] / "shims", os.environ.get("RUSTC_BOOTSTRAP"))),
        "results_dir": str(paths["results"]),
        "raw_dir": str(paths["raw"]),
        "package_env": {pid: package_env(pkg) for pid, pkg in ws.packages.items()},
        "targets": [t.to_json() for t in ws.targets],
        "missing": missing,
        "guard": {"private_paths": list(cfg.private_paths), "state_env": [list(x) for x in cfg.state_env],
                  "private_ns": cfg.private_ns},
        "serial_targets": list(cfg.serial_targets),
        "test_threads": cfg.test_threads,
        "durations": _durations(cfg, ws),
        "lock": str(paths["dir"] / "targets.lock"),
    }
    paths["manifest"].write_text(json.dumps(data, indent=2), encoding="utf-8")


PARALLEL_JOBS = 4  # test binaries at once with private namespaces (they mostly wait: measured, README)


def jobs(cfg: Config, guard: HostGuard) -> int:
    """How many test binaries run at once: ``--test-jobs``, else 4 when each has its own namespace
    (no shared host paths between them), else 1."""
    if cfg.test_jobs is not None:
        return cfg.test_jobs
    return PARALLEL_JOBS if guard.namespace else 1


def _pytest(cfg: Config, paths: dict[str, Path], n_jobs: int = 1) -> int:
    from ci.phases.scenarios import _chooses_parallelism

    py = tool(sys.executable)
    env = {MANIFEST_ENV: str(paths["manifest"]),
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    args = ["-m", "pytest", str(PYTEST_MODULE), "-p", "no:cacheprovider", "-s", "-v", "-rfEs"]
    if n_jobs > 1 and not _chooses_parallelism(cfg.pytest_args) and importlib.util.find_spec("xdist"):
        args += ["-n", str(n_jobs)]
    if importlib.util.find_spec("pytest_timeout"):  # a backstop only: each target has its own deadline
        args.append(f"--timeout={int(cfg.target_timeout) + 120}")
    args += cfg.pytest_args
    proc = run_tool(py, *args, log=paths["log"], cwd=REPO_ROOT, env=env, ok_code=range(256),
                    what="pytest tests/cargo_phase.py")
    return proc.exit_code


def _collect(paths: dict[str, Path], ws: cargo_mod.Workspace
             ) -> tuple[list[TargetResult], list[tuple[str, str]], list[tuple[str, str]]]:
    """Per-target results written by tests/cargo_phase.py: (ran, interrupted, not built)."""
    results: list[TargetResult] = []
    not_run: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    order = {t.id: i for i, t in enumerate(ws.targets)}
    for f in sorted(paths["results"].glob("*.json")):
        r = TargetResult.from_json(json.loads(f.read_text(encoding="utf-8")))
        if r.fmt == "not-built":
            skipped.append((r.target, r.note))
        elif r.exit_code is None and not r.cases:
            not_run.append((r.target, "its run was interrupted"))
        else:
            results.append(r)
    results.sort(key=lambda r: order.get(r.target, 1 << 30))
    return results, not_run, skipped


def _report(cfg: Config, paths: dict[str, Path], verdict: phase1_report.Verdict) -> None:
    phase1_report.write_junit(paths["junit"], verdict)
    text = phase1_report.table(verdict)
    print("\n" + text, flush=True)
    console.write_text(paths["summary"], text + "\n")
    phase1_report.step_summary(verdict)
    phase1_report.annotate(verdict)
    console.info(f"JUnit: {paths['junit']}; log: {paths['log']}")


USAGE = """\
usage: python -m ci phase1 [options] [pytest args]     (nox -s phase1 -- [options] [pytest args])

  --source DIR            cargo workspace to test (REAPER_SOURCE; default: the current folder if it has Cargo.toml)
  --artifacts DIR         where phase1.log, phase1-junit.xml and phase1/ go (CI_ARTIFACTS_DIR; default ./artifacts)
  --required-targets A,B  test targets that must exist (REAPER_REQUIRED_TARGETS; default integration_io,integration_exec;
                          empty: none)
  --no-lint               skip cargo fmt --check and cargo clippy (REAPER_NO_LINT=1)
  --target-timeout SECS   kill a test binary after this long (REAPER_TARGET_TIMEOUT; default 1800)
  --private-paths A,B     host folders each test binary sees as its own empty tmpfs (root: a private mount
                          namespace per binary) (REAPER_CI_PRIVATE_PATHS; default /run/reaper; empty: none)
  --state-env N=rel,...   variables pointing into each binary's own scratch folder (REAPER_CI_STATE_ENV;
                          default reaper's REAPER_OVERLAY_BASE/NS/LOCK and REAPER_FILTER_DIR)
  --test-jobs N           test binaries at once (REAPER_TEST_JOBS; default 4 with private namespaces, else 1)
  --test-threads N        libtest threads per test binary (REAPER_TEST_THREADS, RUST_TEST_THREADS; default 8;
                          RUST_TEST_THREADS already set wins)
  --serial-targets A,B    targets that must run alone, nothing else at the same time (REAPER_SERIAL_TARGETS)
  --no-private-ns         run test binaries on the host: what they leave in the private paths is named, not
                          removed (REAPER_CI_NO_PRIVATE_NS=1; always so without root)
  pytest args             select targets by id: -k integration_io, -k "not integration_overlay"; -x; -n 2 (xdist)

exit status: 0 all passed; 1 a lint step, the build, a Rust test or a required target failed, or a test left
state behind (processes, mounts, files: named per test); 2 bad usage
"""


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE, end="")
        return 0
    cfg = config_mod.parse(argv, prog="phase1")
    return run(cfg)
