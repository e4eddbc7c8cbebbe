"""The kind provisioner's logic, with a fake command runner (kind cannot run here).

The fake records every argv and answers from a small rule table, so these tests pin the exact
command sequence of ``up``/``down``, the rendered kind config (its containerd handler entry parsed
as TOML, and fed to the real containerd when it is installed), the node architecture -> target
triple mapping and the one-line prerequisite errors.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from ci.cluster import kind as kind_mod
from ci.cluster.base import ClusterInfo, info_path
from ci.cluster.kind import KindProvisioner, Result, render_config, target_triple
from ci.config import DEFAULT_KIND_NODE_IMAGE, parse
from ci.errors import SetupError, ToolMissing

from _kind_fake import (  # noqa: E402
    FakeApi, KUBECONFIG, NODE, NOT_READY, FakeRunner, _built, _cfg, _fresh_cluster_rules, created_node_sequence,
    _workspace, dump_v2, dump_v3, fast,
)


# ---------------------------------------------------------------------------- pure helpers


def test_rendered_config_has_the_reaper_handler_entry(tmp_path):
    cfg = _cfg(tmp_path)
    doc = yaml.safe_load(render_config(cfg, "reaper"))
    assert doc["kind"] == "Cluster" and doc["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (patch,) = doc["containerdConfigPatches"]
    runtimes = tomllib.loads(patch)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    # reaper's own kind config (scripts/kind-config.yaml at a8a0d28): its pod annotations reach the runtime
    assert runtimes == {"reaper-v2": {"runtime_type": "io.containerd.reaper.v2", "sandbox_mode": "podsandbox",
                                      "pod_annotations": ["reaper.runtime/*"]}}


def test_kind_apiserver_serves_mutating_admission_policies_where_kubernetes_has_them(tmp_path):
    from ci.cluster.kind_config import admission_policy_api

    doc = yaml.safe_load(render_config(_cfg(tmp_path), "reaper"))  # default node image: v1.33
    assert doc["featureGates"] == {"MutatingAdmissionPolicy": True}
    assert doc["runtimeConfig"] == {"admissionregistration.k8s.io/v1alpha1": "true"}
    assert admission_policy_api("kindest/node:v1.30.13@sha256:abc") is None  # no such gate: the apiserver would not start
    assert admission_policy_api("kindest/node:v1.34.0") == "v1beta1"


def test_committed_kind_config_is_the_default_rendering(tmp_path):
    committed = yaml.safe_load(kind_mod.KIND_CONFIG_FILE.read_text())
    assert committed == yaml.safe_load(render_config(_cfg(tmp_path), "reaper"))


def test_rendered_config_follows_the_handler_and_runtime_type(tmp_path):
    cfg = _cfg(tmp_path, "--runtime-class", "my-handler").with_(runtime_type="io.containerd.other.v2")
    (patch,) = yaml.safe_load(render_config(cfg, "reaper"))["containerdConfigPatches"]
    runtimes = tomllib.loads(patch)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert runtimes["my-handler"]["runtime_type"] == "io.containerd.other.v2"


def test_runc_config_mirrors_the_node_images_runc_handler(tmp_path):
    # kind's kubelet uses the systemd cgroup driver: a runc handler with cgroupfs would not match it
    (patch,) = yaml.safe_load(render_config(_cfg(tmp_path), "runc"))["containerdConfigPatches"]
    runtimes = tomllib.loads(patch)["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
    assert runtimes == {"reaper-v2": {"runtime_type": "io.containerd.runc.v2", "base_runtime_spec": "/etc/containerd/cri-base.json",
                                      "options": {"SystemdCgroup": True}}}


@pytest.mark.parametrize("runtime, runtime_type", [("reaper", "io.containerd.reaper.v2"), ("runc", "io.containerd.runc.v2")])
def test_real_containerd_reads_the_handler_entry(tmp_path, runtime, runtime_type):
    """The patch, as a version-2 config, parsed by containerd itself (`config dump`), then read back
    the way up() checks a node."""
    if not shutil.which("containerd"):
        pytest.skip("containerd is not installed (apt-get install containerd): cannot feed it the rendered entry")
    cfg = _cfg(tmp_path)
    conf = tmp_path / "config.toml"
    conf.write_text("version = 2\n" + kind_mod.handler_entry(cfg, runtime))
    proc = subprocess.run(["containerd", "--config", str(conf), "config", "dump"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    entry = kind_mod.effective_handler(proc.stdout, "reaper-v2")
    assert isinstance(entry, dict), entry
    assert entry["runtime_type"] == runtime_type
    if runtime == "runc":
        assert entry["options"]["SystemdCgroup"] is True and entry["base_runtime_spec"] == "/etc/containerd/cri-base.json"


@pytest.mark.parametrize("dump", [dump_v2, dump_v3])
def test_effective_handler_reads_config_v2_and_v3_dumps(dump):
    assert kind_mod.effective_handler(dump("reaper-v2", "io.containerd.reaper.v2"), "reaper-v2") == {"runtime_type": "io.containerd.reaper.v2"}
    missing = kind_mod.effective_handler(dump("other", "io.containerd.reaper.v2"), "reaper-v2")
    assert missing == "no handler 'reaper-v2' (handlers: other, runc)"


def test_effective_handler_on_unreadable_output():
    assert kind_mod.effective_handler("level=info msg=hello\n[[[", "reaper-v2").startswith("unreadable `containerd config dump`")


def test_reaper_node_env_is_what_reapers_own_install_sets():
    """reaper's install (a8a0d28: Ansible/Helm reaper.conf; d8d19fe: /etc/default/containerd) sets
    its DNS mode and its log path; the shim's runtime path (its default) and shim log (logging only)
    are the two additions. Nothing that moves state or changes overlay isolation."""
    env = kind_mod.reaper_node_env(parse(["--runtime-binary", "my-runtime"], {}))
    assert env == {
        "REAPER_DNS_MODE": "kubernetes",
        "REAPER_RUNTIME_LOG": "/run/reaper/runtime.log",
        "REAPER_RUNTIME_PATH": "/usr/local/bin/my-runtime",
        "REAPER_SHIM_LOG": "/run/reaper/shim.log",
    }
    assert not any(k.startswith(("REAPER_OVERLAY", "REAPER_RUNTIME_ROOT", "REAPER_FILTER", "REAPER_CONFIG", "REAPER_NO_OVERLAY"))
                   for k in env)
    assert kind_mod.reaper_node_env(parse([], {}))["REAPER_RUNTIME_PATH"] == "/usr/local/bin/reaper-runtime"  # the shim's default


def test_every_reaper_file_is_under_run_reaper():
    # /var is a volume on kind nodes, outside what reaper's overlay shows; reaper's install uses /run/reaper
    for path in (kind_mod.REAPER_LOG, kind_mod.REAPER_SHIM_LOG, *kind_mod.component_logs("reaper").values()):
        assert path.startswith("/run/reaper/") or path.startswith(kind_mod.CI_LOG_DIR + "/") and "reaper-" not in path.rsplit("/", 1)[1]
    assert kind_mod.REAPER_RUN == "/run/reaper"


@pytest.mark.parametrize("info, expected", [
    ('{"status": {"conditions": [{"type": "RuntimeReady", "status": true}, {"type": "NetworkReady", "status": true}]}}', True),
    ('{"status": {"conditions": [{"type": "RuntimeReady", "status": true}, {"type": "NetworkReady", "status": false, '
     '"reason": "NetworkPluginNotReady"}]}}', "NetworkReady=False (NetworkPluginNotReady)"),
    ("", "unreadable `crictl info`: ''"),
])
def test_cri_ready_reads_crictl_info(info, expected):
    assert kind_mod.cri_ready(info) == expected


@pytest.mark.parametrize("text, expected", [("1.52 1.52\n", (1, 52)), ("1.47 1.52", (1, 47)), ("1.52 1.41", (1, 41)), ("", None),
                                            ("Error response from daemon", None)])
def test_docker_api_version_is_the_lower_of_client_and_server(text, expected):
    assert kind_mod.api_version(text) == expected


def test_journal_copier_writes_the_files_cluster_info_names():
    logs = kind_mod.component_logs("reaper")
    assert logs["reaper-runtime"] == kind_mod.REAPER_LOG and logs["reaper-shim"] == kind_mod.REAPER_SHIM_LOG
    assert set(kind_mod.component_logs("runc")) == {"containerd", "kubelet"}
    for unit in ("containerd", "kubelet"):
        exec_start = next(ln for ln in kind_mod.journal_unit().splitlines() if ln.startswith("ExecStart="))
        instance = exec_start.replace("%i", unit)
        assert f"--unit {unit}.service --follow" in instance and instance.endswith(f">> {logs[unit]}'")


def test_journal_unit_is_a_valid_systemd_unit(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (apt-get install systemd): cannot verify the unit file")
    unit = tmp_path / f"{kind_mod.JOURNAL_UNIT}containerd.service"
    unit.write_text(kind_mod.journal_unit())
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    broken = tmp_path / "broken@containerd.service"  # the check itself can fail
    broken.write_text(kind_mod.journal_unit().replace("ExecStart=/bin/sh", "ExecStart=bin/sh"))
    assert subprocess.run(["systemd-analyze", "verify", "--man=no", str(broken)], capture_output=True, timeout=60).returncode != 0


@pytest.mark.parametrize("machine, triple", [
    ("x86_64", "x86_64-unknown-linux-musl"), ("x86_64\n", "x86_64-unknown-linux-musl"),
    ("aarch64", "aarch64-unknown-linux-musl"), ("arm64", "aarch64-unknown-linux-musl"),
])
def test_node_arch_to_target_triple(machine, triple):
    assert target_triple(machine) == triple


def test_unsupported_node_arch_is_one_line():
    with pytest.raises(SetupError) as e:
        target_triple("s390x")
    assert "s390x" in str(e.value) and "\n" not in str(e.value)


def test_default_node_image_is_a_digest_pinned_v1_33_kindest_node():
    assert DEFAULT_KIND_NODE_IMAGE.startswith("kindest/node:v1.33.")
    digest = DEFAULT_KIND_NODE_IMAGE.split("@sha256:")[1]
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def test_containerd_dropin_sets_each_variable():
    text = kind_mod.containerd_dropin({"B": "2", "A": "/run/reaper/runtime.log"})
    assert text == '[Service]\nEnvironment="A=/run/reaper/runtime.log"\nEnvironment="B=2"\n'


# ---------------------------------------------------------------------------- prerequisites


def _fake_bins(folder: Path, *names: str) -> None:
    folder.mkdir(exist_ok=True)
    for n in names:
        p = folder / n
        p.write_text("#!/bin/sh\nexit 0\n")
        p.chmod(p.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("present, missing", [(("kind", "kubectl"), "docker"), (("docker", "kubectl"), "kind")])
def test_missing_binary_is_one_line(tmp_path, monkeypatch, present, missing):
    _fake_bins(tmp_path / "bin", *present)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    prov = KindProvisioner(_cfg(tmp_path, "--k8s-bin-dir", str(tmp_path / "bin")), runner=FakeRunner())
    with pytest.raises(ToolMissing) as e:
        prov.check_prerequisites()
    msg = str(e.value)
    assert f"`{missing}`" in msg and "\n" not in msg
    assert prov.run.calls == []  # nothing run before the binaries are known to exist


def test_docker_daemon_down_is_one_line(tmp_path, monkeypatch):
    _fake_bins(tmp_path / "bin", "docker", "kind", "kubectl")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = FakeRunner([(("docker", "info"), Result(1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n"))])
    prov = KindProvisioner(_cfg(tmp_path, "--k8s-bin-dir", str(tmp_path / "bin")), runner=runner)
    with pytest.raises(ToolMissing) as e:
        prov.check_prerequisites()
    assert "Docker daemon does not answer" in str(e.value) and "Cannot connect" in str(e.value) and "\n" not in str(e.value)


def test_prerequisites_pass_with_daemon_answering(tmp_path, monkeypatch):
    _fake_bins(tmp_path / "bin", "docker", "kind", "kubectl")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    runner = FakeRunner([(("docker", "info"), Result(0, "27.3.1\n"))])
    KindProvisioner(_cfg(tmp_path, "--k8s-bin-dir", str(tmp_path / "bin")), runner=runner).check_prerequisites()
    assert [a for a, _, _ in runner.calls] == [["docker", "info", "--format", "{{.ServerVersion}}"]]


# ---------------------------------------------------------------------------- up / down


def test_up_reaper_on_a_new_cluster_runs_the_exact_sequence(tmp_path):
    src = _workspace(tmp_path)
    _built(tmp_path)
    cfg = _cfg(tmp_path, "--source", str(src), "--runtime", "reaper")
    runner = FakeRunner(_fresh_cluster_rules(tmp_path))
    info = KindProvisioner(cfg, runner=runner, api=FakeApi(runner), **fast()).up()

    kc = "<tmp>/state/kind/reaper-ci/kubeconfig"
    d = "<tmp>/state/kind/reaper-ci"
    put = 'mkdir -p "$(dirname "$1")" && cat > "$2" && chmod 0755 "$2" && mv -f "$2" "$1"'
    write = 'mkdir -p "$(dirname "$1")" && cat > "$1"'
    assert runner.argvs(tmp_path) == [
        *created_node_sequence(d, kc),
        "rustup target list --installed",
        "cargo build --release --target x86_64-unknown-linux-musl --bin containerd-shim-reaper-v2 --bin reaper-runtime",
        "cargo metadata --format-version 1 --no-deps",
        f"docker exec -i {NODE} /bin/sh -c {put} sh /usr/local/bin/containerd-shim-reaper-v2 /usr/local/bin/containerd-shim-reaper-v2.reaper-ci-tmp",
        f"docker exec -i {NODE} /bin/sh -c {put} sh /usr/local/bin/reaper-runtime /usr/local/bin/reaper-runtime.reaper-ci-tmp",
        f"docker exec -i {NODE} /usr/local/bin/reaper-runtime --help",
        f"docker exec {NODE} mkdir -p /run/reaper",
        f"docker exec -i {NODE} cat {kind_mod.CONTAINERD_DROPIN}",
        f"docker exec -i {NODE} /bin/sh -c {write} sh {kind_mod.CONTAINERD_DROPIN}",
        f"docker exec {NODE} systemctl daemon-reload",
        f"docker exec -i {NODE} systemctl restart containerd",
        f"docker exec -i {NODE} ctr version",
        f"docker exec {NODE} containerd config dump",
        f"docker exec {NODE} crictl info",
        "api get nodes",
        "api get serviceaccount default/default",
        "api apply runtimeclass reaper-v2",
        "docker image inspect --format {{.Id}} docker.io/library/busybox:reaper-ci",
        "docker version --format {{.Client.APIVersion}} {{.Server.APIVersion}}",
        f"docker save --platform linux/amd64 -o {d}/image.tar docker.io/library/busybox:reaper-ci",
        f"kind load image-archive {d}/image.tar --name reaper-ci",
        f"docker exec {NODE} crictl inspecti docker.io/library/busybox:reaper-ci",
        "api delete pod default/reaper-ci-smoke --now",
        "api get pod default/reaper-ci-smoke --absent",
        "api create pod default/reaper-ci-smoke",
        "api get pod default/reaper-ci-smoke",
        "api logs default/reaper-ci-smoke",
        "api delete pod default/reaper-ci-smoke",
    ]
    build = next(c for c in runner.calls if c[0][:2] == ["cargo", "build"])
    assert build[1] == src  # built in the workspace under test
    targets = next(c for c in runner.calls if c[0][:2] == ["rustup", "target"])
    assert targets[1] == src  # the workspace's toolchain (rust-toolchain.toml) is the one asked
    dropin = next(c for c in runner.calls if c[0][-1] == kind_mod.CONTAINERD_DROPIN and c[2])
    assert dropin[2] == kind_mod.containerd_dropin(kind_mod.reaper_node_env(cfg))
    assert dropin[2] == ('[Service]\nEnvironment="REAPER_DNS_MODE=kubernetes"\nEnvironment="REAPER_RUNTIME_LOG=/run/reaper/runtime.log"\n'
                         'Environment="REAPER_RUNTIME_PATH=/usr/local/bin/reaper-runtime"\nEnvironment="REAPER_SHIM_LOG=/run/reaper/shim.log"\n')
    unit = next(c for c in runner.calls if c[0][-1] == kind_mod.JOURNAL_UNIT_FILE and c[2])
    assert unit[2] == kind_mod.journal_unit()
    # the ClusterInfo the suite reads
    assert info == ClusterInfo.load(info_path(cfg.state_dir))
    assert info.provisioner == "kind" and info.node_access == "docker" and info.nodes == (NODE,)
    assert info.runtime == "reaper" and info.shim_process == "containerd-shim-reaper-v2"
    assert info.runtime_log == "/run/reaper/runtime.log" and info.runtime_class == "reaper-v2"
    assert info.runtime_state_dir == "/run/reaper" and info.component_logs == kind_mod.component_logs("reaper")
    assert info.kubeconfig == str(tmp_path / "state/kind/reaper-ci/kubeconfig")
    assert Path(info.kubeconfig).read_text() == KUBECONFIG
    assert not str(info.kubeconfig).startswith(str(Path.home() / ".kube"))
    rc = json.loads(next(c[2] for c in runner.calls if c[0][:3] == ["api", "apply", "runtimeclass"]))
    assert rc["kind"] == "RuntimeClass" and rc["handler"] == "reaper-v2" and rc["metadata"]["name"] == "reaper-v2"


def test_up_builds_for_an_arm_node(tmp_path):
    src = _workspace(tmp_path)
    _built(tmp_path, "aarch64-unknown-linux-musl")
    rules = [(("docker", "exec", NODE, "uname", "-m"), Result(0, "aarch64\n"))] + _fresh_cluster_rules(tmp_path)
    runner = FakeRunner(rules)
    KindProvisioner(_cfg(tmp_path, "--source", str(src), "--runtime", "reaper"), runner=runner, api=FakeApi(runner), **fast()).up()
    assert "cargo build --release --target aarch64-unknown-linux-musl --bin containerd-shim-reaper-v2 --bin reaper-runtime" in runner.argvs(tmp_path)


def test_up_reuses_a_cluster_made_from_the_same_config(tmp_path):
    cfg = _cfg(tmp_path, "--runtime", "runc")
    digest = kind_mod.config_digest(render_config(cfg, "runc"), cfg.kind_node_image)
    runner = FakeRunner(_fresh_cluster_rules(tmp_path, marker=digest + "\n", clusters="reaper-ci\n", runtime_type="io.containerd.runc.v2"))
    prov = KindProvisioner(cfg, runner=runner, api=FakeApi(runner), **fast())
    info = prov.up()
    seen = runner.argvs(tmp_path)
    assert not any(c.startswith(("kind create", "kind delete", "cargo", "rustup")) for c in seen)
    # runc: the handler came with the cluster (config patch); nothing installed, containerd not restarted
    assert not any("systemctl restart containerd" in c or "/etc/containerd/config.toml" in c for c in seen)
    assert f"docker exec {NODE} containerd config dump" in seen
    assert info.runtime == "runc" and info.shim_process == "containerd-shim-runc-v2" and info.runtime_log is None
    assert info.component_logs == kind_mod.component_logs("runc")

    runner.calls.clear()
    prov.up()  # again: the kubectl copied out of the node is kept
    assert not any(c.startswith("docker cp") for c in runner.argvs(tmp_path))


def test_up_recreates_a_cluster_made_from_another_config(tmp_path):
    cfg = _cfg(tmp_path, "--runtime", "runc")
    runner = FakeRunner(_fresh_cluster_rules(tmp_path, marker="0" * 64, clusters="reaper-ci\n", runtime_type="io.containerd.runc.v2"))
    KindProvisioner(cfg, runner=runner, api=FakeApi(runner), **fast()).up()
    seen = runner.argvs(tmp_path)
    delete = seen.index("kind delete cluster --name reaper-ci --kubeconfig <tmp>/state/kind/reaper-ci/kubeconfig")
    create = next(i for i, c in enumerate(seen) if c.startswith("kind create cluster --name reaper-ci"))
    assert delete < create


def test_switching_runtime_changes_the_config_digest(tmp_path):
    cfg = _cfg(tmp_path)
    digests = {kind_mod.config_digest(render_config(cfg, r), cfg.kind_node_image) for r in ("reaper", "runc")}
    digests.add(kind_mod.config_digest(render_config(cfg, "runc"), "kindest/node:v1.32.5"))
    assert len(digests) == 3  # a cluster made for another runtime or node image is never reused


@pytest.mark.parametrize("dump, expected", [
    (dump_v2("test-handler", "io.containerd.runc.v2"), "no handler 'reaper-v2' (handlers: runc, test-handler)"),
    (dump_v3("reaper-v2", "io.containerd.runc.v2"), "handler reaper-v2 has runtime_type 'io.containerd.runc.v2', want 'io.containerd.reaper.v2'"),
])
def test_handler_missing_from_containerd_is_one_line(tmp_path, dump, expected):
    src = _workspace(tmp_path)
    _built(tmp_path)
    rules = [(("docker", "exec", NODE, "containerd", "config", "dump"), Result(0, dump))] + _fresh_cluster_rules(tmp_path)
    runner = FakeRunner(rules)
    with pytest.raises(SetupError) as e:
        KindProvisioner(_cfg(tmp_path, "--source", str(src), "--runtime", "reaper"), runner=runner, api=FakeApi(runner), **fast()).up()
    assert str(e.value) == f"containerd on kind node {NODE}: {expected}"
    assert not any(c.startswith("kubectl") and "apply" in c for c in runner.argvs(tmp_path))  # stopped before the RuntimeClass


def test_missing_rust_target_stops_before_the_build(tmp_path):
    src = _workspace(tmp_path)
    rules = [(("rustup", "target", "list", "--installed"), Result(0, "x86_64-unknown-linux-gnu\n"))] + _fresh_cluster_rules(tmp_path)
    runner = FakeRunner(rules)
    with pytest.raises(ToolMissing) as e:
        KindProvisioner(_cfg(tmp_path, "--source", str(src), "--runtime", "reaper"), runner=runner, api=FakeApi(runner), **fast()).up()
    assert "rustup target add x86_64-unknown-linux-musl" in str(e.value) and "\n" not in str(e.value)
    assert not any(c.startswith("cargo") for c in runner.argvs(tmp_path))


def test_node_ready_wait_times_out_with_the_last_state(tmp_path):
    clock = [0.0]
    cfg = _cfg(tmp_path, "--runtime", "runc")
    rules = [
        (("api", "get", "nodes"), Result(0, NOT_READY)),
    ] + _fresh_cluster_rules(tmp_path, runtime_type="io.containerd.runc.v2")
    runner = FakeRunner(rules)
    prov = KindProvisioner(cfg, runner=runner, api=FakeApi(runner), sleep=lambda s: clock.__setitem__(0, clock[0] + s), clock=lambda: clock[0])
    with pytest.raises(SetupError) as e:
        prov.up()
    msg = str(e.value)
    assert "nodes Ready" in msg and "KubeletNotReady" in msg and "cni plugin not initialized" in msg
    polls = [c for c in runner.argvs(tmp_path) if c == "api get nodes"]
    assert len(polls) > 10 and clock[0] >= kind_mod.Timeouts.NODE_READY  # polled until the deadline, not once


def test_failed_smoke_pod_is_a_setup_error(tmp_path):
    failed = json.dumps({"status": {"phase": "Failed", "containerStatuses": []}})
    rules = [(("api", "get", "pod"), Result(0, failed))]
    rules += _fresh_cluster_rules(tmp_path, runtime_type="io.containerd.runc.v2")
    with pytest.raises(SetupError, match="smoke pod on RuntimeClass reaper-v2: pod Failed"):
        KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=(r := FakeRunner(rules)), api=FakeApi(r), **fast()).up()


def test_unreadable_smoke_pod_answer_is_waited_on_not_a_traceback(tmp_path):
    clock = [0.0]
    rules = [(("api", "get", "pod"), Result(0, "Warning: something\n{"))]
    rules += _fresh_cluster_rules(tmp_path, runtime_type="io.containerd.runc.v2")
    prov = KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=(r := FakeRunner(rules)), api=FakeApi(r),
                           sleep=lambda s: clock.__setitem__(0, clock[0] + s), clock=lambda: clock[0])
    with pytest.raises(SetupError) as e:
        prov.up()
    assert "smoke pod" in str(e.value) and "unreadable answer" in str(e.value)


def test_down_deletes_the_cluster_and_our_cluster_info_only(tmp_path):
    cfg = _cfg(tmp_path)
    ours = ClusterInfo("kind", "reaper-ci", "kc", "runc", "reaper-v2", "containerd-shim-runc-v2", (NODE,), "img", "docker")
    ours.save(info_path(cfg.state_dir))
    runner = FakeRunner()
    KindProvisioner(cfg, runner=runner).down()
    assert runner.argvs(tmp_path) == ["kind delete cluster --name reaper-ci --kubeconfig <tmp>/state/kind/reaper-ci/kubeconfig"]
    assert not info_path(cfg.state_dir).exists()

    local = ClusterInfo("local", "reaper-ci", "kc", "runc", "reaper-v2", "containerd-shim-runc-v2", ("host",), "img", "local")
    local.save(info_path(cfg.state_dir))
    KindProvisioner(cfg, runner=FakeRunner()).down()
    assert info_path(cfg.state_dir).exists()  # another provisioner's cluster is not ours to forget


def test_collect_logs_exports_kind_logs_and_the_runtime_log(tmp_path):
    cfg = _cfg(tmp_path)

    def export(argv):
        out = Path(argv[3])
        (out / NODE).mkdir(parents=True)
        (out / NODE / "containerd.log").write_text("containerd says hi\n")
        return Result(0, "Exported logs")

    runner = FakeRunner([
        (("kind", "get", "clusters"), Result(0, "reaper-ci\n")),
        (("kind", "get", "nodes"), Result(0, NODE + "\n")),
        (("kind", "export", "logs"), export),
        (("docker", "exec", "-i", NODE, "cat", kind_mod.REAPER_LOG), Result(0, "runtime log line\n")),
        (("docker", "exec", "-i", NODE, "cat", kind_mod.REAPER_SHIM_LOG), Result(1, "No such file")),
        (("docker", "exec", NODE, "containerd", "config", "dump"), Result(0, dump_v2("reaper-v2", "io.containerd.reaper.v2"))),
    ])
    files = KindProvisioner(cfg, runner=runner).collect_logs(tmp_path / "logs")
    names = sorted(p.relative_to(tmp_path / "logs").as_posix() for p in files)
    assert names == [f"kind/{NODE}/containerd.log", f"{NODE}-containerd-config.toml", f"{NODE}-reaper-runtime.log"]
    assert (tmp_path / "logs" / f"{NODE}-reaper-runtime.log").read_text() == "runtime log line\n"
    assert "reaper-v2" in (tmp_path / "logs" / f"{NODE}-containerd-config.toml").read_text()
    assert "kind export logs <tmp>/logs/kind --name reaper-ci" in runner.argvs(tmp_path)


def test_unwritable_state_dir_is_one_line(tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("")
        cfg = parse(["--state-dir", str(blocker / "sub"), "--runtime", "runc"], {}, cwd=tmp_path)
    else:  # pragma: no cover - depends on the user
        cfg = parse(["--state-dir", "/proc/reaper-ci", "--runtime", "runc"], {}, cwd=tmp_path)
    with pytest.raises(SetupError) as e:
        KindProvisioner(cfg, runner=FakeRunner()).up()
    assert "state folder" in str(e.value) and "\n" not in str(e.value)


def test_real_runner_reports_a_failed_command_in_one_line(tmp_path):
    runner = kind_mod.ShRunner(tmp_path / "kind.log")
    with pytest.raises(SetupError) as e:
        runner(["sh", "-c", "echo first; echo boom >&2; exit 3"])
    msg = str(e.value)
    assert "exit 3" in msg and "boom" in msg and "\n" not in msg
    assert "boom" in (tmp_path / "kind.log").read_text()
    assert runner(["sh", "-c", "cat"], input="fed\n").out == "fed\n"
    assert runner(["sh", "-c", "exit 4"], check=False).returncode == 4


# ---------------------------------------------------------------------------- several nodes


def test_nodes_renders_workers_beside_the_control_plane(tmp_path):
    doc = yaml.safe_load(render_config(_cfg(tmp_path, "--provisioner", "kind", "--nodes", "3"), "reaper"))
    assert [n["role"] for n in doc["nodes"]] == ["control-plane", "worker", "worker"]
    one = yaml.safe_load(render_config(_cfg(tmp_path), "reaper"))
    assert [n["role"] for n in one["nodes"]] == ["control-plane"]


def test_two_nodes_install_and_check_every_node_workers_first(tmp_path):
    worker = "reaper-ci-worker"
    src = _workspace(tmp_path)
    _built(tmp_path)
    cfg = _cfg(tmp_path, "--source", str(src), "--runtime", "reaper", "--provisioner", "kind", "--nodes", "2")
    both = f"{NODE}\n{worker}\n"
    rules = [(("kind", "get", "nodes"), Result(0, both)),
             (("api", "get", "nodes"), Result(0, json.dumps({"items": [
                 {"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
                 for n in (NODE, worker)]})))]
    for prefix, answer in _fresh_cluster_rules(tmp_path):  # the single node's answers, for the worker too
        rules.append((prefix, answer))
        if NODE in prefix:
            rules.append((tuple(worker if p == NODE else p for p in prefix), answer))
    runner = FakeRunner(rules)
    info = KindProvisioner(cfg, runner=runner, api=FakeApi(runner), **fast()).up()
    assert info.nodes == (worker, NODE)  # scenarios needing one node take the first: a worker
    seen = runner.argvs(tmp_path)
    for n in (NODE, worker):
        assert any(c.startswith(f"docker exec -i {n} /bin/sh -c") and c.endswith("reaper-runtime.reaper-ci-tmp") for c in seen)
        assert f"docker exec {n} containerd config dump" in seen and f"docker exec {n} crictl info" in seen
        assert f"docker exec -i {n} systemctl restart containerd" in seen
