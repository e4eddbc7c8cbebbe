"""Phase 4: the Kubernetes scenario suite (``tests/k8s``) against a ready cluster.

:func:`run` is called by ``ci/phases/k8s.py`` once the provisioner has written ClusterInfo. It
runs pytest on ``tests/k8s`` in a subprocess with

* ``REAPER_CI_CLUSTER_INFO`` pointing at that ClusterInfo, ``CI_ARTIFACTS_DIR`` at the artifacts
  folder and ``REAPER_CI_RUN_TOKEN`` set to a fresh run token (all workers share it);
* JUnit at ``<artifacts>/k8s-junit.xml``, the console log at ``<artifacts>/k8s-scenarios.log``;
* pytest-xdist (``-n``, from ``$REAPER_CI_K8S_WORKERS``, else :func:`default_workers`) unless the pytest
  arguments choose their own ``-n`` / ``-p no:xdist``; ``cfg.pytest_args`` are passed on
  (``-k s11``, ``-x``).

Exit: 0 all passed, 1 scenario failures. A cluster the suite cannot use (the suite exits with
``SUITE_EXIT_SETUP``) is a :class:`SetupError`; no scenario collected (pytest exit 5), an interrupted
run, a usage or internal error of pytest are :class:`CIError` - never a pass.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ci import console, expect
from ci.contract import (ARTIFACTS_ENV, CLUSTER_INFO_ENV, DURATIONS_ENV, RUN_DIR, RUN_TOKEN_ENV, SETUP_ERROR_FILE,
                         SUITE_EXIT_SETUP, VERDICT_FILE, read_durations)
from ci.config import REPO_ROOT, Config
from ci.errors import CIError, SetupError, UsageError

SUITE = REPO_ROOT / "tests" / "k8s"
WORKERS_ENV = "REAPER_CI_K8S_WORKERS"
# The scenarios mostly wait on the cluster, not on this machine's CPUs. Measured with 62 scenarios
# (local cluster, 2 cores): runc 98-110 s with 4 workers, 82-92 s with 8, 84 s with 12 (CPU-bound by
# then); reaper d8d19fe 542-601 s with 4, 237-279 s with 8, 217 s with 12 (its pods wait ~13 s each
# to go, so more workers keep paying after runc's have stopped).
DEFAULT_WORKERS = "12"
# A runtime whose scenarios mostly wait gets more: reaper d8d19fe's pods each wait ~15 s for their
# sandbox to stop (containerd's state call to its shim times out), so its median scenario takes
# 18-23 s against runc's 7-9 s. Measured here (2 cores, 2026-12-05): reaper 143.8-182.6 s with 12
# workers (median 150.7 s, 5 runs), 124.4-147.3 s with 16 (median 135.5 s, 5 runs); runc 48.6-54.2 s
# with 12 (median 49.3 s, 9 runs), 51.7-56.8 s with 16 (CPU-bound: more workers only compete).
WAITING_WORKERS = "16"
WAITING_MEDIAN = 14.0  # seconds: a median scenario duration on this runtime at or above it = waiting-bound
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


def pytest_argv(pytest_args: Sequence[str], junit: Path, workers: str = DEFAULT_WORKERS) -> list[str]:
    """The pytest command line (after ``python -m pytest``)."""
    argv = [str(SUITE), "-v", "-rfEs", f"--junitxml={junit}", "-o", "junit_suite_name=k8s-scenarios",
            "-o", "junit_duration_report=total"]
    if not _chooses_parallelism(pytest_args) and workers not in ("0", "", "no"):
        argv += ["-n", workers]
    return argv + list(pytest_args)


def default_workers(durations: Path | None) -> tuple[str, str]:
    """(workers, why): WAITING_WORKERS when the median of the scenarios' last durations on this
    runtime (``durations``: the suite's start-order file) is WAITING_MEDIAN or more, else
    DEFAULT_WORKERS (also with no history)."""
    last = [v[-1] for v in read_durations(durations).values()]
    if not last:
        return DEFAULT_WORKERS, "no durations measured on this runtime yet"
    median = statistics.median(last)
    if median >= WAITING_MEDIAN:
        return WAITING_WORKERS, (f"its scenarios mostly wait: median {median:.1f}s last time on this runtime, "
                                 f">= {WAITING_MEDIAN:.0f}s")
    return DEFAULT_WORKERS, f"median scenario {median:.1f}s last time on this runtime"


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
    if rc == SUITE_EXIT_SETUP:
        raise SetupError(f"setup error (not a product failure): {(setup_line or 'the cluster cannot run scenarios').strip()}")
    if rc == 5:
        raise CIError("scenario suite: no scenario was collected/selected (pytest exit 5): that is an error, not a pass")
    if rc == 2:
        raise CIError(f"scenario suite interrupted (pytest exit 2); partial results in {junit}")
    if rc == 4:
        raise UsageError("scenario suite: pytest usage error (exit 4); check the pytest arguments")
    raise CIError(f"scenario suite: pytest internal error (exit {rc}); see the log")


def run(cfg: Config, info_path: Path, token: str | None = None, exp: "expect.Expectations | None" = None) -> int:
    """Run tests/k8s against the cluster described by ``info_path``; 0 passed (or only the
    expected failures of ``exp``), 1 failures (new ones, or listed ones that passed)."""
    once = _run_once(cfg, info_path, token)
    rc = verdict(once.rc, once.setup_line, once.junit, once.doc)
    return gate(cfg, [once], exp, rc)


def gate(cfg: Config, runs: Sequence["Once"], exp: "expect.Expectations | None", rc: int) -> int:
    """The suite's raw verdict judged by the expected outcomes (the JUnit keeps the raw results)."""
    docs = [o.doc for o in runs if o.doc is not None]
    if exp is None or not docs:
        return rc
    rows = expect.judge(docs, exp)
    print("\n" + expect.report(rows, exp, cfg.artifacts), flush=True)
    ok = expect.gate_ok(rows)
    if rc and ok:
        console.info("gate: every failure is a listed one: exit 0")
    return 0 if ok else 1


@dataclass(frozen=True)
class Once:
    """One run of the suite: pytest's exit code, the suite's verdict file, where its reports are."""
    token: str
    rc: int
    doc: dict | None
    setup_line: str | None
    junit: Path
    seconds: float


def _run_once(cfg: Config, info_path: Path, token: str | None = None) -> Once:
    from ci.tools import run as run_tool, tool

    artifacts = cfg.artifacts
    artifacts.mkdir(parents=True, exist_ok=True)
    junit = artifacts / JUNIT_NAME
    token = token or os.environ.get(RUN_TOKEN_ENV) or new_token()
    # bytecode is cached (in __pycache__, ignored by git) even where the caller's environment turns
    # it off: each of the workers compiles and assertion-rewrites every scenario module otherwise
    # (~0.2 CPU-s each, at the start, when the workers compete for the cores)
    env = {CLUSTER_INFO_ENV: str(Path(info_path).resolve()), ARTIFACTS_ENV: str(artifacts),
           RUN_TOKEN_ENV: token, "PYTHONDONTWRITEBYTECODE": "",
           DURATIONS_ENV: str(durations_file(cfg, info_path))}
    workers, why = ((os.environ[WORKERS_ENV], WORKERS_ENV) if os.environ.get(WORKERS_ENV)
                    else default_workers(Path(env[DURATIONS_ENV])))
    argv = ["-m", "pytest", *pytest_argv(cfg.pytest_args, junit, workers)]
    console.info(f"scenario suite: run token {token}; pytest {' '.join(argv[2:])}"
                 + ("" if _chooses_parallelism(cfg.pytest_args) else f" ({workers} workers: {why})"))
    started = time.monotonic()
    result = run_tool(tool(sys.executable), *argv, log=artifacts / LOG_NAME, cwd=REPO_ROOT, env=env,
                      ok_code=range(256), what="pytest tests/k8s")
    rc = int(result.exit_code)
    seconds = time.monotonic() - started
    run_dir = artifacts / RUN_DIR / token
    doc_text = _read(run_dir / VERDICT_FILE)
    console.info(f"scenario suite: pytest exit {rc} after {seconds:.1f}s; JUnit {junit}")
    return Once(token, rc, json.loads(doc_text) if doc_text else None, _read(run_dir / SETUP_ERROR_FILE), junit, seconds)


def durations_file(cfg: Config, info_path: Path) -> Path:
    """Where the suite keeps each scenario's last duration on this runtime (the longest start first)."""
    try:
        runtime = json.loads(Path(info_path).read_text()).get("runtime") or "unknown"
    except (OSError, ValueError):
        runtime = "unknown"
    return Path(cfg.cache_dir) / "k8s-durations" / f"{runtime}.json"


REPEAT_DIR = "k8s-repeat"
RESULTS = ("passed", "failed", "errors", "infrastructure", "skipped")


def run_repeated(cfg: Config, info_path: Path, exp: "expect.Expectations | None" = None) -> int:
    """``--repeat N``: the suite N times in a row on one cluster, each run with a fresh token and its
    own reports in ``<artifacts>/k8s-repeat/run-NN/``; then one table of how often each scenario
    passed, failed or failed on the cluster (infrastructure), with the flaky ones (passed in some
    runs, failed in others) named. A cluster that cannot run scenarios at all ends the series.
    0 only when every run passed; a setup error when every failure was blamed on the cluster."""
    times = cfg.repeat
    base = cfg.artifacts / REPEAT_DIR
    runs: list[Once] = []
    for i in range(1, times + 1):
        sub = cfg.with_(artifacts=base / f"run-{i:02d}")
        with console.phase(f"Phase 4: scenario suite, run {i} of {times}"):
            once = _run_once(sub, info_path, new_token())
        runs.append(once)
        if once.rc == SUITE_EXIT_SETUP:  # the cluster cannot run scenarios at all: report, then raise the setup error
            _repeat_report(cfg, runs, times)
            return verdict(once.rc, once.setup_line, once.junit, once.doc)
        try:
            verdict(once.rc, once.setup_line, once.junit, once.doc)
        except CIError as e:  # scenarios failed on the cluster (infrastructure) or pytest broke: counted, go on
            console.error(f"run {i}: {e}")
    rc = _repeat_report(cfg, runs, times)
    product = [o.token for o in runs if o.rc != 0 and (o.doc is None or o.doc.get("failed") or o.doc.get("errors"))]
    if rc and not product:
        raise SetupError(f"setup error (not a product failure): every failure in the {times} runs was blamed on the "
                         f"cluster/node (see {cfg.artifacts / 'k8s-repeat-summary.txt'})")
    if any(o.doc is None for o in runs):  # a run without a verdict cannot be judged: never green
        return rc
    return gate(cfg, runs, exp, rc)


def repeat_table(runs: Sequence[Once]) -> tuple[str, dict]:
    """Per scenario: how many runs it passed, failed (incl. errors), blamed on the cluster, skipped."""
    counts: dict[str, dict[str, int]] = {}
    for once in runs:
        for key in RESULTS:
            for name in (once.doc or {}).get(key, []):
                counts.setdefault(name, dict.fromkeys(RESULTS, 0))[key] += 1
    flaky = sorted(n for n, c in counts.items() if c["passed"] and (c["failed"] or c["errors"]))
    failing = sorted(n for n, c in counts.items() if not c["passed"] and (c["failed"] or c["errors"]))
    broken_runs = [o.token for o in runs if o.doc is None]
    width = max([len(n) for n in counts] + [8])
    lines = [f"{'Scenario'.ljust(width)}  {'passed':>6}  {'failed':>6}  {'infra':>5}  {'skipped':>7}",
             f"{'-' * width}  {'-' * 6}  {'-' * 6}  {'-' * 5}  {'-' * 7}"]
    for name in sorted(counts, key=lambda n: (n.split(" ", 1)[0], n)):
        c = counts[name]
        lines.append(f"{name.ljust(width)}  {c['passed']:>6}  {c['failed'] + c['errors']:>6}  "
                     f"{c['infrastructure']:>5}  {c['skipped']:>7}")
    green = sum(1 for o in runs if o.rc == 0)
    infra = {n: c["infrastructure"] for n, c in counts.items() if c["infrastructure"]}
    lines.append(f"{len(runs)} run(s): {green} all green; {len(flaky)} flaky scenario(s)"
                 + (f" ({', '.join(flaky)})" if flaky else "")
                 + f"; {len(failing)} failing in every run" + (f" ({', '.join(failing)})" if failing else "")
                 + f"; {sum(infra.values())} infrastructure error(s)"
                 + (f" ({', '.join(f'{n} x{k}' for n, k in sorted(infra.items()))})" if infra else "")
                 + (f"; {len(broken_runs)} run(s) without a verdict ({', '.join(broken_runs)})" if broken_runs else ""))
    doc = {"runs": [{"token": o.token, "exit": o.rc, "seconds": round(o.seconds, 1), "verdict": o.doc} for o in runs],
           "scenarios": counts, "flaky": flaky, "failing": failing}
    return "\n".join(lines), doc


def _repeat_report(cfg: Config, runs: Sequence[Once], times: int) -> int:
    text, doc = repeat_table(runs)
    secs = [o.seconds for o in runs]
    title = (f"Phase 4 repeated: {len(runs)} of {times} run(s), suite wall time min {min(secs):.1f}s / "
             f"max {max(secs):.1f}s / total {sum(secs):.1f}s")
    print("\n" + title + "\n" + text, flush=True)
    console.write_text(cfg.artifacts / "k8s-repeat-summary.txt", title + "\n" + text + "\n")
    console.write_text(cfg.artifacts / "k8s-repeat.json", json.dumps(doc, indent=1) + "\n")
    return 0 if runs and all(o.rc == 0 for o in runs) and len(runs) == times else 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None
