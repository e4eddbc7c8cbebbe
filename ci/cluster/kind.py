"""The kind provisioner: a kind cluster (Kubernetes in Docker) with the runtime under test.

``up`` creates (or reuses) cluster ``cfg.cluster_name`` from ``kind/cluster.yaml`` (rendered by
:func:`render_config`: it carries the containerd handler entry for reaper, or for runc as the
reference runtime), builds the shim and runtime as static musl binaries for the node's
architecture, copies them into every node's ``/usr/local/bin``, checks containerd's effective
config has the handler, waits for the nodes to be Ready, creates the RuntimeClass, loads the
test image, runs a smoke pod and writes the :class:`ClusterInfo` (``node_access`` ``docker``).
kubectl is the node image's own (copied out of the node: same version as the cluster).

Every external command goes through an injectable runner (argv list in, :class:`Result` out),
so unit tests check the exact command sequence without Docker. The kubeconfig lives in its own
file under the state folder; ``~/.kube/config`` is never touched.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence

from ci import console
from ci.cluster import runtime as rt
from ci.cluster.base import ClusterInfo, NodeAccess, Provisioner, info_path
from ci.config import REPO_ROOT, Config
from ci.errors import CIError, SetupError, ToolMissing

KIND_CONFIG_FILE = REPO_ROOT / "kind" / "cluster.yaml"
KIND_VERSION = "v0.29.0"  # the kind release whose kindest/node:v1.33.1 digest is the default image
NODE_BIN = "/usr/local/bin"
NODE_KUBECTL = "/usr/bin/kubectl"  # kindest/node ships kubeadm, kubelet and kubectl there
REAPER_RUN = "/run/reaper"  # REAPER_RUNTIME_ROOT: the runtime's state entries (and its overlay)
REAPER_LOG_DIR = "/var/log/reaper-ci"
REAPER_CONF = "/etc/reaper/reaper.conf"  # reaper's default; kind nodes have none, so defaults apply
REAPER_LOG = f"{REAPER_LOG_DIR}/reaper-runtime.log"
REAPER_SHIM_LOG = f"{REAPER_LOG_DIR}/reaper-shim.log"
CRI_BASE_SPEC = "/etc/containerd/cri-base.json"  # base OCI spec of the node image's own runc handler
CRI_PLUGINS = ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime")  # containerd config v2 / v3
CONTAINERD_DROPIN = "/etc/systemd/system/containerd.service.d/reaper-ci.conf"
JOURNAL_UNIT = "reaper-ci-journal@"  # instance per unit: copies its journal into a file the suite can tail
JOURNAL_UNIT_FILE = f"/etc/systemd/system/{JOURNAL_UNIT}.service"
JOURNALED = ("containerd", "kubelet")  # kind runs these as systemd units (journal only, no log file)
CONFIG_MARKER = "/etc/reaper-ci/kind-config.sha256"  # on each node: digest of the config it was made from
RUNC_STATE = "/run/containerd/runc/k8s.io"
SMOKE_POD = "reaper-ci-smoke"
SMOKE_TEXT = "reaper-ci-smoke-ok"
HOST_BUSYBOX = Path("/bin/busybox")

TRIPLES = {
    "x86_64": "x86_64-unknown-linux-musl",
    "amd64": "x86_64-unknown-linux-musl",
    "aarch64": "aarch64-unknown-linux-musl",
    "arm64": "aarch64-unknown-linux-musl",
}


class Timeouts:
    """Named timeouts (seconds) of the kind path."""

    CREATE = 600  # kind create cluster (node image already present on CI runners: ~1 min)
    BUILD = 3600  # cargo build of shim + runtime for the musl target
    NODE_READY = 240
    SMOKE_POD = 120
    COMMAND = 120  # any other single command
    POLL = 1.0  # interval between two looks at a condition


# ---------------------------------------------------------------------------- pure helpers


def target_triple(machine: str) -> str:
    """``uname -m`` of a node -> the static musl target to build for."""
    triple = TRIPLES.get(machine.strip().lower())
    if triple is None:
        raise SetupError(f"kind node architecture {machine.strip()!r} is not supported (x86_64 or aarch64)")
    return triple


def handler_entry(cfg: Config, runtime: str) -> str:
    """containerd (config version 2, as in kindest/node) entry for handler ``cfg.runtime_class``.

    reaper: the same entry the local path writes (:func:`ci.cluster.runtime.handler_toml`).
    runc: like the node image's own ``runc`` handler (base spec, ``SystemdCgroup = true``): kind's
    kubelet uses the systemd cgroup driver, so runc must too.
    """
    if runtime == "reaper":
        return rt.handler_toml(cfg.runtime_class, "reaper", cfg.runtime_type, None, config_version=2)
    base = f'[plugins."{CRI_PLUGINS[0]}".containerd.runtimes.{rt._toml_key(cfg.runtime_class)}]'
    return (f'{base}\n  runtime_type = "{rt.RUNC_RUNTIME_TYPE}"\n  base_runtime_spec = "{CRI_BASE_SPEC}"\n'
            f'{base[:-1]}.options]\n  SystemdCgroup = true\n')


def render_config(cfg: Config, runtime: str) -> str:
    """The kind cluster config: one control-plane node whose containerd gets the handler entry
    (:func:`handler_entry`) through ``containerdConfigPatches``, applied by kind at creation."""
    lines = [
        "# rendered by ci/cluster/kind.py (source: kind/cluster.yaml)",
        "kind: Cluster",
        "apiVersion: kind.x-k8s.io/v1alpha4",
        "nodes:",
        "  - role: control-plane",
        "containerdConfigPatches:",
        "  - |-",
        *(f"    {ln}" for ln in handler_entry(cfg, runtime).rstrip("\n").splitlines()),
    ]
    return "\n".join(lines) + "\n"


def reaper_node_env(cfg: Config) -> dict[str, str]:
    """reaper's environment on a kind node: the local path's (:func:`ci.cluster.runtime.reaper_env`)
    with the node's folders."""
    env = rt.reaper_env(NODE_BIN, REAPER_RUN, REAPER_LOG_DIR, REAPER_CONF)
    env["REAPER_RUNTIME_PATH"] = f"{NODE_BIN}/{cfg.runtime_binary}"
    return env


def effective_handler(dump: str, handler: str) -> dict | str:
    """The handler's entry in ``containerd config dump`` output (config v2 or v3), or what is wrong."""
    import tomllib

    try:
        plugins = tomllib.loads(dump).get("plugins", {})
    except tomllib.TOMLDecodeError as e:
        return f"unreadable `containerd config dump` ({e}): {dump.strip()[:200]!r}"
    seen = []
    for plugin in CRI_PLUGINS:
        runtimes = plugins.get(plugin, {}).get("containerd", {}).get("runtimes", {})
        if handler in runtimes:
            return runtimes[handler]
        seen += sorted(runtimes)
    return f"no handler {handler!r} (handlers: {', '.join(seen) or 'none'})"


def journal_unit() -> str:
    """systemd template unit: ``reaper-ci-journal@containerd`` appends containerd's journal (from its
    start, then following) to ``/var/log/reaper-ci/containerd.log``, so the suite can grep and tail the
    component logs by path on kind nodes as on the local node."""
    return ("[Unit]\nDescription=reaper-ci: copy the journal of %i into " + REAPER_LOG_DIR + "/%i.log\n\n"
            "[Service]\nExecStart=/bin/sh -c 'exec journalctl --unit %i.service --follow --lines all --output short-iso "
            ">> " + REAPER_LOG_DIR + "/%i.log'\n")


def component_logs(runtime: str) -> dict[str, str]:
    """Node paths of the component logs (ClusterInfo.component_logs; same names as the local path)."""
    logs = {c: f"{REAPER_LOG_DIR}/{c}.log" for c in JOURNALED}
    if runtime == "reaper":
        logs.update({"reaper-runtime": REAPER_LOG, "reaper-shim": REAPER_SHIM_LOG})
    return logs


def config_digest(config_text: str, node_image: str) -> str:
    return hashlib.sha256(f"{node_image}\n{config_text}".encode()).hexdigest()


def containerd_dropin(env: dict[str, str]) -> str:
    """systemd drop-in giving containerd (and so every shim it starts) the runtime's environment."""
    return "[Service]\n" + "".join(f'Environment="{k}={v}"\n' for k, v in sorted(env.items()))


def nodes_ready(nodes_json: str) -> bool | str:
    """True when every node in ``kubectl get nodes -o json`` is Ready, else the state seen."""
    try:
        items = json.loads(nodes_json).get("items", [])
    except json.JSONDecodeError:
        return f"unreadable answer: {nodes_json.strip()[:200]!r}"
    if not items:
        return "no nodes registered yet"
    not_ready = []
    for n in items:
        conds = {c.get("type"): c for c in n.get("status", {}).get("conditions", [])}
        ready = conds.get("Ready", {})
        if ready.get("status") != "True":
            not_ready.append(f"{n['metadata']['name']} Ready={ready.get('status')} ({ready.get('reason')}: {str(ready.get('message', ''))[:150]})")
    return True if not not_ready else "; ".join(not_ready)


# ---------------------------------------------------------------------------- running commands


@dataclass(frozen=True)
class Result:
    returncode: int
    out: str  # stdout and stderr together; stdout only when the call asked for ``stderr=False``


class Runner(Protocol):
    def __call__(self, argv: Sequence[str], *, check: bool = True, input: str | None = None,
                 timeout: float | None = None, cwd: Path | None = None, stderr: bool = True) -> Result: ...


class ShRunner:
    """The real runner: binaries through :func:`ci.tools.tool` (sh), output appended to ``log``.

    ``check`` turns a non-zero exit into a one-line SetupError naming the command, the exit code,
    the last output line and the log file. ``stderr=False`` keeps stderr out of ``Result.out``
    (for output that is parsed: JSON, TOML, a kubeconfig); it still goes to the log.
    """

    def __init__(self, log: Path, extra_path: Iterable[Path] = ()):
        self.log = log
        self.extra_path = tuple(extra_path)

    def __call__(self, argv: Sequence[str], *, check: bool = True, input: str | None = None,
                 timeout: float | None = None, cwd: Path | None = None, stderr: bool = True) -> Result:
        import sh

        from ci import tools

        cmd = tools.tool(argv[0], extra_path=self.extra_path)
        chunks: list[str] = []
        errs: list[str] = []
        kw: dict = dict(_out=chunks.append, _ok_code=list(range(256)), _return_cmd=True, _tty_out=False)
        if stderr:
            kw["_err_to_out"] = True
        else:
            kw["_err"] = errs.append
        if input is not None:
            kw["_in"] = input
        if timeout is not None:
            kw["_timeout"] = timeout
        if cwd is not None:
            kw["_cwd"] = str(cwd)
        shown = " ".join(map(str, argv))
        try:
            code = cmd(*map(str, argv[1:]), **kw).exit_code
        except sh.TimeoutException:
            self._write(shown, "".join(chunks) + "".join(errs), "timed out")
            raise SetupError(f"`{shown[:200]}` timed out after {timeout:.0f}s (log: {self.log})") from None
        out, err = "".join(chunks), "".join(errs)
        self._write(shown, out + (f"[stderr]\n{err}" if err else ""), f"exit {code}")
        if check and code != 0:
            both = (out + "\n" + err).strip()
            last = " | ".join(r.strip() for r in both.splitlines()[-2:] if r.strip())[:300]
            raise SetupError(f"`{shown[:200]}` failed with exit {code} (log: {self.log}){': ' + last if last else ''}")
        return Result(code, out)

    def _write(self, shown: str, out: str, end: str) -> None:
        try:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a", encoding="utf-8", errors="replace") as fh:
                fh.write(f"\n$ {shown}\n{out}{'' if out.endswith(chr(10)) or not out else chr(10)}[{end}]\n")
        except OSError:
            pass  # the log is a convenience; the error message already says what failed


class RunnerNode(NodeAccess):
    """``docker exec`` through the provisioner's runner, so runtime.py's node helpers can be reused."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["docker", "exec", "-i", node, *argv]

    def run(self, node: str, argv: Sequence[str], timeout: float = 30, input: str | None = None):
        import subprocess

        r = self.runner(self.argv(node, argv), check=False, input=input, timeout=timeout)
        return subprocess.CompletedProcess(self.argv(node, argv), r.returncode, r.out, r.out)

    def write_file(self, node: str, path: str, content: str, timeout: float = 30) -> None:
        r = self.run(node, ["/bin/sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path], timeout=timeout, input=content)
        if r.returncode != 0:
            raise SetupError(f"writing {path} on kind node {node} failed: {r.stdout.strip()[-300:]}")


# ---------------------------------------------------------------------------- the provisioner


class KindProvisioner(Provisioner):
    name = "kind"

    def __init__(self, cfg: Config, runner: Runner | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.dir = Path(cfg.state_dir) / "kind" / cfg.cluster_name
        self.kubeconfig = self.dir / "kubeconfig"
        self.log = self.dir / "kind.log"
        self.bin = self.dir / "bin"  # kubectl copied out of the node
        self.run = runner or ShRunner(self.log, extra_path=(self.bin,))
        self.sleep = sleep
        self.clock = clock
        self.access = RunnerNode(self.run)

    # ---------------------------------------------------------------- prerequisites

    def check_prerequisites(self) -> None:
        from ci import tools

        missing = [n for n in ("docker", "kind") if not tools.which(n)]
        if missing:
            hints = {"docker": "install Docker", "kind": f"go install sigs.k8s.io/kind@{KIND_VERSION}"}
            raise ToolMissing(f"--provisioner kind: {', '.join(f'`{m}`' for m in missing)} not on PATH "
                              f"({'; '.join(hints[m] for m in missing)})")
        r = self.run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
        if r.returncode != 0 or not r.out.strip():
            last = r.out.strip().splitlines()[-1][:200] if r.out.strip() else "no output"
            raise ToolMissing(f"--provisioner kind: the Docker daemon does not answer (`docker info` exit {r.returncode}: {last})")

    # ---------------------------------------------------------------- up

    def up(self) -> ClusterInfo:
        cfg = self.cfg
        runtime = rt.resolve(cfg)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SetupError(f"cannot create the kind state folder {self.dir} ({e.strerror}); set --state-dir or REAPER_CI_STATE_DIR") from None
        config = render_config(cfg, runtime)
        config_path = self.dir / "kind-config.yaml"
        config_path.write_text(config)
        digest = config_digest(config, cfg.kind_node_image)

        created = self._create_or_reuse(config_path, digest)
        nodes = self._nodes()
        if created:
            for node in nodes:
                self.access.write_file(node, CONFIG_MARKER, digest + "\n")
        self._write_kubeconfig()
        self._copy_kubectl(nodes[0], fresh=created)
        for node in nodes:
            self._follow_journals(node)

        if runtime == "reaper":
            machine = self.run(["docker", "exec", nodes[0], "uname", "-m"], timeout=Timeouts.COMMAND).out.strip()
            shim, runtime_bin = self._build(target_triple(machine))
            for node in nodes:
                self._install_reaper(node, shim, runtime_bin)
        for node in nodes:
            self._check_handler(node, rt.RUNC_RUNTIME_TYPE if runtime == "runc" else cfg.runtime_type)

        self._wait("nodes Ready", lambda: nodes_ready(self.kubectl("get", "nodes", "-o", "json", check=False, stderr=False).out), Timeouts.NODE_READY)
        self._apply_runtime_class()
        self._load_image(nodes, machine_of=nodes[0])
        info = ClusterInfo(
            provisioner="kind",
            name=cfg.cluster_name,
            kubeconfig=str(self.kubeconfig),
            runtime=runtime,
            runtime_class=cfg.runtime_class,
            shim_process=rt.shim_process(cfg, runtime),
            nodes=tuple(nodes),
            image=cfg.image,
            node_access="docker",
            runtime_log=reaper_node_env(cfg)["REAPER_RUNTIME_LOG"] if runtime == "reaper" else None,
            runtime_state_dir=REAPER_RUN if runtime == "reaper" else RUNC_STATE,
            component_logs=component_logs(runtime),
            source=str(cfg.source) if cfg.source else None,
            source_commit=rt.source_commit(cfg.source),
        )
        self._smoke(info)
        info.save(info_path(cfg.state_dir))
        return info

    def _create_or_reuse(self, config_path: Path, digest: str) -> bool:
        """True when the cluster was (re)created; an existing cluster made from another config or
        node image is deleted first."""
        name = self.cfg.cluster_name
        if name in self._clusters():
            nodes = self._nodes()
            seen = self.access.read_file(nodes[0], CONFIG_MARKER) if nodes else None
            if seen is not None and seen.strip() == digest:
                console.info(f"kind cluster {name}: reused (same config and node image)")
                return False
            console.info(f"kind cluster {name}: made from another config or node image (or runtime); recreating it")
            self.run(["kind", "delete", "cluster", "--name", name, "--kubeconfig", str(self.kubeconfig)], timeout=Timeouts.COMMAND)
        console.info(f"kind cluster {name}: creating it from {self.cfg.kind_node_image} (log: {self.log})")
        self.run(["kind", "create", "cluster", "--name", name, "--config", str(config_path),
                  "--image", self.cfg.kind_node_image, "--kubeconfig", str(self.kubeconfig)], timeout=Timeouts.CREATE)
        return True

    def _clusters(self) -> list[str]:
        return [c.strip() for c in self.run(["kind", "get", "clusters"], timeout=Timeouts.COMMAND).out.splitlines()
                if c.strip() and not c.startswith("No kind clusters")]

    def _nodes(self) -> list[str]:
        out = self.run(["kind", "get", "nodes", "--name", self.cfg.cluster_name], timeout=Timeouts.COMMAND).out
        nodes = sorted(n.strip() for n in out.splitlines() if n.strip() and not n.startswith("No kind nodes"))
        if not nodes:
            raise SetupError(f"kind cluster {self.cfg.cluster_name} has no nodes (`kind get nodes` printed {out.strip()[:200]!r})")
        return nodes

    def _write_kubeconfig(self) -> None:
        text = self.run(["kind", "get", "kubeconfig", "--name", self.cfg.cluster_name], timeout=Timeouts.COMMAND, stderr=False).out
        if "apiVersion" not in text:
            raise SetupError(f"`kind get kubeconfig --name {self.cfg.cluster_name}` gave no kubeconfig: {text.strip()[:200]!r}")
        self.kubeconfig.write_text(text)
        self.kubeconfig.chmod(0o600)

    def _copy_kubectl(self, node: str, fresh: bool) -> None:
        """The node image's kubectl into ``<state>/bin`` (first on the runner's PATH): the client is
        always the cluster's version and the host needs none."""
        dest = self.bin / "kubectl"
        if dest.is_file() and not fresh:
            return
        self.bin.mkdir(parents=True, exist_ok=True)
        self.run(["docker", "cp", f"{node}:{NODE_KUBECTL}", str(dest)], timeout=Timeouts.COMMAND)

    def _follow_journals(self, node: str) -> None:
        """Start the journal copiers (:func:`journal_unit`) on ``node``; starting a running one is a no-op."""
        if self.access.read_file(node, JOURNAL_UNIT_FILE) != journal_unit():
            self.run(["docker", "exec", node, "mkdir", "-p", REAPER_LOG_DIR], timeout=Timeouts.COMMAND)
            self.access.write_file(node, JOURNAL_UNIT_FILE, journal_unit())
            self.run(["docker", "exec", node, "systemctl", "daemon-reload"], timeout=Timeouts.COMMAND)
        self.run(["docker", "exec", node, "systemctl", "start", *(f"{JOURNAL_UNIT}{c}.service" for c in JOURNALED)],
                 timeout=Timeouts.COMMAND)

    def _check_handler(self, node: str, runtime_type: str) -> None:
        """containerd's effective config on ``node`` must map the handler to ``runtime_type`` (a
        patch kind could not merge, or a config format the patch does not match, shows here)."""
        dump = self.run(["docker", "exec", node, "containerd", "config", "dump"], timeout=Timeouts.COMMAND, stderr=False).out
        entry = effective_handler(dump, self.cfg.runtime_class)
        if isinstance(entry, str):
            raise SetupError(f"containerd on kind node {node}: {entry}")
        if entry.get("runtime_type") != runtime_type:
            raise SetupError(f"containerd on kind node {node}: handler {self.cfg.runtime_class} has runtime_type "
                             f"{entry.get('runtime_type')!r}, want {runtime_type!r}")

    def kubectl(self, *args: str, check: bool = True, timeout: float = Timeouts.COMMAND, stderr: bool = True) -> Result:
        return self.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], check=check, timeout=timeout, stderr=stderr)

    # ---------------------------------------------------------------- runtime

    def _build(self, triple: str) -> tuple[Path, Path]:
        """Static musl shim + runtime for ``triple``; returns their host paths."""
        from ci import tools

        cfg = self.cfg
        assert cfg.source is not None
        try:  # the toolchain of the workspace (rust-toolchain.toml applies: cwd is the source)
            targets = self.run(["rustup", "target", "list", "--installed"], cwd=cfg.source, check=False,
                               timeout=Timeouts.COMMAND, stderr=False)
        except ToolMissing:
            targets = None  # Rust without rustup: cargo says what is missing
        if targets is not None and targets.returncode == 0 and triple not in targets.out.split():
            raise ToolMissing(f"the Rust target {triple} (static build for the kind node) is not installed: "
                              f"`rustup target add {triple}` in {cfg.source} (and apt-get install musl-tools)")
        console.info(f"building {cfg.shim_binary} + {cfg.runtime_binary} for {triple} in {cfg.source} (log: {self.log})")
        started = self.clock()
        try:
            self.run(["cargo", "build", "--release", "--target", triple, "--bin", cfg.shim_binary, "--bin", cfg.runtime_binary],
                     cwd=cfg.source, timeout=Timeouts.BUILD)
        except SetupError as e:
            if tools.which("musl-gcc") is None:
                raise SetupError(f"{e} (no musl-gcc on PATH: crates that compile C code need apt-get install musl-tools)") from None
            raise
        console.info(f"built for {triple} in {self.clock() - started:.0f}s")
        meta = self.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=cfg.source, timeout=Timeouts.COMMAND,
                        stderr=False).out
        try:
            target_dir = Path(json.loads(meta)["target_directory"])
        except (ValueError, KeyError, TypeError):
            target_dir = cfg.source / "target"
        built = (target_dir / triple / "release" / cfg.shim_binary, target_dir / triple / "release" / cfg.runtime_binary)
        for p in built:
            if not p.is_file():
                raise SetupError(f"cargo build --target {triple} succeeded but {p} is missing (log: {self.log})")
        return built

    def _install_reaper(self, node: str, shim: Path, runtime_bin: Path) -> None:
        """Copy the binaries into the node's /usr/local/bin (temporary name, then rename: a running
        shim keeps its old file) and give containerd reaper's environment (:func:`reaper_node_env`,
        the local path's settings); restart containerd when that changed."""
        for src in (shim, runtime_bin):
            dest = f"{NODE_BIN}/{src.name}"
            self.run(["docker", "cp", str(src), f"{node}:{dest}.reaper-ci-tmp"], timeout=Timeouts.COMMAND)
            self.run(["docker", "exec", node, "/bin/sh", "-c", f'chmod 0755 "$1.reaper-ci-tmp" && mv -f "$1.reaper-ci-tmp" "$1"', "sh", dest],
                     timeout=Timeouts.COMMAND)
        self.run(["docker", "exec", node, f"{NODE_BIN}/{self.cfg.runtime_binary}", "--help"], timeout=Timeouts.COMMAND)
        self.run(["docker", "exec", node, "mkdir", "-p", REAPER_RUN, REAPER_LOG_DIR], timeout=Timeouts.COMMAND)
        dropin = containerd_dropin(reaper_node_env(self.cfg))
        if self.access.read_file(node, CONTAINERD_DROPIN) != dropin:
            self.access.write_file(node, CONTAINERD_DROPIN, dropin)
            self.run(["docker", "exec", node, "systemctl", "daemon-reload"], timeout=Timeouts.COMMAND)
            rt.restart_containerd(self.access, node)

    def _apply_runtime_class(self) -> None:
        manifest = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                    "metadata": {"name": self.cfg.runtime_class, "labels": {"app.kubernetes.io/managed-by": "reaper-ci"}},
                    "handler": self.cfg.runtime_class}
        path = self.dir / "runtimeclass.json"
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        self.kubectl("apply", "-f", str(path))

    # ---------------------------------------------------------------- image

    def _load_image(self, nodes: Sequence[str], machine_of: str) -> None:
        """Put ``cfg.image`` on every node without a registry: a local Docker image (``cfg.image``
        itself, else ``busybox:latest`` tagged as it) via ``kind load docker-image``, else an image
        archive of the host's static busybox via ``kind load image-archive``."""
        cfg, name = self.cfg, self.cfg.cluster_name
        local = None
        for ref in (cfg.image, "busybox:latest"):
            if self.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], check=False, timeout=Timeouts.COMMAND).returncode == 0:
                local = ref
                break
        if local is not None:
            if local != cfg.image:
                self.run(["docker", "tag", local, cfg.image], timeout=Timeouts.COMMAND)
            self.run(["kind", "load", "docker-image", cfg.image, "--name", name], timeout=Timeouts.CREATE)
        else:
            from ci.cluster import images

            if not (HOST_BUSYBOX.is_file() and images.is_static(HOST_BUSYBOX)):
                raise SetupError(f"no test image for kind: neither {cfg.image} nor busybox:latest is a local Docker image "
                                 f"and {HOST_BUSYBOX} is not a static busybox (`docker pull busybox` or apt-get install busybox-static)")
            machine = self.run(["docker", "exec", machine_of, "uname", "-m"], timeout=Timeouts.COMMAND).out.strip()
            archive = images.docker_archive(self.dir / "busybox.tar", cfg.image,
                                            images.busybox_layer(HOST_BUSYBOX, images.busybox_applets(HOST_BUSYBOX)),
                                            cmd=["sh"], arch=images.go_arch(machine))
            self.run(["kind", "load", "image-archive", str(archive), "--name", name], timeout=Timeouts.CREATE)
        for node in nodes:
            r = self.run(["docker", "exec", node, "crictl", "inspecti", cfg.image], check=False, timeout=Timeouts.COMMAND)
            if r.returncode != 0:
                raise SetupError(f"{cfg.image} is not on node {node} after kind load: {r.out.strip()[-200:]}")

    # ---------------------------------------------------------------- smoke

    def _smoke(self, info: ClusterInfo) -> None:
        """A pod on the handler must run its container to a clean exit and its output read back
        (same verdict as the local path: :func:`ci.cluster.local.smoke_verdict`)."""
        from ci.cluster.local import smoke_verdict

        self.kubectl("delete", "pod", SMOKE_POD, "-n", "default", "--ignore-not-found", "--wait=true", "--grace-period=0", "--force")
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": SMOKE_POD, "namespace": "default", "labels": {"app.kubernetes.io/managed-by": "reaper-ci"}},
            "spec": {
                "runtimeClassName": info.runtime_class, "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": False,
                "containers": [{"name": "smoke", "image": info.image, "imagePullPolicy": "Never",
                                "command": ["/bin/sh", "-c", f"echo {SMOKE_TEXT}"]}],
            },
        }
        path = self.dir / "smoke-pod.json"
        path.write_text(json.dumps(pod, indent=2) + "\n")
        self.kubectl("apply", "-f", str(path))
        started = self.clock()

        def probe() -> bool | str:
            r = self.kubectl("get", "pod", SMOKE_POD, "-n", "default", "-o", "json", check=False, stderr=False)
            if r.returncode != 0:
                return f"kubectl get pod: exit {r.returncode} {r.out.strip()[-150:]}"
            try:
                status = json.loads(r.out).get("status", {})
            except (json.JSONDecodeError, AttributeError):
                return f"unreadable answer: {r.out.strip()[:200]!r}"
            return smoke_verdict(status, info.runtime_class)

        try:
            self._wait(f"smoke pod on RuntimeClass {info.runtime_class} to run to completion", probe, Timeouts.SMOKE_POD)
        except SetupError as e:
            ev = self.kubectl("get", "events", "-n", "default", "--field-selector", f"involvedObject.name={SMOKE_POD}", "-o", "json",
                              check=False, stderr=False)
            try:
                msgs = [f"{x.get('reason')}: {x.get('message')}" for x in json.loads(ev.out).get("items", [])]
            except (json.JSONDecodeError, AttributeError):
                msgs = [ev.out.strip()[-300:]]
            raise SetupError(f"{e}; events: {' | '.join(msgs)[-600:]}") from None
        logs = self.kubectl("logs", "-n", "default", SMOKE_POD, check=False)
        if SMOKE_TEXT not in logs.out:
            raise SetupError(f"smoke pod's container exited 0 but its log reads {logs.out.strip()[:200]!r} (want {SMOKE_TEXT!r})")
        console.info(f"smoke pod on RuntimeClass {info.runtime_class} ({info.runtime}): exited 0 in {self.clock() - started:.1f}s, output read back")
        self.kubectl("delete", "pod", SMOKE_POD, "-n", "default", "--wait=false", check=False)

    def _wait(self, what: str, probe: Callable[[], object], timeout: float) -> None:
        """Poll ``probe`` (True = done, anything else = the state seen) until ``timeout``."""
        deadline = self.clock() + timeout
        last: object = "not looked at yet"
        while True:
            last = probe()
            if last is True:
                return
            if self.clock() >= deadline:
                raise SetupError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {str(last)[:400]}")
            self.sleep(Timeouts.POLL)

    # ---------------------------------------------------------------- down, status, logs

    def down(self) -> None:
        name = self.cfg.cluster_name
        self.run(["kind", "delete", "cluster", "--name", name, "--kubeconfig", str(self.kubeconfig)], timeout=Timeouts.COMMAND)
        for p in (self.kubeconfig, self.dir / "kind-config.yaml", self.dir / "runtimeclass.json", self.dir / "smoke-pod.json",
                  self.dir / "busybox.tar", self.bin / "kubectl"):
            p.unlink(missing_ok=True)
        info = info_path(self.cfg.state_dir)
        try:
            recorded = ClusterInfo.load(info) if info.is_file() else None
        except (ValueError, TypeError, KeyError):
            recorded = None
        if recorded is not None and recorded.provisioner == "kind" and recorded.name == name:
            info.unlink(missing_ok=True)
        console.info(f"kind cluster {name}: deleted")

    def status(self) -> str:
        name = self.cfg.cluster_name
        try:
            clusters = self._clusters()
        except CIError as e:
            return f"kind cluster {name}: unknown ({e})"
        if name not in clusters:
            return f"kind cluster {name}: not running"
        try:
            nodes = self._nodes()
            ready = nodes_ready(self.kubectl("get", "nodes", "-o", "json", check=False, stderr=False).out) if self.kubeconfig.is_file() else "no kubeconfig"
        except CIError as e:
            return f"kind cluster {name}: exists, state unknown ({e})"
        return (f"kind cluster {name}: nodes {', '.join(nodes)}; Ready: {'yes' if ready is True else ready}; "
                f"kubeconfig {self.kubeconfig}")

    def collect_logs(self, dest: Path) -> list[Path]:
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        files: list[Path] = []
        name = self.cfg.cluster_name
        if name in self._clusters():
            export = dest / "kind"
            r = self.run(["kind", "export", "logs", str(export), "--name", name], check=False, timeout=Timeouts.CREATE)
            if r.returncode == 0:
                files += [p for p in export.rglob("*") if p.is_file()]
            else:
                console.error(f"kind export logs failed (exit {r.returncode}): {r.out.strip()[-200:]}")
            for node in self._nodes():
                for path in (REAPER_LOG, REAPER_SHIM_LOG):
                    text = self.access.read_file(node, path)
                    if text is not None:
                        out = dest / f"{node}-{Path(path).name}"
                        out.write_text(text)
                        files.append(out)
                dump = self.run(["docker", "exec", node, "containerd", "config", "dump"], check=False,
                                timeout=Timeouts.COMMAND, stderr=False)
                if dump.returncode == 0:
                    out = dest / f"{node}-containerd-config.toml"
                    out.write_text(dump.out)
                    files.append(out)
        if self.log.is_file():
            out = dest / "kind-provisioner.log"
            out.write_text(self.log.read_text(errors="replace"))
            files.append(out)
        return files
