"""What the local cluster needs before it starts: root on Linux, host packages (apt-get), Kubernetes/etcd/containerd binaries (built from source once), and one up/down at a time per host."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import time
from pathlib import Path

from ci import console
from ci.cluster import images
from ci.errors import SetupError, ToolMissing
from ci.cluster.local.layout import CNI_BIN_DIR, Timeouts
from ci.cluster.local.supervise import tail
from ci.tools import ShRunner


# Debian packages that provide what the local cluster needs on the host.
HOST_PACKAGES = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip": "iproute2",
    "conntrack": "conntrack",
    "socat": "socat",
    "openssl": "openssl",
}


CNI_PACKAGE = "containernetworking-plugins"


BUSYBOX = Path("/bin/busybox")


BUSYBOX_PACKAGE = "busybox-static"


class Prereqs:
    """Prerequisite checks and installs of :class:`~ci.cluster.local.provisioner.LocalProvisioner`."""

    # ---------------------------------------------------------------- prerequisites

    def check_prerequisites(self) -> None:
        if platform.system() != "Linux":
            raise ToolMissing(f"the local provisioner needs Linux (this is {platform.system()}); use --provisioner kind")
        if os.geteuid() != 0:
            raise ToolMissing("the local provisioner must run as root (it starts containerd and a kubelet); run with sudo or use --provisioner kind")
        missing = self._missing_packages()
        if missing and not shutil.which("apt-get"):
            raise ToolMissing(f"missing host packages ({', '.join(missing)}) and no apt-get to install them")

    def _missing_packages(self) -> list[str]:
        pkgs = [pkg for tool, pkg in HOST_PACKAGES.items() if not shutil.which(tool)]
        if not (Path(CNI_BIN_DIR) / "bridge").is_file() or not (Path(CNI_BIN_DIR) / "host-local").is_file():
            pkgs.append(CNI_PACKAGE)
        if not BUSYBOX.is_file() or not images.is_static(BUSYBOX):
            pkgs.append(BUSYBOX_PACKAGE)
        return sorted(set(pkgs))

    def _ensure_packages(self) -> None:
        missing = self._missing_packages()
        if not missing:
            return
        log = self.lay.log("apt-get")
        console.info(f"installing host packages: {' '.join(missing)}")
        apt = ShRunner(log)
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        r = apt(install, check=False, env=env)
        if r.returncode != 0:
            apt(["apt-get", "update"], check=False, env=env)
            r = apt(install, check=False, env=env)
        if r.returncode != 0:
            raise SetupError(f"apt-get install {' '.join(missing)} failed (log: {log}): {tail(log, 1)}")
        still = self._missing_packages()
        if still:
            raise SetupError(f"after apt-get install, still missing: {', '.join(still)}")

    def _ensure_k8s_binaries(self) -> Path:
        from ci.cluster import k8s_build

        bindir = self.cfg.k8s_bin
        if k8s_build.is_complete(bindir):
            return bindir
        if self.cfg.k8s_bin_dir is not None:
            missing = [b for b in k8s_build.ALL_BINARIES if not (bindir / b).is_file()]
            raise SetupError(f"--k8s-bin-dir {bindir} lacks: {', '.join(missing)}")
        log = self.cfg.artifacts / "k8s-build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        console.info(f"building Kubernetes {self.cfg.k8s_version} + etcd {self.cfg.etcd_version} from source into {bindir} (log: {log}; minutes when cold)")
        with open(log, "a") as fh:
            try:
                k8s_build.build(bindir, k8s_build.Versions(self.cfg.k8s_version, self.cfg.etcd_version), fh)
            except k8s_build.BuildError as e:
                raise SetupError(f"Kubernetes build failed: {e} (log: {log})") from None
        return bindir

    def _ensure_containerd(self) -> Path:
        """containerd + its runc shim + ctr (built once per version into the cache, or from --k8s-bin-dir)."""
        from ci.cluster import k8s_build

        bindir = self.cfg.containerd_bin
        if k8s_build.has_containerd(bindir):
            return bindir
        log = self.cfg.artifacts / "containerd-build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        console.info(f"building containerd {self.cfg.containerd_version} from source into {bindir} (log: {log})")
        with open(log, "a") as fh:
            try:
                k8s_build.build_containerd(bindir, self.cfg.containerd_version, fh)
            except k8s_build.BuildError as e:
                raise SetupError(f"containerd build failed: {e} (log: {log})") from None
        return bindir

    # ---------------------------------------------------------------- serialisation

    @contextlib.contextmanager
    def _locked(self, what: str):
        """One ``up``/``down`` at a time per host: several sessions (self tests, the suite, a user)
        share one cluster, and two concurrent ``up`` would kill each other's components."""
        path = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
        path = path / "reaper-ci-local-cluster.lock"
        fh = open(path, "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                console.info(f"waiting for another local cluster up/down to finish ({fh.read().strip() or 'unknown'})")
                end = time.monotonic() + Timeouts.LOCK
                while True:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > end:
                            raise SetupError(f"another local cluster up/down held {path} for {Timeouts.LOCK}s") from None
                        time.sleep(1)
            fh.seek(0)
            fh.truncate()
            fh.write(f"{what} by pid {os.getpid()}\n")
            fh.flush()
            yield
        finally:
            fh.close()
