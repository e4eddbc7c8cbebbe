"""The ``local`` provisioner: a real single-node Kubernetes on this Linux host, offline.

Components (etcd, a dedicated containerd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet) run as supervised processes, each with its own log and pid file,
everything under ``cfg.state_dir`` (default /var/lib/reaper-ci) and ``/run/reaper-ci``. The
host's own containerd, /var/lib/kubelet and /etc are never touched.

``up`` reuses a healthy cluster, otherwise tears down whatever is left (a crash mid-``up``
included) and builds a fresh one, waiting on every component's readiness with a deadline.
``down`` removes processes, mounts, the CNI bridge and network namespaces, cgroups, and the
state folders.

One job per module: :mod:`.layout` (paths, ports, CIDRs), :mod:`.render` (configs and argv,
pure), :mod:`.supervise` (processes), :mod:`.host` (the host footprint: finding and removing
it), :mod:`.prereqs` (packages, binaries, the host lock), :mod:`.provisioner` (orchestration).
The names below are this package's public face (the provisioner registry and the tests use them).
"""

from ci.cluster.local.hostnet import cni_cache_files, remove_iptables_chains
from ci.cluster.local.host import (_is_nsfs, describe_leftovers, footprint_lines, mounts_under,
                                   read_sysctls, reaper_home_entries, restore_sysctls)
from ci.cluster.local.layout import (BRIDGE, COMPONENTS, ETCD_CLIENT_PORT, OWNS_REAPER_HOME, POD_CIDR, Layout,
                                     node_name)
from ci.cluster.local.provisioner import LocalProvisioner
from ci.cluster.local.render import (apiserver_argv, cni_conflist, containerd_config, controller_manager_argv,
                                     kubelet_config, scheduler_argv)
from ci.cluster.local.supervise import _kill_wait, descendants, pid_alive
from ci.cluster.verify import smoke_verdict

__all__ = ["BRIDGE", "COMPONENTS", "ETCD_CLIENT_PORT", "Layout", "LocalProvisioner", "OWNS_REAPER_HOME", "POD_CIDR",
           "_is_nsfs", "_kill_wait", "apiserver_argv", "cni_cache_files", "cni_conflist", "containerd_config",
           "controller_manager_argv", "describe_leftovers", "descendants", "footprint_lines", "kubelet_config",
           "mounts_under", "node_name", "pid_alive", "read_sysctls", "reaper_home_entries", "remove_iptables_chains",
           "restore_sysctls", "scheduler_argv", "smoke_verdict"]
