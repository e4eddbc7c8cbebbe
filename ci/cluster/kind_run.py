"""Running the kind path's external commands: one injectable runner (argv list in, :class:`Result`
out), so unit tests can record the exact command sequence without Docker, and node access through it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from ci.cluster.base import NodeAccess
from ci.errors import SetupError


@dataclass(frozen=True)
class Result:
    returncode: int
    out: str  # stdout and stderr together; stdout only when the call asked for ``stderr=False``


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], *, check: bool = True, input: str | None = None,
                 timeout: float | None = None, cwd: Path | None = None, stderr: bool = True) -> Result: ...


class ShRunner:
    """The real runner: binaries through :func:`ci.tools.tool` (sh), output appended to ``log``.

    ``check`` turns a non-zero exit into a one-line SetupError naming the command, the exit code,
    the last output line and the log file. ``stderr=False`` keeps stderr out of ``Result.out``
    (for output that is parsed: JSON, TOML, a kubeconfig); it still goes to the log.
    """

    def __init__(self, log: Path, extra_path: Iterable[Path] = ()):
        self.log = log
        self.extra_path = tuple(extra_path)

    def __call__(self, argv: Sequence[str], *, check: bool = True, input: str | None = None,
                 timeout: float | None = None, cwd: Path | None = None, stderr: bool = True) -> Result:
        import sh

        from ci import tools

        cmd = tools.tool(argv[0], extra_path=self.extra_path)
        chunks: list[str] = []
        errs: list[str] = []
        kw: dict = dict(_out=chunks.append, _ok_code=list(range(256)), _return_cmd=True, _tty_out=False)
        if stderr:
            kw["_err_to_out"] = True
        else:
            kw["_err"] = errs.append
        if input is not None:
            kw["_in"] = input
        if timeout is not None:
            kw["_timeout"] = timeout
        if cwd is not None:
            kw["_cwd"] = str(cwd)
        shown = " ".join(map(str, argv))
        try:
            code = cmd(*map(str, argv[1:]), **kw).exit_code
        except sh.TimeoutException:
            self._write(shown, "".join(chunks) + "".join(errs), "timed out")
            raise SetupError(f"`{shown[:200]}` timed out after {timeout:.0f}s (log: {self.log})") from None
        out, err = "".join(chunks), "".join(errs)
        self._write(shown, out + (f"[stderr]\n{err}" if err else ""), f"exit {code}")
        if check and code != 0:
            both = (out + "\n" + err).strip()
            last = " | ".join(r.strip() for r in both.splitlines()[-2:] if r.strip())[:300]
            raise SetupError(f"`{shown[:200]}` failed with exit {code} (log: {self.log}){': ' + last if last else ''}")
        return Result(code, out)

    def _write(self, shown: str, out: str, end: str) -> None:
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a", encoding="utf-8", errors="replace") as fh:
                fh.write(f"\n$ {shown}\n{out}{'' if out.endswith(chr(10)) or not out else chr(10)}[{end}]\n")
        except OSError:
            pass  # the log is a convenience; the error message already says what failed


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


