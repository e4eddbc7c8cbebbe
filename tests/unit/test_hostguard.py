"""The host guard's own logic: state variables, the wrapped command, how findings are named."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ci import config
from ci.errors import UsageError
from ci.hostguard import DEFAULT_STATE_ENV, EXEC, HostGuard, parse_state_env


def test_state_env_items_are_relative_paths():
    assert parse_state_env(["A=x", "B=y/z.lock"]) == (("A", "x"), ("B", "y/z.lock"))
    for bad in ("A", "=x", "A=", "A=/abs", "A=../up"):
        with pytest.raises(ValueError, match="expected NAME=relative/path"):
            parse_state_env([bad])


def test_config_defaults_and_one_line_errors():
    cfg = config.parse([], env={})
    assert cfg.private_paths == ("/run/reaper",) and cfg.private_ns
    assert cfg.state_env == parse_state_env(DEFAULT_STATE_ENV)
    assert config.parse(["--private-paths", "", "--no-private-ns"], env={}).private_paths == ()
    assert not config.parse([], env={"REAPER_CI_NO_PRIVATE_NS": "1"}).private_ns
    with pytest.raises(UsageError, match="--private-paths 'run/x': absolute folders below / expected"):
        config.parse(["--private-paths", "run/x"], env={})
    with pytest.raises(UsageError, match="--private-paths '/': absolute folders"):
        config.parse(["--private-paths", "/"], env={})
    with pytest.raises(UsageError, match="--state-env 'X=/abs': expected NAME=relative/path"):
        config.parse(["--state-env", "X=/abs"], env={})


def test_the_namespace_wrapper_and_the_variables(tmp_path):
    guard = HostGuard(("/run/a", "/run/b"), (("VAR_BASE", "overlay"),), namespace=True, unshare="/usr/bin/unshare")
    run = guard.start("integration io")
    try:
        assert run.scratch.name.startswith("reaper-ci-integration_io-")
        cmd = run.wrap(["/bin/test-binary", "--format", "json"])
        assert cmd[:5] == ["/usr/bin/unshare", "--mount", "--propagation", "private", "--"]
        assert cmd[6] == str(EXEC)
        assert cmd[cmd.index("--outer-ns") + 1] == os.readlink("/proc/self/ns/mnt")
        assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--private"] == ["/run/a", "/run/b"]
        assert cmd[-4:] == ["--", "/bin/test-binary", "--format", "json"]
        assert run.env({"PATH": "/bin"}) == {"PATH": "/bin", "VAR_BASE": str(run.scratch / "overlay")}
    finally:
        run.finish()
    assert not run.scratch.exists()


def test_findings_from_the_report_are_named_by_their_variable():
    guard = HostGuard(("/run/a",), (("VAR_BASE", "overlay"), ("VAR_LOCK", "overlay.lock")), namespace=True)
    run = guard.start("t")
    s = str(run.scratch)
    run.report.write_text(json.dumps({"processes": ["42 sleep 100"], "mounts": [f"{s}/overlay.lock (nsfs)"],
                                      "files": ["/run/a/merged/", f"{s}/overlay/upper/", f"{s}/other"]}))
    assert run.finish() == ["process 42 sleep 100", "mount $VAR_LOCK (nsfs)", "file /run/a/merged/",
                            "file $VAR_BASE/upper/", "file $scratch/other"]
    assert not run.report.exists() and not run.scratch.exists()


def test_without_namespace_the_command_runs_as_given_and_new_files_are_found(tmp_path):
    watched = tmp_path / "watched"
    (watched / "old").mkdir(parents=True)
    guard = HostGuard((str(watched),), (("VAR_BASE", "overlay"),), namespace=False)
    run = guard.start("t")
    assert run.wrap(["/bin/x"]) == ["/bin/x"]
    (watched / "new").mkdir()
    (run.scratch / "overlay").mkdir()
    assert run.finish() == ["file $VAR_BASE/", f"file {watched}/new/ (on the host)"]
    assert (watched / "new").is_dir(), "watched folders may be someone else's: nothing is removed there"


def test_prepare_makes_missing_mount_points_and_restore_removes_only_those(tmp_path):
    guard = HostGuard((str(tmp_path / "a" / "b"),), (), namespace=True)
    made = guard.prepare()
    assert made == [str(tmp_path / "a" / "b"), str(tmp_path / "a")]
    guard.restore(made)
    assert not (tmp_path / "a").exists() and tmp_path.exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (a mount namespace)")
def test_a_process_that_ends_by_itself_just_after_the_binary_was_not_left(tmp_path):
    """The real wrapper in a real mount namespace: a child that ends 0.4 s after the binary is not reported,
    one that would run on for 31 s is (and is killed)."""
    import subprocess
    import sys

    from ci import hostguard_exec

    report = tmp_path / "report.json"
    outer = os.readlink("/proc/self/ns/mnt")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", sys.executable,
                        hostguard_exec.__file__, "--report", str(report), "--outer-ns", outer, "--",
                        "sh", "-c", "setsid sleep 0.4 & setsid sleep 31 & exit 3"], timeout=30)
    assert r.returncode == 3
    procs = json.loads(report.read_text())["processes"]
    assert len(procs) == 1 and procs[0].endswith(" sleep 31"), procs
    assert subprocess.run(["pgrep", "-f", "^sleep 31$"], capture_output=True).returncode == 1  # killed
