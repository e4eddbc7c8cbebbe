"""Scenario suite: two runs on one cluster (the Lease protocol's decisions, without a cluster)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import _k8s_path  # noqa: F401

from ci import runleases
from k8s_suite import naming
from k8s_suite.runlock import LOCK, PHASE, RUN_PREFIX, blocking

NOW = datetime(2026, 12, 4, 13, 0, 0, tzinfo=timezone.utc)


def lease(name, holder, age=1, phase=None):
    meta = {"name": name, **({"annotations": {PHASE: phase}} if phase else {})}
    renewed = (NOW - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": meta, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 60, "renewTime": renewed}}


def test_node_wide_waits_for_every_other_run_with_scenarios_on_the_node():
    other = lease(RUN_PREFIX + "bbbbbb", "bbbbbb", phase="parallel")
    assert blocking([other, lease(RUN_PREFIX + "aaaaaa", "aaaaaa", phase="parallel")], "aaaaaa", NOW,
                    "node-wide") == ["bbbbbb (parallel)"]
    assert blocking([other], "aaaaaa", NOW, "parallel") == []  # ordinary scenarios of two runs go together
    waiting = lease(RUN_PREFIX + "bbbbbb", "bbbbbb", phase="waiting")
    assert blocking([waiting], "aaaaaa", NOW, "node-wide") == []  # a waiting run has nothing on the node
    dead = lease(RUN_PREFIX + "bbbbbb", "bbbbbb", age=61, phase="parallel")
    assert blocking([dead], "aaaaaa", NOW, "node-wide") == []  # stopped renewing: a dead run blocks nobody


def test_a_run_starts_its_scenarios_only_while_no_other_run_holds_the_node_wide_lock():
    held = lease(LOCK, "bbbbbb")
    assert blocking([held], "aaaaaa", NOW, "parallel") == ["bbbbbb (node-wide)"]
    assert blocking([held], "aaaaaa", NOW, "node-wide") == ["bbbbbb (node-wide)"]
    assert blocking([lease(LOCK, "aaaaaa")], "aaaaaa", NOW, "parallel") == []  # its own lock
    assert blocking([lease(LOCK, "bbbbbb", age=90)], "aaaaaa", NOW, "node-wide") == []  # a dead run's lock


def test_live_runs_and_other_runs_namespaces():
    leases = [lease(RUN_PREFIX + "bbbbbb", "bbbbbb"), lease(RUN_PREFIX + "cccccc", "cccccc", age=70), lease(LOCK, "bbbbbb")]
    assert runleases.live_runs(leases, NOW) == ["bbbbbb"]
    assert naming.other_run("reaper-ci-bbbbbb-s48", "aaaaaa") and not naming.other_run("reaper-ci-aaaaaa-s48", "aaaaaa")
    assert not naming.other_run("kube-system", "aaaaaa") and not naming.other_run(None, "aaaaaa")
