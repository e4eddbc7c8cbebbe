"""Restart one component of the local cluster in place: same argv, environment, working folder and
cgroups, a new process recorded in the same pid file (what ``systemctl restart`` does on a kind node).

The cgroups matter when the restart runs from inside a pod (node access through a host-exec pod:
``kubectl exec`` + ``nsenter``): a child would otherwise live in that pod's cgroup and die with it.

S41 runs it on the node through ``ClusterInfo.containerd_restart``. It is a standalone script (it
imports nothing from ``ci``): ``python3 restart_local.py PIDFILE SOCKET LOG``. Exit 0 once the new
process answers on SOCKET; exit 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STOP_TIMEOUT = 30.0  # the old process exits after SIGTERM (then SIGKILL)
READY_TIMEOUT = 30.0  # the new process answers on its socket


class RestartError(Exception):
    pass


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat; None if gone or a zombie (the local provisioner's pid file format)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2:].split()
    return None if rest[0] in ("Z", "X") else rest[19]


def _nul_list(path: str) -> list[bytes]:
    return [x for x in Path(path).read_bytes().split(b"\0") if x]


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def _wait(what: str, ok, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise RestartError(f"{what} not within {timeout:.0f}s")
        time.sleep(0.05)  # poll interval


def cgroup_procs_files(pid: int, mountinfo: str | None = None, cgroup: str | None = None) -> list[str]:
    """The ``cgroup.procs`` file of each cgroup ``pid`` is in (v1 hierarchies and v2), as this
    mount namespace sees them."""
    mountinfo = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    cgroup = Path(f"/proc/{pid}/cgroup").read_text() if cgroup is None else cgroup
    mounts = []  # (fstype, options, root, mount point)
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if len(f) >= 5 and len(r) >= 3 and r[0] in ("cgroup", "cgroup2"):
            mounts.append((r[0], set(r[2].split(",")), f[3], f[4]))
    out = []
    for line in cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        want = set(filter(None, ctrls.split(",")))
        for fstype, opts, root, point in mounts:
            if (fstype == "cgroup2") if not want else (fstype == "cgroup" and want <= opts):
                rel = path[len(root):] if root != "/" and path.startswith(root) else path
                out.append(f"{point.rstrip('/')}/{rel.lstrip('/')}".rstrip("/") + "/cgroup.procs")
                break
    return out


def _join(files: list[str]) -> None:
    """In the child, before exec: move itself (``0``) into each cgroup; one that cannot be joined
    (gone, read-only) is skipped: the restart still happens."""
    for f in files:
        try:
            with open(f, "w") as fh:
                fh.write("0")
        except OSError:
            pass


class Captured:
    """What it takes to start a recorded process again as it was: argv, environment, working
    folder and cgroups, read from /proc while it runs."""

    def __init__(self, pidfile: Path):
        try:
            pid_text, start = pidfile.read_text().split()[:2]
            self.pid = int(pid_text)
        except (OSError, ValueError) as e:
            raise RestartError(f"cannot read pid file {pidfile}: {e}") from None
        self.start = start
        if start_time(self.pid) != start:
            raise RestartError(f"the process recorded in {pidfile} (pid {self.pid}) is not running")
        self.argv = _nul_list(f"/proc/{self.pid}/cmdline")
        self.env = dict(kv.split(b"=", 1) for kv in _nul_list(f"/proc/{self.pid}/environ") if b"=" in kv)
        self.cwd = os.readlink(f"/proc/{self.pid}/cwd")
        self.cgroups = cgroup_procs_files(self.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; returns once the process is gone."""
        os.kill(self.pid, signal.SIGTERM)
        try:
            _wait(f"pid {self.pid} exited after SIGTERM", lambda: start_time(self.pid) != self.start, STOP_TIMEOUT)
        except RestartError:
            os.kill(self.pid, signal.SIGKILL)
            _wait(f"pid {self.pid} exited after SIGKILL", lambda: start_time(self.pid) != self.start, STOP_TIMEOUT)

    def launch(self, pidfile: Path, log: Path, why: str) -> subprocess.Popen:
        """Start it again (its own session, its old cgroups), recorded in ``pidfile``, output to ``log``."""
        with open(log, "ab") as fh:
            fh.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {why} (was pid {self.pid})\n".encode())
            fh.flush()
            cgroups = self.cgroups
            proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True, env=self.env, cwd=self.cwd,
                                    preexec_fn=lambda: _join(cgroups))
        _wait(f"pid {proc.pid} started", lambda: start_time(proc.pid) is not None or proc.poll() is not None, 5)
        pidfile.write_text(f"{proc.pid} {start_time(proc.pid) or 0}\n")
        return proc


def restart(pidfile: Path, sock: str, log: Path) -> str:
    was = Captured(pidfile)
    t0 = time.monotonic()
    was.stop()
    proc = was.launch(pidfile, log, "restarting")
    _wait(f"the restarted process (pid {proc.pid}) answering on {sock}",
          lambda: proc.poll() is None and _answers(sock) or proc.poll() is not None, READY_TIMEOUT)
    if proc.poll() is not None:
        raise RestartError(f"the restarted process exited with {proc.returncode} (log: {log})")
    return f"restarted pid {was.pid} -> {proc.pid} in {time.monotonic() - t0:.1f}s"


def main(args: list[str]) -> int:
    if len(args) != 3:
        print("usage: restart_local.py PIDFILE SOCKET LOG", file=sys.stderr)
        return 2
    try:
        print(restart(Path(args[0]), args[1], Path(args[2])))
        return 0
    except (RestartError, OSError) as e:
        print(f"restart failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
