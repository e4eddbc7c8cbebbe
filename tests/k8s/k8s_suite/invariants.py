"""Node invariants checked after every scenario: what its pods left on the node.

After a scenario's namespace is deleted and its pods are gone, nothing of them may remain:

* a process of its pods: its environment names one of the pods as ``HOSTNAME`` (containerd's CRI
  puts ``HOSTNAME=<pod hostname>`` into every container's and every exec's environment, for any
  runtime), its cgroup names one of the pods' uids, or its command line is one of the scenario's
  markers (``sleep N`` with N unique to the run);
* a shim process whose id or bundle names one of its containers, sandboxes or its namespace;
* a runtime state entry named by one of its container or sandbox ids;
* a mount, in any mount namespace on the node (the runtime's own included), naming one of its
  pods' uids or container/sandbox ids.

While its pods still exist (before the namespace is deleted), no zombie may hang under a shim of
the namespace or a runtime process of it (naming one of its ids, or below its shims): a shim that
never reaps exec'd processes or orphans leaves zombies only while its pods live.

:func:`scan` reads the node; :class:`Leaks` is the pure result.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from k8s_suite import nodeproc

_PID_PATH = re.compile(r"^/proc/(\d+)/")
PERSISTENT_NS = "in the mount namespace bound at"
RUNTIME_NS = "in the mount namespace the runtime holds"
ORPHANED_RUNTIME = "runtime process orphaned to init"  # a runtime process of another container keeps it


@dataclass(frozen=True)
class Owner:
    """What identifies one scenario's objects on the node."""

    namespace: str
    ids: frozenset[str]  # container and sandbox ids (64 hex)
    pod_uids: frozenset[str]
    hostnames: frozenset[str]  # the pods' names (their hostname)
    markers: tuple[tuple[str, ...], ...] = ()

    @property
    def patterns(self) -> list[str]:
        """Strings that name this scenario's objects in mountinfo / cgroup paths."""
        out = sorted(self.ids)
        for uid in sorted(self.pod_uids):
            out += [uid, uid.replace("-", "_")]
        return out


@dataclass
class Leaks:
    processes: list[str] = field(default_factory=list)
    shims: list[str] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.processes or self.shims or self.state or self.mounts)

    def confirm_after(self, confirm: float, shim_confirm: float) -> float | None:
        """How long these leaks, found after the pods are gone, must be seen again before they are
        judged (``None``: waiting may still remove them, so they get the whole settle time).

        Mounts in the runtime's long-lived namespace (bound to a file, or held by a runtime process)
        and runtime processes orphaned to init: ``confirm`` (nothing is left to remove them). A shim
        whose pods are gone, a process of those pods or a state entry of their containers:
        ``shim_confirm`` (the kubelet is done with the pods; only a shim still shutting down could
        remove them, S14's rule). A mount held only by some process (it goes with that process)
        or seen in the host's namespace: ``None``."""
        if not self or not all(PERSISTENT_NS in m or RUNTIME_NS in m for m in self.mounts):
            return None
        slow = self.shims or self.state or any(ORPHANED_RUNTIME not in p for p in self.processes)
        return shim_confirm if slow else confirm

    def summary(self) -> str:
        """One short line: what kinds were left, mounts by their mount point (for a failure's first line)."""
        parts = [f"{len(items)} {what}" for what, items in (("process(es)", self.processes), ("shim(s)", self.shims),
                                                              ("state entr(y/ies)", self.state)) if items]
        points = sorted({f[4] for f in (m.split() for m in self.mounts) if len(f) > 4})
        if points:
            parts.append("mounts at " + ", ".join(points[:4]) + (", ..." if len(points) > 4 else ""))
        return "; ".join(parts)

    def describe(self, node: str) -> str:
        parts = []
        for what, items in (("process(es) of its pods", self.processes), ("shim(s)", self.shims),
                            ("runtime state entr(y/ies)", self.state), ("mount(s)", self.mounts)):
            if items:
                parts.append(f"{len(items)} {what}:\n" + "\n".join(f"    {x}" for x in items[:20]))
        return f"node {node}: " + "\n  ".join(parts)


# --- node commands (scripts; their output is parsed by the pure functions below) --------------------

def pid_match_script(hostnames: Iterable[str], patterns: Sequence[str]) -> str:
    """Print ``env <pid>`` for processes with ``HOSTNAME=<h>`` in their environment and ``cgroup <pid>``
    for processes whose cgroup names one of ``patterns``."""
    env = " ".join(f"-e {shlex.quote('HOSTNAME=' + h)}" for h in sorted(hostnames))
    cg = " ".join(f"-e {shlex.quote(p)}" for p in patterns if "-" in p or "_" in p)
    out = []
    if env:
        out.append(f"grep -l -a -z -x -F {env} /proc/[0-9]*/environ 2>/dev/null | sed 's/^/env /'")
    if cg:
        out.append(f"grep -l -F {cg} /proc/[0-9]*/cgroup 2>/dev/null | sed 's/^/cgroup /'")
    return "; ".join(out) + "; true" if out else "true"


def parse_pid_matches(text: str) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for ln in text.splitlines():
        kind, _, path = ln.partition(" ")
        m = _PID_PATH.match(path)
        if m:
            out.setdefault(int(m.group(1)), set()).add(kind)
    return out


# every process's mount namespace, as "<ns> /proc/<pid>/ns", pids in ascending order
NAMESPACES = "find /proc -mindepth 3 -maxdepth 3 -path '/proc/[0-9]*/ns/mnt' -printf '%l %h\\n' 2>/dev/null"


def mounts_script(patterns: Sequence[str], namespaces: str = NAMESPACES) -> str:
    """For each distinct mount namespace on the node, print its mountinfo lines naming one of
    ``patterns``, prefixed ``<pid>: `` (a process lives in it, found through /proc/*/ns/mnt),
    ``<pid>@<path>: `` (a process lives in it and it is also bind-mounted at ``path``, as reaper
    keeps its overlay namespace) or ``@<path>: `` (only the bind-mounted file keeps it: read
    through nsenter). A namespace is read through the first of its processes whose mountinfo can
    be read: on a busy node the first one listed may have exited since (a short-lived process of
    the runtime's own namespace), and a bound namespace none of whose processes could be read is
    read through its file. A fixed number of processes however many namespaces there are (one awk
    reads every namespace's mountinfo): it runs in every scenario's teardown, on a busy node.
    ``namespaces``: the command listing them (tests put a process that is gone first)."""
    if not patterns:
        return "true"
    pats = shlex.quote("\n".join(patterns))  # passed through the environment: awk -v would unescape them
    return ("bound=$(awk '$4 ~ /^mnt:/ {print $4, $5}' /proc/self/mountinfo); "
            f"export REAPER_CI_PATTERNS={pats} REAPER_CI_BOUND=\"$bound\"; "
            f"{{ {namespaces}; }} | awk 'function hit(l,   i) {{ for (i = 1; i <= np; i++) if (index(l, P[i])) return 1; return 0 }} "
            "BEGIN { np = split(ENVIRON[\"REAPER_CI_PATTERNS\"], P, \"\\n\"); "
            "nb = split(ENVIRON[\"REAPER_CI_BOUND\"], L, \"\\n\"); "
            "for (i = 1; i <= nb; i++) if (split(L[i], f, \" \") == 2) B[f[1]] = f[2] } "
            "NF == 2 && !($1 in done) { p = $2; sub(/\\/ns$/, \"\", p); pre = substr(p, 7) (($1 in B) ? \"@\" B[$1] : \"\") \": \"; "
            "file = p \"/mountinfo\"; n = 0; out = \"\"; "
            "while ((getline line < file) > 0) { n++; if (hit(line)) out = out pre line \"\\n\" }; close(file); "
            "if (n) { done[$1] = 1; printf \"%s\", out } } "
            "END { for (ns in B) if (!(ns in done)) { cmd = \"nsenter --mount=\\\"\" B[ns] \"\\\" cat /proc/self/mountinfo 2>/dev/null\"; "
            "while ((cmd | getline line) > 0) if (hit(line)) print \"@\" B[ns] \": \" line; close(cmd) } }'; "
            "true")


# --- pure evaluation --------------------------------------------------------------------------------

def leaked_processes(procs: Sequence[nodeproc.Proc], matches: dict[int, set[str]], owner: Owner,
                     runtime_names: Iterable[str] = ()) -> list[str]:
    """The owner's processes still on the node; a runtime process orphaned to init (ppid 1) that
    names one of the owner's containers is marked ``ORPHANED_RUNTIME``: nothing will stop it."""
    names = {n for n in runtime_names if n}
    table = nodeproc.by_pid(procs)
    out = []
    for pid, kinds in sorted(matches.items()):
        p = table.get(pid)
        if p is None or p.zombie:
            continue  # gone since (or a zombie: reported by the zombie check)
        orphan = p.ppid == 1 and p.argv0 in names and any(i in p.args for i in owner.ids)
        out.append(f"{p.line()}  [{'/'.join(sorted(kinds))}{'; ' + ORPHANED_RUNTIME if orphan else ''}]")
    for argv in owner.markers:
        for p in nodeproc.with_args(procs, argv):
            if p.pid not in matches:
                out.append(f"{p.line()}  [marker]")
    return out


def owned_shims(shims: Sequence[nodeproc.Shim], owner: Owner) -> list[nodeproc.Shim]:
    """The owner's shims: by id, sandbox id, a bundle naming its namespace, or its ids on the command line."""
    return nodeproc.leftover_shims(shims, owner.ids, owner.namespace)


def reapers(procs: Sequence[nodeproc.Proc], shims: Sequence[nodeproc.Shim], owner: Owner,
            runtime_names: Iterable[str]) -> set[int]:
    """Pids that must reap what they own: the owner's shims, and runtime processes (by name) that
    descend from those shims or name one of the owner's ids. Workload processes are not among them
    (a workload that does not wait for its children is not the runtime's fault)."""
    names = {n for n in runtime_names if n}
    shim_pids = {s.pid for s in owned_shims(shims, owner)}
    out = set(shim_pids)
    for p in procs:
        if p.argv0 in names and (any(i in p.args for i in owner.ids)
                                 or any(a.pid in shim_pids for a in nodeproc.ancestors(procs, p.pid))):
            out.add(p.pid)
    return out


def owned_zombies(procs: Sequence[nodeproc.Proc], reaper_pids: set[int]) -> list[nodeproc.Proc]:
    """Zombies whose parent is one of ``reaper_pids`` (the parent has not reaped them)."""
    return [p for p in procs if p.zombie and p.ppid in reaper_pids]


def leaked_state(entries: set[str] | None, owner: Owner) -> list[str]:
    return sorted(e for e in (entries or set()) if e in owner.ids)


def leaked_mounts(text: str, procs: Sequence[nodeproc.Proc] = (), runtime_names: Iterable[str] = ()) -> list[str]:
    """Mountinfo lines (``<pid>: <line>``), each with the process whose mount namespace holds it
    (a process named like the runtime, ``runtime_names``: the runtime's own shared namespace)."""
    names = {n for n in runtime_names if n}
    table = nodeproc.by_pid(procs)
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln:
            continue
        prefix, _, rest = ln.partition(": ")
        pid, _, bound = prefix.partition("@")
        holder = table.get(int(pid)) if pid.isdigit() else None
        if not pid and bound:
            where = f"{PERSISTENT_NS} {bound}"
        elif holder and holder.argv0 in names:
            where = f"{RUNTIME_NS}: pid {pid} ({holder.args[:80]})"
        elif bound:  # a process is in it, but the file keeps it when that process goes
            where = f"{PERSISTENT_NS} {bound}, pid {pid} ({holder.args[:80] if holder else '?'}) in it"
        elif holder:
            where = f"in the mount namespace of pid {pid} ({holder.args[:80]})"
        else:
            where = f"in pid {pid}'s mount namespace"
        out.append(f"{rest[:260]}  [{where}]")
    return out
