"""A containerd restart on a node (NodeAccess + node name, shared with the kind path), waited on."""

from __future__ import annotations

import subprocess

import pytest

from ci.cluster import runtime
from ci.cluster.base import NodeAccess
from ci.errors import SetupError

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
