"""Expected outcomes: reading the file (one-line errors) and judging the suite's verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci import expect as e
from ci.errors import UsageError

SCEN = {"S01": "S01 echo_stdout", "S02": "S02 exit_code", "S31": "S31 killed_by_a_signal", "S43": "S43 state"}


def load(tmp_path: Path, text: str) -> e.Expectations:
    f = tmp_path / "exp.yaml"
    f.write_text(text)
    return e.load(f, SCEN)


def doc(passed=(), failed=(), errors=(), infra=(), skipped=(), failures=None):
    return {"passed": list(passed), "failed": list(failed), "errors": list(errors), "infrastructure": list(infra),
            "skipped": list(skipped), "failures": failures or {}}


def test_the_suite_names_its_scenarios():
    found = e.suite_scenarios()
    assert found["S01"] == "S01 echo_stdout" and "S31" in found and len(found) >= 58


@pytest.mark.parametrize("text, needle", [
    ("- scenario: S01\n  reason: x\n- [", "not valid YAML at line"),
    ("scenario: S01", "expected a YAML list"),
    ("- 3", "entry 1 is not a mapping"),
    ("- reason: x", "entry 1 names no scenario"),
    ("- scenario: S99\n  reason: x", "entry 1: no scenario S99 in the suite"),
    ("- scenario: S01", "entry 1 (S01) has no reason"),
    ("- scenario: S01\n  reason: x\n  phase: later", "phase 'later' is not one of"),
    ("- scenario: S01\n  reason: x\n  match: '('", "match is not a regex"),
    ("- scenario: S01\n  reason: x\n  flaky: sometimes", "flaky must be true or false"),
    ("- scenario: S01\n  reason: x\n  why: y", "unknown key(s) why"),
    ("- scenario: S01\n  reason: x\n- scenario: s01\n  reason: y", "S01 is listed twice"),
    ("- scenario: '*'\n  reason: x\n  match: m", "needs flaky: true and a match"),
    ("- scenario: '*'\n  reason: x\n  flaky: true", "needs flaky: true and a match"),
])
def test_bad_files_are_one_line_usage_errors(tmp_path, text, needle):
    with pytest.raises(UsageError) as err:
        load(tmp_path, text)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read it"):
        e.load(tmp_path / "nope.yaml", SCEN)


def test_verdicts_known_new_fixed_and_otherwise(tmp_path):
    exp = load(tmp_path, """
- scenario: S02
  phase: call
  match: 'exit code: expected 3'
  reason: 'bug A (main.rs:10)'
- scenario: S31
  reason: 'bug B'
- scenario: S43
  reason: 'bug C'
""")
    d = doc(passed=["S01 echo_stdout", "S31 killed_by_a_signal"], failed=["S02 exit_code"], errors=["S43 state"],
            failures={"S02 exit_code": {"call": "AssertionError: exit code: expected 3, got 1"},
                      "S43 state": {"teardown": "leak: shim left"}})
    rows = {j.scenario: j for j in e.judge([d], exp)}
    assert rows["S02 exit_code"].verdict == "known" and rows["S02 exit_code"].detail == "bug A (main.rs:10)"
    assert rows["S31 killed_by_a_signal"].verdict == "fixed"
    assert rows["S43 state"].verdict == "known"  # no phase or match given: any failure
    assert rows["S01 echo_stdout"].verdict == "passed"
    assert not e.gate_ok(rows.values())
    # the same failure in another phase, or with another message, is new
    d2 = doc(passed=["S01 echo_stdout"], failed=["S02 exit_code", "S31 killed_by_a_signal", "S43 state"],
             failures={"S02 exit_code": {"teardown": "exit code: expected 3"},
                       "S31 killed_by_a_signal": {"call": "x"}, "S43 state": {"call": "y"}})
    rows = {j.scenario: j for j in e.judge([d2], exp)}
    assert rows["S02 exit_code"].verdict == "new" and "listed: call matching" in rows["S02 exit_code"].detail
    assert rows["S31 killed_by_a_signal"].verdict == "known" and rows["S43 state"].verdict == "known"
    d3 = doc(passed=["S31 killed_by_a_signal"], failed=["S01 echo_stdout", "S02 exit_code", "S43 state"],
             failures={"S01 echo_stdout": {"call": "boom"}, "S02 exit_code": {"call": "exit code: expected 3, got 1"},
                       "S43 state": {"call": "y"}})
    rows = e.judge([d3], exp)
    assert [(j.scenario, j.verdict) for j in rows][:2] == [("S01 echo_stdout", "new"), ("S31 killed_by_a_signal", "fixed")]
    assert rows[0].detail == "call: boom"


def test_only_known_failures_pass_the_gate(tmp_path):
    exp = load(tmp_path, "- scenario: S02\n  reason: bug A\n")
    rows = e.judge([doc(passed=["S01 echo_stdout"], failed=["S02 exit_code"],
                        failures={"S02 exit_code": {"call": "x"}})], exp)
    assert e.gate_ok(rows) and [j.verdict for j in rows] == ["known", "passed"]


def test_flaky_entries_and_repeats(tmp_path):
    exp = load(tmp_path, "- scenario: S43\n  reason: state race\n  flaky: true\n  match: 'ended 255'\n")
    runs = [doc(passed=["S43 state", "S01 echo_stdout"]),
            doc(failed=["S43 state"], passed=["S01 echo_stdout"], failures={"S43 state": {"call": "c ended 255 at start"}}),
            doc(passed=["S43 state"], failed=["S01 echo_stdout"], failures={"S01 echo_stdout": {"call": "no output"}})]
    rows = {j.scenario: j for j in e.judge(runs, exp)}
    assert rows["S43 state"].verdict == "flaky" and rows["S43 state"].rate == "failed 1 of 3"
    assert rows["S01 echo_stdout"].verdict == "new" and "flaky, not listed" in rows["S01 echo_stdout"].detail
    # a listed flaky scenario failing another way is not hidden
    other = e.judge([doc(failed=["S43 state"], failures={"S43 state": {"call": "exec output swapped"}})], exp)
    assert other[0].verdict == "new"
    assert e.judge([doc(passed=["S43 state"])], exp)[0].verdict == "passed"


def test_listed_but_not_run_and_infrastructure(tmp_path):
    exp = load(tmp_path, "- scenario: S31\n  reason: bug B\n")
    rows = e.judge([doc(passed=["S01 echo_stdout"], infra=["S02 exit_code"])], exp)
    assert [(j.scenario, j.verdict) for j in rows] == [("S02 exit_code", "infrastructure"), ("S31", "skipped"),
                                                       ("S01 echo_stdout", "passed")]
    assert e.gate_ok(rows)


def test_default_path_prefers_the_commit(tmp_path):
    assert e.default_path("reaper", "abcdef123", tmp_path) is None
    (tmp_path / "expected-reaper.yaml").write_text("[]")
    assert e.default_path("reaper", "abcdef123", tmp_path) == tmp_path / "expected-reaper.yaml"
    (tmp_path / "expected-reaper-abcdef1.yaml").write_text("[]")
    assert e.default_path("reaper", "abcdef123", tmp_path) == tmp_path / "expected-reaper-abcdef1.yaml"
    assert e.default_path("reaper", None, tmp_path) == tmp_path / "expected-reaper.yaml"


def test_report_orders_new_fixed_known(tmp_path):
    exp = load(tmp_path, "- scenario: S02\n  reason: bug A\n- scenario: S31\n  reason: bug B\n")
    rows = e.judge([doc(passed=["S31 killed_by_a_signal"], failed=["S01 echo_stdout", "S02 exit_code"],
                        failures={"S01 echo_stdout": {"call": "boom"}, "S02 exit_code": {"call": "x"}})], exp)
    text = e.report(rows, exp, tmp_path)
    order = [l.split()[1] for l in text.splitlines()[3:6]]
    assert order == ["echo_stdout", "killed_by_a_signal", "exit_code"], text
    assert "Gate: 1 new, 1 fixed, 1 known" in text and (tmp_path / "k8s-gate.json").is_file()


def test_every_failing_phase_must_be_the_listed_one(tmp_path):
    exp = load(tmp_path, "- scenario: S02\n  match: 'left its mark'\n  reason: leak\n")
    both = doc(failed=["S02 exit_code"], failures={"S02 exit_code": {"call": "exit 1", "teardown": "left its mark"}})
    only = doc(failed=["S02 exit_code"], failures={"S02 exit_code": {"teardown": "left its mark"}})
    assert e.judge([both], exp)[0].verdict == "new"  # the call failure is not the listed leak
    assert e.judge([only], exp)[0].verdict == "known"
    exp2 = load(tmp_path, "- scenario: S02\n  match: 'left its mark|exit 1'\n  reason: both\n")
    assert e.judge([both], exp2)[0].verdict == "known"


def test_a_bug_class_listed_for_any_scenario(tmp_path):
    exp = load(tmp_path, """
- scenario: '*'
  phase: teardown
  match: 'left its mark on the node or is unproven \\(mounts at /run/secrets/kubernetes\\.io/serviceaccount\\):'
  reason: 'token mount left (OV:794)'
  flaky: true
- scenario: S31
  phase: call
  match: 'exit 1'
  reason: 'bug B'
""")
    token = "Failed: t left its mark on the node or is unproven (mounts at /run/secrets/kubernetes.io/serviceaccount):"
    other = "Failed: t left its mark on the node or is unproven (mounts at /s05-cwd, /run/secrets/kubernetes.io/serviceaccount):"
    d = doc(passed=["S02 exit_code"], failed=["S01 echo_stdout", "S31 killed_by_a_signal", "S43 state"],
            failures={"S01 echo_stdout": {"teardown": token},
                      "S31 killed_by_a_signal": {"call": "got exit 1", "teardown": token},
                      "S43 state": {"teardown": other}})
    rows = {j.scenario: j for j in e.judge([d], exp)}
    assert rows["S01 echo_stdout"].verdict == "flaky" and "any scenario" in rows["S01 echo_stdout"].detail
    assert rows["S31 killed_by_a_signal"].verdict == "known"  # its own failure, plus the class's
    assert rows["S43 state"].verdict == "new"  # another mount left too: not the class
    assert rows["S02 exit_code"].verdict == "passed"
    assert not e.gate_ok(rows.values())
    d2 = doc(failed=["S01 echo_stdout", "S31 killed_by_a_signal"],
             failures={"S01 echo_stdout": {"call": "boom", "teardown": token}, "S31 killed_by_a_signal": {"teardown": token}})
    rows = {j.scenario: j for j in e.judge([d2], exp)}
    assert rows["S01 echo_stdout"].verdict == "new"  # a failure the class does not describe
    assert rows["S31 killed_by_a_signal"].verdict == "known"


D8 = Path(__file__).resolve().parents[1] / "k8s" / "expected-reaper-d8d19fe.yaml"
LOST = "containerd lost the exit status of container 8d43470885e7: the runtime's task Wait failed ({}), so containerd " \
       "recorded exit 255 and killed the container's processes"


@pytest.mark.parametrize("why, verdict", [
    # seen on S52, 2026-12-05 05:22: the non-atomic state write read through the task's Wait
    ('"Failed to parse state output: EOF while parsing a value at line 1 column 0: unknown"', "flaky"),
    # seen on S32, 2026-12-05 03:54: the ECHILD race
    ('"Failed to execute reaper-runtime state: No child processes (os error 10): unknown"', "flaky"),
    # any other reason a Wait fails is not one of reaper's known races
    ('"ttrpc: closed: unknown"', "new"),
])
def test_d8d19fe_lists_both_of_reapers_state_races_as_lost_exits(why, verdict):
    exp = e.load(D8)
    d = doc(failed=["S52 termination_message"],
            failures={"S52 termination_message": {"call": LOST.format(why) + "\nassert 255 == 0"}})
    row = next(j for j in e.judge([d], exp) if j.scenario == "S52 termination_message")
    assert row.verdict == verdict, row.detail


A8 = Path(__file__).resolve().parents[1] / "k8s" / "expected-reaper.yaml"


@pytest.mark.parametrize("why, verdict", [
    # seen on S31, S43 and S50 in one run of a8a0d28, 2026-12-05: the ECHILD race, beside S31's listed teardown leak
    ('"Failed to execute reaper-runtime state: No child processes (os error 10): unknown"', "known"),
    ('"ttrpc: closed: unknown"', "new"),
])
def test_a8a0d28_lists_the_echild_race_for_any_scenario(why, verdict):
    d = doc(failed=["S31 killed_by_a_signal"],
            failures={"S31 killed_by_a_signal": {"call": LOST.format(why),
                                                 "teardown": "Failed: t left its mark on the node or is unproven (x)"}})
    row = next(j for j in e.judge([d], e.load(A8)) if j.scenario == "S31 killed_by_a_signal")
    assert row.verdict == verdict, row.detail
