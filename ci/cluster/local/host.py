"""What the local cluster puts on the host beyond its folders (mounts, network namespaces, the bridge, iptables chains, cgroups, sysctls, libcni's cache, shim sockets, reaper's overlay state): finding it (``status``'s footprint) and removing it (``down``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Iterable, Sequence

from ci import console
from ci.cluster.base import ClusterInfo
from ci.errors import SetupError
from ci.cluster.local.layout import BRIDGE, CNI_CACHE, Layout, OWNS_REAPER_HOME, REAPER_HOME, REAPER_MERGED, REAPER_OVERLAY_STATE, RUN_DIR, POD_CIDR
from ci.cluster.local.hostnet import cni_cache_files, cni_iptables_chains, kube_chains, link_exists, remove_iptables_chains
from ci.cluster.local.supervise import _children, _cmdline, _kill_wait, _start_time, descendants
from ci.tools import ShRunner

_run = ShRunner()  # host commands (umount, ip): results judged here, nothing logged


def _mnt_ns_inode(path: Path) -> int | None:
    """Inode of a mount namespace file (a bind-mounted nsfs file, or /proc/<pid>/ns/mnt)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino


def _is_nsfs(path: Path) -> bool:
    """A namespace file bind-mounted at ``path`` (reaper keeps its overlay namespaces so): a regular
    file whose device differs from its folder's (a mount point) is what nsfs mounts look like."""
    try:
        return path.is_file() and path.stat().st_dev != path.parent.stat().st_dev
    except OSError:
        return False


def reaper_home_entries() -> list[Path]:
    """reaper's overlay state in its own folder (what a reaper with default paths creates)."""
    if not REAPER_HOME.is_dir():
        return []
    return sorted([REAPER_HOME / n for n in REAPER_OVERLAY_STATE if (REAPER_HOME / n).exists()]
                  + list(REAPER_HOME.glob("overlay*.lock")))


def mounts_under(prefixes: Sequence[Path]) -> list[str]:
    """Mount points (deepest first) at or under any of ``prefixes``, from /proc/self/mountinfo."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        mp = line.split()[4].replace("\\040", " ")
        for pre in prefixes:
            p = str(pre).rstrip("/")
            if mp == p or mp.startswith(p + "/"):
                found.append(mp)
                break
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


def unmount_all(prefixes: Sequence[Path]) -> list[str]:
    """Unmount everything under ``prefixes`` (lazily when busy); returns what is still mounted."""
    for _ in range(5):
        mps = mounts_under(prefixes)
        if not mps:
            return []
        for mp in mps:
            if _run(["umount", mp], check=False).returncode != 0:
                _run(["umount", "-l", mp], check=False)
    return mounts_under(prefixes)






def remove_empty_dirs(top: Path, stop_at: Path) -> None:
    """rmdir ``top``'s empty sub-folders bottom-up, then ``top`` and its parents up to ``stop_at``."""
    if not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)):
        try:
            d.rmdir()
        except OSError:
            pass
    d = top
    while d != stop_at and d != d.parent:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


SHIM_SOCKETS = Path("/run/containerd/s")


def stale_shim_sockets() -> list[Path]:
    """Sockets in /run/containerd/s that no process listens on any more."""
    if not SHIM_SOCKETS.is_dir():
        return []
    stale = []
    for f in sorted(SHIM_SOCKETS.iterdir()):
        if not f.is_socket():
            continue
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect(str(f))
        except (ConnectionRefusedError, FileNotFoundError):
            stale.append(f)
        except OSError:
            pass  # busy or slow: someone is there
        finally:
            s.close()
    return stale




def kubepods_cgroups() -> list[Path]:
    """kubelet's cgroupfs hierarchy (``kubepods``) in every v1 controller, or at the root of a
    cgroup v2 (unified) mount, deepest first."""
    root = Path("/sys/fs/cgroup")
    found: list[Path] = []
    if not root.is_dir():
        return found
    tops = [root / "kubepods"] + [ctrl / "kubepods" for ctrl in root.iterdir() if ctrl.is_dir() and ctrl.name != "kubepods"]
    for top in tops:
        if top.is_dir():
            found.extend(p for p in top.rglob("*") if p.is_dir())
            found.append(top)
    return sorted(found, key=lambda p: -len(p.parts))


def cgroup_pids(groups: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for g in groups:
        try:
            pids.update(int(x) for x in (g / "cgroup.procs").read_text().split())
        except (OSError, ValueError):
            pass
    return pids








# Kernel settings the kubelet changes at start-up (protectKernelDefaults: false); down puts back
# what was there before our kubelet first started.
KUBELET_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")


def read_sysctls(names: Sequence[str] = KUBELET_SYSCTLS) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = Path("/proc/sys", n).read_text().strip()
        except OSError:
            pass
    return out


def restore_sysctls(saved: dict[str, str]) -> list[str]:
    """Write back ``saved``; returns the names that could not be restored."""
    failed = []
    for n, v in saved.items():
        try:
            if Path("/proc/sys", n).read_text().strip() != v:
                Path("/proc/sys", n).write_text(v + "\n")
        except OSError:
            failed.append(n)
    return failed




def footprint_lines(left: dict[str, list[str]], most: int = 8) -> list[str]:
    """``status``'s account of what the cluster has on the host (after ``down``: "nothing")."""
    if not any(left.values()):
        return ["  on this host: nothing (no process, mount, link, netns, iptables chain, cgroup or folder of ours)"]
    out = ["  on this host: " + ", ".join(f"{len(v)} {k}" for k, v in left.items() if v)]
    for kind, items in left.items():
        out += [f"    {kind}: {item}" for item in items[:most]]
        if len(items) > most:
            out.append(f"    {kind}: ... and {len(items) - most} more")
    return out


def describe_leftovers(state: Path, run: Path = RUN_DIR) -> dict[str, list[str]]:
    """What of a local cluster exists right now: processes, mounts, links, netns, cgroups, folders."""
    lay = Layout(state, run)
    procs = [f"{pid} {' '.join(_cmdline(pid))[:160]}" for pid in our_processes(lay)]
    return {
        "processes": procs,
        "mounts": mounts_under([lay.state, lay.run] + ([REAPER_HOME] if (lay.state / OWNS_REAPER_HOME).exists() else [])),
        "links": [BRIDGE] if link_exists(BRIDGE) else [],
        "iptables": [f"{cmd} {t} {c}" for cmd, chains in kube_chains().items() for t, c in chains]
        + [f"iptables {t} {c}" for t, c in cni_iptables_chains()],
        "netns": our_netns(),
        "cni-cache": [str(f) for f in cni_cache_files()],
        "shim-sockets": [str(f) for f in stale_shim_sockets()],
        "cgroups": [str(g) for g in kubepods_cgroups()],
        "dirs": [str(d) for d in (lay.state, lay.run) if d.exists()],
    }


class HostCleanup:
    """``down``'s removal of everything the cluster put on the host (needs ``self.lay``, ``self.cfg``, the supervisor's ``_stop``)."""

    def _down(self) -> None:
        lay = self.lay
        if not lay.state.exists():
            # Nothing of a cluster at this state folder exists. The bridge, cgroups, netns and
            # iptables chains are host-wide: removing them here would break a cluster that another
            # state folder runs (a `down --state-dir <elsewhere>` must never do that).
            console.info(f"no local cluster in {lay.state}: nothing to remove")
            return
        try:
            ran_reaper = ClusterInfo.load(lay.info).runtime == "reaper"
        except (OSError, ValueError, TypeError):
            ran_reaper = (lay.bin / self.cfg.shim_binary).exists()
        started = time.monotonic()
        leftovers: list[str] = []
        # 1. the control plane and kubelet first, so nothing restarts pods while we clean
        for comp in ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver"):
            self._stop(comp)
        # 2. containers and shims started by our containerd
        sock = str(lay.containerd_sock)
        shims = [p for p in self._all_pids() if self._is_our_shim(p, sock)]
        tree = _children()
        victims = set(shims)
        for s in shims:
            victims.update(descendants(s, tree))
        victims |= cgroup_pids(kubepods_cgroups())
        victims.discard(os.getpid())
        if victims:
            _kill_wait(sorted(victims), 2)
        self._stop("containerd")
        self._stop("etcd")
        # stray processes of ours: components whose pid files were lost (crash mid-up), and what
        # the runtime under test left that escaped its shim (reaper's monitor daemons re-parent to
        # PID 1 and can outlive their container)
        strays = our_processes(lay)
        if strays:
            _kill_wait(strays, 3)
        # shim sockets: containerd 1.6 puts them in /run/containerd/s whatever its state dir; a
        # killed shim leaves its socket behind, and reaper's shim leaves it even on a clean exit.
        # With every shim of ours gone, a socket nobody listens on is garbage.
        for sock_file in stale_shim_sockets():
            sock_file.unlink(missing_ok=True)
        # 3. network namespaces, mounts, bridge, iptables, cgroups
        for ns in our_netns():
            nspath = Path("/run/netns") / ns
            unmount_all([nspath])
            try:
                nspath.unlink()
            except OSError:
                pass
        still = unmount_all([lay.state, lay.run])
        if still:
            leftovers.append(f"mounts: {', '.join(still)}")
        if link_exists(BRIDGE):
            r = _run(["ip", "link", "delete", BRIDGE], check=False, stderr=False)
            if r.returncode != 0:
                leftovers.append(f"bridge {BRIDGE}: {r.stderr.strip()}")
        remove_iptables_chains(cni_iptables_chains())
        self._remove_kubelet_chains()
        try:
            saved = json.loads((lay.state / "sysctls-before-kubelet.json").read_text())
        except (OSError, ValueError):
            saved = {}
        failed = restore_sysctls(saved)
        if failed:
            leftovers.append(f"could not restore sysctls {', '.join(failed)}")
        for g in kubepods_cgroups():
            try:
                g.rmdir()
            except OSError:
                pass
        # /run/containerd/s was made for our shims when no host containerd uses /run/containerd
        if not Path("/run/containerd/containerd.sock").exists():
            for d in (Path("/run/containerd/s"), Path("/run/containerd")):
                try:
                    d.rmdir()
                except OSError:
                    break
        # libcni's result cache for our sandboxes; reaper's fixed overlay mount point
        sandbox_dir = lay.containerd_root / "io.containerd.grpc.v1.cri" / "sandboxes"
        sandbox_ids = [d.name for d in sandbox_dir.iterdir()] if sandbox_dir.is_dir() else []
        for f in cni_cache_files(sandbox_ids):
            f.unlink(missing_ok=True)
        remove_empty_dirs(CNI_CACHE, Path("/var/lib"))
        if ran_reaper:
            remove_empty_dirs(REAPER_MERGED, Path("/run"))
            if (lay.state / OWNS_REAPER_HOME).exists():
                still = unmount_all([REAPER_HOME])
                if still:
                    leftovers.append(f"reaper's mounts: {', '.join(still)}")
                for entry in reaper_home_entries():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                remove_empty_dirs(REAPER_HOME, Path("/run"))
        # 4. files
        for d in (lay.run, lay.state):
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
            if d.exists():
                leftovers.append(f"could not remove {d}")
        if leftovers:
            raise SetupError("down left things behind: " + "; ".join(leftovers))
        console.info(f"local cluster down in {time.monotonic() - started:.1f}s")

    def _remove_kubelet_chains(self) -> None:
        """The kubelet's KUBE-* chains, unless they were there before our kubelet started or another
        kubelet runs on this host."""
        other_kubelet = any(Path(a[0]).name == "kubelet" for a in (_cmdline(p) for p in self._all_pids()) if a and a[0])
        if other_kubelet:
            return
        try:
            before = json.loads((self.lay.state / "preexisting-kube-chains.json").read_text())
        except (OSError, ValueError):
            before = {}
        for cmd, chains in kube_chains().items():
            keep = {tuple(c) for c in before.get(cmd, [])}
            # jumps first (INPUT/OUTPUT -> KUBE-FIREWALL), then the chains themselves
            remove_iptables_chains([c for c in chains if c not in keep], cmd)


COMPONENT_BINARIES = ("etcd", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")


def our_processes(lay: Layout) -> list[int]:
    """Live processes that belong to the cluster in ``lay``, with their descendants: our components
    and shims (by binary name, with our state or run folder on their command line), anything
    executing a binary from our bin folder (the runtime under test, e.g. reaper's monitor
    daemons, which re-parent to PID 1), and anything in the runtime's shared mount namespace
    (reaper's overlay namespace, bind-mounted under our run folder). A user's ``tail -f`` of one
    of our logs is not ours."""
    me = {os.getpid(), os.getppid()}
    state, run, bindir = str(lay.state) + "/", str(lay.run) + "/", str(lay.bin) + "/"
    # reaper's overlay namespaces, bind-mounted (nsfs) under its folder: ours when this cluster made them
    tops = [lay.reaper_run] + ([REAPER_HOME] if (lay.state / OWNS_REAPER_HOME).exists() else [])
    shared_inos = {i for i in (_mnt_ns_inode(Path(m)) for m in mounts_under(tops) if _is_nsfs(Path(m))) if i}
    roots = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in me or not _start_time(int(d.name)):
            continue
        pid = int(d.name)
        argv = _cmdline(pid)
        name = Path(argv[0]).name if argv and argv[0] else ""
        joined = " ".join(argv)
        try:
            exe = os.readlink(d / "exe")
        except OSError:
            exe = ""
        if exe.startswith(bindir):
            roots.append(pid)
        elif (name in COMPONENT_BINARIES or name.startswith("containerd-shim")) and (state in joined or run in joined):
            roots.append(pid)
        elif shared_inos and _mnt_ns_inode(d / "ns" / "mnt") in shared_inos:
            roots.append(pid)
    tree = _children()
    found = set(roots)
    for r in roots:
        found.update(descendants(r, tree))
    return sorted(p for p in found if p not in me and _start_time(p))


def our_netns() -> list[str]:
    """CNI network namespaces (/run/netns/cni-*) holding an address of our pod subnet."""
    prefix = POD_CIDR.rsplit(".", 1)[0] + "."
    out = []
    ns_dir = Path("/run/netns")
    if not ns_dir.is_dir():
        return out
    for ns in sorted(ns_dir.iterdir()):
        if not ns.name.startswith("cni-"):
            continue
        r = _run(["ip", "-n", ns.name, "-4", "-o", "addr"], check=False, stderr=False)
        if r.returncode != 0:  # stale: the file exists but no namespace is mounted on it
            if not any(m == str(ns) for m in mounts_under([ns])):
                out.append(ns.name)
            continue
        if f"inet {prefix}" in r.stdout:
            out.append(ns.name)
    return out
