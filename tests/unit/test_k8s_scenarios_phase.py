"""Phase 4 driver (ci/phases/scenarios.py): the pytest command line and pytest's exit code -> verdict."""

from __future__ import annotations

import pytest

from ci.errors import CIError, SetupError, UsageError
from ci.phases import scenarios as sc


def test_default_command_line(tmp_path):
    argv = sc.pytest_argv([], tmp_path / "k8s-junit.xml")
    assert argv[0] == str(sc.SUITE)
    assert f"--junitxml={tmp_path / 'k8s-junit.xml'}" in argv
    assert argv[argv.index("-n") + 1] == sc.DEFAULT_WORKERS == "12"


@pytest.mark.parametrize("args", [["-n", "4"], ["-n4"], ["--numprocesses=2"], ["-p", "no:xdist"], ["--dist", "load"]])
def test_user_parallelism_wins(tmp_path, args):
    argv = sc.pytest_argv(args, tmp_path / "j.xml")
    assert argv.count("-n") == (1 if "-n" in args else 0)
    assert argv[-len(args):] == args


def test_workers_setting_and_passthrough(tmp_path):
    argv = sc.pytest_argv(["-k", "s11", "-x"], tmp_path / "j.xml", workers="3")
    assert argv[argv.index("-n") + 1] == "3" and argv[-3:] == ["-k", "s11", "-x"]
    assert "-n" not in sc.pytest_argv([], tmp_path / "j.xml", workers="0")


def test_verdicts(tmp_path):
    j = tmp_path / "j.xml"
    assert sc.verdict(0, None, j) == 0
    assert sc.verdict(1, None, j) == 1
    with pytest.raises(SetupError, match="not a product failure.*API server"):
        sc.verdict(sc.SUITE_EXIT_SETUP, "setup error: the API server at x does not answer\n", j)
    with pytest.raises(CIError, match="no scenario was collected"):
        sc.verdict(5, None, j)
    with pytest.raises(CIError, match="interrupted"):
        sc.verdict(2, None, j)
    with pytest.raises(UsageError):
        sc.verdict(4, None, j)
    with pytest.raises(CIError, match="internal error"):
        sc.verdict(3, None, j)


def test_tokens():
    import re

    assert all(re.match(r"^[a-z][a-z0-9]{5}$", sc.new_token()) for _ in range(50))


def test_only_infrastructure_failures_are_a_setup_error(tmp_path):
    j = tmp_path / "j.xml"
    doc = {"passed": ["S01 echo_stdout"], "failed": [], "errors": [], "infrastructure": ["S07 large_output"]}
    with pytest.raises(SetupError, match="not a product failure.*S07 large_output"):
        sc.verdict(1, None, j, doc)
    mixed = dict(doc, failed=["S02 exit_code"])
    assert sc.verdict(1, None, j, mixed) == 1
    assert sc.verdict(1, None, j, None) == 1


def _once(token, rc, doc, seconds=10.0):
    return sc.Once(token=token, rc=rc, doc=doc, setup_line=None, junit=sc.Path("j.xml"), seconds=seconds)


def test_repeat_table_counts_flaky_and_always_failing():
    green = {"passed": ["S01 echo_stdout", "S02 exit_code"], "failed": [], "errors": [], "infrastructure": [],
             "skipped": ["S26 overlay_sharing"]}
    flake = dict(green, passed=["S01 echo_stdout"], failed=["S02 exit_code"])
    text, doc = sc.repeat_table([_once("a", 0, green), _once("b", 1, flake), _once("c", 0, green)])
    rows = {l.split("  ")[0].strip(): l.split()[-4:] for l in text.splitlines()[2:-1]}
    assert rows["S01 echo_stdout"] == ["3", "0", "0", "0"]
    assert rows["S02 exit_code"] == ["2", "1", "0", "0"]
    assert rows["S26 overlay_sharing"] == ["0", "0", "0", "3"]
    assert doc["flaky"] == ["S02 exit_code"] and doc["failing"] == []
    assert text.splitlines()[-1] == ("3 run(s): 2 all green; 1 flaky scenario(s) (S02 exit_code); 0 failing in every run; "
                                     "0 infrastructure error(s)")


def test_repeat_table_names_runs_without_a_verdict_and_constant_failures():
    bad = {"passed": [], "failed": ["S03 command_not_found"], "errors": [], "infrastructure": [], "skipped": []}
    text, doc = sc.repeat_table([_once("a", 1, bad), _once("b", 2, None)])
    assert doc["failing"] == ["S03 command_not_found"]
    assert "1 run(s) without a verdict (b)" in text.splitlines()[-1]


def test_repeated_exit_status(tmp_path, monkeypatch):
    from ci.config import parse

    cfg = parse(["--repeat", "3", "--artifacts", str(tmp_path)], env={}, cwd=tmp_path)
    ok = {"passed": ["S01 echo_stdout"], "failed": [], "errors": [], "infrastructure": [], "skipped": []}
    seen = []

    def fake_once(sub, info, token):
        seen.append((sub.artifacts, token))
        return _once(token, 0, ok)

    monkeypatch.setattr(sc, "_run_once", fake_once)
    assert sc.run_repeated(cfg, tmp_path / "cluster.json") == 0
    assert [a.name for a, _ in seen] == ["run-01", "run-02", "run-03"]
    assert len({t for _, t in seen}) == 3, "each run needs its own token"
    assert "3 run(s): 3 all green; 0 flaky" in (tmp_path / "k8s-repeat-summary.txt").read_text()
    bad = dict(ok, passed=[], failed=["S01 echo_stdout"])
    results = iter([(0, ok), (1, bad), (0, ok)])
    monkeypatch.setattr(sc, "_run_once", lambda sub, info, token: _once(token, *next(results)))
    assert sc.run_repeated(cfg, tmp_path / "cluster.json") == 1


def test_repeat_counts_infrastructure_errors_and_goes_on(tmp_path, monkeypatch):
    from ci.config import parse

    cfg = parse(["--repeat", "3", "--artifacts", str(tmp_path)], env={}, cwd=tmp_path)
    ok = {"passed": ["S01 echo_stdout", "S07 large_output"], "failed": [], "errors": [], "infrastructure": [], "skipped": []}
    infra = dict(ok, passed=["S01 echo_stdout"], infrastructure=["S07 large_output"])
    docs = iter([(1, infra), (0, ok), (1, infra)])

    def fake_once(sub, info, token):
        rc, doc = next(docs)
        return _once(token, rc, doc)

    monkeypatch.setattr(sc, "_run_once", fake_once)
    with pytest.raises(SetupError, match="every failure in the 3 runs was blamed on the cluster"):
        sc.run_repeated(cfg, tmp_path / "cluster.json")
    summary = (tmp_path / "k8s-repeat-summary.txt").read_text()
    assert summary.splitlines()[-1].endswith("2 infrastructure error(s) (S07 large_output x2)")
    assert "1 all green" in summary


def test_repeat_stops_at_a_setup_error(tmp_path, monkeypatch):
    from ci.config import parse

    cfg = parse(["--repeat", "5", "--artifacts", str(tmp_path)], env={}, cwd=tmp_path)
    calls = []

    def fake_once(sub, info, token):
        calls.append(token)
        return sc.Once(token, sc.SUITE_EXIT_SETUP, None, "setup error: API server gone", sc.Path("j"), 1.0)

    monkeypatch.setattr(sc, "_run_once", fake_once)
    with pytest.raises(SetupError, match="API server gone"):
        sc.run_repeated(cfg, tmp_path / "cluster.json")
    assert len(calls) == 1


def test_default_workers_follow_the_runtimes_median_duration(tmp_path):
    f = tmp_path / "reaper.json"
    assert sc.default_workers(None)[0] == sc.default_workers(f)[0] == sc.DEFAULT_WORKERS  # no history yet
    f.write_text("not json")
    assert sc.default_workers(f) == (sc.DEFAULT_WORKERS, "no durations measured on this runtime yet")
    # the latest duration of each scenario counts (lists: the last HISTORY runs; a number: the old format)
    f.write_text('{"S01 a": [30.0, 4.0], "S02 b": 5.0, "S03 c": [60.0], "S04 d": [true], "S05 e": []}')
    assert sc.default_workers(f) == (sc.DEFAULT_WORKERS, "median scenario 5.0s last time on this runtime")
    f.write_text('{"S01 a": [4.0, 13.9], "S02 b": [14.1], "S03 c": [14.0], "S04 d": [2.0]}')
    assert sc.default_workers(f)[0] == sc.DEFAULT_WORKERS  # median 13.95
    f.write_text('{"S01 a": [18.0], "S02 b": [14.0], "S03 c": [23.0]}')
    workers, why = sc.default_workers(f)
    assert workers == sc.WAITING_WORKERS == "16"
    assert why == "its scenarios mostly wait: median 18.0s last time on this runtime, >= 14s"


def test_run_uses_the_workers_env_over_the_history(tmp_path, monkeypatch):
    seen = {}

    def fake_run(tool, *argv, **kw):
        seen["argv"] = argv
        raise RuntimeError("stop here")

    cfg = type("C", (), {"artifacts": tmp_path / "a", "pytest_args": [], "cache_dir": tmp_path / "cache"})()
    info = tmp_path / "cluster.json"
    info.write_text('{"runtime": "reaper"}')
    (tmp_path / "cache" / "k8s-durations").mkdir(parents=True)
    (tmp_path / "cache" / "k8s-durations" / "reaper.json").write_text('{"S01 a": [20.0]}')
    import ci.tools
    monkeypatch.setattr(ci.tools, "run", fake_run)
    for env, want in ((None, "16"), ("5", "5")):
        if env:
            monkeypatch.setenv(sc.WORKERS_ENV, env)
        else:
            monkeypatch.delenv(sc.WORKERS_ENV, raising=False)
        with pytest.raises(RuntimeError):
            sc._run_once(cfg, info, "abcdef")
        assert seen["argv"][seen["argv"].index("-n") + 1] == want


def test_cluster_logs_are_kept_for_any_failure_of_this_run_listed_or_not(tmp_path):
    import os

    from ci.phases import k8s

    assert not k8s.any_failure(tmp_path)  # no run
    green = tmp_path / "k8s-run" / "aaaaaa" / "verdict.json"
    green.parent.mkdir(parents=True)
    green.write_text('{"passed": ["S01 a"], "failed": [], "errors": [], "infrastructure": [], "skipped": []}')
    assert not k8s.any_failure(tmp_path)
    listed = tmp_path / "k8s-repeat" / "run-02" / "k8s-run" / "bbbbbb" / "verdict.json"
    listed.parent.mkdir(parents=True)
    listed.write_text('{"passed": [], "failed": ["S05 b"], "errors": [], "infrastructure": []}')
    assert k8s.any_failure(tmp_path)
    os.utime(listed, (1000.0, 1000.0))  # an earlier invocation's run in the same artifacts folder
    assert not k8s.any_failure(tmp_path, since=2000.0)
    green.write_text("{not json")
    assert k8s.any_failure(tmp_path, since=0.0)
