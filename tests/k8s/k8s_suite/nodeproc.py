"""The node's process table: ``ps`` parsing, parent chains, zombies, shims and their bundles.

Pure functions over text, plus thin readers that run one command through a
:class:`ci.cluster.base.NodeAccess`. ``ps -ww -eo pid,ppid,stat,args`` is the one process
listing used everywhere (procps on a node; full command lines, never cut at 80 columns).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterable, Mapping, Sequence

PS_ARGV = ["ps", "-ww", "-eo", "pid,ppid,stat,args"]
NS_ANNOTATION = "io.kubernetes.cri.sandbox-namespace"
POD_ANNOTATION = "io.kubernetes.cri.sandbox-name"
SANDBOX_ID_ANNOTATION = "io.kubernetes.cri.sandbox-id"
_HEX_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    stat: str
    args: str

    @property
    def argv0(self) -> str:
        """Basename of the program (``/usr/bin/containerd-shim-runc-v2 -id ..`` -> ``containerd-shim-runc-v2``)."""
        first = self.args.split(" ", 1)[0] if self.args else ""
        return first.rstrip("/").rsplit("/", 1)[-1]  # PurePosixPath(first).name, without its cost (called per row per scan)

    @property
    def zombie(self) -> bool:
        return self.stat.startswith("Z")

    def line(self) -> str:
        return f"{self.pid:>7} {self.ppid:>7} {self.stat:<5} {self.args}"


class PsError(ValueError):
    """The text is not the output of ``ps -eo pid,ppid,stat,args``."""


def parse_ps(text: str) -> list[Proc]:
    """Rows of ``ps -eo pid,ppid,stat,args`` (header required; blank lines ignored)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise PsError("empty ps output")
    head = lines[0].split()
    if head[:3] != ["PID", "PPID", "STAT"] or len(head) < 4:
        raise PsError(f"unexpected ps header: {lines[0]!r}")
    out = []
    for ln in lines[1:]:
        parts = ln.split(None, 3)
        if len(parts) < 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise PsError(f"unexpected ps row: {ln!r}")
        out.append(Proc(int(parts[0]), int(parts[1]), parts[2], parts[3] if len(parts) > 3 else ""))
    return out


def by_pid(procs: Iterable[Proc]) -> dict[int, Proc]:
    return {p.pid: p for p in procs}


def ancestors(procs: Iterable[Proc], pid: int) -> list[Proc]:
    """The parent chain of ``pid``, nearest first, up to (not including) pid 0; cycles stop the walk."""
    table = by_pid(procs)
    chain: list[Proc] = []
    seen = {pid}
    cur = table.get(pid)
    while cur is not None and cur.ppid not in seen and cur.ppid != 0:
        seen.add(cur.ppid)
        parent = table.get(cur.ppid)
        if parent is None:
            break
        chain.append(parent)
        cur = parent
    return chain


def ancestor_named(procs: Iterable[Proc], pid: int, name: str) -> Proc | None:
    """The nearest ancestor of ``pid`` whose program basename is ``name``."""
    for p in ancestors(procs, pid):
        if p.argv0 == name:
            return p
    return None


def descends_from(procs: Iterable[Proc], pid: int, names: Iterable[str]) -> Proc | None:
    """The nearest ancestor of ``pid`` whose program basename is one of ``names`` (None if none)."""
    wanted = {n for n in names if n}
    for p in ancestors(procs, pid):
        if p.argv0 in wanted:
            return p
    return None


def with_args(procs: Iterable[Proc], argv: Sequence[str]) -> list[Proc]:
    """Live processes whose command line is exactly ``argv`` (program compared by basename):
    ``sleep 123456`` matches ``/bin/sleep 123456`` but not ``sleep 1234567``."""
    name, rest = PurePosixPath(argv[0]).name, list(argv[1:])
    return [p for p in procs if not p.zombie and p.argv0 == name and p.args.split()[1:] == rest]


def zombies(procs: Iterable[Proc]) -> list[Proc]:
    return [p for p in procs if p.zombie]


def describe_chain(procs: Iterable[Proc], pid: int) -> str:
    procs = list(procs)
    me = by_pid(procs).get(pid)
    parts = [f"{pid} {me.args if me else '?'}"] + [f"{p.pid} {p.args}" for p in ancestors(procs, pid)]
    return " <- ".join(_cut(x, 120) for x in parts)


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


# --- shims -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shim:
    """A runtime shim process: ``<shim> -namespace k8s.io -id <id> -address ...``."""

    pid: int
    id: str | None
    args: str
    namespace: str | None = None  # the pod namespace its bundle names (None: unknown / bundle gone)
    pod: str | None = None
    sandbox_id: str | None = None

    def line(self) -> str:
        where = f" pod {self.namespace}/{self.pod}" if self.namespace else ""
        return f"pid {self.pid} id {self.id}{where}"


def shim_id(args: str) -> str | None:
    """The ``-id`` argument of a shim command line (as ps prints it: arguments joined by spaces,
    never quoted)."""
    argv = args.split()
    for i, a in enumerate(argv):
        if a in ("-id", "--id") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(("-id=", "--id=")):
            return a.split("=", 1)[1]
    return None


def shims(procs: Iterable[Proc], shim_name: str) -> list[Shim]:
    """Shim processes (program basename ``shim_name``), zombies excluded."""
    return [Shim(p.pid, shim_id(p.args), p.args) for p in procs if p.argv0 == shim_name and not p.zombie]


def bundle_script(pids: Sequence[int]) -> str:
    """A shell script printing each pid's bundle ``config.json`` (a shim's cwd is its bundle)."""
    ids = " ".join(str(int(p)) for p in pids)
    return (f"for p in {ids}; do echo \"=== $p\"; cat /proc/$p/cwd/config.json 2>/dev/null; echo; done")


def parse_bundles(text: str) -> dict[int, Mapping[str, str]]:
    """``pid -> annotations`` from :func:`bundle_script` output (pids whose bundle is unreadable: absent)."""
    out: dict[int, Mapping[str, str]] = {}
    pid: int | None = None
    buf: list[str] = []

    def flush():
        if pid is None:
            return
        raw = "\n".join(buf).strip()
        if not raw:
            return
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError:
            return
        ann = doc.get("annotations") if isinstance(doc, dict) else None
        out[pid] = dict(ann) if isinstance(ann, dict) else {}

    for ln in text.splitlines():
        m = re.match(r"^=== (\d+)$", ln)
        if m:
            flush()
            pid, buf = int(m.group(1)), []
        else:
            buf.append(ln)
    flush()
    return out


def annotate(shim_list: Sequence[Shim], bundles: Mapping[int, Mapping[str, str]]) -> list[Shim]:
    out = []
    for s in shim_list:
        ann = bundles.get(s.pid, {})
        out.append(Shim(s.pid, s.id, s.args, ann.get(NS_ANNOTATION), ann.get(POD_ANNOTATION),
                        ann.get(SANDBOX_ID_ANNOTATION)))
    return out


def leftover_shims(shim_list: Sequence[Shim], ids: Iterable[str], ns_prefix: str) -> list[Shim]:
    """Shims that belong to this run: ``-id`` (or its sandbox id) among ``ids``, or a bundle naming
    a namespace of this run; a shim whose command line names one of ``ids`` counts too."""
    idset = {i for i in ids if i}
    out = []
    for s in shim_list:
        if (s.id in idset or (s.sandbox_id in idset) or (s.namespace or "").startswith(ns_prefix)
                or any(i in s.args for i in idset if _HEX_ID.match(i))):
            out.append(s)
    return out


# --- runtime state entries -------------------------------------------------------------------------


def container_ids_in(names: Iterable[str]) -> set[str]:
    """The entries of a runtime state folder that look like container ids (64 hex digits)."""
    return {n for n in names if _HEX_ID.match(n)}


@dataclass
class Snapshot:
    """What the node showed at one moment (for before/after comparisons)."""

    procs: list[Proc] = field(default_factory=list)
    state_entries: set[str] = field(default_factory=set)


def new_zombies(before: Iterable[Proc], after: Iterable[Proc]) -> list[Proc]:
    """Zombies in ``after`` that were not zombies (same pid and parent) in ``before``."""
    old = {(p.pid, p.ppid) for p in before if p.zombie}
    return [p for p in after if p.zombie and (p.pid, p.ppid) not in old]


def others_shims(shim_list: Iterable[Shim], ns: str, others_ids: Iterable[str]) -> set[int]:
    """Pids of the shims another scenario answers for, not the one of namespace ``ns``: a shim whose
    bundle names another namespace (a live pod of another scenario), or one whose bundle is gone but
    whose id another scenario recorded (a shim that outlived its pod: that scenario's teardown and
    S14 judge it, and the zombies below it)."""
    others = set(others_ids)
    return {s.pid for s in shim_list if (s.namespace and s.namespace != ns) or (not s.namespace and s.id in others)}


def judged_zombies(before: Iterable[Proc], now: Sequence[Proc], owners: Iterable[str],
                   left_to_others: Iterable[int] = ()) -> list[Proc]:
    """The zombies new since ``before`` that the runtime answers for: below containerd, a shim or
    the runtime (``owners``, by program name), and not below one of ``left_to_others`` (the pids of
    shims whose pods another scenario or run judges). A zombie of init's, such as an exited shim
    init has not reaped yet, is the host's."""
    others = set(left_to_others)
    return [z for z in new_zombies(before, now) if descends_from(now, z.pid, owners)
            and not any(a.pid in others for a in ancestors(now, z.pid))]


def zombie_report(procs: Sequence[Proc], zs: Sequence[Proc]) -> str:
    table = by_pid(procs)
    rows = []
    for z in zs:
        parent = table.get(z.ppid)
        rows.append(f"  zombie {z.line()}\n    parent: {parent.line() if parent else z.ppid}")
    return "\n".join(rows)
