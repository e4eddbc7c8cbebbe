"""Inside a test binary's private mount namespace: give it empty private folders, run it, say what it left.

Run by :mod:`ci.hostguard` as ``unshare --mount --propagation private -- python3 hostguard_exec.py
--outer-ns NS --report FILE [--private DIR]... [--scratch DIR] -- CMD ARGS...``. Standard library only (it runs
in a fresh interpreter for every test binary).

1. a tmpfs on every ``--private`` folder: the binary sees it empty, writes into it, and nothing of
   that reaches the host (the namespace's mounts are private, so its own mounts do not either);
2. the binary runs with this process's stdin/stdout/stderr; a SIGTERM or SIGINT to the process
   group reaches it directly and this wrapper waits for it, so the report is still written;
3. after it exits, the report (JSON): processes it left in this namespace or session (still
   running LINGER seconds after it; then killed), mounts made in the namespace that are still
   there, and the files left in the private folders and in the scratch folder (where the state
   variables pointed);
4. exit with the binary's status; a binary killed by signal N kills this wrapper with N too.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

MAX_FILES = 40
# seconds a process the binary started may take to end by itself once the binary has exited (reaper's
# monitor daemons of a test's `echo` container end some 10-100 ms after their test binary): what still
# runs after that is what the binary left (then killed)
LINGER = 2.0


def _mount_tmpfs(path: str) -> None:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "reaper-ci-private", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(f"reaper-ci hostguard: cannot mount a private tmpfs on {path}: {r.stderr.strip()}\n")
        sys.exit(125)


def _mounts() -> dict[str, tuple[str, str]]:
    """mount id -> (mount point, filesystem type) of this namespace."""
    out = {}
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            fstype = parts[parts.index("-") + 1] if "-" in parts else "?"
            out[parts[0]] = (parts[4].replace("\\040", " "), fstype)
    return out


def _strays(me: int) -> dict[int, str]:
    """Live processes in this mount namespace, or in this session when this wrapper leads it (as Phase 1
    starts it), other than this wrapper."""
    my_ns = os.readlink("/proc/self/ns/mnt")
    my_sid = me if os.getsid(0) == me else None
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            if os.readlink(f"/proc/{pid}/ns/mnt") != my_ns and int(fields[3]) != my_sid:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found[pid] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
        except (OSError, IndexError, ValueError):
            continue
    return found


def _files(root: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames) + sorted(filenames):
            p = os.path.join(dirpath, n)
            out.append(p + ("/" if n in dirnames else ""))
            if len(out) >= MAX_FILES:
                return out + ["..."]
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hostguard_exec")
    p.add_argument("--report", required=True)
    p.add_argument("--private", action="append", default=[])
    p.add_argument("--scratch")
    p.add_argument("--outer-ns", required=True, help="the caller's /proc/self/ns/mnt: this must be another one")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if os.readlink("/proc/self/ns/mnt") == a.outer_ns:  # it would mount on, and kill in, the caller's namespace
        sys.stderr.write("reaper-ci hostguard: not in a private mount namespace (run it under unshare --mount)\n")
        return 125
    for path in a.private:
        _mount_tmpfs(path)
    before = _mounts()
    # the group's SIGTERM/SIGINT reaches the binary itself; this wrapper outlives it to report
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    proc = subprocess.Popen(cmd)
    while True:
        try:
            code = proc.wait()
            break
        except InterruptedError:  # pragma: no cover (PEP 475 retries)
            continue
    me = os.getpid()
    strays = _strays(me)
    end = time.monotonic() + LINGER  # a process ending by itself just after the binary was not left behind
    while strays and time.monotonic() < end:
        time.sleep(0.05)
        strays = _strays(me)
    for pid in strays:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 5
    while time.monotonic() < end and _strays(me):
        time.sleep(0.05)
    mounts = [f"{mp} ({fs})" for mid, (mp, fs) in _mounts().items() if mid not in before]
    files = [f for root in a.private + ([a.scratch] if a.scratch else []) for f in _files(root)]
    report = {"processes": [f"{pid} {cmd}" for pid, cmd in sorted(strays.items())], "mounts": mounts,
              "files": files}
    with open(a.report, "w", encoding="utf-8") as f:
        json.dump(report, f)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(me, -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
