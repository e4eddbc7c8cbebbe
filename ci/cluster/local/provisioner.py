"""The ``local`` provisioner's orchestration: ``up`` (reuse a healthy cluster or create one), ``down``, ``status`` and log collection; the jobs live in the sibling modules."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ci import console
from ci.cluster import images, pki as pki_mod, restart_local, runtime as rt
from ci.cluster.base import ClusterInfo, LocalNode, Provisioner
from ci.config import Config
from ci.cluster import verify
from ci.tools import Result, ShRunner
from ci.errors import CIError, SetupError
from ci.cluster.local.host import HostCleanup, describe_leftovers, footprint_lines, kube_chains, link_exists, mounts_under, read_sysctls, reaper_home_entries, our_processes
from ci.cluster.local.layout import APISERVER_PORT, BRIDGE, COMPONENTS, ETCD_CLIENT_PORT, Layout, OWNS_REAPER_HOME, REAPER_HOME, Timeouts, node_ip, node_name
from ci.cluster.local.prereqs import BUSYBOX, Prereqs
from ci.cluster.local.render import apiserver_argv, cni_conflist, containerd_config, controller_manager_argv, etcd_argv, kubelet_argv, kubelet_config, scheduler_argv
from ci.cluster.local.supervise import Supervisor, pid_alive


class LocalProvisioner(Prereqs, Supervisor, HostCleanup, Provisioner):
    name = "local"

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.lay = Layout(Path(cfg.state_dir))
        self.node = node_name()
        self.node_ip = node_ip()
        self._procs: dict[str, subprocess.Popen] = {}
        self._api: verify.Api | None = None

    @property
    def api(self) -> verify.Api:
        """The cluster's API (:mod:`ci.cluster.verify`), through the admin kubeconfig."""
        if self._api is None:
            self._api = verify.Verifier(str(self.lay.kubeconfig))
        return self._api

    def _node_ready(self) -> bool | str:
        return self.api.nodes_ready((self.node,))

    # ---------------------------------------------------------------- up

    def up(self) -> ClusterInfo:
        with self._locked("up"):
            return self._up()

    def _up(self) -> ClusterInfo:
        self.check_prerequisites()
        runtime = rt.resolve(self.cfg)
        self.lay.logs.mkdir(parents=True, exist_ok=True)
        self._ensure_packages()
        k8s_bin = self._ensure_k8s_binaries()
        self.ctrd_bin = self._ensure_containerd()
        built = None
        if runtime == "reaper":
            log = self.cfg.artifacts / "runtime-build.log"
            built = rt.build(self.cfg, ShRunner(log), log)
        reused = self._reuse(runtime, built)
        if reused is not None:
            console.info(f"local cluster healthy: reused ({reused.runtime} behind RuntimeClass {reused.runtime_class})")
            return reused
        if not self.lay.state.exists() and (link_exists(BRIDGE) or our_processes(self.lay)):
            raise SetupError(f"another local cluster holds this host (bridge {BRIDGE} or its processes exist) but "
                             f"{self.lay.state} has no cluster state: take that cluster down with its own --state-dir first")
        if self.lay.info.exists() or any(pid_alive(self.lay.pidfile(c)) for c in COMPONENTS) or link_exists(BRIDGE) or mounts_under([self.lay.state, self.lay.run]):
            console.info("local cluster absent or unhealthy: removing what is left, then creating it afresh")
            self._down()
        return self._create(runtime, built, k8s_bin)

    def _reuse(self, runtime: str, built: rt.Built | None) -> ClusterInfo | None:
        """The recorded cluster, when every component runs, the API and node are Ready and the
        runtime matches, down to the build of its binaries (a changed build gets a fresh cluster)."""
        if not self.lay.info.is_file():
            return None
        try:
            info = ClusterInfo.load(self.lay.info)
        except (ValueError, TypeError, OSError):
            return None
        if info.runtime != runtime or info.runtime_class != self.cfg.runtime_class or info.image != self.cfg.image:
            console.info(f"recorded cluster serves {info.runtime}/{info.runtime_class}; {runtime}/{self.cfg.runtime_class} wanted")
            return None
        if info.versions != self._versions():
            console.info(f"recorded cluster runs {info.versions or 'unrecorded versions'}; {self._versions()} wanted")
            return None
        if built is not None and info.runtime_build != built.digest():
            # reaper keeps node-wide state across pods (its shared mount namespace and overlay); a
            # different build must not inherit the old build's (a newer reaper refuses to adopt it)
            console.info(f"the runtime build changed ({(info.runtime_build or 'unknown')[:12]} -> {built.digest()[:12]}): "
                         "recreating the cluster so the new build starts from a clean node")
            return None
        dead = [c for c in COMPONENTS if not pid_alive(self.lay.pidfile(c))]
        if dead:
            console.info(f"recorded cluster has stopped components: {', '.join(dead)}")
            return None
        try:
            self._wait("kube-apiserver /readyz", lambda: self.api.readyz(), 10)
            self._wait(f"node {self.node} Ready", self._node_ready, 20)
        except SetupError as e:
            console.info(f"recorded cluster is not healthy: {e}")
            return None
        info = rt.refresh_info(self.cfg, runtime, info, **self._node_fields(runtime))
        info.save(self.lay.info)
        return info

    def _create(self, runtime: str, built: rt.Built | None, k8s_bin: Path) -> ClusterInfo:
        lay, cfg = self.lay, self.cfg
        started = time.monotonic()
        for d in (lay.etc, lay.logs, lay.pids, lay.bin, lay.images, lay.kubelet_root, lay.pod_logs, lay.containerd_root,
                  lay.containerd_state, lay.cni_conf, lay.cni_ipam, lay.runc_root, lay.reaper_run):
            d.mkdir(parents=True, exist_ok=True)
        console.info(f"node {self.node} ({self.node_ip}); state in {lay.state}, {lay.run}")
        pki = pki_mod.ensure(lay.pki, self.node, self.node_ip, lay.log("pki"))
        server = f"https://127.0.0.1:{APISERVER_PORT}"
        lay.kubeconfig.write_text(pki_mod.kubeconfig(server, pki.ca_crt, pki.crt("admin"), pki.key("admin"), "admin"))
        lay.kubeconfig.chmod(0o600)
        for comp, cert, user in (("kube-controller-manager", "kube-controller-manager", "system:kube-controller-manager"),
                                 ("kube-scheduler", "kube-scheduler", "system:kube-scheduler"),
                                 ("kubelet", "kubelet", f"system:node:{self.node}")):
            lay.component_kubeconfig(comp).write_text(pki_mod.kubeconfig(server, pki.ca_crt, pki.crt(cert), pki.key(cert), user))
        (lay.etc / "containerd.toml").write_text(containerd_config(lay, cfg, runtime))
        (lay.cni_conf / "10-reaper-ci.conflist").write_text(cni_conflist(lay))
        (lay.etc / "kubelet.json").write_text(kubelet_config(lay, self.node_ip))

        # etcd
        self._start("etcd", etcd_argv(k8s_bin, lay))
        self._wait("etcd /health", self._etcd_healthy, Timeouts.ETCD, watch=("etcd",))

        # containerd (+ the runtime under test on its PATH)
        if built is not None:
            self._install_runtime(built)
        # our bin (the runtime under test), then containerd's own folder (its runc shim), then the host's
        env = {"PATH": f"{lay.bin}:{self.ctrd_bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
        if runtime == "reaper":
            self._claim_reaper_home()
            env.update(self._reaper_env())
        self._start("containerd", [str(self.ctrd_bin / "containerd"), "--config", str(lay.etc / "containerd.toml")], env=env)
        self._wait("containerd socket", self._containerd_ready, Timeouts.CONTAINERD, watch=("containerd",))
        self._import_images(k8s_bin)

        # control plane
        self._start("kube-apiserver", apiserver_argv(k8s_bin, lay, self.node_ip, self.cfg.k8s_version))
        self._wait("kube-apiserver /readyz", self.api.readyz, Timeouts.APISERVER, watch=("etcd", "kube-apiserver"))
        self.api.apply_runtime_class(cfg.runtime_class)
        self._start("kube-controller-manager", controller_manager_argv(k8s_bin, lay))
        self._start("kube-scheduler", scheduler_argv(k8s_bin, lay))
        (lay.state / "preexisting-kube-chains.json").write_text(json.dumps(kube_chains()))
        (lay.state / "sysctls-before-kubelet.json").write_text(json.dumps(read_sysctls()))
        self._start("kubelet", kubelet_argv(k8s_bin, lay, self.node, self.node_ip))
        all_watch = tuple(COMPONENTS)
        self._wait(f"node {self.node} Ready", self._node_ready, Timeouts.NODE_READY, watch=all_watch)
        self._wait("ServiceAccount default/default", self.api.default_service_account, Timeouts.SERVICE_ACCOUNT, watch=all_watch)
        self._wait(f"RuntimeClass {cfg.runtime_class}", lambda: self.api.runtime_class(cfg.runtime_class), 10, watch=all_watch)

        info = rt.cluster_info(
            cfg, runtime, provisioner="local", kubeconfig=str(lay.kubeconfig), nodes=(self.node,), node_access="local",
            runtime_log=str(lay.log("reaper-runtime")) if runtime == "reaper" else None,
            runtime_state_dir=str(lay.reaper_run) if runtime == "reaper" else str(lay.runc_root / "k8s.io"),
            component_logs=self._component_logs(runtime),
            runtime_build=built.digest() if built is not None else None,
            versions=self._versions(),
            **self._node_fields(runtime),
        )
        verify.smoke(self.api, info, lambda what, probe, timeout: self._wait(what, probe, timeout, watch=COMPONENTS),
                     timeout=Timeouts.SMOKE_POD)
        info.save(lay.info)
        console.info(f"local cluster up in {time.monotonic() - started:.1f}s: kubeconfig {lay.kubeconfig}")
        return info

    def _versions(self) -> dict[str, str]:
        return {"kubernetes": self.cfg.k8s_version, "containerd": self.cfg.containerd_version, "etcd": self.cfg.etcd_version}

    def _node_fields(self, runtime: str) -> dict[str, str]:
        """Where this node keeps what the suite inspects (ClusterInfo fields; refreshed on reuse)."""
        ctr = self.cfg.containerd_bin / "ctr"
        return {"kubelet_root": str(self.lay.kubelet_root), "pod_logs_dir": str(self.lay.pod_logs),
                "containerd_address": str(self.lay.containerd_sock), "ctr": str(ctr) if ctr.is_file() else "ctr",
                "containerd_root": str(self.lay.containerd_root),
                "containerd_restart": shlex.join([sys.executable, str(Path(restart_local.__file__).resolve()),
                                                  str(self.lay.pidfile("containerd")), str(self.lay.containerd_sock),
                                                  str(self.lay.log("containerd"))])}

    def _component_logs(self, runtime: str) -> dict[str, str]:
        logs = {c: str(self.lay.log(c)) for c in COMPONENTS}
        if runtime == "reaper":
            logs["reaper-shim"] = str(self.lay.log("reaper-shim"))
            logs["reaper-runtime"] = str(self.lay.log("reaper-runtime"))
        return logs

    def _reaper_env(self) -> dict[str, str]:
        return rt.reaper_env(str(self.lay.bin), str(self.lay.reaper_run), str(self.lay.logs), str(self.lay.etc / "reaper.conf"),
                             runtime_binary=self.cfg.runtime_binary)

    def _claim_reaper_home(self) -> None:
        """reaper runs with its default overlay paths under /run/reaper (as its users deploy it); refuse
        to share them with a reaper this cluster did not start (``down`` has removed our own)."""
        found = reaper_home_entries()
        if found:
            raise SetupError(f"{REAPER_HOME} holds reaper overlay state this cluster did not make "
                             f"({', '.join(str(p) for p in found[:4])}): is reaper installed on this host? The local "
                             f"cluster's reaper would share it; remove it (or stop that reaper) first")
        (self.lay.state / OWNS_REAPER_HOME).write_text("reaper's overlay state in /run/reaper is this cluster's\n")

    def _install_runtime(self, built: rt.Built) -> None:
        rt.install_reaper(LocalNode(), self.node, built, str(self.lay.bin), self.cfg)
        self.lay.reaper_run.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- probes

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{ETCD_CLIENT_PORT}/health", timeout=3) as r:
            return json.loads(r.read()).get("health") == "true"

    def _containerd_ready(self) -> bool:
        if not self.lay.containerd_sock.exists():
            return False
        r = self._ctr("version", timeout=10)
        return r.returncode == 0

    def _ctr(self, *args: str, timeout: float = 60) -> Result:
        ctr = self.cfg.containerd_bin / "ctr"
        return ShRunner()([str(ctr) if ctr.is_file() else "ctr", "--address", str(self.lay.containerd_sock), *args],
                          check=False, stderr=False, timeout=timeout)

    def _import_images(self, k8s_bin: Path) -> None:
        arch = images.go_arch()
        pause = images.docker_archive(self.lay.images / "pause.tar", self.cfg.pause_image, images.pause_layer(k8s_bin / "pause"),
                                      entrypoint=["/pause"], arch=arch)
        busybox = images.docker_archive(self.lay.images / "busybox.tar", self.cfg.image,
                                        images.busybox_layer(BUSYBOX, images.busybox_applets(BUSYBOX)), cmd=["sh"], arch=arch)
        for ref, tar in ((self.cfg.pause_image, pause), (self.cfg.image, busybox)):
            r = self._ctr("-n", "k8s.io", "images", "import", "--all-platforms", str(tar), timeout=300)
            with open(self.lay.log("images"), "a") as fh:
                fh.write(f"$ ctr images import {tar}\n{r.stdout}{r.stderr}")
            if r.returncode != 0:
                raise SetupError(f"importing {ref} ({tar}) into containerd failed: {(r.stderr or r.stdout).strip()[-300:]}")
        r = self._ctr("-n", "k8s.io", "images", "ls", "-q")
        have = set(r.stdout.split())
        missing = [ref for ref in (self.cfg.pause_image, self.cfg.image) if ref not in have]
        if missing:
            raise SetupError(f"images not in containerd after import: {', '.join(missing)} (have: {', '.join(sorted(have)) or 'none'})")

    # ---------------------------------------------------------------- down

    def down(self) -> None:
        with self._locked("down"):
            self._down()

    # ---------------------------------------------------------------- status, logs

    def status(self) -> str:
        lines = []
        for c in COMPONENTS:
            pid = pid_alive(self.lay.pidfile(c))
            lines.append(f"  {c:24} {'running (pid ' + str(pid) + ')' if pid else 'not running'}")
        head = f"local cluster in {self.lay.state}:"
        if self.lay.info.is_file():
            info = ClusterInfo.load(self.lay.info)
            head += f" runtime {info.runtime} behind RuntimeClass {info.runtime_class} on node {', '.join(info.nodes)}; kubeconfig {info.kubeconfig}"
            try:
                ready = self._node_ready()
                head += f"; node Ready: {'yes' if ready is True else ready}"
            except Exception as e:  # noqa: BLE001 - status reports, never fails
                head += f"; API unreachable ({type(e).__name__})"
        else:
            head += " no cluster recorded (cluster.json absent)"
        return "\n".join([head, *lines, *footprint_lines(describe_leftovers(self.lay.state, self.lay.run))])

    def collect_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        if self.lay.logs.is_dir():
            for f in sorted(self.lay.logs.glob("*.log")):
                shutil.copy2(f, dest / f.name)
                out.append(dest / f.name)
        if self.lay.pod_logs.is_dir():
            for f in sorted(self.lay.pod_logs.rglob("*.log")):
                rel = f.relative_to(self.lay.pod_logs)
                target = dest / "pods" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
                out.append(target)
        if self.lay.info.is_file():
            shutil.copy2(self.lay.info, dest / "cluster.json")
            out.append(dest / "cluster.json")
        out += self._dump_state(dest)
        return out

    def _dump_state(self, dest: Path) -> list[Path]:
        """What the API and containerd say right now (best effort: a dead cluster has no answers)."""
        dumps = {
            "ctr-containers.txt": lambda: self._ctr("-n", "k8s.io", "containers", "ls", timeout=20),
            "ctr-tasks.txt": lambda: self._ctr("-n", "k8s.io", "tasks", "ls", timeout=20),
        }
        out = []
        try:
            text = self.api.dump()
        except Exception as e:  # noqa: BLE001 - best effort: a dead cluster has no answers
            text = f"unavailable: {type(e).__name__}: {e}"
        (dest / "api-state.txt").write_text(text)
        out.append(dest / "api-state.txt")
        for name, call in dumps.items():
            try:
                r = call()
                text = r.stdout + (f"\n(exit {r.returncode}) {r.stderr}" if r.returncode else "")
            except (OSError, CIError) as e:  # the tool is missing or timed out
                text = f"unavailable: {e}"
            (dest / name).write_text(text)
            out.append(dest / name)
        return out

    # ---------------------------------------------------------------- tools
