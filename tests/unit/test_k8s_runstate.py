"""Scenario suite: the run folder (ids, done markers, barrier), ordering and the summary table."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import _k8s_path  # noqa: F401
import pytest

from ci import console
from k8s_suite import runstate as rs


def test_ids_are_recorded_and_merged(tmp_path):
    run = rs.RunDir(tmp_path / "run").ensure()
    assert run.recorded() == [] and run.recorded_ids() == set()
    run.record({"ns": "a", "container_ids": ["c1", "c2"], "shims": [{"pid": 1, "id": "s1", "sandbox_id": "sb1"}]})
    run.record({"ns": "b", "container_ids": ["c2"], "shims": [{"pid": 2, "id": None}]})
    assert [e["ns"] for e in run.recorded()] == ["a", "b"]
    assert run.recorded_ids() == {"c1", "c2", "s1", "sb1"}


def test_concurrent_appends_stay_whole_lines(tmp_path):
    run = rs.RunDir(tmp_path).ensure()
    threads = [threading.Thread(target=lambda i=i: [run.record({"ns": f"n{i}", "container_ids": ["x" * 500]})
                                                    for _ in range(50)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(run.recorded()) == 200


def test_done_markers_and_barrier(tmp_path):
    run = rs.RunDir(tmp_path).ensure()
    run.mark_done("tests/k8s/test_a.py::test_s01_x")
    assert run.done() == {"tests/k8s/test_a.py::test_s01_x"}
    assert rs.wait_done(run, {"tests/k8s/test_a.py::test_s01_x"}, timeout=1) >= 0
    now = [0.0]
    with pytest.raises(rs.BarrierTimeout, match="1 other scenario.*test_s02_y"):
        rs.wait_done(run, {"tests/k8s/test_a.py::test_s01_x", "t::test_s02_y"}, timeout=5,
                     clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))


def test_stages_and_order():
    assert rs.stage_of(None) == 0
    assert rs.stage_of(SimpleNamespace(kwargs={})) == 1
    assert rs.stage_of(SimpleNamespace(kwargs={"stage": 2})) == 2
    items = [("s01", 0, False), ("s07", 0, True), ("s13", 2, False), ("s16", 1, True), ("s02", 0, False)]
    order = sorted(range(len(items)), key=lambda i: rs.order_key(items[i][1], items[i][2], i))
    assert [items[i][0] for i in order] == ["s07", "s01", "s02", "s16", "s13"]
    # measured durations order stage 0 longest first (unmeasured slow ones count as SLOW_GUESS)
    took = {"s02": 90.0, "s01": 5.0}
    order = sorted(range(len(items)), key=lambda i: rs.order_key(items[i][1], items[i][2], i, took.get(items[i][0])))
    assert [items[i][0] for i in order] == ["s02", "s07", "s01", "s16", "s13"]
    # within a node-wide stage too: the longest first (its own pods' part runs before the barrier)
    items += [("s14", 2, False)]
    took = {"s13": 20.0, "s14": 30.0}
    order = sorted(range(len(items)), key=lambda i: rs.order_key(items[i][1], items[i][2], i, took.get(items[i][0])))
    assert [items[i][0] for i in order][-2:] == ["s14", "s13"]
    stages = {"a": 0, "b": 0, "c": 1, "d": 2}
    assert rs.must_finish_before(stages, 1) == {"a", "b"}
    assert rs.must_finish_before(stages, 2) == {"a", "b", "c"}
    # beside the stage before: that stage's scenarios only have to reach their barrier
    stages["e"] = 3
    assert rs.must_finish_before(stages, 3, beside=True) == {"a", "b", "c"}
    assert rs.must_arrive_before(stages, 3, beside=True) == {"d"}
    assert rs.must_arrive_before(stages, 3) == set() and rs.must_finish_before(stages, 3) == {"a", "b", "c", "d"}
    assert rs.beside_of(SimpleNamespace(kwargs={"stage": 3, "beside": True})) and not rs.beside_of(None)


def test_wait_done_takes_an_arrival_or_a_done_marker_for_the_stage_beside(tmp_path):
    run = rs.RunDir(tmp_path).ensure()
    clock = {"t": 0.0}

    def sleep(s):
        clock["t"] += s
        if clock["t"] >= 2:
            run.mark_arrived("t::test_s13")  # reaches its barrier at 2 s
        if clock["t"] >= 3:
            run.mark_done("t::test_s16")  # failed before its barrier: done at 3 s

    waited = rs.wait_done(run, set(), 10, clock=lambda: clock["t"], sleep=sleep, arrived={"t::test_s13", "t::test_s16"})
    assert waited == 3.0
    with pytest.raises(rs.BarrierTimeout):
        rs.wait_done(run, set(), 1, clock=lambda: clock["t"], sleep=sleep, arrived={"t::test_s14"})


def test_outcomes():
    def o(**phases):
        out = rs.Outcome("t::test_s01_x")
        for when, res in phases.items():
            out.add(when, res, 1.0)
        return out

    assert o(setup="passed", call="passed", teardown="passed").result == "passed"
    assert o(setup="passed", call="failed", teardown="passed").result == "failed"
    assert o(setup="failed", teardown="passed").result == "error"
    assert o(setup="passed", call="passed", teardown="failed").result == "error"
    assert o(setup="passed", call="failed", teardown="failed").result == "failed"
    assert o(setup="skipped", teardown="passed").result == "skipped"
    assert o(setup="passed").result == "error"  # never reached a verdict
    assert o(setup="passed", call="passed", teardown="passed").seconds == 3.0


def test_rows_and_table():
    outs = []
    for nodeid, res in [("tests/k8s/test_signals.py::test_s13_no_defunct", "passed"),
                        ("tests/k8s/test_lifecycle.py::test_s01_echo_stdout", "failed"),
                        ("tests/k8s/test_node_fs.py::test_s26_overlay_sharing", "skipped")]:
        o = rs.Outcome(nodeid)
        o.add("call" if res != "skipped" else "setup", res, 0.5,
              "reaper-only" if res == "skipped" else "")
        outs.append(o)
    rows = rs.rows(outs)
    assert [(r.name, r.result) for r in rows] == [("S01 echo_stdout", "failed"), ("S13 no_defunct", "passed"),
                                                  ("S26 overlay_sharing", "skipped")]
    text = console.table("Phase 4", rows)
    assert "S01 echo_stdout" in text and "1 passed, 1 failed, 1 skipped" in text
    assert rs.skipped_lines(rows) == ["  S26 overlay_sharing: reaper-only"]
    assert rs.skip_detail(("f.py", 3, "Skipped: reaper-only expectation")) == "reaper-only expectation"
    assert rs.row_name("t::helper") == "helper"


def test_step_summary(tmp_path, monkeypatch):
    out = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(out))
    o = rs.Outcome("t::test_s02_exit_code")
    o.add("call", "passed", 1.25)
    console.step_summary("Phase 4", rs.rows([o]), note="- S26: skipped")
    text = out.read_text()
    assert "| `S02 exit_code` | ✅ passed | 1.25s |" in text and "- S26: skipped" in text


def test_verdict_doc_separates_infrastructure_failures():
    def o(nodeid, when, res, infra=False):
        out = rs.Outcome(nodeid)
        out.add("setup", "passed", 0.1)
        out.add(when, res, 0.1, message=f"{nodeid} {when} said so" if res == "failed" else "")
        out.infrastructure = infra
        return out

    doc = rs.verdict_doc([o("t::test_s07_large_output", "call", "failed", infra=True),
                          o("t::test_s02_exit_code", "call", "failed"),
                          o("t::test_s01_echo_stdout", "call", "passed"),
                          o("t::test_s05_working_dir", "teardown", "failed")])
    assert doc == {"passed": ["S01 echo_stdout"], "failed": ["S02 exit_code"], "infrastructure": ["S07 large_output"],
                   "errors": ["S05 working_dir"], "skipped": [],
                   "failures": {"S07 large_output": {"call": "t::test_s07_large_output call said so"},
                                "S02 exit_code": {"call": "t::test_s02_exit_code call said so"},
                                "S05 working_dir": {"teardown": "t::test_s05_working_dir teardown said so"}}}
    assert o("t::test_s07_x", "call", "failed", infra=True).result == "error"


def test_durations_are_kept_per_scenario(tmp_path):
    path = tmp_path / "d" / "reaper.json"
    assert rs.load_durations(path) == {}
    done = rs.Outcome("t::test_s01_echo_stdout")
    done.add("call", "passed", 12.34)
    skipped = rs.Outcome("t::test_s02_exit_code")
    skipped.add("setup", "skipped", 0.1)
    rs.save_durations(path, [done, skipped])
    assert rs.load_durations(path) == {"S01 echo_stdout": 12.3}
    again = rs.Outcome("t::test_s03_x")
    again.add("call", "failed", 40.0)
    rs.save_durations(path, [again])
    assert rs.load_durations(path) == {"S01 echo_stdout": 12.3, "S03 x": 40.0}
    # the longest of the last HISTORY runs orders it: a slow run is remembered until HISTORY faster ones
    for seconds in [5.0] * (rs.HISTORY - 1):
        fast = rs.Outcome("t::test_s03_x")
        fast.add("call", "passed", seconds)
        rs.save_durations(path, [fast])
        assert rs.load_durations(path)["S03 x"] == 40.0
    rs.save_durations(path, [fast])
    assert rs.load_durations(path)["S03 x"] == 5.0


def test_durations_of_an_earlier_version_one_number_each_are_read(tmp_path):
    path = tmp_path / "runc.json"
    path.write_text('{"S01 echo_stdout": 8.3, "S02 exit_code": [1.0, 9.5, 2.0], "bad": "x", "S03 x": [true]}')
    assert rs.load_durations(path) == {"S01 echo_stdout": 8.3, "S02 exit_code": 9.5}


def test_each_worker_starts_one_of_the_longest_with_a_short_one_queued_behind_it():
    ordered = [f"L{i}" for i in range(10)] + ["NW1", "NW2"]  # stage 0 longest first, then node-wide
    got = rs.for_workers(ordered, 10, 3)
    # xdist's load scheduling: worker k gets positions 2k and 2k+1 first
    assert got[:6] == ["L0", "L9", "L1", "L8", "L2", "L7"]
    assert got[6:] == ["L3", "L4", "L5", "L6", "NW1", "NW2"]
    assert sorted(got) == sorted(ordered)
    assert rs.for_workers(ordered, 10, 0) == ordered  # not under xdist
    assert rs.for_workers(ordered, 10, 6) == ordered  # fewer than two per worker: as ordered


def test_a_namespace_marked_live_beside_is_left_with_its_recorded_ids_and_shims():
    entries = [
        {"ns": "run-s41", rs.LIVE_BESIDE: True},
        {"ns": "run-s41", "container_ids": ["c41"], "shims": [{"id": "s41", "sandbox_id": "sb41"}]},
        {"ns": "run-s02", "container_ids": ["c02"], "shims": [{"id": "s02"}]},
        {"ns": "run-s02", "gone_at": 1.0},
    ]
    live = rs.live_beside(iter(entries))
    assert (live.namespaces, live.ids) == ({"run-s41"}, {"c41", "s41", "sb41"})
    shim = lambda ns, i, sb=None: SimpleNamespace(namespace=ns, id=i, sandbox_id=sb)  # noqa: E731
    assert live.holds(shim("run-s41", "x")) and live.holds(shim(None, "s41")) and live.holds(shim(None, "x", "sb41"))
    assert not live.holds(shim("run-s02", "s02")) and not live.holds(shim(None, None))
    assert rs.live_beside([{"ns": "run-s02", "container_ids": ["c02"]}]) == rs.LiveBeside(frozenset(), frozenset())
