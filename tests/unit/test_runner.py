"""The one runner (:class:`ci.tools.ShRunner`) and node access built on it (:class:`ci.cluster.base.LocalNode`)."""

from __future__ import annotations

import time

import pytest

from ci.cluster.base import LocalNode
from ci.errors import SetupError, ToolMissing
from ci.tools import ShRunner


def test_stderr_kept_apart_when_asked():
    r = ShRunner()(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False, stderr=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    both = ShRunner()(["sh", "-c", "echo out; echo err >&2"], check=False)
    assert both.out == "out\nerr\n" and both.err == ""


def test_a_signal_is_a_negative_exit_not_an_exception():
    assert ShRunner()(["sh", "-c", "kill -TERM $$"], check=False).returncode == -15


def test_timeout_kills_at_the_deadline_in_one_line(tmp_path):
    runner = ShRunner(tmp_path / "r.log")
    started = time.monotonic()
    with pytest.raises(SetupError) as e:
        runner(["sleep", "30"], timeout=0.3)
    assert time.monotonic() - started < 5
    assert "timed out after 0.3s" in str(e.value) and "\n" not in str(e.value)
    assert "[timed out]" in (tmp_path / "r.log").read_text()


def test_quick_commands_are_not_held_by_polling():
    """sh's output callbacks and `_timeout` each cost ~100 ms a call; the runner avoids both."""
    runner = ShRunner()
    started = time.monotonic()
    for _ in range(10):
        runner(["true"], timeout=30)
    assert (time.monotonic() - started) / 10 < 0.08


def test_missing_binary_is_tool_missing():
    with pytest.raises(ToolMissing):
        ShRunner()(["no-such-binary-reaper-ci"])


def test_env_adds_to_the_environment():
    assert ShRunner()(["sh", "-c", 'echo "$X_REAPER_CI"'], env={"X_REAPER_CI": "v"}).out == "v\n"


def test_node_put_is_byte_exact_and_atomic(tmp_path):
    src = tmp_path / "bin"
    src.write_bytes(bytes(range(256)) * 64)
    dest = tmp_path / "node" / "usr" / "bin" / "x"
    LocalNode().put("node", src, str(dest), mode="0750")
    assert dest.read_bytes() == src.read_bytes() and oct(dest.stat().st_mode & 0o777) == "0o750"
    assert not (dest.parent / "x.reaper-ci-tmp").exists()


def test_node_read_and_write(tmp_path):
    node = LocalNode()
    target = tmp_path / "a" / "b.txt"
    node.write_file("node", str(target), "text\n")
    assert node.read_file("node", str(target)) == "text\n"
    assert node.read_file("node", str(tmp_path / "absent")) is None
