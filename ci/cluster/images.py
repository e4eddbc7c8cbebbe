"""Container images without a registry: tiny single-layer images written as docker archives.

``docker_archive`` writes the ``docker save`` layout (manifest.json, image config, one layer
tar) with tarfile + json only; ``ctr images import`` reads it. Two images are made for the
local cluster: the pause image (the static ``pause`` binary built with Kubernetes) and a
busybox image (Debian's static busybox with one link per applet).
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ci.errors import SetupError
from ci.tools import ShRunner

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def go_arch(machine: str | None = None) -> str:
    m = (machine or platform.machine()).lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


@dataclass
class Layer:
    """Files of one layer: path -> bytes (regular file), symlinks, and directories."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # path -> (content, mode)
    links: dict[str, str] = field(default_factory=dict)  # path -> symlink target
    dirs: dict[str, int] = field(default_factory=dict)  # path -> mode

    def tar_bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            parents: set[str] = set()
            for p in list(self.files) + list(self.links) + list(self.dirs):
                parts = p.strip("/").split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    parents.add("/".join(parts[:i]))
            for d in sorted(parents | {d.strip("/") for d in self.dirs}):
                ti = tarfile.TarInfo(d)
                ti.type = tarfile.DIRTYPE
                ti.mode = self.dirs.get("/" + d, self.dirs.get(d, 0o755))
                tar.addfile(ti)
            for p in sorted(self.files):
                data, mode = self.files[p]
                ti = tarfile.TarInfo(p.strip("/"))
                ti.size, ti.mode = len(data), mode
                tar.addfile(ti, io.BytesIO(data))
            for p in sorted(self.links):
                ti = tarfile.TarInfo(p.strip("/"))
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, self.links[p], 0o777
                tar.addfile(ti)
        return buf.getvalue()


def docker_archive(out: Path, ref: str, layer: Layer, *, entrypoint: Sequence[str] | None = None,
                   cmd: Sequence[str] | None = None, env: Sequence[str] = (PATH_ENV,), arch: str | None = None,
                   user: str | None = None) -> Path:
    """Write a ``docker save``-style archive of a one-layer image tagged ``ref``; returns ``out``."""
    layer_tar = layer.tar_bytes()
    diff_id = hashlib.sha256(layer_tar).hexdigest()
    config: dict = {
        "architecture": arch or go_arch(),
        "os": "linux",
        "config": {"Env": list(env)},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created_by": "reaper-ci images.py"}],
    }
    if entrypoint is not None:
        config["config"]["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        config["config"]["Cmd"] = list(cmd)
    if user is not None:
        config["config"]["User"] = user
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{diff_id}/layer.tar"]}]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tarfile.open(tmp, mode="w") as tar:
        for name, data in ((f"{diff_id}/layer.tar", layer_tar), (config_name, config_bytes),
                           ("manifest.json", json.dumps(manifest).encode())):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    tmp.replace(out)
    return out


def pause_layer(pause_binary: Path) -> Layer:
    return Layer(files={"/pause": (pause_binary.read_bytes(), 0o755)})


def busybox_applets(busybox: Path) -> list[str]:
    r = ShRunner()([str(busybox), "--list"], check=False, stderr=False)
    if r.returncode != 0 or not r.out.strip():
        raise SetupError(f"{busybox} --list failed (exit {r.returncode}); is it Debian's busybox-static?")
    return [a.strip() for a in r.out.split() if a.strip() and "/" not in a]


def busybox_layer(busybox: Path, applets: Sequence[str]) -> Layer:
    """/bin/busybox plus /bin/<applet> -> busybox links, a root user, and the usual empty dirs."""
    layer = Layer(
        files={
            "/bin/busybox": (busybox.read_bytes(), 0o755),
            "/etc/passwd": (b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644),
            "/etc/group": (b"root:x:0:\nnogroup:x:65534:\n", 0o644),
        },
        dirs={"/tmp": 0o1777, "/root": 0o700, "/proc": 0o755, "/sys": 0o755, "/dev": 0o755, "/etc": 0o755,
              "/usr/bin": 0o755, "/usr/sbin": 0o755, "/sbin": 0o755, "/var": 0o755, "/home": 0o755},
    )
    for a in applets:
        if a != "busybox":
            layer.links[f"/bin/{a}"] = "busybox"
    return layer


def is_static(binary: Path) -> bool:
    """True when ``binary`` has no ELF interpreter (PT_INTERP), i.e. runs in an empty image."""
    data = binary.read_bytes()[:65536]
    return data[:4] == b"\x7fELF" and b"ld-linux" not in data and b"/lib64/ld" not in data and b"/lib/ld-" not in data

