"""The e2e specs' images, offline: built here under the exact names the specs ask for.

The names come from e2e's image manifest of the cluster's version (``test/utils/image/manifest.go``):
busybox (the host's static busybox, one link per applet), agnhost (the built binary on that busybox,
``ENTRYPOINT ["/agnhost"] CMD ["pause"]`` as upstream), pause (the cluster's own pause binary) and
nonroot (busybox, ``USER 1234`` as upstream). Everything else a spec may want (nginx, httpd,
nonewprivs, a private or invalid registry) cannot be built offline: those specs are skipped, each
with its reason (:data:`ci.conformance.specs.OFFLINE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ci.cluster import images
from ci.cluster.base import ClusterInfo, NodeAccess
from ci.errors import SetupError

BUSYBOX = Path("/bin/busybox")
_REGISTRY = re.compile(r"^\s*(\w+Registry):\s*\"([^\"]+)\"", re.M)
_CONFIG = re.compile(r"configs\[(\w+)\]\s*=\s*Config\{list\.(\w+),\s*\"([^\"]+)\",\s*\"([^\"]+)\"\}")
BUILT = ("BusyBox", "Agnhost", "Pause", "NonRoot")


@dataclass(frozen=True)
class Image:
    key: str  # the manifest's ImageID name (BusyBox, Agnhost, ...)
    ref: str  # registry.k8s.io/e2e-test-images/busybox:1.36.1-1


def manifest(text: str) -> dict[str, Image]:
    """ImageID name -> image, read from e2e's manifest.go of one Kubernetes version."""
    registries = dict(_REGISTRY.findall(text))
    out = {}
    for key, reg, name, tag in _CONFIG.findall(text):
        if reg in registries:
            out[key] = Image(key, f"{registries[reg]}/{name}:{tag}")
    missing = [k for k in BUILT if k not in out]
    if missing:
        raise SetupError(f"e2e's image manifest names no {', '.join(missing)} image (manifest.go changed shape?)")
    return out


def archives(refs: dict[str, Image], agnhost: Path, pause: Path, out: Path, arch: str,
             tls: dict[str, bytes] | None = None) -> dict[str, Path]:
    """A docker archive per image this pipeline can build, written into ``out`` (``tls``: agnhost's
    key pair, ``localhost.crt``/``localhost.key``, put at / as upstream's image has them)."""
    out.mkdir(parents=True, exist_ok=True)
    bb = images.busybox_layer(BUSYBOX, images.busybox_applets(BUSYBOX))
    made = {
        "BusyBox": images.docker_archive(out / "busybox.tar", refs["BusyBox"].ref, bb, cmd=["sh"], arch=arch),
        "NonRoot": images.docker_archive(out / "nonroot.tar", refs["NonRoot"].ref, bb, cmd=["sh"], arch=arch, user="1234"),
        "Pause": images.docker_archive(out / "pause.tar", refs["Pause"].ref, images.pause_layer(pause),
                                       entrypoint=["/pause"], arch=arch),
        "Agnhost": images.docker_archive(out / "agnhost.tar", refs["Agnhost"].ref, _with_agnhost(bb, agnhost, tls),
                                         entrypoint=["/agnhost"], cmd=["pause"], arch=arch),
    }
    return made


def _with_agnhost(base: images.Layer, agnhost: Path, tls: dict[str, bytes] | None) -> images.Layer:
    """Upstream's agnhost image: the binary at /agnhost (and /agnhost-2), its TLS pair at /, /uploads,
    the user and group its Dockerfile adds (uid 1000, gid 50000), and a ``curl`` for plain GETs."""
    files = dict(base.files)
    files["/agnhost"] = (agnhost.read_bytes(), 0o755)
    # upstream's agnhost image is Alpine with curl; the specs' exec hooks run `curl http://IP:8080/...`
    # (a plain GET): busybox's wget does that
    files["/usr/bin/curl"] = (b'#!/bin/sh\nexec wget -q -O - "$@"\n', 0o755)
    for name, data in (tls or {}).items():
        files[f"/{name}"] = (data, 0o644)
    passwd, _ = files["/etc/passwd"]
    group, _ = files["/etc/group"]
    files["/etc/passwd"] = (passwd + b"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n", 0o644)
    files["/etc/group"] = (group + b"user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n", 0o644)
    return images.Layer(files=files, links={**base.links, "/agnhost-2": "agnhost"}, dirs={**base.dirs, "/uploads": 0o755})


def load(info: ClusterInfo, node_access: NodeAccess, tars: dict[str, Path]) -> None:
    """Each archive imported into every node's containerd (namespace k8s.io), as the cluster's own."""
    for node in info.nodes:
        for key, tar in tars.items():
            dest = f"/tmp/reaper-ci-conformance-{tar.name}"
            node_access.put(node, tar, dest, mode="0644", timeout=300)
            r = node_access.run(node, [info.ctr, "--address", info.containerd_address, "-n", "k8s.io", "images", "import",
                                       "--all-platforms", dest], timeout=300)
            node_access.run(node, ["rm", "-f", dest])
            if r.returncode != 0:
                raise SetupError(f"importing the {key} image into containerd on {node} failed: "
                                 f"{(r.stderr or r.stdout).strip()[-300:]}")
