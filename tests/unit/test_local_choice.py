"""Choosing a provisioner, and the cluster command's one-line usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ci.cluster as cluster
from ci import config
from ci.errors import ToolMissing

REPO = Path(__file__).resolve().parents[2]


def cfg(**kw):
    return config.parse([], {}, prog="cluster", cwd=Path("/")).with_(**kw)


def test_auto_prefers_kind_when_it_works(monkeypatch):
    import types

    monkeypatch.setattr(cluster, "kind_usable", lambda: None)
    fake = types.ModuleType("ci.cluster.kind")
    fake.KindProvisioner = lambda c: ("kind", c)
    monkeypatch.setitem(sys.modules, "ci.cluster.kind", fake)
    assert cluster.get_provisioner(cfg(provisioner="auto"))[0] == "kind"


def test_auto_falls_back_to_local(monkeypatch):
    monkeypatch.setattr(cluster, "kind_usable", lambda: "no `docker` on PATH")
    monkeypatch.setattr(cluster, "local_usable", lambda: None)
    assert cluster.get_provisioner(cfg(provisioner="auto")).name == "local"


def test_auto_without_any_way_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(cluster, "kind_usable", lambda: "no `docker` on PATH")
    monkeypatch.setattr(cluster, "local_usable", lambda: "not root")
    with pytest.raises(ToolMissing) as e:
        cluster.get_provisioner(cfg(provisioner="auto"))
    assert "no `docker` on PATH" in str(e.value) and "not root" in str(e.value)
    assert "\n" not in str(e.value)


def test_explicit_local_is_honoured(monkeypatch):
    monkeypatch.setattr(cluster, "kind_usable", lambda: None)
    assert cluster.get_provisioner(cfg(provisioner="local")).name == "local"


def test_kind_without_its_module_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ci.cluster.kind", None)  # import then fails as if the file were absent
    with pytest.raises(ToolMissing) as e:
        cluster.get_provisioner(cfg(provisioner="kind"))
    assert "kind" in str(e.value) and "\n" not in str(e.value)


def run_ci(*args):
    return subprocess.run([sys.executable, "-m", "ci", *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize(
    "args, needle",
    [
        (("cluster",), "up | down | status | logs"),
        (("cluster", "explode"), "invalid choice"),
        (("cluster", "up", "-x"), "unexpected argument"),
        (("cluster", "up", "--runtme", "runc"), "--runtme"),
    ],
)
def test_cluster_usage_errors_are_one_line(args, needle):
    proc = run_ci(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], lines
    assert "Traceback" not in proc.stderr
