"""The kind provisioner on the hosts a GitHub runner may be: Docker 29 (containerd image store),
older Docker, no local image at all; a reaper checkout outside the working folder; the waits that
keep the smoke pod from racing a restarted containerd or a fresh cluster. A fake docker/kind
(tests/unit/_kind_fake.py) records the exact command sequence.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from _kind_fake import FakeApi, DOCKER_29_API, NODE, FakeRunner, _cfg, _fresh_cluster_rules, created_node_sequence, fast
from ci.cluster import images
from ci.cluster import kind as kind_mod
from ci.cluster.kind import KindProvisioner, Result
from ci.config import parse
from ci.errors import SetupError

IMAGE = "docker.io/library/busybox:reaper-ci"
NO_IMAGE = Result(1, "Error response from daemon: No such image")


def _runc_rules(tmp_path: Path, *first) -> list:
    return [*first, *_fresh_cluster_rules(tmp_path, runtime_type="io.containerd.runc.v2")]


def test_docker_29_host_loads_a_single_platform_archive_exact_sequence(tmp_path):
    """Docker 29 (API 1.52, containerd image store) with a multi-platform busybox:latest pulled:
    the image is saved for the node's platform only and loaded as an archive; `kind load
    docker-image` (ctr import --all-platforms of the whole index: kind #3795/#4066) is never run."""
    runner = FakeRunner(_runc_rules(tmp_path, (("docker", "image", "inspect", "--format", "{{.Id}}", IMAGE), NO_IMAGE),
                                    (("docker", "version"), Result(0, DOCKER_29_API))))
    KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=runner, api=FakeApi(runner), **fast()).up()
    kc, d = "<tmp>/state/kind/reaper-ci/kubeconfig", "<tmp>/state/kind/reaper-ci"
    assert runner.argvs(tmp_path) == [
        *created_node_sequence(d, kc),
        f"docker exec {NODE} containerd config dump",
        f"docker exec {NODE} crictl info",
        "api get nodes",
        "api get serviceaccount default/default",
        "api apply runtimeclass reaper-v2",
        f"docker image inspect --format {{{{.Id}}}} {IMAGE}",
        "docker image inspect --format {{.Id}} busybox:latest",
        f"docker tag busybox:latest {IMAGE}",
        "docker version --format {{.Client.APIVersion}} {{.Server.APIVersion}}",
        f"docker save --platform linux/amd64 -o {d}/image.tar {IMAGE}",
        f"kind load image-archive {d}/image.tar --name reaper-ci",
        f"docker exec {NODE} crictl inspecti {IMAGE}",
        "api delete pod default/reaper-ci-smoke --now",
        "api get pod default/reaper-ci-smoke --absent",
        "api create pod default/reaper-ci-smoke",
        "api get pod default/reaper-ci-smoke",
        "api logs default/reaper-ci-smoke",
        "api delete pod default/reaper-ci-smoke",
    ]
    assert not any(c.startswith("kind load docker-image") for c in runner.argvs(tmp_path))


def test_arm_node_gets_its_own_platform(tmp_path):
    runner = FakeRunner(_runc_rules(tmp_path, (("docker", "exec", NODE, "uname", "-m"), Result(0, "aarch64\n")),
                                    (("docker", "version"), Result(0, DOCKER_29_API))))
    KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=runner, api=FakeApi(runner), **fast()).up()
    assert f"docker save --platform linux/arm64 -o <tmp>/state/kind/reaper-ci/image.tar {IMAGE}" in runner.argvs(tmp_path)


@pytest.mark.parametrize("answer", ["1.47 1.47\n", "1.52 1.45\n"])
def test_docker_without_save_platform_saves_its_one_platform(tmp_path, answer):
    # before API 1.48 `docker save` has no --platform; the classic store holds one platform per image
    runner = FakeRunner(_runc_rules(tmp_path, (("docker", "version"), Result(0, answer))))
    KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=runner, api=FakeApi(runner), **fast()).up()
    seen = runner.argvs(tmp_path)
    assert f"docker save -o <tmp>/state/kind/reaper-ci/image.tar {IMAGE}" in seen
    assert "kind load image-archive <tmp>/state/kind/reaper-ci/image.tar --name reaper-ci" in seen


def test_failed_save_is_a_one_line_setup_error_before_any_load(tmp_path):
    runner = FakeRunner(_runc_rules(tmp_path, (("docker", "save"), Result(1, "Error response from daemon: no suitable export target found"))))
    with pytest.raises(SetupError) as e:
        KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=runner, api=FakeApi(runner), **fast()).up()
    assert "docker save" in str(e.value) and "\n" not in str(e.value)
    assert not any(c.startswith("kind load") for c in runner.argvs(tmp_path))


def test_without_a_local_image_the_static_busybox_archive_is_loaded(tmp_path, monkeypatch):
    busybox = Path("/bin/busybox")
    if not (busybox.is_file() and images.is_static(busybox)):
        pytest.skip("no static /bin/busybox here (apt-get install busybox-static)")
    monkeypatch.setattr(kind_mod, "HOST_BUSYBOX", busybox)
    runner = FakeRunner(_runc_rules(tmp_path, (("docker", "image", "inspect"), NO_IMAGE)))
    KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=runner, api=FakeApi(runner), **fast()).up()
    seen = runner.argvs(tmp_path)
    assert not any(c.startswith(("docker save", "docker version", "docker tag", "kind load docker-image")) for c in seen)
    assert "kind load image-archive <tmp>/state/kind/reaper-ci/image.tar --name reaper-ci" in seen
    with tarfile.open(tmp_path / "state/kind/reaper-ci/image.tar") as tar:
        names = tar.getnames()
        configs = [json.load(tar.extractfile(n)) for n in names if n.endswith(".json") and n not in ("manifest.json", "index.json")]
    assert any(c.get("architecture") == "amd64" for c in configs), names  # one platform: the node's


def test_no_image_and_no_static_busybox_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(kind_mod, "HOST_BUSYBOX", tmp_path / "no-busybox")
    runner = FakeRunner(_runc_rules(tmp_path, (("docker", "image", "inspect"), NO_IMAGE)))
    with pytest.raises(SetupError) as e:
        KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=runner, api=FakeApi(runner), **fast()).up()
    assert "busybox-static" in str(e.value) and "\n" not in str(e.value)


def test_reaper_checkout_outside_the_working_folder(tmp_path):
    """The workflow checks reaper out next to the pipeline and passes --source: the build runs in
    that checkout, binaries come from its target folder, and ClusterInfo names it."""
    pipeline, source = tmp_path / "pipeline", tmp_path / "elsewhere" / "reaper"
    pipeline.mkdir()
    source.mkdir(parents=True)
    (source / "Cargo.toml").write_text("[workspace]\n")
    release = source / "target" / "x86_64-unknown-linux-musl" / "release"
    release.mkdir(parents=True)
    for name in ("containerd-shim-reaper-v2", "reaper-runtime"):
        (release / name).write_bytes(b"\x7fELF " + name.encode())
    cfg = parse(["--source", str(source), "--runtime", "reaper", "--state-dir", str(tmp_path / "state")], {}, cwd=pipeline)
    rules = [(("cargo", "metadata"), Result(0, json.dumps({"target_directory": str(source / "target")})))]
    runner = FakeRunner(rules + _fresh_cluster_rules(tmp_path))
    info = KindProvisioner(cfg, runner=runner, api=FakeApi(runner), **fast()).up()
    cwds = {" ".join(a[:2]): cwd for a, cwd, _ in runner.calls if a[0] in ("cargo", "rustup")}
    assert cwds == {"rustup target": source, "cargo build": source, "cargo metadata": source}
    # what went onto the node (the shared install streams each file): the binaries built in that tree
    put = {a[8]: data for a, _, data in runner.calls if a[:5] == ["docker", "exec", "-i", NODE, "/bin/sh"] and "chmod" in a[6]}
    assert put == {"/usr/local/bin/containerd-shim-reaper-v2": b"\x7fELF containerd-shim-reaper-v2",
                   "/usr/local/bin/reaper-runtime": b"\x7fELF reaper-runtime"}
    assert info.source == str(source) and info.runtime == "reaper"
    assert info.runtime_log == "/run/reaper/runtime.log" and info.runtime_state_dir == "/run/reaper"


def test_smoke_pod_waits_for_the_default_service_account(tmp_path):
    answers = iter([Result(1, 'Error from server (NotFound): serviceaccounts "default" not found')] * 3)
    rules = [(("api", "get", "serviceaccount"), lambda argv: next(answers, Result(0, "")))]
    runner = FakeRunner(_runc_rules(tmp_path, *rules))
    KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=runner, api=FakeApi(runner), **fast()).up()
    seen = runner.argvs(tmp_path)
    sa = [i for i, c in enumerate(seen) if "get serviceaccount default" in c]
    smoke = seen.index("api create pod default/reaper-ci-smoke")
    assert len(sa) == 4 and sa[-1] < smoke


def test_service_account_that_never_comes_is_a_timed_setup_error(tmp_path):
    rules = [(("api", "get", "serviceaccount"), Result(1, "NotFound"))]
    runner = FakeRunner(_runc_rules(tmp_path, *rules))
    with pytest.raises(SetupError, match="default ServiceAccount"):
        KindProvisioner(_cfg(tmp_path, "--runtime", "runc"), runner=runner, api=FakeApi(runner), **fast()).up()
    assert not any("smoke-pod.json" in c for c in runner.argvs(tmp_path))


def test_restarted_containerd_must_report_cri_ready_before_the_ready_check(tmp_path):
    """After the restart the API server may still show the node Ready from before it: containerd's
    CRI must say RuntimeReady and NetworkReady itself first."""
    from _kind_fake import CRI_READY, _built, _workspace

    src = _workspace(tmp_path)
    _built(tmp_path)
    not_yet = json.dumps({"status": {"conditions": [{"type": "RuntimeReady", "status": False, "reason": "starting"}]}})
    answers = iter([Result(1, "connect: connection refused"), Result(0, not_yet)])
    rules = [(("docker", "exec", NODE, "crictl", "info"), lambda argv: next(answers, Result(0, CRI_READY)))]
    runner = FakeRunner(rules + _fresh_cluster_rules(tmp_path))
    KindProvisioner(_cfg(tmp_path, "--source", str(src), "--runtime", "reaper"), runner=runner, api=FakeApi(runner), **fast()).up()
    seen = runner.argvs(tmp_path)
    restart = seen.index(f"docker exec -i {NODE} systemctl restart containerd")
    cri = [i for i, c in enumerate(seen) if c == f"docker exec {NODE} crictl info"]
    ready = seen.index("api get nodes")
    assert len(cri) == 3 and restart < cri[0] and cri[-1] < ready
