"""`python -m ci <command> --help` prints the options and does nothing else."""

from __future__ import annotations

import importlib

import pytest

from ci import __main__ as cli
from ci import usage


@pytest.mark.parametrize("command", sorted(set(cli.COMMANDS) - usage.OWN_HELP))
def test_help_prints_the_options_before_any_work(command, monkeypatch, capsys):
    def no_import(name, *a, **kw):
        raise AssertionError(f"--help must not load {name}")

    monkeypatch.setattr(importlib, "import_module", no_import)
    assert cli.main([command, "--source", "x", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m ci {command} ")
    assert "--runtime VALUE" in out and "REAPER_RUNTIME" in out and "one of auto|reaper|runc" in out


def test_help_after_the_separator_is_pytests(monkeypatch):
    reached = []
    monkeypatch.setattr(importlib, "import_module", lambda name: reached.append(name) or type("M", (), {"main": staticmethod(lambda rest: 0)}))
    assert cli.main(["k8s", "--", "--help"]) == 0
    assert reached == ["ci.phases.k8s"]


@pytest.mark.parametrize("command,env,default", [("conformance", "REAPER_CONFORMANCE_PARALLEL", "4"),
                                                 ("critest", "-", "1")])
def test_a_commands_own_options_are_in_its_help_as_its_parser_reads_them(command, env, default, capsys):
    assert cli.main([command, "-h"]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines()]
    assert ["--parallel", "VALUE", env, "default", default] in rows and ["--focus", "VALUE", "-"] in rows


def test_a_command_with_its_own_help_prints_it(capsys):
    assert cli.main(["phase1", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m ci phase1") and "-k integration_io" in out and "--test-threads N" in out
