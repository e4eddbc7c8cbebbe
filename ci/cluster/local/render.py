"""What the local cluster's components are given: containerd, CNI and kubelet configs and each component's argv (pure functions of the layout)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ci.cluster import runtime as rt
from ci.config import Config
from ci.cluster.local.layout import APISERVER_PORT, BRIDGE, CNI_BIN_DIR, CNI_NETWORK, CONTROLLER_MANAGER_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, KUBELET_HEALTHZ_PORT, KUBELET_PORT, Layout, POD_CIDR, SCHEDULER_PORT, SERVICE_CIDR


def containerd_config_version(containerd_version: str) -> int:
    """The config schema a containerd reads natively: 2 for 1.x, 3 for 2.x."""
    major = containerd_version.lstrip("v").split(".", 1)[0]
    return 3 if major.isdigit() and int(major) >= 2 else 2


def containerd_config(lay: Layout, cfg: Config, runtime: str) -> str:
    """containerd config for our dedicated instance: version 2 (containerd 1.x) or 3 (2.x)."""
    version = containerd_config_version(cfg.containerd_version)
    handler = rt.handler_toml(cfg.runtime_class, runtime, cfg.runtime_type, str(lay.runc_root), config_version=version)
    head = f"""version = {version}
root = "{lay.containerd_root}"
state = "{lay.containerd_state}"
disabled_plugins = [{DISABLED_PLUGINS[version]}]

[grpc]
  address = "{lay.containerd_sock}"

[ttrpc]
  address = "{lay.containerd_sock}.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{lay.containerd_root}/opt"
"""
    # Clamp containers' oom_score_adj to containerd's own (restrict_oom_score_adj): a host without
    # CAP_SYS_RESOURCE in the bounding set (seen on the project's VMs) refuses the sandbox's -998
    # and runc init dies.
    if version == 2:
        return head + f"""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{cfg.pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "{rt.RUNC_RUNTIME_TYPE}"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{lay.runc_root}"

{handler}
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{lay.cni_conf}"
  max_conf_num = 1
"""
    # containerd 2.x splits the CRI plugin: images (snapshotter, the pinned sandbox image), runtime
    # (runtimes, CNI, log line size, oom clamp), and the gRPC server (streaming). NRI (a host-wide
    # socket) and CDI are on by default in 2.x: off, so the instance touches nothing of the host's.
    return head + f"""
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  discard_unpacked_layers = false

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{cfg.pause_image}"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  max_container_log_line_size = 16384
  restrict_oom_score_adj = true
  enable_cdi = false

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "{rt.RUNC_RUNTIME_TYPE}"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{lay.runc_root}"

{handler}
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["{CNI_BIN_DIR}"]
  conf_dir = "{lay.cni_conf}"
  max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


_SNAPSHOTTERS_OFF = '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"'
DISABLED_PLUGINS = {
    2: '"io.containerd.snapshotter.v1.aufs", ' + _SNAPSHOTTERS_OFF,
    3: _SNAPSHOTTERS_OFF + ', "io.containerd.nri.v1.nri"',
}


def cni_conflist(lay: Layout) -> str:
    """bridge + host-local (+ loopback): a private pod subnet on bridge ``rci0``; no masquerade rules."""
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(lay.cni_ipam),
                    },
                }
            ],
        },
        indent=2,
    ) + "\n"


def kubelet_config(lay: Layout, node_ip: str) -> str:
    """KubeletConfiguration (JSON, which kubelet reads as YAML)."""
    return json.dumps(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": node_ip,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": KUBELET_HEALTHZ_PORT,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(lay.pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(lay.pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(lay.pki / "kubelet-serving.key"),
            "cgroupDriver": "cgroupfs",
            # Kubernetes 1.35's kubelet refuses a cgroup v1 host unless told not to (failCgroupV1,
            # a field since 1.31); the project's VMs are cgroup v1. Without it every 1.35 cell of the
            # matrix was a setup error ("kubelet is configured to not run on a host using cgroup v1").
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{lay.containerd_sock}",
            "failSwapOn": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # No eviction thresholds and no local-storage isolation: the eviction manager then never
            # polls container stats (CRI ListContainerStats). containerd 1.6 panics (nil Any in
            # containerMetrics) on the empty Stats reply of a shim that reports no metrics, which
            # reaper's does; one poll would kill the node's containerd. A test cluster needs no
            # eviction; the stats path stays reachable for a scenario that wants to test it.
            "evictionHard": {},
            "localStorageCapacityIsolation": False,
            "resolvConf": "/etc/resolv.conf",
            "podCIDR": POD_CIDR,
            "podLogsDir": str(lay.pod_logs),
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "registerNode": True,
            "maxPods": 110,
            "containerLogMaxSize": "10Mi",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
        },
        indent=2,
    ) + "\n"


def etcd_argv(k8s_bin: Path, lay: Layout) -> list[str]:
    return [
        str(k8s_bin / "etcd"),
        "--name=reaper-ci",
        f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-cluster=reaper-ci=http://127.0.0.1:{ETCD_PEER_PORT}",
        "--listen-metrics-urls=",
        "--log-level=warn",
        "--quota-backend-bytes=2147483648",
    ]


def admission_policy_flags(k8s_version: str) -> list[str]:
    """MutatingAdmissionPolicy on (``nox -s conformance`` sets every e2e pod's RuntimeClass with
    one): alpha (v1alpha1) in Kubernetes 1.32-1.33, beta (v1beta1, still off by default) from 1.34."""
    m = re.fullmatch(r"v1\.(\d+)\.\d+", k8s_version)
    minor = int(m.group(1)) if m else 0
    if minor < 32:
        return []
    api = "v1alpha1" if minor < 34 else "v1beta1"
    return ["--feature-gates=MutatingAdmissionPolicy=true", f"--runtime-config=admissionregistration.k8s.io/{api}=true"]


def apiserver_argv(k8s_bin: Path, lay: Layout, node_ip: str, k8s_version: str = "") -> list[str]:
    p = lay.pki
    return [
        str(k8s_bin / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "--bind-address=127.0.0.1",
        f"--advertise-address={node_ip}",
        f"--secure-port={APISERVER_PORT}",
        f"--tls-cert-file={p / 'apiserver.crt'}",
        f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        "--anonymous-auth=false",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={p / 'sa.pub'}",
        f"--service-account-signing-key-file={p / 'sa.key'}",
        f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={p / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--cert-dir={lay.state / 'apiserver-certs'}",
        "--profiling=false",
        *admission_policy_flags(k8s_version),
        "--v=1",
    ]


def controller_manager_argv(k8s_bin: Path, lay: Layout) -> list[str]:
    p = lay.pki
    kc = lay.component_kubeconfig("kube-controller-manager")
    return [
        str(k8s_bin / "kube-controller-manager"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={CONTROLLER_MANAGER_PORT}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={p / 'sa.key'}",
        f"--root-ca-file={p / 'ca.crt'}",
        f"--cluster-signing-cert-file={p / 'ca.crt'}",
        f"--cluster-signing-key-file={p / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--cert-dir={lay.state / 'controller-manager-certs'}",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_argv(k8s_bin: Path, lay: Layout) -> list[str]:
    kc = lay.component_kubeconfig("kube-scheduler")
    return [
        str(k8s_bin / "kube-scheduler"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={SCHEDULER_PORT}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def kubelet_argv(k8s_bin: Path, lay: Layout, node_name: str, node_ip: str) -> list[str]:
    return [
        str(k8s_bin / "kubelet"),
        f"--config={lay.etc / 'kubelet.json'}",
        f"--kubeconfig={lay.component_kubeconfig('kubelet')}",
        f"--root-dir={lay.kubelet_root}",
        f"--hostname-override={node_name}",
        f"--node-ip={node_ip}",
        "--v=1",
    ]

