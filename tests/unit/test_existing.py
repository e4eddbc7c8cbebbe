"""The existing-cluster path: node access through host-exec pods, what a node says about itself,
and the provisioner's checks (each bad input one line), without a cluster (fakes of the API and
the runner; the real proof is the run against the local cluster in the closing note)."""

from __future__ import annotations

import json

import pytest

from ci.cluster import nodefacts, podnode, verify
from ci.cluster.base import NodeAccess
from ci.cluster.existing import ExistingProvisioner
from ci.config import parse
from ci.errors import SetupError, UsageError
from ci.tools import Result

NODE = "n1"
RUNNING = {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}
SUCCEEDED = {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"exitCode": 0}}}]}


class FakeApi:
    """The API as the existing path uses it: pods and namespaces kept in dicts, calls recorded."""

    def __init__(self, *, ready=True, handler="reaper-v2", nodes=(NODE,), taints=None, pod_phase=RUNNING):
        self.ready, self.handler, self.taints = ready, handler, taints or {}
        self.node_items = [{"metadata": {"name": n}, "spec": {"taints": self.taints.get(n, [])},
                            "status": {"conditions": [{"type": "Ready", "status": "True"}]}} for n in nodes]
        self.pods: dict[tuple[str, str], dict] = {}
        self.namespaces: set[str] = set()
        self.calls: list[str] = []
        self.pod_phase = pod_phase
        self.runs: list[str] = []

    def readyz(self):
        return True if self.ready is True else self.ready

    def runtime_class_handler(self, name):
        return self.handler

    def nodes(self, selector=None):
        self.calls.append(f"nodes {selector}")
        return self.node_items

    def ensure_namespace(self, name, labels):
        self.calls.append(f"ensure-ns {name}")
        self.namespaces.add(name)

    def namespace_phase(self, name):
        return "Active" if name in self.namespaces else None

    def delete_namespace(self, name):
        self.calls.append(f"delete-ns {name}")
        self.namespaces.discard(name)
        self.pods = {k: v for k, v in self.pods.items() if k[0] != name}

    def create_pod(self, manifest):
        m = manifest["metadata"]
        self.calls.append(f"create {m['namespace']}/{m['name']} node={manifest['spec'].get('nodeName')}")
        self.pods[(m["namespace"], m["name"])] = manifest

    def pod_status(self, ns, name):
        if (ns, name) not in self.pods:
            return None
        return SUCCEEDED if name.startswith(verify.SMOKE_POD) else self.pod_phase

    def delete_pod(self, ns, name, *, now=False):
        self.calls.append(f"delete {ns}/{name}")
        self.pods.pop((ns, name), None)

    def pod_log(self, ns, name):
        return verify.SMOKE_TEXT + "\n"

    def events(self, ns, name):
        return []

    def dump(self):
        return "dump\n"

    def live_runs(self):
        return list(self.runs)


class FakeNode(NodeAccess):
    """A node answering by the first matching argv prefix."""

    def __init__(self, answers):
        super().__init__(runner=None)
        self.answers = answers
        self.calls = []

    def argv(self, node, argv):
        return list(argv)

    def run(self, node, argv, timeout=30, input=None):
        self.calls.append(list(argv))
        for prefix, result in self.answers:
            if list(argv[: len(prefix)]) == list(prefix):
                return result
        return Result(1, "", "not scripted")


PS = ("    PID    PPID COMMAND\n      1       0 /sbin/init\n"
      "    200       1 /opt/cd/bin/containerd --config /etc/cd/config.toml\n"
      "    300       1 /usr/bin/kubelet --config=/etc/kubelet.yaml --root-dir=/data/kubelet\n"
      "    400     200 containerd-shim-runc-v2 -namespace k8s.io -id abc\n")
DUMP = ('version = 2\nroot = "/data/cd"\n[grpc]\n  address = "/run/cd/cd.sock"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.reaper-v2]\n  runtime_type = "io.containerd.reaper.v2"\n')


def _node(dump=DUMP, systemd="active\n"):
    return FakeNode([
        (["ps"], Result(0, PS)),
        (["readlink", "/proc/200/exe"], Result(0, "/opt/cd/bin/containerd\n")),
        (["/opt/cd/bin/containerd", "--config", "/etc/cd/config.toml", "config", "dump"], Result(0, dump)),
        (["test", "-x", "/opt/cd/bin/ctr"], Result(0, "")),
        (["cat", "/proc/200/environ"], Result(0, "PATH=/bin\0REAPER_RUNTIME_LOG=/var/log/reaper.log\0")),
        (["cat", "/etc/kubelet.yaml"], Result(0, "kind: KubeletConfiguration\npodLogsDir: /data/pod-logs\n")),
        (["systemctl", "is-active", "containerd"], Result(0 if systemd.strip() == "active" else 3, systemd)),
    ])


# ---------------------------------------------------------------------------- node facts


def test_discover_reads_the_node_from_its_processes():
    f = nodefacts.discover(_node(), NODE, "reaper-v2")
    assert (f.runtime_type, f.containerd_address, f.ctr) == ("io.containerd.reaper.v2", "/run/cd/cd.sock", "/opt/cd/bin/ctr")
    assert (f.kubelet_root, f.pod_logs_dir, f.containerd_root) == ("/data/kubelet", "/data/pod-logs", "/data/cd")
    assert (f.runtime_log, f.runtime_state_dir, f.containerd_restart) == ("/var/log/reaper.log", "/run/reaper",
                                                                          "systemctl restart containerd")


def test_discover_without_the_handler_says_which_handlers_there_are():
    dump = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n'
    with pytest.raises(SetupError, match=r"no handler 'reaper-v2' \(handlers: runc\)"):
        nodefacts.discover(_node(dump), NODE, "reaper-v2")


def test_discover_runc_state_under_its_root_and_no_systemd_means_no_restart():
    dump = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.reaper-v2]\n'
            '  runtime_type = "io.containerd.runc.v2"\n'
            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.reaper-v2.options]\n  Root = "/run/x/runc"\n')
    f = nodefacts.discover(_node(dump, systemd="inactive\n"), NODE, "reaper-v2")
    assert f.runtime_state_dir == "/run/x/runc/k8s.io" and f.runtime_log is None and f.containerd_restart is None
    assert f.containerd_address == "/run/containerd/containerd.sock"  # no [grpc] address: containerd's default
    assert f.containerd_root == "/var/lib/containerd"  # no root: containerd's default


def test_same_setup_names_what_differs():
    a = nodefacts.discover(_node(), "a", "reaper-v2")
    b = nodefacts.discover(_node(), "b", "reaper-v2")
    assert nodefacts.same_setup([a, b]) is None
    b.runtime_type = "io.containerd.runc.v2"
    assert "a=io.containerd.reaper.v2, b=io.containerd.runc.v2" in nodefacts.same_setup([a, b])


def test_kubectl_exit_line_is_not_the_reason():
    assert nodefacts.last_line("ps: bad option\ncommand terminated with exit code 1\n") == "ps: bad option"


# ---------------------------------------------------------------------------- host-exec pods


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, argv, **kw):
        self.calls.append((list(argv), kw))
        return Result(0, "out", "")


def test_pod_node_runs_through_kubectl_exec_and_nsenter_into_the_kubelet():
    api, runner = FakeApi(), Recorder()
    access = podnode.PodNode("/k/config", "img:1", "ctx", runner=runner, api=api, sleep=lambda s: None)
    assert access.run(NODE, ["ps", "-ef"]).stdout == "out"
    argv, kw = runner.calls[0]
    pod = podnode.pod_name(NODE)
    assert argv[:12] == ["kubectl", "--kubeconfig", "/k/config", "--context", "ctx", "exec", "-i", "-n",
                         podnode.NAMESPACE, pod, "--", "/bin/sh"]
    assert argv[12:] == ["-c", podnode.ENTER, "sh", "ps", "-ef"] and kw["check"] is False
    spec = api.pods[(podnode.NAMESPACE, pod)]["spec"]
    assert spec["hostPID"] and spec["nodeName"] == NODE and "runtimeClassName" not in spec  # the default runtime
    assert spec["containers"][0]["image"] == "img:1" and spec["containers"][0]["securityContext"]["privileged"]
    access.run(NODE, ["true"])
    assert [c for c in api.calls if c.startswith("create")] == [f"create {podnode.NAMESPACE}/{pod} node={NODE}"]


def test_pod_node_remakes_a_pod_that_ended_and_close_removes_the_namespace():
    api = FakeApi()
    api.pods[(podnode.NAMESPACE, podnode.pod_name(NODE))] = {}
    api.pod_status = lambda ns, name, _orig=api.pod_status: (
        {"phase": "Failed"} if "delete" not in " ".join(api.calls) else _orig(ns, name))
    access = podnode.PodNode("/k", "img", runner=Recorder(), api=api, sleep=lambda s: None)
    access.ensure(NODE)
    assert api.calls[:2] == [f"delete {podnode.NAMESPACE}/{podnode.pod_name(NODE)}", f"ensure-ns {podnode.NAMESPACE}"]
    access.close()
    assert api.namespace_phase(podnode.NAMESPACE) is None and not api.pods


def test_pod_node_that_cannot_start_is_one_line():
    status = {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ErrImageNeverPull",
                                                                               "message": "image not present"}}}]}
    access = podnode.PodNode("/k", "img", runner=Recorder(), api=FakeApi(pod_phase=status), sleep=lambda s: None)
    with pytest.raises(SetupError, match="ErrImageNeverPull") as e:
        access.run(NODE, ["true"])
    assert "\n" not in str(e.value)


def test_pod_names_are_dns_labels():
    name = podnode.pod_name("Worker_1.Example.COM" + "x" * 80)
    assert len(name) <= 63 and name == name.lower() and "_" not in name and "." not in name


# ---------------------------------------------------------------------------- the provisioner


def _cfg(tmp_path, *extra, kubeconfig=True):
    kc = tmp_path / "kubeconfig"
    kc.write_text("apiVersion: v1\n")
    args = ["--provisioner", "existing", "--state-dir", str(tmp_path / "state")]
    if kubeconfig:
        args += ["--kubeconfig", str(kc)]
    return parse([*args, *extra], {}, cwd=tmp_path)


def _prov(cfg, api, node=None, monkeypatch=None):
    node = node or _node()
    made = []

    def access(kubeconfig, image, context, api):
        made.append((kubeconfig, image, context))
        node.close = lambda: api.delete_namespace(podnode.NAMESPACE)
        return node

    t = [0.0]

    def sleep(seconds):
        t[0] += seconds

    prov = ExistingProvisioner(cfg, api=lambda kc, ctx: api, access=access, sleep=sleep, clock=lambda: t[0])
    prov._api = api
    return prov


def test_existing_up_reads_the_runtime_from_the_nodes_and_smokes_every_node(tmp_path):
    api = FakeApi(nodes=("n1", "n2"))
    info = _prov(_cfg(tmp_path), api).up()
    assert info.provisioner == "existing" and info.node_access == "pods" and info.nodes == ("n1", "n2")
    assert info.runtime == "reaper" and info.runtime_type == "io.containerd.reaper.v2" and info.source is None
    assert info.containerd_address == "/run/cd/cd.sock" and info.containerd_root == "/data/cd" and info.containerd_restart == "systemctl restart containerd"
    smokes = [c for c in api.calls if c.startswith("create default/")]
    assert smokes == [f"create default/{verify.smoke_name('n1')} node=n1", f"create default/{verify.smoke_name('n2')} node=n2"]
    (record,) = (tmp_path / "state" / "existing").glob("*/cluster.json")
    assert json.loads(record.read_text())["nodes"] == ["n1", "n2"]


def test_existing_skips_tainted_nodes_and_says_so_when_none_is_left(tmp_path):
    api = FakeApi(taints={NODE: [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]})
    with pytest.raises(SetupError, match="no schedulable Ready node .*n1 tainted node-role.kubernetes.io/control-plane"):
        _prov(_cfg(tmp_path), api).up()


@pytest.mark.parametrize("api, want", [
    (FakeApi(ready="HTTP 0: connection refused"), "does not answer"),
    (FakeApi(handler=None), "RuntimeClass reaper-v2 does not exist"),
])
def test_existing_bad_cluster_is_one_line(tmp_path, api, want):
    with pytest.raises(SetupError) as e:
        _prov(_cfg(tmp_path), api).up()
    assert want in str(e.value) and "\n" not in str(e.value)


def test_existing_handler_no_node_serves_is_one_line(tmp_path):
    dump = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n'
    with pytest.raises(SetupError) as e:
        _prov(_cfg(tmp_path), FakeApi(), node=_node(dump)).up()
    assert "is not served on node n1" in str(e.value) and "\n" not in str(e.value)


def test_existing_runtime_flag_must_agree_with_the_nodes(tmp_path):
    with pytest.raises(SetupError, match="--runtime runc, but RuntimeClass reaper-v2 runs io.containerd.reaper.v2"):
        _prov(_cfg(tmp_path, "--runtime", "runc"), FakeApi()).up()


def test_existing_missing_kubeconfig_file_is_one_line(tmp_path):
    cfg = parse(["--provisioner", "existing", "--kubeconfig", str(tmp_path / "nope")], {}, cwd=tmp_path)
    prov = ExistingProvisioner(cfg, api=lambda kc, ctx: FakeApi())
    with pytest.raises(SetupError, match="no such file"):
        prov.check_prerequisites()


def test_existing_unloadable_kubeconfig_is_one_line(tmp_path):
    def broken(kc, ctx):
        raise ValueError("Invalid kube-config file.\nNo configuration found.")

    prov = ExistingProvisioner(_cfg(tmp_path, "--context", "nope"), api=broken)
    with pytest.raises(SetupError) as e:
        prov.check_prerequisites()
    assert "is unusable: ValueError: Invalid kube-config file." in str(e.value) and "\n" not in str(e.value)


def test_existing_down_removes_only_what_the_run_made(tmp_path):
    api = FakeApi()
    prov = _prov(_cfg(tmp_path), api)
    prov.up()
    api.calls.clear()
    prov.down()
    assert api.calls == [f"delete-ns {podnode.NAMESPACE}", f"delete default/{verify.smoke_name(NODE)}"]
    assert not list((tmp_path / "state" / "existing").glob("*/cluster.json"))  # nothing left to remove
    api.calls.clear()
    _prov(_cfg(tmp_path), api).down()
    assert api.calls == []  # a later down with nothing recorded touches nothing


@pytest.mark.parametrize("argv, want", [
    (["--provisioner", "existing"], "needs --kubeconfig"),
    (["--provisioner", "local", "--kubeconfig", "x"], "--kubeconfig is for --provisioner existing"),
    (["--provisioner", "local", "--context", "x"], "--context is for --provisioner existing"),
    (["--provisioner", "local", "--nodes", "2"], "only the kind provisioner makes more than one node"),
    (["--provisioner", "kind", "--nodes", "0"], "--nodes 0: must be 1 or more"),
    (["--node-access", "ssh"], "invalid choice"),
])
def test_existing_usage_errors(tmp_path, argv, want):
    with pytest.raises(UsageError, match=want):
        parse(argv, {}, cwd=tmp_path)


def test_existing_runtime_reaper_needs_no_source(tmp_path):
    cfg = _cfg(tmp_path, "--runtime", "reaper")
    assert cfg.runtime == "reaper" and cfg.source is None
    assert _cfg(tmp_path).runtime == "auto"  # read from the nodes
    assert cfg.kubeconfig == (tmp_path / "kubeconfig").resolve()


def test_pod_node_close_spares_the_pods_while_another_run_of_the_suite_goes_on():
    api = FakeApi()
    access = podnode.PodNode("/k", "img", runner=Recorder(), api=api, sleep=lambda s: None)
    access.ensure(NODE)
    api.runs = ["b2c3d4"]
    access.close()
    assert api.namespace_phase(podnode.NAMESPACE) == "Active" and f"delete-ns {podnode.NAMESPACE}" not in api.calls
    api.runs = []
    access.close()
    assert api.namespace_phase(podnode.NAMESPACE) is None
