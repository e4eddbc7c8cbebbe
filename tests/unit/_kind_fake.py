"""A fake docker/kind/kubectl/cargo for the kind provisioner's tests: it records every argv and
answers from a rule table (first argv prefix that matches), so a test pins the exact command
sequence of ``up``/``down`` without Docker."""

from __future__ import annotations

import json
from pathlib import Path

from ci.cluster import kind as kind_mod, verify
from ci.cluster.kind import Result
from ci.config import parse
from ci.errors import SetupError

NODE = "reaper-ci-control-plane"
READY = json.dumps({"items": [{"metadata": {"name": NODE}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]})
NOT_READY = json.dumps({"items": [{"metadata": {"name": NODE}, "status": {"conditions": [
    {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "cni plugin not initialized"}]}}]})
SUCCEEDED = json.dumps({"status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"exitCode": 0}}}]}})
CRI_READY = json.dumps({"status": {"conditions": [{"type": "RuntimeReady", "status": True, "reason": ""},
                                                   {"type": "NetworkReady", "status": True, "reason": ""}]}})
DOCKER_28_API = "1.51 1.51\n"  # `docker version --format '{{.Client.APIVersion}} {{.Server.APIVersion}}'`
DOCKER_29_API = "1.52 1.52\n"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"
RUST_TARGETS = "x86_64-unknown-linux-gnu\nx86_64-unknown-linux-musl\naarch64-unknown-linux-musl\n"


def dump_v2(handler: str, runtime_type: str) -> str:
    """The shape of `containerd config dump` (containerd 1.x, and kind's version-2 file)."""
    return (f'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n'
            f'[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{handler}]\n  runtime_type = "{runtime_type}"\n')


def dump_v3(handler: str, runtime_type: str) -> str:
    """The shape of `containerd config dump` on containerd 2.x (config version 3, CRI runtime plugin)."""
    return (f"version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n  runtime_type = 'io.containerd.runc.v2'\n"
            f"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.{handler}]\n  runtime_type = '{runtime_type}'\n")


class FakeApi:
    """The cluster's API (:class:`ci.cluster.verify.Api`) answered from the runner's rule table, each
    call recorded in the runner's sequence as ``api <verb> <what>`` (so one list pins the order of
    commands and API calls). Answers: ``api get nodes`` (nodes JSON), ``api get serviceaccount``
    (exit 0 = there), ``api get pod`` (the pod JSON, once created), ``api logs``."""

    def __init__(self, runner: "FakeRunner"):
        self.run = runner
        self.created = False

    def __call__(self, kubeconfig: str) -> "FakeApi":  # the provisioner's factory
        return self

    def _ask(self, *argv: str, input: str | None = None):
        return self.run(["api", *argv], check=False, input=input)

    def readyz(self):
        return self._ask("get", "/readyz").returncode == 0

    def nodes_ready(self, names=()):
        return verify.nodes_verdict(json.loads(self._ask("get", "nodes").out or '{"items": []}').get("items", []), names)

    def default_service_account(self):
        r = self._ask("get", "serviceaccount", "default/default")
        return True if r.returncode == 0 else f"HTTP 404: {r.out.strip()}"

    def apply_runtime_class(self, name):
        self._ask("apply", "runtimeclass", name, input=json.dumps({"kind": "RuntimeClass", "metadata": {"name": name},
                                                                    "handler": name}))

    def runtime_class(self, name):
        return True

    def pod_status(self, ns, name):
        if not self.created:
            self._ask("get", "pod", f"{ns}/{name}", "--absent")
            return None
        out = self._ask("get", "pod", f"{ns}/{name}").out
        try:
            return json.loads(out).get("status", {})
        except json.JSONDecodeError:
            raise ValueError(f"unreadable answer: {out.strip()[:200]!r}") from None

    def create_pod(self, manifest):
        self.created = True
        self._ask("create", "pod", f"{manifest['metadata']['namespace']}/{manifest['metadata']['name']}",
                  input=json.dumps(manifest))

    def delete_pod(self, ns, name, *, now=False):
        self._ask("delete", "pod", f"{ns}/{name}", *(["--now"] if now else []))
        self.created = False

    def pod_log(self, ns, name):
        return self._ask("logs", f"{ns}/{name}").out

    def events(self, ns, name):
        return self._ask("events", f"{ns}/{name}").out.splitlines()


class FakeRunner:
    """Answers by the first rule whose argv prefix matches; records (argv, cwd, input)."""

    def __init__(self, rules: list[tuple[tuple[str, ...], Result]] = ()):
        self.rules = list(rules)
        self.calls: list[tuple[list[str], Path | None, str | None]] = []

    def __call__(self, argv, *, check=True, input=None, timeout=None, cwd=None, stderr=True, env=None):
        argv = [str(a) for a in argv]
        self.calls.append((argv, cwd, input))
        result = Result(0, "")
        for prefix, answer in self.rules:
            if tuple(argv[: len(prefix)]) == prefix:
                result = answer(argv) if callable(answer) else answer
                break
        if check and result.returncode != 0:
            raise SetupError(f"`{' '.join(argv)}` failed with exit {result.returncode}")
        return result

    def argvs(self, tmp: Path) -> list[str]:
        return [" ".join(a).replace(str(tmp), "<tmp>") for a, _, _ in self.calls]


def _workspace(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "Cargo.toml").write_text("[workspace]\n")
    return src


def _cfg(tmp_path: Path, *extra: str):
    return parse(["--state-dir", str(tmp_path / "state"), "--artifacts", str(tmp_path / "artifacts"), *extra], {}, cwd=tmp_path)


def _fresh_cluster_rules(tmp_path: Path, marker: str | None = None, clusters: str = "No kind clusters found.\n",
                         runtime_type: str = "io.containerd.reaper.v2"):
    target = tmp_path / "target"
    return [
        (("kind", "get", "clusters"), Result(0, clusters)),
        (("kind", "get", "nodes"), Result(0, NODE + "\n")),
        (("kind", "get", "kubeconfig"), Result(0, KUBECONFIG)),
        (("docker", "exec", "-i", NODE, "cat", kind_mod.CONFIG_MARKER), Result(0, marker) if marker else Result(1, "No such file")),
        (("docker", "exec", "-i", NODE, "cat"), Result(1, "No such file")),  # drop-in, journal unit: not there yet
        (("docker", "exec", NODE, "uname", "-m"), Result(0, "x86_64\n")),
        (("docker", "exec", NODE, "containerd", "config", "dump"), Result(0, dump_v2("reaper-v2", runtime_type))),
        (("rustup", "target", "list", "--installed"), Result(0, RUST_TARGETS)),
        (("docker", "cp", f"{NODE}:/usr/bin/kubectl"), _copy_out),
        (("cargo", "metadata"), Result(0, json.dumps({"target_directory": str(target)}))),
        (("docker", "exec", NODE, "crictl", "info"), Result(0, CRI_READY)),
        (("docker", "version"), Result(0, DOCKER_28_API)),
        (("api", "get", "nodes"), Result(0, READY)),
        (("api", "get", "pod"), Result(0, SUCCEEDED)),
        (("api", "logs"), Result(0, verify.SMOKE_TEXT + "\n")),
    ]


def _copy_out(argv: list[str]) -> Result:
    """`docker cp node:path dest`: the file appears at dest, as with Docker."""
    Path(argv[-1]).write_bytes(b"\x7fELF")
    return Result(0, "")


def _built(tmp_path: Path, triple: str = "x86_64-unknown-linux-musl") -> None:
    out = tmp_path / "target" / triple / "release"
    out.mkdir(parents=True)
    for name in ("containerd-shim-reaper-v2", "reaper-runtime"):
        (out / name).write_bytes(b"\x7fELF")




class FakeClock:
    """Time that moves only when the provisioner sleeps: a wait that never ends fails fast."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def fast() -> dict:
    """``sleep``/``clock`` keywords for KindProvisioner: fake time (see :class:`FakeClock`)."""
    c = FakeClock()
    return {"sleep": c.sleep, "clock": c}


def kind(cfg, runner: "FakeRunner", **kw):
    """A KindProvisioner on the fake runner and its fake API (fake time unless ``sleep``/``clock`` given)."""
    from ci.cluster.kind import KindProvisioner

    return KindProvisioner(cfg, runner=runner, api=FakeApi(runner), **({**fast(), **kw}))


def created_node_sequence(d: str, kc: str) -> list[str]:
    """The commands every fresh ``up`` starts with: create the cluster, mark its config, fetch the
    kubeconfig and the node's kubectl, start the journal copiers, read the node's architecture."""
    from ci.config import DEFAULT_KIND_NODE_IMAGE

    write = 'mkdir -p "$(dirname "$1")" && cat > "$1"'
    return [
        "kind get clusters",
        f"kind create cluster --name reaper-ci --config {d}/kind-config.yaml --image {DEFAULT_KIND_NODE_IMAGE} --kubeconfig {kc}",
        "kind get nodes --name reaper-ci",
        f"docker exec -i {NODE} /bin/sh -c {write} sh {kind_mod.CONFIG_MARKER}",
        "kind get kubeconfig --name reaper-ci",
        f"docker cp {NODE}:/usr/bin/kubectl {d}/bin/kubectl",
        f"docker exec -i {NODE} cat {kind_mod.JOURNAL_UNIT_FILE}",
        f"docker exec {NODE} mkdir -p /var/log/reaper-ci",
        f"docker exec -i {NODE} /bin/sh -c {write} sh {kind_mod.JOURNAL_UNIT_FILE}",
        f"docker exec {NODE} systemctl daemon-reload",
        f"docker exec {NODE} systemctl start reaper-ci-journal@containerd.service reaper-ci-journal@kubelet.service",
        f"docker exec {NODE} uname -m",
    ]
