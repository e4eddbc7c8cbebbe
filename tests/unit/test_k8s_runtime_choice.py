"""Under CI=true, ``--runtime auto`` that resolves to runc without being asked for is an error,
raised in one line before any side effect (no artifacts folder, no provisioner, no cluster)."""

from __future__ import annotations

import pytest

from ci import __main__ as cli
from ci.config import parse
from ci.errors import UsageError
from ci.phases import k8s


class Reached(Exception):
    pass


@pytest.fixture
def no_cluster(monkeypatch):
    """Fails the test with Reached when the phase gets as far as choosing a provisioner."""
    def get_provisioner(cfg):
        raise Reached(cfg.runtime)

    monkeypatch.setattr(k8s, "get_provisioner", get_provisioner)
    from ci.phases import cluster

    monkeypatch.setattr(cluster, "get_provisioner", get_provisioner)


def _cfg(tmp_path, env, *argv):
    return parse(["--artifacts", str(tmp_path / "artifacts"), *argv], env, cwd=tmp_path)


def test_ci_auto_without_a_workspace_is_an_error_before_any_side_effect(tmp_path, no_cluster):
    cfg = _cfg(tmp_path, {"CI": "true"})
    with pytest.raises(UsageError) as e:
        k8s.run(cfg)
    msg = str(e.value)
    assert "CI=true" in msg and "runc" in msg and "--runtime reaper" in msg and "\n" not in msg
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize("env, argv", [
    ({"CI": "true"}, ("--runtime", "runc")),  # asked for: the reference runtime on purpose
    ({"CI": "true", "REAPER_RUNTIME": "runc"}, ()),
    ({}, ()),  # a laptop: auto -> runc is the documented default
])
def test_runc_asked_for_or_outside_ci_goes_on(tmp_path, no_cluster, env, argv):
    with pytest.raises(Reached):
        k8s.run(_cfg(tmp_path, env, *argv))


def test_ci_auto_with_a_workspace_resolves_to_reaper_and_goes_on(tmp_path, no_cluster):
    (tmp_path / "Cargo.toml").write_text("[workspace]\n")
    cfg = _cfg(tmp_path, {"CI": "true"})
    assert cfg.source == tmp_path.resolve()
    with pytest.raises(Reached):
        k8s.run(cfg)


@pytest.mark.parametrize("command", [["k8s"], ["cluster", "up"], ["ci"]])
def test_command_line_exits_with_one_line(tmp_path, monkeypatch, capsys, no_cluster, command):
    monkeypatch.chdir(tmp_path)
    for var in ("REAPER_SOURCE", "REAPER_RUNTIME", "CI_ARTIFACTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CI", "true")
    rc = cli.main(command)
    err = [ln for ln in capsys.readouterr().err.splitlines() if "CI=true" in ln]
    assert rc in (1, 2) and len(err) >= 1
    assert not (tmp_path / "artifacts" / "cluster.json").exists()


def test_cluster_down_is_not_blocked(tmp_path, monkeypatch, no_cluster):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("REAPER_SOURCE", raising=False)
    from ci.phases import cluster

    with pytest.raises(Reached):
        cluster.main(["down", "--state-dir", str(tmp_path / "state")])
