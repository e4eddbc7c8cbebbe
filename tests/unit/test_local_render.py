"""Rendering of the local cluster's configuration: containerd, CNI, kubelet, component flags."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from ci import config
from ci.cluster import local, runtime
from ci.cluster.local import host, hostnet
from ci.errors import UsageError

LAY = local.Layout(Path("/var/lib/reaper-ci"), Path("/run/reaper-ci"))


def cfg(**kw):
    return config.parse([], {}, prog="cluster", cwd=Path("/")).with_(**kw)


def cri(doc):
    return doc["plugins"]["io.containerd.grpc.v1.cri"]


@pytest.mark.parametrize("rt_name", ["runc", "reaper"])
def test_containerd_config_is_valid_toml_and_isolated(rt_name):
    doc = tomllib.loads(local.containerd_config(LAY, cfg(), rt_name))
    assert doc["version"] == 2
    assert doc["root"] == "/var/lib/reaper-ci/containerd"
    assert doc["state"] == "/run/reaper-ci/containerd"
    assert doc["grpc"]["address"] == "/run/reaper-ci/containerd/containerd.sock"
    assert cri(doc)["sandbox_image"] == config.DEFAULT_PAUSE_IMAGE
    assert cri(doc)["restrict_oom_score_adj"] is True
    assert cri(doc)["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": "/var/lib/reaper-ci/cni/net.d", "max_conf_num": 1}
    runtimes = cri(doc)["containerd"]["runtimes"]
    assert runtimes["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert runtimes["runc"]["options"]["Root"] == "/run/reaper-ci/runc"


def test_handler_served_by_reaper():
    doc = tomllib.loads(local.containerd_config(LAY, cfg(), "reaper"))
    h = cri(doc)["containerd"]["runtimes"]["reaper-v2"]
    assert h["runtime_type"] == "io.containerd.reaper.v2"
    assert "options" not in h


def test_handler_served_by_runc_keeps_our_runc_root():
    doc = tomllib.loads(local.containerd_config(LAY, cfg(runtime_class="my-class"), "runc"))
    h = cri(doc)["containerd"]["runtimes"]["my-class"]
    assert h["runtime_type"] == "io.containerd.runc.v2"
    assert h["options"]["Root"] == "/run/reaper-ci/runc"


@pytest.mark.parametrize("rt_name", ["runc", "reaper"])
def test_containerd_2_gets_config_version_3_with_the_split_cri_plugins(rt_name):
    doc = tomllib.loads(local.containerd_config(LAY, cfg(containerd_version="v2.2.9"), rt_name))
    assert doc["version"] == 3
    plugins = doc["plugins"]
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == config.DEFAULT_PAUSE_IMAGE
    run = plugins["io.containerd.cri.v1.runtime"]
    assert run["restrict_oom_score_adj"] is True and run["enable_cdi"] is False
    assert run["cni"] == {"bin_dirs": ["/usr/lib/cni"], "conf_dir": "/var/lib/reaper-ci/cni/net.d", "max_conf_num": 1}
    assert run["containerd"]["runtimes"]["runc"]["options"]["Root"] == "/run/reaper-ci/runc"
    want = "io.containerd.reaper.v2" if rt_name == "reaper" else "io.containerd.runc.v2"
    assert run["containerd"]["runtimes"]["reaper-v2"]["runtime_type"] == want
    assert "io.containerd.nri.v1.nri" in doc["disabled_plugins"]  # NRI's socket is host-wide
    assert plugins["io.containerd.grpc.v1.cri"] == {"stream_server_address": "127.0.0.1", "stream_server_port": "0"}


def test_containerd_versions_map_to_their_config_and_module():
    from ci.cluster import k8s_build
    from ci.cluster.local.render import containerd_config_version

    assert [containerd_config_version(v) for v in ("v1.6.20", "v1.7.29", "v2.1.9", "v2.2.9")] == [2, 2, 3, 3]
    assert k8s_build.containerd_module("v1.7.29") == "github.com/containerd/containerd"
    assert k8s_build.containerd_module("v2.2.9") == "github.com/containerd/containerd/v2"


def test_containerd_2_reads_the_rendered_config_without_unknown_keys(tmp_path):
    """The real containerd 2.x (when built here) loads the file and warns about no key it ignores."""
    import shutil
    import subprocess

    found = sorted(Path.home().glob(".cache/reaper-ci/containerd/v2.*/bin/containerd"))
    binary = str(found[-1]) if found else shutil.which("containerd-v2")
    if not binary:
        pytest.skip("no containerd 2.x built on this machine (nox -s cluster -- up --containerd-version v2.2.9 builds one)")
    conf = tmp_path / "c.toml"
    conf.write_text(local.containerd_config(LAY, cfg(containerd_version="v2.2.9"), "reaper"))
    r = subprocess.run([binary, "--config", str(conf), "config", "dump"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "unknown key" not in (r.stdout + r.stderr).lower(), r.stderr
    dump = tomllib.loads(r.stdout)
    assert dump["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["reaper-v2"]["runtime_type"] == "io.containerd.reaper.v2"


def test_cni_conflist():
    doc = json.loads(local.cni_conflist(LAY))
    bridge = doc["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["bridge"] == local.BRIDGE
    assert bridge["ipam"]["ranges"] == [[{"subnet": local.POD_CIDR}]]
    assert bridge["ipam"]["dataDir"].startswith("/var/lib/reaper-ci/")
    assert bridge["ipMasq"] is False  # no iptables rules to leak


def test_kubelet_config():
    doc = json.loads(local.kubelet_config(LAY, "192.0.2.2"))
    assert doc["cgroupDriver"] == "cgroupfs"
    assert doc["failCgroupV1"] is False  # kubelet 1.35 refuses cgroup v1 hosts otherwise
    assert doc["imageGCHighThresholdPercent"] == 100
    assert doc["failSwapOn"] is False
    assert doc["authentication"]["anonymous"]["enabled"] is False
    assert doc["authentication"]["webhook"]["enabled"] is True
    assert doc["authorization"]["mode"] == "Webhook"
    assert doc["containerRuntimeEndpoint"] == "unix:///run/reaper-ci/containerd/containerd.sock"
    assert doc["podLogsDir"].startswith("/var/lib/reaper-ci/")
    assert "clusterDNS" not in doc
    # no eviction thresholds => the kubelet never polls CRI container stats (containerd 1.6 crash)
    assert doc["evictionHard"] == {} and doc["localStorageCapacityIsolation"] is False


def test_apiserver_flags():
    argv = local.apiserver_argv(Path("/bin"), LAY, "192.0.2.2")
    flags = dict(a.split("=", 1) for a in argv[1:])
    assert flags["--bind-address"] == "127.0.0.1"
    assert flags["--anonymous-auth"] == "false"
    assert flags["--authorization-mode"] == "Node,RBAC"
    assert flags["--service-cluster-ip-range"] == "10.0.0.0/24"
    assert flags["--kubelet-client-certificate"].endswith("apiserver-kubelet-client.crt")
    assert flags["--etcd-servers"] == f"http://127.0.0.1:{local.ETCD_CLIENT_PORT}"
    assert "--feature-gates" not in flags  # no version given: no admission policy API


def test_apiserver_serves_mutating_admission_policies_where_the_version_has_them():
    def flags(version):
        return dict(a.split("=", 1) for a in local.apiserver_argv(Path("/bin"), LAY, "192.0.2.2", version)[1:])

    assert flags("v1.33.13")["--feature-gates"] == "MutatingAdmissionPolicy=true"
    assert flags("v1.33.13")["--runtime-config"] == "admissionregistration.k8s.io/v1alpha1=true"
    assert flags("v1.35.8")["--runtime-config"] == "admissionregistration.k8s.io/v1beta1=true"
    assert "--feature-gates" not in flags("v1.31.4")


def test_controller_manager_and_scheduler_flags():
    cm = dict(a.split("=", 1) for a in local.controller_manager_argv(Path("/bin"), LAY)[1:])
    assert cm["--leader-elect"] == "false" and cm["--use-service-account-credentials"] == "true"
    assert cm["--root-ca-file"].endswith("ca.crt") and cm["--service-account-private-key-file"].endswith("sa.key")
    sched = dict(a.split("=", 1) for a in local.scheduler_argv(Path("/bin"), LAY)[1:])
    assert sched["--leader-elect"] == "false"


def test_runtime_resolution():
    assert runtime.resolve(cfg(runtime="auto", source=None)) == "runc"
    assert runtime.resolve(cfg(runtime="auto", source=Path("/src"))) == "reaper"
    assert runtime.resolve(cfg(runtime="runc", source=Path("/src"))) == "runc"
    with pytest.raises(UsageError, match="--source"):
        runtime.resolve(cfg(runtime="reaper", source=None))


def test_reaper_env_keeps_everything_in_our_folders():
    env = runtime.reaper_env("/state/bin", "/run/x/reaper", "/state/logs", "/state/etc/reaper.conf")
    assert env["REAPER_RUNTIME_PATH"] == "/state/bin/reaper-runtime"
    assert all(v.startswith(("/state/", "/run/x/")) for v in env.values()), env


def test_shim_process_name():
    assert runtime.shim_process(cfg(), "reaper") == "containerd-shim-reaper-v2"
    assert runtime.shim_process(cfg(), "runc") == "containerd-shim-runc-v2"


def test_mounts_under_sorts_deepest_first(tmp_path, monkeypatch):
    info = tmp_path / "mountinfo"
    info.write_text(
        "1 0 0:1 / / rw - ext4 /dev/vda rw\n"
        "2 1 0:2 / /var/lib/reaper-ci/kubelet rw - ext4 /dev/vda rw\n"
        "3 2 0:3 / /var/lib/reaper-ci/kubelet/pods/x/volumes/y rw - tmpfs tmpfs rw\n"
        "4 1 0:4 / /var/lib/reaper-ci-other rw - tmpfs tmpfs rw\n"
    )
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: real(info) if str(self) == "/proc/self/mountinfo" else real(self, *a, **k))
    assert local.mounts_under([Path("/var/lib/reaper-ci")]) == [
        "/var/lib/reaper-ci/kubelet/pods/x/volumes/y",
        "/var/lib/reaper-ci/kubelet",
    ]


def test_remove_iptables_chains_deletes_jumps_then_the_chain(monkeypatch):
    from ci.tools import Result

    save = (
        "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [0:0]\n"
        "-A INPUT -j KUBE-FIREWALL\n"
        "-A OUTPUT -m comment --comment \"x y\" -j KUBE-FIREWALL\n"
        "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -j DROP\n"
        "-A INPUT -j KUBE-FIREWALL-OTHER\nCOMMIT\n"
    )
    calls = []

    def fake_run(argv, **kw):  # the module's runner
        calls.append(list(argv))
        return Result(0, save if argv[0].endswith("-save") else "")

    monkeypatch.setattr(hostnet, "_run", fake_run)
    local.remove_iptables_chains([("filter", "KUBE-FIREWALL")])
    changes = [c for c in calls if not c[0].endswith("-save")]
    assert changes == [
        ["iptables", "-t", "filter", "-D", "INPUT", "-j", "KUBE-FIREWALL"],
        ["iptables", "-t", "filter", "-D", "OUTPUT", "-m", "comment", "--comment", "x y", "-j", "KUBE-FIREWALL"],
        ["iptables", "-t", "filter", "-F", "KUBE-FIREWALL"],
        ["iptables", "-t", "filter", "-X", "KUBE-FIREWALL"],
    ]


def test_sysctls_are_restored(tmp_path, monkeypatch):
    real_path = Path
    root = tmp_path / "proc-sys"
    (root / "kernel").mkdir(parents=True)
    (root / "kernel" / "panic").write_text("10\n")

    def fake_path(*parts):
        if parts and parts[0] == "/proc/sys":
            return real_path(root, *parts[1:])
        return real_path(*parts)

    monkeypatch.setattr(host, "Path", fake_path)
    assert local.read_sysctls(["kernel/panic", "kernel/absent"]) == {"kernel/panic": "10"}
    assert local.restore_sysctls({"kernel/panic": "0"}) == []
    assert (root / "kernel" / "panic").read_text() == "0\n"


def test_cni_cache_files_are_ours_only(tmp_path, monkeypatch):
    cache = tmp_path / "results"
    cache.mkdir()
    for name in ("reaper-ci-aaa-eth0", "cni-loopback-aaa-lo", "cni-loopback-bbb-lo", "cni-loopback-ccc-lo", "othernet-ddd-eth0"):
        (cache / name).write_text("{}")
    monkeypatch.setattr(hostnet, "CNI_CACHE", cache)
    got = [p.name for p in local.cni_cache_files(["bbb"])]
    assert got == ["cni-loopback-aaa-lo", "cni-loopback-bbb-lo", "reaper-ci-aaa-eth0"]
