"""Cluster provisioners. :func:`get_provisioner` picks ``kind`` or ``local`` for a Config."""

from __future__ import annotations

import os
import platform
import shutil

from ci.cluster.base import Provisioner
from ci.config import Config
from ci.errors import SetupError, ToolMissing
from ci.tools import ShRunner


def kind_usable() -> str | None:
    """None when kind can run here (docker daemon answers, kind on PATH), else what is missing."""
    if not shutil.which("docker"):
        return "no `docker` on PATH"
    if not shutil.which("kind"):
        return "no `kind` on PATH"
    try:
        r = ShRunner()(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, stderr=False, timeout=20)
    except SetupError as e:  # timed out
        return f"`docker info` failed ({e})"
    if r.returncode != 0 or not r.stdout.strip():
        return "the Docker daemon does not answer (`docker info` failed)"
    return None


def local_usable() -> str | None:
    """None when the local provisioner can run here (Linux, root), else what is missing."""
    if platform.system() != "Linux":
        return f"not Linux ({platform.system()})"
    if os.geteuid() != 0:
        return "not root"
    return None


def get_provisioner(cfg: Config) -> Provisioner:
    """``--provisioner kind|local|existing``, or ``auto``: kind when Docker + kind work, else local on Linux as root."""
    choice = cfg.provisioner
    if choice == "existing":
        from ci.cluster.existing import ExistingProvisioner

        return ExistingProvisioner(cfg)
    if choice == "auto":
        why_not_kind = kind_usable()
        if why_not_kind is None:
            choice = "kind"
        else:
            why_not_local = local_usable()
            if why_not_local is not None:
                raise ToolMissing(
                    f"no way to get a cluster: kind needs Docker + kind ({why_not_kind}); "
                    f"the local provisioner needs Linux as root ({why_not_local})"
                )
            choice = "local"
    if choice == "kind":
        try:
            from ci.cluster.kind import KindProvisioner
        except ModuleNotFoundError as e:
            if e.name != "ci.cluster.kind":
                raise
            raise ToolMissing("--provisioner kind: this checkout has no kind provisioner (ci/cluster/kind.py); use --provisioner local") from None

        return KindProvisioner(cfg)
    from ci.cluster.local import LocalProvisioner

    return LocalProvisioner(cfg)
