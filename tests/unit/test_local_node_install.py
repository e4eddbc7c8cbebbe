"""Install steps that take a NodeAccess + node name (shared with the kind path): the handler
entry in a node's own containerd config, and a containerd restart waited on."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from ci import config
from ci.cluster import runtime
from ci.cluster.base import LocalNode, NodeAccess
from ci.errors import SetupError

V2 = '''version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
'''
V3 = '''version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'runc'
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'
'''


def cfg(**kw):
    return config.parse([], {}, prog="cluster", cwd=Path("/")).with_(**kw)


def runtimes(doc: dict, version: int) -> dict:
    plugin = "io.containerd.grpc.v1.cri" if version == 2 else "io.containerd.cri.v1.runtime"
    return doc["plugins"][plugin]["containerd"]["runtimes"]


@pytest.mark.parametrize("text, version", [(V2, 2), (V3, 3)])
def test_install_handler_adds_reaper_entry_once(tmp_path, text, version):
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert runtime.install_handler(LocalNode(), "node", cfg(), "reaper", str(path)) is True
    doc = tomllib.loads(path.read_text())
    rts = runtimes(doc, version)
    assert rts["reaper-v2"]["runtime_type"] == "io.containerd.reaper.v2"
    assert rts["runc"]["runtime_type"] == "io.containerd.runc.v2"  # the node's own entries stay
    first = path.read_text()
    assert runtime.install_handler(LocalNode(), "node", cfg(), "reaper", str(path)) is False
    assert path.read_text() == first


def test_install_handler_switches_runtime_in_place(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(V2)
    runtime.install_handler(LocalNode(), "node", cfg(), "reaper", str(path))
    assert runtime.install_handler(LocalNode(), "node", cfg(), "runc", str(path), runc_root="/run/containerd/runc") is True
    text = path.read_text()
    assert text.count(runtime.HANDLER_BEGIN) == 1
    h = runtimes(tomllib.loads(text), 2)["reaper-v2"]
    assert h["runtime_type"] == "io.containerd.runc.v2" and h["options"]["Root"] == "/run/containerd/runc"


def test_install_handler_refuses_a_config_that_defines_the_handler_itself(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(V2 + '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.reaper-v2]\n  runtime_type = "x"\n')
    with pytest.raises(SetupError, match="not valid TOML"):
        runtime.install_handler(LocalNode(), "node", cfg(), "reaper", str(path))
    assert "x" in path.read_text()  # left untouched


def test_install_handler_without_a_config(tmp_path):
    with pytest.raises(SetupError, match="no containerd config"):
        runtime.install_handler(LocalNode(), "node", cfg(), "reaper", str(tmp_path / "absent.toml"))


class Scripted(NodeAccess):
    """Answers commands from a script: (argv prefix, returncode) pairs, consumed in order."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def argv(self, node, argv):
        return list(argv)

    def run(self, node, argv, timeout=30, input=None):
        self.calls.append(list(argv))
        want, rc = self.answers.pop(0)
        assert list(argv[: len(want)]) == list(want), (argv, want)
        return subprocess.CompletedProcess(argv, rc, "", "" if rc == 0 else "connection refused")


def test_restart_containerd_waits_until_it_answers():
    node = Scripted([(["systemctl", "restart"], 0), (["ctr", "version"], 1), (["ctr", "version"], 1), (["ctr", "version"], 0)])
    runtime.restart_containerd(node, "n1", timeout=10)
    assert not node.answers and node.calls[-1] == ["ctr", "version"]


def test_restart_containerd_failure_is_one_line():
    node = Scripted([(["systemctl", "restart"], 1)])
    with pytest.raises(SetupError) as e:
        runtime.restart_containerd(node, "n1", timeout=10)
    assert "n1" in str(e.value) and "\n" not in str(e.value)


def test_restart_containerd_never_answering_times_out():
    node = Scripted([(["systemctl", "restart"], 0)] + [(["ctr", "version"], 1)] * 1000)
    with pytest.raises(SetupError, match="did not answer within 1s"):
        runtime.restart_containerd(node, "n1", timeout=1)
