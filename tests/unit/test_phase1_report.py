"""Phase 1 reporting: JUnit per Rust test case, the one-line verdict, GitHub Actions output."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ci import phase1_report
from ci.cargo import Step
from ci.cargo_libtest import Case, TargetResult
from ci.phase1_report import Verdict


def result(target="integration_io", cases=(), exit_code=0, **kw) -> TargetResult:
    return TargetResult(target, "reaper", "test", ["/t/x", "--format", "json"], "/w", exit_code=exit_code,
                        seconds=1.5, cases=list(cases), **kw)


PASSING = result("integration_exec", [Case("runs", "passed", 0.25), Case("slow", "ignored", message="needs root")])
FAILING = result("integration_io", [
    Case("reads_stdout", "passed", 0.5),
    Case("fifo_closes", "failed", 1.25, output="thread 'fifo_closes' panicked at tests/io.rs:7:5:\nboom \x1b[31mred\x1b[0m\n",
         message="boom", file="tests/io.rs", line=7),
], exit_code=101)
STEPS = [Step("cargo fmt --check", True, 0.1), Step("cargo clippy -D warnings", False, 2.0,
                                                      "error: unused variable at src/x.rs:3:9", "full clippy text",
                                                      "src/x.rs", 3)]


def parse(v: Verdict) -> ET.Element:
    from junit_xml import to_xml_report_string

    return ET.fromstring(to_xml_report_string(phase1_report.suites(v)))


def test_junit_per_rust_test_case():
    root = parse(Verdict(STEPS, [PASSING, FAILING], [], []))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"phase1.steps", "integration_exec", "integration_io"}
    io = {c.get("name"): c for c in suites["integration_io"].iter("testcase")}
    assert io["reads_stdout"].get("time") == "0.500000" and io["reads_stdout"].find("failure") is None
    fail = io["fifo_closes"].find("failure")
    assert fail.get("message") == "boom"
    assert "panicked at tests/io.rs:7:5" in fail.text and "\x1b" not in fail.text and "boom red" in fail.text
    assert io["fifo_closes"].get("classname") == "integration_io"
    assert io["fifo_closes"].get("file") == "tests/io.rs" and io["fifo_closes"].get("line") == "7"
    ex = {c.get("name"): c for c in suites["integration_exec"].iter("testcase")}
    assert ex["slow"].find("skipped").get("message") == "needs root"
    props = {p.get("name"): p.get("value") for p in suites["integration_io"].iter("property")}
    assert props["exit"] == "101" and props["package"] == "reaper"
    steps = {c.get("name"): c for c in suites["phase1.steps"].iter("testcase")}
    assert steps["cargo fmt --check"].find("failure") is None
    assert steps["cargo clippy -D warnings"].find("failure").get("message") == "error: unused variable at src/x.rs:3:9"
    assert root.get("failures") == "2" and root.get("tests") == "6"


def test_missing_and_not_run_are_errors():
    root = parse(Verdict([], [], ["integration_exec"], [("integration_io", "its run was interrupted")]))
    (suite,) = root.iter("testsuite")
    assert suite.get("name") == "phase1.required" and suite.get("errors") == "2"
    msgs = [c.find("error").get("message") for c in suite.iter("testcase")]
    assert msgs == ["required cargo test target 'integration_exec' is missing",
                    "integration_io was not run: its run was interrupted"]


def test_verdict_and_headline(tmp_path):
    v = Verdict(STEPS, [PASSING, FAILING], ["integration_exec"], [])
    assert not v.ok
    assert v.failed_tests == ["integration_io::fifo_closes"]
    line = v.headline(tmp_path)
    assert "\n" not in line
    assert line.startswith("1 Rust test(s) failed: integration_io::fifo_closes; "
                           "required cargo test target(s) missing: integration_exec; "
                           "cargo clippy -D warnings failed: error: unused variable at src/x.rs:3:9")
    assert str(tmp_path / "phase1-junit.xml") in line
    assert Verdict([Step("cargo test --no-run", True, 1.0)], [PASSING], [], []).ok


def test_headline_caps_the_list():
    many = result("t", [Case(f"c{i}", "failed", message="x") for i in range(15)], exit_code=101)
    line = Verdict([], [many], [], []).headline(limit=3)
    assert line == "15 Rust test(s) failed: t::c0, t::c1, t::c2 and 12 more"


def test_a_nonzero_exit_without_cases_is_not_ok():
    r = result("t", [], exit_code=101)
    assert not r.ok  # the runner also adds an error case; the result alone must not read as green


def test_table_counts():
    text = phase1_report.table(Verdict(STEPS, [PASSING, FAILING], ["integration_exec"], []))
    rows = [l.split() for l in text.splitlines()]
    assert ["integration_io", "failed", "1", "1", "0", "1.5s"] in rows
    assert ["integration_exec", "passed", "1", "0", "1", "1.5s"] in rows
    assert ["integration_exec", "missing"] in rows
    assert ["cargo", "clippy", "-D", "warnings", "failed", "2.0s"] in rows
    assert "Rust tests: 2 passed, 1 failed, 1 ignored in 2 target(s)" in text
    assert "  integration_io::fifo_closes" in text


def test_github_annotations_and_step_summary(tmp_path, monkeypatch, capsys):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    v = Verdict(STEPS, [PASSING, FAILING], ["integration_exec"], [])
    phase1_report.annotate(v)
    phase1_report.step_summary(v)
    out = capsys.readouterr().out.splitlines()
    assert "::error file=tests/io.rs,line=7,title=integration_io%3A%3Afifo_closes::boom" in out
    assert "::error file=src/x.rs,line=3,title=cargo clippy -D warnings::error: unused variable at src/x.rs:3:9" in out
    assert any("required cargo test target 'integration_exec' is missing" in l for l in out)
    md = summary.read_text()
    assert "| `integration_io` | ❌ failed | 1 | 1 | 0 | 1.5s |" in md
    assert "| `integration_exec` | 💥 missing (required) | | | | |" in md
    assert "- `integration_io::fifo_closes`" in md


def test_no_github_output_outside_actions(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    v = Verdict(STEPS, [FAILING], [], [])
    phase1_report.annotate(v)
    phase1_report.step_summary(v)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("raw, clean", [("\x1b[31mred\x1b[0m", "red"), ("a\x00b\x07c", "abc"), ("tab\tok\n", "tab\tok\n")])
def test_clean_for_xml(raw, clean):
    assert phase1_report.clean(raw) == clean


def test_targets_cargo_did_not_build_are_skipped_not_failed():
    v = Verdict([], [PASSING], [], [], [("reaper-agent", "not built: needs feature(s) agent")])
    assert v.ok
    suites = {s.get("name"): s for s in parse(v).iter("testsuite")}
    (case,) = suites["reaper-agent"].iter("testcase")
    assert case.find("skipped").get("message") == "not built: needs feature(s) agent"
    assert ["reaper-agent", "(not", "built:", "needs", "feature(s)", "agent)", "skipped"] in [
        l.split() for l in phase1_report.table(v).splitlines()]


def test_processes_that_outlive_every_target_are_a_finding():
    ok = Verdict([], [TargetResult("t", "p", "test", [], "/w", cases=[Case("a", "passed", 0.1)], exit_code=0)], [], [])
    assert ok.ok and not ok.leaks
    strays = Verdict(ok.steps, ok.results, [], [], [], ["4242 /w/target/debug/reaper-runtime start x --bundle /tmp/b"])
    assert not strays.ok
    assert strays.leaks == [("phase1 (after every target ended)",
                             ["process 4242 /w/target/debug/reaper-runtime start x --bundle /tmp/b (ended by Phase 1)"])]


def test_phase1_ends_the_workspace_processes_its_targets_left(tmp_path, monkeypatch):
    from ci.phases import phase1

    ended = []
    monkeypatch.setattr(phase1, "processes_under", lambda root: {1: "old", 2: "new daemon"})
    monkeypatch.setattr(phase1, "terminate", lambda pids: ended.extend(pids))
    assert phase1._end_strays(tmp_path, {1: "old"}) == ["2 new daemon"] and ended == [2]
    assert phase1._end_strays(tmp_path, {1: "old", 2: "new daemon"}) == [] and ended == [2]
