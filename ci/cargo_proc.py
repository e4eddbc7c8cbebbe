"""Running one test binary as a process tree: stream its lines with a deadline, kill its whole group (and whatever escaped it under the workspace) on timeout, and the rustc/rustdoc shims that let stable toolchains emit libtest JSON."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

KILL_GRACE = 5.0
DRAIN = 2.0  # seconds to keep reading after the binary exited



SHIMMED = ("cargo", "rustc", "rustdoc")


def write_shims(folder: Path, original_bootstrap: str | None, path: str | None = None) -> Path:
    """Write ``cargo``/``rustc``/``rustdoc`` wrappers that undo our RUSTC_BOOTSTRAP, then exec the real tool."""
    import shlex
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    search = os.pathsep.join(p for p in (path or os.environ.get("PATH", "")).split(os.pathsep)
                             if p and Path(p).resolve() != folder.resolve())
    restore = ("unset RUSTC_BOOTSTRAP" if original_bootstrap is None
               else f"export RUSTC_BOOTSTRAP={shlex.quote(original_bootstrap)}")
    for name in SHIMMED:
        real = shutil.which(name, path=search)
        if not real:
            continue
        shim = folder / name
        shim.write_text("#!/bin/sh\n"
                        "# reaper-ci phase1: RUSTC_BOOTSTRAP=1 was set only so libtest accepts --format json;\n"
                        "# a cargo/rustc started by a test must see the user's own value, or cargo rebuilds everything.\n"
                        f"{restore}\nexec {shlex.quote(real)} \"$@\"\n")
        shim.chmod(0o755)
    return folder


def bootstrap_env(env: Mapping[str, str], shim_dir: Path | None) -> dict[str, str]:
    """``env`` plus RUSTC_BOOTSTRAP=1 for libtest, with the shims first on PATH (and as ``$CARGO``)."""
    out = {**env, "RUSTC_BOOTSTRAP": "1"}
    if shim_dir is not None:
        out["PATH"] = os.pathsep.join([str(shim_dir), *filter(None, [env.get("PATH")])])
        if (shim_dir / "cargo").is_file():
            out["CARGO"] = str(shim_dir / "cargo")
    return out


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def _stream(cmd: Sequence[str], cwd: str, env: Mapping[str, str], timeout: float, on_line: Callable[[str, str], None]
            ) -> tuple[int | None, bool, float]:
    """Run ``cmd`` in its own process group; call ``on_line(stream, line)`` live; kill it at the deadline.

    Returns (exit code, or -signal number; timed_out; seconds). Reading stops shortly after the
    binary exits even if a process it started still holds the pipes open.
    """
    start = time.monotonic()
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    lines: "queue.Queue[tuple[str, str | None]]" = queue.Queue()

    def pump(name: str, pipe) -> None:
        for raw in iter(pipe.readline, b""):
            lines.put((name, raw.decode("utf-8", errors="replace")))
        lines.put((name, None))

    for name, pipe in (("out", proc.stdout), ("err", proc.stderr)):
        threading.Thread(target=pump, args=(name, pipe), daemon=True).start()
    try:
        timed_out = _pump_until_done(proc, lines, on_line, start + timeout)
    except BaseException:  # Ctrl-C, or a bug: never leave the binary (in its own session) running
        _kill_group(proc)
        raise
    code = proc.wait()
    return code, timed_out, time.monotonic() - start


def _pump_until_done(proc: subprocess.Popen, lines: "queue.Queue", on_line, deadline: float) -> bool:
    """Feed lines to ``on_line`` until both pipes close (or shortly after exit); True if killed at the deadline."""
    open_pipes, drain_until, timed_out = 2, None, False
    while open_pipes:
        now = time.monotonic()
        if drain_until is None and proc.poll() is not None:
            drain_until = now + DRAIN  # exited: read what is buffered, don't wait for grandchildren
        if drain_until is None and now >= deadline:
            timed_out = True
            _kill_group(proc)
            drain_until = time.monotonic() + DRAIN
        if drain_until is not None and now >= drain_until:
            break
        try:
            name, line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            open_pipes -= 1
        else:
            on_line(name, line)
    while True:  # whatever is already queued
        try:
            name, line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            on_line(name, line)
    return timed_out


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the binary's process group, then SIGKILL what is left after a grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=KILL_GRACE)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def processes_under(root: Path) -> dict[int, str]:
    """Live processes (not zombies) whose executable lies under ``root``: pid -> command line."""
    found: dict[int, str] = {}
    root = root.resolve()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            exe = Path(os.readlink(entry / "exe"))
            if root not in exe.parents:
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError):
            continue  # gone, or not ours to read
        found[int(entry.name)] = cmd[:300]
    return found


def terminate(pids: Sequence[int], grace: float = KILL_GRACE) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, each pid (not process groups)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
