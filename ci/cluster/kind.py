"""The kind provisioner: a kind cluster (Kubernetes in Docker) with the runtime under test.

``up`` creates (or reuses) cluster ``cfg.cluster_name`` from ``kind/cluster.yaml`` (rendered by
:func:`render_config`: it carries the containerd handler entry for reaper, or for runc as the
reference runtime), builds the shim and runtime as static musl binaries for the node's
architecture, copies them into every node's ``/usr/local/bin``, gives containerd reaper's
environment as reaper's own install does (:func:`reaper_node_env`), checks containerd's effective
config has the handler and its CRI is up, waits for the nodes to be Ready and the default
ServiceAccount, creates the RuntimeClass, loads the test image as a single-platform archive, runs
a smoke pod and writes the :class:`ClusterInfo` (``node_access`` ``docker``). kubectl is the node
image's own (copied out of the node: same version as the cluster).

Every external command goes through an injectable runner (:class:`ci.tools.Runner`), so unit
tests check the exact command sequence without Docker. The kubeconfig lives in its own file under
the state folder; ``~/.kube/config`` is never touched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from ci import console
from ci.cluster import runtime as rt, verify
from ci.cluster.base import ClusterInfo, DockerNode, Provisioner, info_path
from ci.cluster.kind_config import (  # noqa: F401  (re-exported: the kind path's names in one place)
    API_SAVE_PLATFORM, CI_LOG_DIR, CONFIG_MARKER, CONTAINERD_DROPIN, CRI_BASE_SPEC, CRI_PLUGINS, JOURNAL_UNIT,
    JOURNAL_UNIT_FILE, JOURNALED, KIND_CONFIG_FILE, KIND_VERSION, NODE_BIN, NODE_KUBECTL, POD_ANNOTATIONS,
    REAPER_DNS_MODE, REAPER_LOG, REAPER_RUN, REAPER_SHIM_LOG, RUNC_STATE, TRIPLES, api_version, component_logs,
    config_digest, containerd_dropin, cri_ready, effective_handler, handler_entry, journal_unit,
    reaper_node_env, render_config, target_triple,
)
from ci.tools import Result, Runner, ShRunner  # noqa: F401  (re-exported for the tests)
from ci.config import Config
from ci.errors import CIError, RuntimeFailure, SetupError, SmokeFailed, ToolMissing
from ci.wait import until

HOST_BUSYBOX = Path("/bin/busybox")
IMAGE_ARCHIVE = "image.tar"  # under the state folder: the single-platform archive `kind load image-archive` reads


class Timeouts:
    """Named timeouts (seconds) of the kind path."""

    CREATE = 600  # kind create cluster (node image already present on CI runners: ~1 min)
    BUILD = 3600  # cargo build of shim + runtime for the musl target
    NODE_READY = 240
    SMOKE_POD = 120
    COMMAND = 120  # any other single command
    POLL = 1.0  # interval between two looks at a condition



# ---------------------------------------------------------------------------- the provisioner


class KindProvisioner(Provisioner):
    name = "kind"

    def __init__(self, cfg: Config, runner: Runner | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 api: Callable[[str], verify.Api] = verify.Verifier):
        self.cfg = cfg
        self.dir = Path(cfg.state_dir) / "kind" / cfg.cluster_name
        self.kubeconfig = self.dir / "kubeconfig"
        self.log = self.dir / "kind.log"
        self.bin = self.dir / "bin"  # kubectl copied out of the node
        self.run = runner or ShRunner(self.log, extra_path=(self.bin,))
        self.sleep = sleep
        self.clock = clock
        self.access = DockerNode(self.run)
        self._api_factory = api
        self._api: verify.Api | None = None

    @property
    def api(self) -> verify.Api:
        """The cluster's API (:mod:`ci.cluster.verify`) through the kubeconfig kind wrote."""
        if self._api is None:
            self._api = self._api_factory(str(self.kubeconfig))
        return self._api

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

        machine = self.run(["docker", "exec", nodes[0], "uname", "-m"], timeout=Timeouts.COMMAND).out.strip()
        if runtime == "reaper":
            shim, runtime_bin = self._build(target_triple(machine))
            for node in nodes:
                self._install_reaper(node, shim, runtime_bin)
        for node in nodes:
            self._check_handler(node, rt.RUNC_RUNTIME_TYPE if runtime == "runc" else cfg.runtime_type)
            self._wait(f"containerd's CRI on {node} (RuntimeReady, NetworkReady)", lambda n=node: cri_ready(
                self.run(["docker", "exec", n, "crictl", "info"], check=False, timeout=Timeouts.COMMAND, stderr=False).out),
                Timeouts.NODE_READY)

        self._wait("nodes Ready", lambda: self.api.nodes_ready(tuple(nodes)), Timeouts.NODE_READY)
        # a fresh cluster admits no pod before the service account controller made `default`
        # (reaper's own scripts/lib/test-phases.sh waits for it too)
        self._wait("the default ServiceAccount in namespace default", self.api.default_service_account, Timeouts.NODE_READY)
        self.api.apply_runtime_class(cfg.runtime_class)
        self._load_image(nodes, machine)
        info = rt.cluster_info(
            cfg, runtime, provisioner="kind", kubeconfig=str(self.kubeconfig), nodes=tuple(nodes), node_access="docker",
            runtime_log=REAPER_LOG if runtime == "reaper" else None,
            runtime_state_dir=REAPER_RUN if runtime == "reaper" else RUNC_STATE,
            component_logs=component_logs(runtime),
            versions={"node_image": cfg.kind_node_image},
            # kind nodes keep the stock kubelet/CRI log/containerd paths (ClusterInfo's defaults)
            containerd_restart=" ".join(rt.SYSTEMD_CONTAINERD_RESTART),  # kind nodes run containerd as a systemd unit
        )
        verify.smoke(self.api, info, self._wait, timeout=Timeouts.SMOKE_POD, clock=self.clock)
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
        # workers first: scenarios that need one node take the first (kind taints the control plane
        # NoSchedule when there are workers; pinned pods would still run there, unpinned ones not)
        nodes = sorted((n.strip() for n in out.splitlines() if n.strip() and not n.startswith("No kind nodes")),
                       key=lambda n: (n.endswith("-control-plane"), n))
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
            self.run(["docker", "exec", node, "mkdir", "-p", CI_LOG_DIR], timeout=Timeouts.COMMAND)
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

    # ---------------------------------------------------------------- runtime

    def _build(self, triple: str) -> tuple[Path, Path]:
        """Static musl shim + runtime for ``triple`` (:func:`ci.cluster.runtime.build`); their host paths."""
        built = rt.build(self.cfg, self.run, self.log, target=triple)
        return built.shim, built.runtime

    def _install_reaper(self, node: str, shim: Path, runtime_bin: Path) -> None:
        """Copy the binaries into the node's /usr/local/bin (temporary name, then rename: a running
        shim keeps its old file) and give containerd reaper's environment (:func:`reaper_node_env`:
        what reaper's own install sets); restart containerd when that changed."""
        rt.install_reaper(self.access, node, rt.Built(shim, runtime_bin), NODE_BIN, self.cfg)
        self.run(["docker", "exec", node, "mkdir", "-p", REAPER_RUN], timeout=Timeouts.COMMAND)
        dropin = containerd_dropin(reaper_node_env(self.cfg))
        if self.access.read_file(node, CONTAINERD_DROPIN) != dropin:
            self.access.write_file(node, CONTAINERD_DROPIN, dropin)
            self.run(["docker", "exec", node, "systemctl", "daemon-reload"], timeout=Timeouts.COMMAND)
            rt.restart_containerd(self.access, node)

    # ---------------------------------------------------------------- image

    def _load_image(self, nodes: Sequence[str], machine: str) -> None:
        from ci.cluster import kind_image

        kind_image.load_image(self.run, self.cfg, self.dir / IMAGE_ARCHIVE, nodes, machine, HOST_BUSYBOX, Timeouts.COMMAND, Timeouts.CREATE)


    def _wait(self, what: str, probe: Callable[[], object], timeout: float) -> None:
        until(what, probe, timeout, poll=Timeouts.POLL, definite=(RuntimeFailure, SmokeFailed), clock=self.clock,
              sleep=self.sleep)

    # ---------------------------------------------------------------- down, status, logs

    def down(self) -> None:
        name = self.cfg.cluster_name
        self.run(["kind", "delete", "cluster", "--name", name, "--kubeconfig", str(self.kubeconfig)], timeout=Timeouts.COMMAND)
        for p in (self.kubeconfig, self.dir / "kind-config.yaml", self.dir / IMAGE_ARCHIVE, self.dir / "busybox.tar", self.bin / "kubectl"):
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
            ready = self.api.nodes_ready(tuple(nodes)) if self.kubeconfig.is_file() else "no kubeconfig"
        except CIError as e:
            return f"kind cluster {name}: exists, state unknown ({e})"
        except Exception as e:  # noqa: BLE001 - status reports, never fails
            ready = f"API unreachable ({type(e).__name__})"
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
                for label, path in (("reaper-runtime", REAPER_LOG), ("reaper-shim", REAPER_SHIM_LOG)):
                    text = self.access.read_file(node, path)
                    if text is not None:
                        out = dest / f"{node}-{label}.log"
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
