"""The command-line boundary: users get one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_ci(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ci", *args],
        cwd=cwd or REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, lines
    assert needle in lines[0], lines[0]


def test_unknown_command_is_one_line():
    assert_one_line_error(run_ci("phase9"), 2, "unknown command 'phase9'")


def test_help_lists_every_command():
    proc = run_ci("--help")
    assert proc.returncode == 0
    for name in ("phase1", "cluster", "k8s", "ci"):
        assert f"  {name} " in proc.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["phase1", "--source", "/nonexistent/reaper"], "--source /nonexistent/reaper: no such directory"),
        (["phase1", "--source", "/"], "--source /: no Cargo.toml there"),
        (["phase1", "--runtme", "runc"], "did you mean --runtime?"),
        (["k8s", "--provisioner", "vagrant"], "invalid choice: 'vagrant'"),
        (["cluster", "sideways"], "invalid choice: 'sideways'"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(args, needle):
    assert_one_line_error(run_ci(*args), 2, needle)


def test_missing_cargo_is_one_line(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "Cargo.toml").write_text('[package]\nname = "x"\nversion = "0.1.0"\nedition = "2021"\n')
    proc = run_ci("phase1", "--source", str(ws), "--artifacts", str(tmp_path / "a"), env={"PATH": "/nonexistent"})
    assert_one_line_error(proc, 1, "`cargo` not found on PATH")


def test_existing_cluster_without_kubectl_is_one_line_before_any_api_call(tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text("apiVersion: v1\nkind: Config\n")
    proc = run_ci("k8s", "--provisioner", "existing", "--kubeconfig", str(kc), "--artifacts", str(tmp_path / "a"),
                  env={"PATH": "/nonexistent"})
    assert_one_line_error(proc, 1, "`kubectl` not found on PATH")


def test_existing_cluster_with_a_missing_kubeconfig_is_a_setup_error(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "kubectl").chmod(0o755)
    proc = run_ci("k8s", "--provisioner", "existing", "--kubeconfig", str(tmp_path / "nope"),
                  "--artifacts", str(tmp_path / "a"), env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert_one_line_error(proc, 3, "no such file")
