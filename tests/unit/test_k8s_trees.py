"""Scenario suite: when a pod's process tree is judged not killed (k8s_suite.trees.wait_gone)."""

from __future__ import annotations

from types import SimpleNamespace

import _k8s_path  # noqa: F401
from _kind_fake import FakeClock

from k8s_suite import nodeproc, trees

TREE = trees.Tree({"group": ["sleep", "111111"], "setsid": ["sleep", "222222"]})
SHELL = "     50      40 S     /bin/sh -c sleep 111111 & setsid sleep 222222 & wait"
GROUP = "     51      50 S     sleep 111111"
SETSID = "     52      50 Ss    sleep 222222"


def table(*rows: str) -> list[nodeproc.Proc]:
    return nodeproc.parse_ps("PID PPID STAT COMMAND\n      1       0 Ss /sbin/init\n     40       1 S shim\n"
                             + "\n".join(rows))


def run(monkeypatch, timeline, bound=10.0, timeout=35.0, gone_at=None):
    """``timeline``: (from second, process table) pairs; returns (left, why, judged at)."""
    clock = FakeClock()
    monkeypatch.setattr(trees, "time", SimpleNamespace(monotonic=clock, sleep=clock.sleep))

    def ps(node):
        return [t for at, t in timeline if at <= clock.now][-1]

    kube = SimpleNamespace(ctx=SimpleNamespace(ps=ps))
    before = [p for p in table(GROUP, SETSID) if p.pid in (51, 52)]
    left, why = trees.wait_gone(kube, "n", TREE, before, bound=bound, timeout=timeout, gone_at=gone_at)
    return left, why, clock.now


def test_a_tree_killed_at_once_passes(monkeypatch):
    left, why, at = run(monkeypatch, [(0, table(SHELL, GROUP, SETSID)), (6, table())])
    assert left == {} and why == "" and 6 <= at < 6.5


def test_a_slow_node_is_waited_for_not_judged_at_the_bound(monkeypatch):
    # nothing of the tree killed by the bound (the kill has not reached it): no verdict yet; all gone at 20 s
    left, why, at = run(monkeypatch, [(0, table(SHELL, GROUP, SETSID)), (20, table())])
    assert left == {} and 20 <= at < 20.5


def test_a_child_the_kill_missed_is_named_at_the_bound(monkeypatch):
    # kill(-pgid): the shell and its group child die at 6 s, the setsid child lives on
    left, why, at = run(monkeypatch, [(0, table(SHELL, GROUP, SETSID)), (6, table(SETSID))])
    assert list(left) == ["setsid"] and why == "another process of its tree was killed"
    assert 11 <= at < 11.5  # KILL_SLACK after the kill, past the bound (10 s)


def test_a_killed_shell_left_a_zombie_counts_as_killed(monkeypatch):
    left, why, at = run(monkeypatch, [(0, table(SHELL, GROUP, SETSID)),
                                      (1, table("     50      40 Z     [sh] <defunct>", GROUP, SETSID))])
    assert set(left) == {"group", "setsid"} and why == "another process of its tree was killed" and 10 <= at < 10.5


def test_a_tree_nothing_reached_is_judged_at_the_timeout(monkeypatch):
    left, why, at = run(monkeypatch, [(0, table(SHELL, GROUP, SETSID))])
    assert set(left) == {"group", "setsid"} and why == "no process of its tree was killed" and 35 < at < 35.5


def test_when_each_child_went_is_recorded(monkeypatch):
    # S32 judges "killed before the grace period" on these times
    gone_at = {}
    left, _, at = run(monkeypatch, [(0, table(SHELL, GROUP, SETSID)), (3, table(SHELL, SETSID)), (7, table())],
                      gone_at=gone_at)
    assert left == {} and 7 <= at < 7.5
    assert 3 <= gone_at["group"] < 3.5 and 7 <= gone_at["setsid"] < 7.5
