"""The local cluster's processes: start one with a log and a pid file, tell whether it still runs, wait for readiness, kill and wait, find every process of ours."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ci.wait import until
from ci.cluster import restart_local
from ci.errors import RuntimeFailure, SetupError, SmokeFailed
from ci.cluster.local.layout import Timeouts


def _read_pidfile(path: Path) -> tuple[int, str] | None:
    try:
        pid_s, start = path.read_text().split()
        return int(pid_s), start
    except (OSError, ValueError):
        return None


_start_time = restart_local.start_time  # one reading of /proc/<pid>/stat for pid files (the restart script is standalone)


def pid_alive(path: Path) -> int | None:
    """The pid recorded in ``path`` if that very process (same start time) still runs."""
    rec = _read_pidfile(path)
    if rec is None:
        return None
    pid, start = rec
    return pid if _start_time(pid) == start else None


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    rows = [r for r in text.splitlines() if r.strip()]
    return "\n".join(rows[-lines:]) or "(empty log)"


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rfind(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(d.name))
    return tree


def descendants(pid: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    tree = tree if tree is not None else _children()
    out, todo = [], [pid]
    while todo:
        for c in tree.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _signal(pids: Iterable[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: Sequence[int], seconds: float, poll: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(_start_time(p) for p in pids):
        time.sleep(poll)  # poll interval until every pid is gone or the deadline


def _kill_wait(pids: Iterable[int], deadline: float) -> list[int]:
    """SIGTERM, wait until ``deadline``, then SIGKILL; returns pids that had to be killed."""
    pids = [p for p in pids if _start_time(p)]
    _signal(pids, signal.SIGTERM)
    _wait_gone(pids, deadline, 0.1)
    killed = [p for p in pids if _start_time(p)]
    _signal(killed, signal.SIGKILL)
    _wait_gone(killed, 5, 0.05)
    return killed






class Supervisor:
    """Component processes of :class:`~ci.cluster.local.provisioner.LocalProvisioner` (needs ``self.lay`` and ``self._procs``)."""

    # ---------------------------------------------------------------- processes

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.lay.log(name)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n")
            fh.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True, env={**os.environ, **(env or {})}, cwd=str(self.lay.state))
        start = None
        for _ in range(50):
            start = _start_time(proc.pid)
            if start or proc.poll() is not None:
                break
            time.sleep(0.01)
        self._procs[name] = proc
        self.lay.pidfile(name).write_text(f"{proc.pid} {start or 0}\n")

    def _dead(self, names: Sequence[str]) -> str | None:
        for n in names:
            proc = self._procs.get(n)
            if proc is not None and proc.poll() is not None:
                return n
            if proc is None and not pid_alive(self.lay.pidfile(n)):
                return n
        return None

    def _wait(self, what: str, probe: Callable[[], object], timeout: float, watch: Sequence[str] = ()) -> None:
        """:func:`ci.wait.until`, ended early by a watched component dying (its log's tail says why)."""
        def check() -> None:
            died = self._dead(watch)
            if died:
                raise SetupError(f"{died} exited while waiting for {what}; last lines of {self.lay.log(died)}:\n"
                                 f"{tail(self.lay.log(died))}")

        comp = watch[-1] if watch else None
        until(what, probe, timeout, definite=(RuntimeFailure, SmokeFailed), check=check,
              detail=(lambda: f"; last lines of {self.lay.log(comp)}:\n{tail(self.lay.log(comp))}") if comp else None)

    def _stop(self, comp: str) -> None:
        pid = pid_alive(self.lay.pidfile(comp))
        if pid:
            _kill_wait([pid], Timeouts.STOP)
        proc = self._procs.pop(comp, None)
        if proc is not None:
            proc.poll()

    @staticmethod
    def _all_pids() -> list[int]:
        return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and int(d.name) != os.getpid()]

    @staticmethod
    def _is_our_shim(pid: int, sock: str) -> bool:
        argv = _cmdline(pid)
        return bool(argv) and Path(argv[0]).name.startswith("containerd-shim") and sock in argv
