"""Phase 1 leaves the host as it found it: each test binary gets private state, and what it leaves is named.

A workspace's tests may write host state at fixed paths: reaper's, run as root, create its
overlay under ``/run/reaper`` and bind-mount a mount namespace there, and leave it; a cluster
brought up afterwards then finds "foreign" reaper state. So every test binary Phase 1 runs gets:

* **state variables** (``--state-env``, default reaper's ``REAPER_OVERLAY_BASE``,
  ``REAPER_OVERLAY_NS``, ``REAPER_OVERLAY_LOCK``, ``REAPER_FILTER_DIR``) pointing into a scratch
  folder of its own, removed afterwards (the cluster keeps reaper's defaults: these are the
  tests', not the runtime's);
* as root on Linux, a **private mount namespace** in which every ``--private-paths`` folder
  (default ``/run/reaper``) is an empty tmpfs: paths a workspace hard-codes (reaper's
  ``/run/reaper/merged``) and mounts its tests make stay in the namespace and vanish with it, and
  two targets can run at once without sharing them. Without root the binary runs on the host and
  only the detection below applies (nothing is removed: the folders may be someone else's).

Whatever a binary leaves (processes, mounts, files in those folders or its scratch folder, a
mount on the host) is a **finding**: listed with the target, and attributed to single tests by
running each of that target's tests alone the same way (:func:`attribute`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ci.cargo_proc import _stream

DEFAULT_PRIVATE_PATHS = ("/run/reaper",)
DEFAULT_STATE_ENV = ("REAPER_OVERLAY_BASE=overlay", "REAPER_OVERLAY_NS=shared-mnt-ns",
                     "REAPER_OVERLAY_LOCK=overlay.lock", "REAPER_FILTER_DIR=overlay-filters")
EXEC = Path(__file__).with_name("hostguard_exec.py")
ATTRIBUTE_BUDGET = 120.0  # seconds of re-running single tests to name the ones that leave state
ATTRIBUTE_TEST_TIMEOUT = 60.0
ATTRIBUTE_WORKERS = 4  # single tests mostly wait (on processes, timeouts): more than the cores pays


def parse_state_env(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``NAME=relative/path`` items (the path inside the binary's scratch folder)."""
    out = []
    for item in items:
        name, sep, rel = item.partition("=")
        if not sep or not name or not rel or rel.startswith("/") or ".." in Path(rel).parts:
            raise ValueError(f"{item!r}: expected NAME=relative/path")
        out.append((name, rel))
    return tuple(out)


def _host_mounts() -> set[str]:
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return set()
    return {l.split()[4].replace("\\040", " ") for l in lines}


def _entries(paths: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for root in paths:
        for dirpath, dirnames, filenames in os.walk(root):
            out.update(os.path.join(dirpath, n) + ("/" if n in dirnames else "") for n in dirnames + filenames)
    return out


@dataclass
class Run:
    """One guarded run of one command: wrap the command, then :meth:`finish` for the findings."""

    guard: "HostGuard"
    scratch: Path
    report: Path
    mounts_before: set[str] = field(default_factory=set)
    entries_before: set[str] = field(default_factory=set)

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, **{name: str(self.scratch / rel) for name, rel in self.guard.state_env}}

    def wrap(self, cmd: Sequence[str]) -> list[str]:
        self.report.unlink(missing_ok=True)
        if not self.guard.namespace:
            return list(cmd)
        args = [self.guard.unshare, "--mount", "--propagation", "private", "--", sys.executable, str(EXEC),
                "--outer-ns", os.readlink("/proc/self/ns/mnt"), "--report", str(self.report), "--scratch", str(self.scratch)]
        for p in self.guard.private_paths:
            args += ["--private", p]
        return [*args, "--", *cmd]

    def finish(self) -> list[str]:
        """What the run left, one line each; then the scratch folder is removed."""
        found: list[str] = []
        if self.report.is_file():
            data = json.loads(self.report.read_text(encoding="utf-8"))
            found += [f"process {p}" for p in data.get("processes", [])]
            found += [f"mount {m}" for m in data.get("mounts", [])]
            found += [f"file {f}" for f in data.get("files", [])]
        elif not self.guard.namespace:
            found += [f"file {f}" for f in sorted(_entries([str(self.scratch)]))]
            found += [f"file {e} (on the host)" for e in sorted(_entries(self.guard.private_paths) - self.entries_before)]
        if not self.guard.namespace:  # in a private namespace its mounts never reach the host; on the host,
            # only mounts under the watched folders are the binary's (a cluster on the host mounts elsewhere)
            roots = [str(self.scratch), *self.guard.private_paths]
            found += [f"mount {m} (on the host)" for m in sorted(_host_mounts() - self.mounts_before)
                      if any(m == r or m.startswith(r + "/") for r in roots)]
        if not self.guard.namespace:
            for m in sorted((m for m in _host_mounts() if m.startswith(str(self.scratch) + "/")), reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.report.unlink(missing_ok=True)
        return [self._named(f) for f in found]

    def _named(self, line: str) -> str:
        """A path in the scratch folder as the variable that pointed there (``$REAPER_OVERLAY_BASE/upper``)."""
        kind, _, path = line.partition(" ")
        for name, rel in sorted(self.guard.state_env, key=lambda x: -len(x[1])) + [("scratch", "")]:
            base = str(self.scratch / rel) if rel else str(self.scratch)
            if path == base or path.startswith(base + "/") or path.startswith(base + " "):
                return f"{kind} ${name}{path[len(base):]}"
        return line


@dataclass(frozen=True)
class HostGuard:
    private_paths: tuple[str, ...] = DEFAULT_PRIVATE_PATHS
    state_env: tuple[tuple[str, str], ...] = ()
    namespace: bool = False  # a private mount namespace per binary (root, Linux, unshare)
    unshare: str = "unshare"

    @classmethod
    def for_host(cls, private_paths: Sequence[str], state_env: Sequence[tuple[str, str]],
                 private_ns: bool = True) -> "HostGuard":
        unshare = shutil.which("unshare")
        ns = (private_ns and bool(private_paths) and platform.system() == "Linux" and os.geteuid() == 0
              and unshare is not None)
        return cls(tuple(private_paths), tuple(state_env), ns, unshare or "unshare")

    def describe(self) -> str:
        env = ", ".join(n for n, _ in self.state_env) or "none"
        if self.namespace:
            return (f"each test binary in a private mount namespace with its own empty {', '.join(self.private_paths)}; "
                    f"state variables {env} point into its own scratch folder")
        why = "not root" if os.geteuid() != 0 else "--no-private-ns, no private paths or no unshare"
        return (f"state variables {env} point into each binary's scratch folder; no private namespace ({why}): "
                f"{', '.join(self.private_paths) or 'no folder'} watched, nothing removed")

    def prepare(self) -> list[str]:
        """Mount points the namespace needs (folders created now, on the host); removed by :meth:`restore`."""
        made = []
        if self.namespace:
            for p in self.private_paths:
                path = Path(p)
                missing = [d for d in [path, *path.parents] if not d.exists()]
                path.mkdir(parents=True, exist_ok=True)
                made += [str(d) for d in missing]
        return made

    @staticmethod
    def restore(made: Sequence[str]) -> None:
        for p in made:  # deepest first (prepare lists a path before its parents)
            try:
                os.rmdir(p)
            except OSError:
                pass

    def start(self, label: str) -> Run:
        scratch = Path(tempfile.mkdtemp(prefix=f"reaper-ci-{_safe(label)}-"))
        run = Run(self, scratch, scratch.with_name(scratch.name + ".report.json"))
        run.mounts_before = _host_mounts()
        if not self.namespace:
            run.entries_before = _entries(self.private_paths)
        return run


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:40]


def attribute(guard: HostGuard, executable: str, tests: Sequence[str], *, cwd: str, env: Mapping[str, str],
              budget: float = ATTRIBUTE_BUDGET, workers: int = ATTRIBUTE_WORKERS) -> tuple[dict[str, list[str]], list[str]]:
    """Run each of ``tests`` alone (``--exact``), guarded, ``workers`` at a time (each in its own
    namespace and scratch folder): {test: what it left}, and the tests not started within ``budget``
    seconds. Without a private namespace they run one at a time (the host's folders are shared)."""
    from concurrent.futures import ThreadPoolExecutor

    end = time.monotonic() + budget
    untried: list[str] = []

    def one(name: str) -> list[str] | None:
        if time.monotonic() >= end:
            untried.append(name)
            return None
        run = guard.start(name)
        cmd = run.wrap([executable, "--exact", name, "--test-threads", "1"])
        _stream(cmd, cwd, run.env(env), min(ATTRIBUTE_TEST_TIMEOUT, max(1.0, end - time.monotonic())),
                lambda stream, line: None)
        return run.finish()

    with ThreadPoolExecutor(workers if guard.namespace else 1) as pool:
        results = list(pool.map(one, tests))
    found = {name: left for name, left in zip(tests, results) if left}
    return found, [t for t in tests if t in untried]
