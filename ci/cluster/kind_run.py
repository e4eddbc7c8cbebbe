"""Running the kind path's external commands: one injectable runner (argv list in, :class:`Result`
out), so unit tests can record the exact command sequence without Docker, and node access through it."""

from __future__ import annotations

from typing import Sequence

from ci.cluster.base import NodeAccess
from ci.tools import Result, Runner, ShRunner  # noqa: F401  (the one runner lives in ci.tools)
from ci.errors import SetupError


class RunnerNode(NodeAccess):
    """``docker exec`` through the provisioner's runner, so runtime.py's node helpers can be reused."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["docker", "exec", "-i", node, *argv]

    def run(self, node: str, argv: Sequence[str], timeout: float = 30, input: str | None = None):
        import subprocess

        r = self.runner(self.argv(node, argv), check=False, input=input, timeout=timeout)
        return subprocess.CompletedProcess(self.argv(node, argv), r.returncode, r.out, r.out)

    def write_file(self, node: str, path: str, content: str, timeout: float = 30) -> None:
        r = self.run(node, ["/bin/sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path], timeout=timeout, input=content)
        if r.returncode != 0:
            raise SetupError(f"writing {path} on kind node {node} failed: {r.stdout.strip()[-300:]}")


