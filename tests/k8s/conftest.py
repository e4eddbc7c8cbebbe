"""The scenario suite's plugin: cluster, run token, namespace per test, ordering, diagnostics, summary.

The suite reads only the ClusterInfo JSON (``$REAPER_CI_CLUSTER_INFO``, else
``/var/lib/reaper-ci/cluster.json``). A missing or unreadable file, an API server that does not
answer, a node that is not Ready, a missing RuntimeClass or a node that cannot be reached end the
run at once with one line (exit code ``SUITE_EXIT_SETUP``), not with a traceback per scenario.

Run token: ``$REAPER_CI_RUN_TOKEN`` (set by ``ci/phases/scenarios.py``) or a fresh one; it is in
every namespace, pod, node path and process marker. The run folder is
``$CI_ARTIFACTS_DIR/k8s-run/<token>`` (``./artifacts`` by default); failure dumps go to
``$CI_ARTIFACTS_DIR/k8s-diagnostics/<test>.txt``.

Node-wide scenarios (``@pytest.mark.node_wide(stage=N)``: S13/S14/S16, then S41 beside their checks) are ordered last.
Each does its own pods' work beside the others, then calls ``node_wide.wait()``: under
pytest-xdist that blocks until every scenario of a lower stage has finished (a barrier on done
markers in the run folder), so its node-wide checks see a node that only this run's finished
work touched.

``REAPER_CI_KEEP_NAMESPACES=1`` keeps each test's namespace (for debugging).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker: no collections until its own collection ends,
    gc.disable()  # while it imports the API client (pytest_collection_finish; ~15 % of that CPU, measured)

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from ci import console  # noqa: E402
from ci.cluster.base import CLUSTER_INFO_ENV, ClusterInfo, find_cluster_info  # noqa: E402
from ci.config import DEFAULT_STATE_DIR  # noqa: E402
from ci.contract import ARTIFACTS_ENV, DURATIONS_ENV, RUN_DIR, RUN_TOKEN_ENV, SETUP_ERROR_FILE, SUITE_EXIT_SETUP, VERDICT_FILE  # noqa: E402
from k8s_suite import naming, nodeproc, preflight, runstate  # noqa: E402
from k8s_suite import timeouts as T  # noqa: E402

MARKERS = (
    "reaper_only: expects reaper's own design (shared overlay, host processes); skipped on other runtimes",
    "node_wide(stage=1): checks the whole node (zombies, shims, state entries); ordered last, and waits for "
    "every scenario of a lower stage to finish",
    "slow: takes noticeably longer than the others (started first under pytest-xdist)",
)
KEEP_ENV = "REAPER_CI_KEEP_NAMESPACES"
RUN_KEY = pytest.StashKey[runstate.RunDir]()
INFO_KEY = pytest.StashKey[object]()  # ClusterInfo | str (why it could not be read)
STAGES_KEY = pytest.StashKey[dict]()
OUTCOMES_KEY = pytest.StashKey[dict]()
KUBE_KEY = pytest.StashKey[object]()
EXTRA_KEY = pytest.StashKey[list]()
LEAK_KEY = pytest.StashKey[bool]()
CALL_KEY = pytest.StashKey[str]()  # the call phase's outcome (passed/failed/skipped)
# The config, for the few hooks that are not given it (logfinish, logreport); set once in pytest_configure.
_STATE: dict = {}


def _artifacts() -> Path:
    return Path(os.environ.get(ARTIFACTS_ENV) or "artifacts").resolve()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


# --- configuration ---------------------------------------------------------------------------------

def pytest_configure(config: pytest.Config) -> None:
    _STATE["config"] = config
    for text in MARKERS:
        config.addinivalue_line("markers", text)
    token = os.environ.get(RUN_TOKEN_ENV)
    if not token:
        token = naming.new_token()
        os.environ[RUN_TOKEN_ENV] = token  # xdist workers start later and inherit it
    naming.check_token(token)
    config.stash[RUN_KEY] = runstate.RunDir(_artifacts() / RUN_DIR / token).ensure()
    config.stash[OUTCOMES_KEY] = {}
    config.stash[INFO_KEY] = _load_info()


def _load_info() -> object:
    path = find_cluster_info()
    if path is None:
        return (f"no cluster: {CLUSTER_INFO_ENV} is not set and {DEFAULT_STATE_DIR / 'cluster.json'} does not exist "
                "(bring one up with `nox -s cluster -- up`)")
    try:
        return ClusterInfo.load(path)
    except FileNotFoundError:
        return f"cluster info {path} does not exist ({CLUSTER_INFO_ENV})"
    except (OSError, ValueError, TypeError) as e:
        return f"cluster info {path} is unreadable: {type(e).__name__}: {e}"


def _setup_exit(config: pytest.Config, message: str) -> None:
    line = f"setup error: {message}"
    try:
        config.stash[RUN_KEY].write(SETUP_ERROR_FILE, line + "\n")
    except OSError:
        pass
    pytest.exit(line, returncode=SUITE_EXIT_SETUP)


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if config.option.collectonly or getattr(config.option, "help", False):
        return
    info = config.stash[INFO_KEY]
    if not isinstance(info, ClusterInfo):
        _setup_exit(config, str(info))
    if _is_worker(config):
        return  # the controller has probed the cluster
    problem = preflight.problem(info, config.stash[RUN_KEY])
    if problem:
        _setup_exit(config, problem)
    _enter_parallel(info, config.stash[RUN_KEY])
    console.info(f"scenarios: runtime {info.runtime} (RuntimeClass {info.runtime_class}, shim {info.shim_process}) "
                 f"on {', '.join(info.nodes)}; run token {os.environ[RUN_TOKEN_ENV]}; run folder "
                 f"{config.stash[RUN_KEY].path}")


def _enter_parallel(info: ClusterInfo, run: runstate.RunDir) -> None:
    """Register this run (:mod:`k8s_suite.runlock`): its scenarios start once no other run's
    node-wide scenarios are on the node; the node's process table is taken after that wait."""
    from k8s_suite.kube import connect
    from k8s_suite.runlock import Runs

    runs = Runs(connect(info), os.environ[RUN_TOKEN_ENV])
    waited = runs.enter("parallel", log=console.info)
    _STATE["runs"] = runs.heartbeat()
    if waited >= 1:
        console.info(f"waited {waited:.0f}s for another run's node-wide scenarios")
        access = info.node_access_impl()
        for name in info.nodes:
            run.write(f"ps-before-{name}.txt", access.run(name, nodeproc.PS_ARGV, timeout=T.NODE_COMMAND).stdout)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:  # noqa: ARG001
    """All reported: a frozen heap is not walked again at exit (~0.2 s of CPU per process, all at the end)."""
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:  # noqa: ARG001
    runs = _STATE.pop("runs", None)
    if runs is not None and not _is_worker(session.config):
        try:
            runs.close()
        except Exception as e:  # noqa: BLE001 - a stale lease expires by itself (runlock.DURATION)
            console.info(f"could not release this run's leases ({type(e).__name__}); they expire in 60s")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    info = config.stash[INFO_KEY]
    has_timeout = config.pluginmanager.hasplugin("timeout")
    for item in items:
        if item.get_closest_marker("reaper_only") and isinstance(info, ClusterInfo) and info.runtime != "reaper":
            item.add_marker(pytest.mark.skip(
                reason=f"reaper-only expectation; the runtime under test is {info.runtime}"))
        if has_timeout and item.get_closest_marker("timeout") is None:
            nw = item.get_closest_marker("node_wide") is not None
            item.add_marker(pytest.mark.timeout(T.TEST_NODE_WIDE if nw else T.TEST_DEFAULT))
    index = {id(it): i for i, it in enumerate(items)}
    took = runstate.load_durations(os.environ.get(DURATIONS_ENV))  # the longest first, as last measured
    items.sort(key=lambda it: runstate.order_key(runstate.stage_of(it.get_closest_marker("node_wide")),
                                                  it.get_closest_marker("slow") is not None, index[id(it)],
                                                  took.get(runstate.row_name(it.nodeid))))
    stage0 = sum(1 for it in items if it.get_closest_marker("node_wide") is None)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)  # set in the workers, which collect
    items[:] = runstate.for_workers(items, stage0, workers)


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[STAGES_KEY] = {
        it.nodeid: runstate.stage_of(it.get_closest_marker("node_wide")) for it in session.items}
    gc.enable()
    gc.freeze()  # what the imports built lives as long as the process: out of every later collection


def pytest_runtest_logfinish(nodeid: str, location) -> None:  # noqa: ARG001
    """A done marker per finished test (setup, call and teardown), for the node-wide barrier."""
    cfg = _STATE.get("config")
    if cfg is not None:
        cfg.stash[RUN_KEY].mark_done(nodeid)


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def ctx(pytestconfig):
    """The run's shared context: ClusterInfo, API client, node access, token, run folder."""
    from k8s_suite.kube import RunContext, connect

    info = pytestconfig.stash[INFO_KEY]
    if not isinstance(info, ClusterInfo):
        pytest.exit(f"setup error: {info}", returncode=SUITE_EXIT_SETUP)
    api = connect(info)
    context = RunContext(info=info, api=api, node=info.node_access_impl(), token=os.environ[RUN_TOKEN_ENV],
                         run=pytestconfig.stash[RUN_KEY], artifacts=_artifacts())
    yield context
    api.close()


@pytest.fixture
def kube(ctx, request):
    """A fresh namespace for this test (labelled with the run token, default ServiceAccount ready).

    Teardown records the pods' ids, releases held pods, deletes the namespace and the test's node
    paths; problems there fail the teardown (reported, not swallowed). The failure dump is taken
    before, in ``pytest_runtest_makereport``, while everything still exists.
    """
    from k8s_suite.kube import Kube

    sid = naming.scenario_id(request.node.name)
    assert sid, f"{request.node.name}: scenario tests are named test_sNN_..."
    k = Kube(ctx, sid, request.node.name)
    request.node.stash[KUBE_KEY] = k
    k.create_namespace()
    yield k
    problems, leaks = k.cleanup(keep=os.environ.get(KEEP_ENV) in ("1", "true", "yes"))
    if leaks:
        request.node.stash[LEAK_KEY] = True
        what = "; ".join(x for x in k.leak_summary if x)  # the first line names it: a gate entry can match it
        pytest.fail("\n".join([f"{request.node.name} left its mark on the node or is unproven"
                               f"{f' ({what})' if what else ''}:"] + leaks
                               + ([f"(also: {'; '.join(problems)})"] if problems else [])), pytrace=False)
    if problems:
        pytest.fail("cleanup: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def evidence(request):
    """Text a scenario adds to its failure dump (node observations, before/after tables)."""
    notes: list[str] = []
    request.node.stash[EXTRA_KEY] = notes
    return notes


@pytest.fixture
def node_wide(ctx, request, pytestconfig):
    """For node-wide scenarios: the barrier, as a handle. A scenario does its own pods' work first
    (its live half, beside the other scenarios) and calls ``node_wide.wait()`` where its checks
    need the node to themselves: that blocks until every scenario of a lower stage has finished
    and no other run of the suite has scenarios on the node. A scenario that never waits fails."""
    marker = request.node.get_closest_marker("node_wide")
    assert marker is not None, "the node_wide fixture is for @pytest.mark.node_wide scenarios"
    barrier = runstate.Barrier(ctx, request.node.name, request.node.nodeid, runstate.stage_of(marker),
                               pytestconfig.stash.get(STAGES_KEY, {}), runstate.beside_of(marker))
    yield barrier
    if barrier.waited is None and request.node.stash.get(CALL_KEY, "") == "passed":
        pytest.fail(f"{request.node.name}: a node-wide scenario that never waited at its barrier "
                    "(node_wide.wait()) judged the node while other scenarios ran", pytrace=False)


# --- reports: diagnostics, summary ---------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.stash[CALL_KEY] = rep.outcome
    if rep.failed and rep.when == "teardown" and item.stash.get(LEAK_KEY, False):
        rep.user_properties.append(("failure_kind", "leak"))
    if not (rep.failed and rep.when in ("setup", "call")):
        return
    from k8s_suite.kube import InfrastructureError

    if call.excinfo is not None and call.excinfo.errisinstance(InfrastructureError):
        rep.user_properties.append(("failure_kind", "infrastructure"))
    k = item.stash.get(KUBE_KEY, None)
    notes = item.stash.get(EXTRA_KEY, [])
    ctx = getattr(k, "ctx", None) or item.funcargs.get("ctx")
    if ctx is None:
        return
    from k8s_suite import diagnostics

    if rep.when == "call" and k is not None:
        from k8s_suite import nodecheck

        nodecheck.lost_exit_first(k, rep, notes)  # whatever else failed followed from it
    failure = rep.longreprtext
    started = time.monotonic()
    text = diagnostics.collect(ctx, [k.ns] if k is not None else [], extra="\n".join(notes))
    text += f"\n(dump took {time.monotonic() - started:.1f}s)\n"
    path = _artifacts() / "k8s-diagnostics" / f"{naming.dns_label(item.name)}.txt"
    try:
        console.write_text(path, f"{item.nodeid} ({rep.when})\n\n{failure}\n\n{text}")
    except OSError:
        path = None
    section = diagnostics.for_report(text, path)
    if hasattr(rep.longrepr, "addsection"):
        rep.longrepr.addsection("k8s diagnostics", section)
    else:
        rep.sections.append(("k8s diagnostics", section))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    cfg = _STATE.get("config")
    if cfg is None or _is_worker(cfg):
        return
    outcomes = cfg.stash[OUTCOMES_KEY]
    o = outcomes.setdefault(report.nodeid, runstate.Outcome(report.nodeid))
    detail = runstate.skip_detail(report.longrepr) if report.skipped else ""
    if ("failure_kind", "leak") in [tuple(p) for p in report.user_properties]:
        o.leak = True
        crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None) or "see the report"
        detail = "teardown: " + crash.splitlines()[0][:240]
    if ("failure_kind", "infrastructure") in [tuple(p) for p in report.user_properties]:
        o.infrastructure = True
        crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None) or "see the report"
        detail = "infrastructure: " + crash.splitlines()[0][:240]
    message = ""
    if report.failed:
        crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None) or str(report.longrepr or "")
        # the gate matches an entry against this whole first line: a pod's description in it runs to
        # ~600 characters (its container's end last), so only a runaway line is cut
        message = next((l.strip() for l in crash.splitlines() if l.strip()), "")[:4000]
    o.add(report.when, report.outcome, report.duration, detail, message)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # noqa: ARG001
    if _is_worker(config):
        return
    outcomes = config.stash.get(OUTCOMES_KEY, {})
    if not outcomes:
        return
    info = config.stash[INFO_KEY]
    runtime = f"runtime {info.runtime} ({info.runtime_class})" if isinstance(info, ClusterInfo) else "no cluster"
    rows = runstate.rows(outcomes.values())
    title = f"Phase 4: Kubernetes scenarios, {runtime}, run {os.environ.get(RUN_TOKEN_ENV)}"
    text = console.table(title, rows)
    skipped = runstate.skipped_lines(rows)
    doc = runstate.verdict_doc(outcomes.values())
    runstate.save_durations(os.environ.get(DURATIONS_ENV), outcomes.values())
    config.stash[RUN_KEY].write(VERDICT_FILE, json.dumps(doc, indent=1) + "\n")
    infra = [f"  {r.name}: {r.detail}" for r in rows if r.detail.startswith("infrastructure:")]
    terminalreporter.write_line("")
    run_dir = config.stash[RUN_KEY].path
    for f in sorted(run_dir.glob("coordination-*.txt")):  # waits for other runs of the suite (runlock)
        for line in f.read_text().splitlines():
            terminalreporter.write_line(f"other runs: {line}")
    for line in (text.splitlines() + (["Skipped:"] + skipped if skipped else [])
                 + (["Infrastructure errors (the cluster or node failed, not the runtime):"] + infra if infra else [])):
        terminalreporter.write_line(line)
    try:
        console.write_text(_artifacts() / "k8s-summary.txt", text + "\n" + "\n".join(skipped) + "\n")
    except OSError:
        pass
    console.step_summary(title, rows, note="\n".join(f"- {s.strip()}" for s in skipped + infra))
