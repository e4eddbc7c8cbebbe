"""The local cluster's network footprint on the host: its network namespaces, the CNI bridge, the
iptables chains of the CNI plugins and the kubelet, and libcni's result cache (found for ``status``,
removed by ``down``)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Iterable, Sequence

from ci.cluster.local.layout import CNI_CACHE, CNI_NETWORK, POD_CIDR
from ci.tools import ShRunner

_run = ShRunner()  # iptables and ip: results judged here, nothing logged




def cni_cache_files(sandbox_ids: Iterable[str] = ()) -> list[Path]:
    """libcni result files of our network (``reaper-ci-<id>-eth0``) and of our sandboxes' loopback."""
    if not CNI_CACHE.is_dir():
        return []
    ids = set(sandbox_ids)
    prefix = f"{CNI_NETWORK}-"
    ids.update(f.name[len(prefix):].rsplit("-", 1)[0] for f in CNI_CACHE.iterdir() if f.name.startswith(prefix))
    return sorted(f for f in CNI_CACHE.iterdir()
                  if f.name.startswith(f"{CNI_NETWORK}-") or (f.name.startswith("cni-loopback-") and f.name[len("cni-loopback-"):].rsplit("-", 1)[0] in ids))


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def cni_iptables_chains() -> list[tuple[str, str]]:
    """(table, chain) of CNI-* chains whose rules mention our network name or pod subnet."""
    found: list[tuple[str, str]] = []
    if not shutil.which("iptables-save"):
        return found
    for table in ("nat", "filter"):
        r = _run(["iptables-save", "-t", table], check=False, stderr=False)
        if r.returncode != 0:
            continue
        for line in r.stdout.splitlines():
            if line.startswith("-A ") and (f'name: \\"{CNI_NETWORK}\\"' in line or f'"name: \\"{CNI_NETWORK}\\"' in line or POD_CIDR.rsplit(".", 1)[0] + "." in line):
                for tok in line.split():
                    if tok.startswith("CNI-") and (table, tok) not in found:
                        found.append((table, tok))
    return found


def remove_iptables_chains(chains: Sequence[tuple[str, str]], cmd: str = "iptables") -> None:
    """Delete the rules jumping to each (table, chain), then flush and delete the chain."""

    for table, chain in chains:
        r = _run([f"{cmd}-save", "-t", table], check=False, stderr=False)
        for line in r.stdout.splitlines():
            if not line.startswith("-A "):
                continue
            tokens = shlex.split(line)
            targets = {tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("-j", "-g")}
            if chain in targets and tokens[1] != chain:
                _run([cmd, "-t", table, "-D", *tokens[1:]], check=False)
        _run([cmd, "-t", table, "-F", chain], check=False)
        _run([cmd, "-t", table, "-X", chain], check=False)


IPTABLES_CMDS = ("iptables", "ip6tables")


def kube_chains() -> dict[str, list[tuple[str, str]]]:
    """KUBE-* chains (the kubelet makes KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT)
    per command (iptables, ip6tables) as (table, chain)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for cmd in IPTABLES_CMDS:
        if not shutil.which(f"{cmd}-save"):
            continue
        r = _run([f"{cmd}-save"], check=False, stderr=False)
        table = ""
        for line in r.stdout.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
            elif line.startswith(":KUBE-"):
                found.setdefault(cmd, []).append((table, line[1:].split()[0]))
    return found
