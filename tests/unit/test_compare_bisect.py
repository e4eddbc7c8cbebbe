"""compare and bisect: classifying base -> head, judging a bisect step, commits as worktrees."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ci import revisions
from ci.errors import UsageError
from ci.phases import bisect, compare


def doc(passed=(), failed=(), failures=None, skipped=()):
    return {"passed": list(passed), "failed": list(failed), "errors": [], "infrastructure": [],
            "skipped": list(skipped), "failures": failures or {}}


def test_classify_regressions_fixes_flaky_unchanged():
    base = compare.outcomes([doc(passed=["S01 a", "S02 b", "S04 d"], failed=["S03 c", "S05 e"]),
                             doc(passed=["S01 a", "S02 b"], failed=["S03 c", "S04 d", "S05 e"])])
    head = compare.outcomes([doc(passed=["S01 a", "S03 c"], failed=["S02 b", "S04 d", "S05 e"],
                                 failures={"S02 b": {"call": "AssertionError: broke"}}),
                             doc(passed=["S01 a", "S03 c"], failed=["S02 b", "S04 d", "S05 e"],
                                 failures={"S02 b": {"call": "AssertionError: broke"}})])
    got = {c.scenario: (c.kind, c.base, c.head, c.detail) for c in compare.classify(base, head)}
    assert got == {"S02 b": ("regression", "pass", "FAIL", "call: AssertionError: broke"),
                   "S03 c": ("fix", "FAIL", "pass", ""),
                   "S04 d": ("flaky", "1/2 pass", "FAIL", ""),
                   "S05 e": ("unchanged", "FAIL", "FAIL", ""),
                   "S01 a": ("unchanged", "pass", "pass", "")}
    order = [c.scenario for c in compare.classify(base, head)]
    assert order[:3] == ["S02 b", "S03 c", "S04 d"]


def test_report_files_and_exit_facts(tmp_path):
    changes = compare.classify(compare.outcomes([doc(passed=["S01 a"])]),
                               compare.outcomes([doc(failed=["S01 a"], failures={"S01 a": {"call": "x"}})]))
    text = compare.report(changes, "a" * 40, "b" * 40, tmp_path, {"base": 10, "head": 12, "builds": 3, "total": 30})
    assert "S01 a     regression" in text and "1 regression(s), 0 fix(es)" in text
    assert (tmp_path / "compare.json").is_file() and (tmp_path / "compare.txt").read_text() == text + "\n"


def test_bisect_judges_a_step_by_what_the_scenario_asserts():
    assert bisect.judge([doc(passed=["S31 x"])]) == ("good", "")
    assert bisect.judge([doc(failed=["S31 x"], failures={"S31 x": {"call": "exit 1"}})]) == ("bad", "S31 x: exit 1")
    leak = {"passed": [], "failed": [], "errors": ["S31 x"], "failures": {"S31 x": {"teardown": "left its mark"}}}
    assert bisect.judge([leak]) == ("good", "S31 x failed at teardown only (not judged)")
    assert bisect.judge([doc(skipped=["S31 x"])]) == ("skip", "no selected scenario ran")


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    r.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(r), *a], check=True, capture_output=True, text=True).stdout
    run("init", "-q")
    run("config", "user.email", "t@t")
    run("config", "user.name", "t")
    for i in (1, 2):
        (r / "f").write_text(str(i))
        run("add", "f")
        run("commit", "-qm", f"commit {i}")
    return r, run


def test_revisions_resolve_checkout_and_clean(repo, tmp_path):
    r, run = repo
    head = run("rev-parse", "HEAD").strip()
    first = revisions.resolve(r, "HEAD~1", "--base")
    assert revisions.resolve(r, "HEAD", "--head") == head and first != head
    assert revisions.subject(r, first) == "commit 1"
    with pytest.raises(UsageError, match="--base nope: no such commit"):
        revisions.resolve(r, "nope", "--base")
    with pytest.raises(UsageError, match="not a git repository"):
        revisions.resolve(tmp_path, "HEAD", "--base")
    tree = revisions.checkout(r, first, tmp_path / "cache")
    assert (tree / "f").read_text() == "1" and revisions.clean(tree)
    (tree / "f").write_text("changed")
    assert not revisions.clean(tree)
    again = revisions.checkout(r, first, tmp_path / "cache")
    assert again == tree and (tree / "f").read_text() == "1" and revisions.clean(tree)
    assert run("status", "--porcelain") == ""  # the user's own checkout is untouched
