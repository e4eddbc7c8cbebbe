"""Registry-free images: the docker-archive writer and the busybox/pause layers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from ci.cluster import images


def test_docker_archive_layout(tmp_path: Path):
    layer = images.Layer(files={"/bin/tool": (b"#!x", 0o755)}, links={"/bin/sh": "tool"}, dirs={"/tmp": 0o1777})
    out = images.docker_archive(tmp_path / "img.tar", "docker.io/library/t:1", layer, cmd=["sh"], arch="amd64")
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["docker.io/library/t:1"]
        conf = json.load(tar.extractfile(manifest[0]["Config"]))
        assert conf["architecture"] == "amd64" and conf["os"] == "linux"
        assert conf["config"]["Cmd"] == ["sh"]
        layer_bytes = tar.extractfile(manifest[0]["Layers"][0]).read()
    import hashlib

    assert conf["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as lt:
        members = {m.name: m for m in lt.getmembers()}
    assert members["bin/tool"].mode == 0o755 and members["bin/tool"].isfile()
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "tool"
    assert members["bin"].isdir() and members["tmp"].mode == 0o1777


def test_archive_is_reproducible(tmp_path: Path):
    layer = images.Layer(files={"/a": (b"1", 0o644)})
    a = images.docker_archive(tmp_path / "a.tar", "x:1", layer, arch="amd64").read_bytes()
    b = images.docker_archive(tmp_path / "b.tar", "x:1", layer, arch="amd64").read_bytes()
    assert a == b


def test_busybox_layer_links_every_applet(tmp_path: Path):
    bb = tmp_path / "busybox"
    bb.write_bytes(b"\x7fELF fake")
    layer = images.busybox_layer(bb, ["sh", "ls", "busybox", "sleep"])
    assert layer.links == {"/bin/sh": "busybox", "/bin/ls": "busybox", "/bin/sleep": "busybox"}
    assert layer.files["/bin/busybox"][1] == 0o755
    assert b"root:x:0:0" in layer.files["/etc/passwd"][0]


def test_go_arch():
    assert images.go_arch("x86_64") == "amd64"
    assert images.go_arch("aarch64") == "arm64"
