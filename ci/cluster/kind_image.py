"""The kind path's test image: put it on every node without a registry, always as a single-platform
archive (see :func:`load_image`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ci.cluster import images
from ci.cluster.kind_config import API_SAVE_PLATFORM, api_version
from ci.tools import Runner
from ci.config import Config
from ci.errors import SetupError


def load_image(run: Runner, cfg: Config, archive: Path, nodes: Sequence[str], machine: str, busybox: Path,
               timeout: float, load_timeout: float) -> None:
    """Put ``cfg.image`` on every node without a registry, always from a single-platform archive
    through ``kind load image-archive``: a local Docker image (``cfg.image`` itself, else
    ``busybox:latest`` tagged as it) saved with ``docker save --platform linux/<node arch>``,
    else an archive of the host's static busybox. Never ``kind load docker-image``: kind saves
    the whole image and imports it with ``ctr import --all-platforms``, which fails on a
    multi-platform index whose other platforms the Docker >= 29 containerd store never pulled
    (kind issues #3795, #4066)."""
    name = cfg.cluster_name
    local = None
    for ref in (cfg.image, "busybox:latest"):
        if run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], check=False, timeout=timeout).returncode == 0:
            local = ref
            break
    if local is not None:
        if local != cfg.image:
            run(["docker", "tag", local, cfg.image], timeout=timeout)
        api = api_version(run(["docker", "version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}"],
                              check=False, timeout=timeout, stderr=False).out)
        # before API 1.48 there is no --platform, and no containerd store by default: the classic
        # store keeps one platform per image, so its archive is single-platform already
        platform = [] if api is not None and api < API_SAVE_PLATFORM else ["--platform", f"linux/{images.go_arch(machine)}"]
        run(["docker", "save", *platform, "-o", str(archive), cfg.image], timeout=load_timeout)
    else:
        if not (busybox.is_file() and images.is_static(busybox)):
            raise SetupError(f"no test image for kind: neither {cfg.image} nor busybox:latest is a local Docker image "
                             f"and {busybox} is not a static busybox (apt-get install busybox-static, or `docker pull busybox`)")
        images.docker_archive(archive, cfg.image, images.busybox_layer(busybox, images.busybox_applets(busybox)),
                              cmd=["sh"], arch=images.go_arch(machine))
    run(["kind", "load", "image-archive", str(archive), "--name", name], timeout=load_timeout)
    for node in nodes:
        r = run(["docker", "exec", node, "crictl", "inspecti", cfg.image], check=False, timeout=timeout)
        if r.returncode != 0:
            raise SetupError(f"{cfg.image} is not on node {node} after kind load: {r.out.strip()[-200:]}")
