"""Phase 4 driver (ci/phases/scenarios.py): the pytest command line and pytest's exit code -> verdict."""

from __future__ import annotations

import pytest

from ci.errors import CIError, SetupError, UsageError
from ci.phases import scenarios as sc


def test_default_command_line(tmp_path):
    argv = sc.pytest_argv([], tmp_path / "k8s-junit.xml")
    assert argv[0] == str(sc.SUITE)
    assert f"--junitxml={tmp_path / 'k8s-junit.xml'}" in argv
    assert argv[argv.index("-n") + 1] == "auto"


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
        sc.verdict(sc.SETUP_EXIT, "setup error: the API server at x does not answer\n", j)
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
