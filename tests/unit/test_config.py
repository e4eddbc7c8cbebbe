"""Config parsing: flags, their environment twins, and one-line usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci import config
from ci.errors import UsageError


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "Cargo.toml").write_text("[workspace]\n")
    return tmp_path / "ws"


def parse(argv, env=None, cwd=None):
    return config.parse(argv, env or {}, prog="phase1", cwd=cwd)


def test_defaults(tmp_path):
    cfg = parse([], cwd=tmp_path)
    assert cfg.source is None  # no Cargo.toml in cwd
    assert cfg.artifacts == (tmp_path / "artifacts").resolve()
    assert cfg.required_targets == ("integration_io", "integration_exec")
    assert cfg.lint is True
    assert cfg.target_timeout == config.DEFAULT_TARGET_TIMEOUT
    assert cfg.pytest_args == ()


def test_source_defaults_to_cwd_when_it_is_a_workspace(ws):
    assert parse([], cwd=ws).source == ws.resolve()


def test_source_and_artifacts_flags(ws, tmp_path):
    cfg = parse(["--source", str(ws), "--artifacts", str(tmp_path / "out")], cwd=tmp_path)
    assert cfg.source == ws.resolve()
    assert cfg.artifacts == (tmp_path / "out").resolve()


def test_env_twins(ws, tmp_path):
    env = {"REAPER_SOURCE": str(ws), "CI_ARTIFACTS_DIR": str(tmp_path / "a"), "REAPER_REQUIRED_TARGETS": "x,y",
           "REAPER_NO_LINT": "1", "REAPER_TARGET_TIMEOUT": "90"}
    cfg = parse([], env, cwd=tmp_path)
    assert (cfg.source, cfg.artifacts) == (ws.resolve(), (tmp_path / "a").resolve())
    assert cfg.required_targets == ("x", "y")
    assert cfg.lint is False
    assert cfg.target_timeout == 90.0


def test_flags_override_env(ws, tmp_path):
    env = {"REAPER_REQUIRED_TARGETS": "x,y", "REAPER_TARGET_TIMEOUT": "90"}
    cfg = parse(["--required-targets", "integration_io", "--target-timeout", "5"], env, cwd=tmp_path)
    assert cfg.required_targets == ("integration_io",)
    assert cfg.target_timeout == 5.0


@pytest.mark.parametrize("raw, expected", [
    ("a,b", ("a", "b")),
    (" a , b ,", ("a", "b")),
    ("", ()),  # nothing required
    ("integration_io", ("integration_io",)),
])
def test_required_targets_list(raw, expected, tmp_path):
    assert parse(["--required-targets", raw], cwd=tmp_path).required_targets == expected


@pytest.mark.parametrize("value, lint", [("1", False), ("true", False), ("yes", False), ("0", True), ("", True)])
def test_no_lint_env(value, lint, tmp_path):
    assert parse([], {"REAPER_NO_LINT": value}, cwd=tmp_path).lint is lint


def test_no_lint_flag(tmp_path):
    assert parse(["--no-lint"], cwd=tmp_path).lint is False


@pytest.mark.parametrize("raw, needle", [("soon", "not a number"), ("0", "more than 0"), ("-3", "more than 0")])
def test_bad_target_timeout(raw, needle, tmp_path):
    with pytest.raises(UsageError, match=needle):
        parse(["--target-timeout", raw], cwd=tmp_path)


def test_unknown_args_go_to_pytest(tmp_path):
    cfg = parse(["-k", "integration_io", "-x"], cwd=tmp_path)
    assert cfg.pytest_args == ("-k", "integration_io", "-x")


def test_near_miss_of_our_option_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="did you mean --no-lint"):
        parse(["--no-lnt"], cwd=tmp_path)


@pytest.mark.parametrize("make, needle", [
    (lambda p: p / "absent", "no such directory"),
    (lambda p: p, "no Cargo.toml there"),
])
def test_bad_source(make, needle, tmp_path):
    with pytest.raises(UsageError, match=needle):
        parse(["--source", str(make(tmp_path))], cwd=tmp_path)


def test_source_that_is_a_file(tmp_path):
    f = tmp_path / "Cargo.toml"
    f.write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        parse(["--source", str(f)], cwd=tmp_path)


def test_repeat_flag_and_env(tmp_path):
    assert parse([], env={}, cwd=tmp_path).repeat == 1
    assert parse(["--repeat", "10"], env={}, cwd=tmp_path).repeat == 10
    assert parse([], env={"REAPER_K8S_REPEAT": "4"}, cwd=tmp_path).repeat == 4


@pytest.mark.parametrize("raw,needle", [("0", "1 or more"), ("-2", "1 or more"), ("ten", "not a whole number")])
def test_bad_repeat(raw, needle, tmp_path):
    with pytest.raises(UsageError, match=needle):
        parse(["--repeat", raw], env={}, cwd=tmp_path)


def test_containerd_comes_from_the_bin_dir_when_it_has_it_else_the_cache(tmp_path):
    bins = tmp_path / "bins"
    bins.mkdir()
    cfg = parse(["--cache-dir", str(tmp_path / "c"), "--k8s-bin-dir", str(bins)], env={}, cwd=tmp_path)
    assert cfg.containerd_bin == (tmp_path / "c" / "containerd" / "v1.7.29" / "bin").resolve()
    for b in ("containerd", "containerd-shim-runc-v2", "ctr"):
        (bins / b).write_text("")
    assert cfg.containerd_bin == bins.resolve()
    other = parse(["--containerd-version", "v1.7.30"], env={"REAPER_CI_CACHE": str(tmp_path / "c")}, cwd=tmp_path)
    assert other.containerd_bin == (tmp_path / "c" / "containerd" / "v1.7.30" / "bin").resolve()


def test_builds_land_atomically(tmp_path):
    from ci.cluster import k8s_build

    out = tmp_path / "bin"
    (tmp_path / ".partial-old").mkdir()  # an interrupted earlier build

    def broken(folder):
        (folder / "containerd").write_text("half")
        raise k8s_build.BuildError("compile failed")

    with pytest.raises(k8s_build.BuildError):
        k8s_build._atomically(out, broken)
    assert not out.exists() and not list(tmp_path.glob(".partial-*")), "a failed build must leave nothing"
    k8s_build._atomically(out, lambda folder: (folder / "ctr").write_text("ok"))
    assert (out / "ctr").read_text() == "ok" and not list(tmp_path.glob(".partial-*"))


# --- bad input fails at parse, before anything is started (one line, exit 2) -------------------------

def test_runtime_reaper_without_a_workspace_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--runtime reaper needs a Cargo workspace"):
        config.parse(["--runtime", "reaper"], {}, cwd=tmp_path, prog="k8s")
    with pytest.raises(UsageError, match="REAPER_RUNTIME='gvisor'"):
        parse([], {"REAPER_RUNTIME": "gvisor"}, cwd=tmp_path)


def test_runtime_auto_is_resolved_at_parse(ws, tmp_path):
    assert parse([], {}, cwd=tmp_path).runtime == "runc"
    cfg = parse(["--source", str(ws)], {}, cwd=tmp_path)
    assert (cfg.runtime, cfg.runtime_requested) == ("reaper", "auto")


@pytest.mark.parametrize("flag, value", [("--runtime-class", "Reaper_V2"), ("--runtime-class", "x-"),
                                         ("--cluster-name", "has space"), ("--cluster-name", "a" * 64)])
def test_names_that_kubernetes_or_kind_would_refuse_are_usage_errors(flag, value, tmp_path):
    with pytest.raises(UsageError, match=f"{flag} .*must be a DNS label"):
        parse([flag, value], {}, cwd=tmp_path)


@pytest.mark.parametrize("flag", ["--shim-binary", "--runtime-binary"])
def test_binary_names_are_names_not_paths(flag, tmp_path):
    with pytest.raises(UsageError, match=f"{flag} 'target/release/x'"):
        parse([flag, "target/release/x"], {}, cwd=tmp_path)


def test_every_option_is_in_the_table_once_and_documented_with_its_twin():
    """Options come from one table (flag, environment twin, default): each flag and twin is unique,
    parses, and README.md names both."""
    readme = (config.REPO_ROOT / "README.md").read_text()
    flags = [o.flag for o in config.OPTIONS]
    envs = [o.env for o in config.OPTIONS]
    assert len(set(flags)) == len(flags) and len(set(envs)) == len(envs)
    missing = [f"{o.flag}/{o.env}" for o in config.OPTIONS if o.flag not in readme or o.env not in readme]
    assert not missing, f"options README.md does not document: {missing}"


def test_choice_twins_are_checked_like_flags(tmp_path):
    with pytest.raises(UsageError, match="REAPER_PROVISIONER='docker': expected one of auto, kind, local"):
        parse([], {"REAPER_PROVISIONER": "docker"}, cwd=tmp_path)
