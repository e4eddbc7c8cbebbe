"""S17-S22: volumes (ConfigMap with mode, Secret, emptyDir, hostPath, re-run after delete, readOnly)."""

from __future__ import annotations

import base64
import re
import time

import pytest

from k8s_suite import manifests as m
from k8s_suite import podstate
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh
from k8s_suite.streams import WaitError

UPDATE_SEEN = 10  # seconds the pod (reading once a second) gets after the kubelet's copy holds the update


def _follow_update(path: str, first: str, second: str) -> str:
    """Print the mounted file (exit 1 at once when it cannot be read or is not ``first``), then read it
    once a second until it holds ``second`` (print it, exit 0) or VOLUME_UPDATE seconds pass (print
    what it still holds, exit 1)."""
    return (f'v=$(cat {path}) || exit 1; echo "$v"; [ "$v" = {first} ] || exit 1; i=0; '
            f'while [ "$v" != {second} ] && [ $i -lt {T.VOLUME_UPDATE} ]; do sleep 1; i=$((i+1)); v=$(cat {path}); done; '
            f'if [ "$v" = {second} ]; then echo "$v"; else echo "still: $v"; exit 1; fi')


def _update_reaches_the_pod(kube, name: str, what: str, first: str, second: str, update,
                            kubelet_file: tuple[str, str, str]) -> None:
    """The pod printed the volume's first value; ``update()`` changes the object; the pod must see
    the new value in the mounted file (the kubelet swaps the volume's ``..data`` link: a runtime that
    copied the files, or bound a file rather than the folder, shows the old value for ever).

    Judged as soon as it is conclusive: once the kubelet's own copy on the node
    (``kubelet_file``: plugin folder, volume, key) holds the new value, the pod (reading once a
    second) has UPDATE_SEEN seconds to print it; the kubelet's sync period is only waited for once."""
    try:
        pod = kube.wait_running(name)
    except (AssertionError, WaitError) as e:
        # the container ended (or never started) before the first wait saw it run: what it printed says
        # whether it read the file; the wait's first line (uncut) says how the container ended
        printed, why = kube.log_lines(name), str(e).splitlines()[0]
        if printed:
            pytest.fail(f"the {what}'s mounted file did not hold {first!r} at the start: the pod printed "
                        f"{printed!r} and ended: {why}", pytrace=False)
        pytest.fail(f"the pod ended before printing anything (nothing of the {what} was read): {why}", pytrace=False)
    try:
        kube.follow_logs(name, timeout=T.VOLUME_UPDATE + 30).wait_for_line(first, T.POD_START)
    except WaitError as e:
        pytest.fail(f"the {what}'s mounted file did not hold {first!r} at the start: the pod printed "
                    f"{kube.log_lines(name)!r} ({str(e).splitlines()[0]})", pytrace=False)
    node = kube.node_of(pod)
    plugin, volume, key = kubelet_file
    path = f"{kube.info.kubelet_root}/pods/{pod['metadata']['uid']}/volumes/{plugin}/{volume}/{key}"
    update()
    started, on_node = time.monotonic(), None
    while True:
        pod = kube.get(name)
        if podstate.all_exited(pod):
            break
        now = time.monotonic()
        if on_node is None and kube.ctx.node_sh(node, f"cat {path}", ok=None).stdout == second:
            on_node = now
        assert now - started < T.VOLUME_UPDATE + 30, (
            f"the update of the {what} did not reach the pod's mounted file within {T.VOLUME_UPDATE + 30}s (nor, "
            f"{'before' if on_node else 'even'}, the kubelet's copy {path} on node {node}): the pod printed "
            f"{kube.log_lines(name)!r}")
        assert on_node is None or now - on_node < UPDATE_SEEN, (
            f"the update of the {what} did not reach the pod's mounted file {UPDATE_SEEN}s after the kubelet's copy on "
            f"node {node} held it ({path}, {on_node - started:.0f}s after the update): the pod printed "
            f"{kube.log_lines(name)!r}, expected {first!r} then {second!r}")
        time.sleep(0.5)  # poll interval (the pod and the node) until one of the deadlines above
    lines = kube.log_lines(name)
    assert lines[-2:] == [first, second], (
        f"the update of the {what} did not reach the pod's mounted file within {T.VOLUME_UPDATE}s: the pod printed "
        f"{lines!r}, expected {first!r} then {second!r}")


def test_s17_configmap_volume(kube):
    marker = f"configmap-volume-works-{kube.token}"
    first, second = f"first-{kube.token}", f"updated-{kube.token}"
    cm = kube.name("scripts")
    kube.create_configmap(m.configmap(cm, {"hello.sh": f"#!/bin/sh\necho {marker}\n", "value": first},
                                      token=kube.token, sid=kube.sid))
    name = kube.name("cm")
    # executed from the mount: needs defaultMode 0755 (exec bit) and a working mount; then the
    # ConfigMap's update must reach the mounted file
    kube.create(kube.pod("cm", sh(f"/scripts/hello.sh && {_follow_update('/scripts/value', first, second)}"),
                         volumes=[m.configmap_volume("scripts", cm, mode=0o755)], mounts=[m.mount("scripts", "/scripts")]))
    patch = lambda: kube.ctx.core.patch_namespaced_config_map(cm, kube.ns, {"data": {"value": second}})  # noqa: E731
    _update_reaches_the_pod(kube, name, f"ConfigMap {cm}", first, second, patch,
                            ("kubernetes.io~configmap", "scripts", "value"))
    lines = kube.log_lines(name)
    assert lines[:1] == [marker], f"expected {marker!r} first, from the mounted script, got {lines!r}"


def test_s18_secret_volume(kube):
    user, password = f"reaper-user-{kube.token}", f"secret-volume-works-{kube.token}"
    rotated = f"rotated-{kube.token}"
    sec = kube.name("creds")
    kube.create_secret(m.secret(sec, {"username": user, "password": password}, token=kube.token, sid=kube.sid))
    name = kube.name("secret")
    kube.create(kube.pod("secret", sh(f"cat /creds/username; echo; {_follow_update('/creds/password', password, rotated)}"),
                         volumes=[m.secret_volume("creds", sec)], mounts=[m.mount("creds", "/creds", read_only=True)]))
    data = {"password": base64.b64encode(rotated.encode()).decode()}
    patch = lambda: kube.ctx.core.patch_namespaced_secret(sec, kube.ns, {"data": data})  # noqa: E731
    _update_reaches_the_pod(kube, name, f"Secret {sec}", password, rotated, patch,
                            ("kubernetes.io~secret", "creds", "password"))
    lines = kube.log_lines(name)
    assert lines[:1] == [user], f"expected {user!r} first, from the mounted Secret, got {lines!r}"


def _emptydir_pod(kube, what: str, marker: str, *, expect_empty: bool = False):
    """A pod writing ``marker`` into an emptyDir at a mount path of this scenario's own (parallel
    scenarios never share one, even where a runtime skipped the mount and pods share a filesystem).
    ``expect_empty``: first require the volume to be empty (a fresh pod gets a fresh emptyDir)."""
    mnt = f"/{kube.sid}-data-{kube.token}"
    check = (f"if [ -e {mnt}/file ]; then echo \"stale: $(cat {mnt}/file)\"; exit 1; fi; " if expect_empty else "")
    return kube.pod(what, sh(f"{check}echo {marker} > {mnt}/file && cat {mnt}/file"),
                    volumes=[m.emptydir_volume("data")], mounts=[m.mount("data", mnt)])


def _volume_file_on_node(kube, pod, volume: str, leaf: str, marker: str) -> None:
    """The file the pod wrote is in the emptyDir's folder on the node: the volume was really mounted
    (reading back what the pod just wrote proves nothing: a runtime that skipped the mount lets the
    pod write into whatever filesystem it sees at that path)."""
    node = kube.node_of(pod)
    path = f"{kube.info.kubelet_root}/pods/{pod['metadata']['uid']}/volumes/kubernetes.io~empty-dir/{volume}/{leaf}"
    content = kube.ctx.node.read_file(node, path)
    assert content == marker + "\n", (
        f"the emptyDir volume on node {node} ({path}) holds {content!r}, not the pod's {marker!r}: the pod did not "
        "write into its volume (mount skipped?)")


def test_s19_emptydir_volume(kube):
    marker = f"emptydir-works-{kube.token}"
    name = kube.name("empty")
    kube.create(_emptydir_pod(kube, "empty", marker, expect_empty=True))
    pod = kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert lines == [marker], f"expected [{marker!r}] read back from the emptyDir, got {lines!r}"
    _volume_file_on_node(kube, pod, "data", "file", marker)


def test_s20_hostpath_volume(kube):
    node = kube.info.nodes[0]
    folder = kube.node_path("hostpath")
    content = f"hostpath-volume-works-{kube.token}"
    kube.write_node_file(node, f"{folder}/data.txt", content + "\n")
    name = kube.name("hostpath")
    kube.create(kube.pod("hostpath", ["cat", "/hostdata/data.txt"], node_name=node,
                         volumes=[m.hostpath_volume("hostdata", folder, "Directory")], mounts=[m.mount("hostdata", "/hostdata")]))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert lines == [content], f"expected the node file's content [{content!r}], got {lines!r}"


def test_s21_volume_rerun(kube):
    name = kube.name("rerun")
    first, second = f"first-run-{kube.token}", f"second-run-{kube.token}"
    kube.create(_emptydir_pod(kube, "rerun", first, expect_empty=True))
    pod = kube.wait_exited(name)
    assert kube.log_lines(name) == [first], "first run did not print its marker"
    _volume_file_on_node(kube, pod, "data", "file", first)
    old_uid = pod["metadata"]["uid"]
    kube.delete_pod(name)
    kube.wait_gone(name)
    # same name, same mount: stale mounts/state of the first pod must not break the second, and its
    # fresh emptyDir must not hold the first pod's file (checked before it writes)
    pod = kube.create(_emptydir_pod(kube, "rerun", second, expect_empty=True))
    assert pod["metadata"]["uid"] != old_uid, "the API returned the old pod"
    pod = kube.wait_exited(name, require_zero=False)
    lines = kube.log_lines(name)
    assert lines == [second], (f"second run: expected [{second!r}] (an empty volume, then its own marker), got "
                               f"{lines!r}: {podstate.describe(pod)}")
    assert not podstate.nonzero_exits(pod), f"second run: {podstate.describe(pod)}"
    _volume_file_on_node(kube, pod, "data", "file", second)


# touch's EROFS error as busybox (the image, under runc) and GNU coreutils (the node's, under reaper) word it
EROFS_TOUCH = re.compile(r"^touch: (?:cannot touch '/secrets/newfile'|/secrets/newfile): Read-only file system$")


def test_s22_readonly_volume(kube):
    sec = kube.name("ro")
    kube.create_secret(m.secret(sec, {"username": "reaper-user"}, token=kube.token, sid=kube.sid))
    name = kube.name("ro")
    # touch's error goes to stdout too: one pipe, so the order of the two lines is defined
    script = ("touch /secrets/newfile 2>&1; rc=$?; "
              "if [ -e /secrets/newfile ]; then echo file-exists; else echo file-absent; fi; exit $rc")
    kube.create(kube.pod("ro", sh(script), volumes=[m.secret_volume("secrets", sec)],
                         mounts=[m.mount("secrets", "/secrets", read_only=True)]))
    # the container's exit, not the pod's phase: a runtime whose sandbox never stops keeps the pod
    # out of Failed; the catalogue's decisive facts are the exit code, the error and the file
    pod = kube.wait_exited(name, require_zero=False)
    term = podstate.terminated(pod)
    lines = kube.log_lines(name)
    assert term and term.get("exitCode", 0) != 0, (
        f"touch on a readOnly mount must fail (non-zero exit): {podstate.describe(pod)}; log {lines!r}")
    # EROFS, exactly: a mount point that does not exist at all would refuse the write too (ENOENT),
    # which proves nothing about read-only enforcement
    assert len(lines) == 2 and EROFS_TOUCH.match(lines[0]), (
        f"expected touch to be refused with 'Read-only file system' on /secrets/newfile, then file-absent; "
        f"log {lines!r}")
    assert lines[1] == "file-absent", f"the file must not exist after the refused write; log {lines!r}"
    print(f"write refused: exitCode {term.get('exitCode')}, pod phase {podstate.phase(pod)}; log {lines!r}")
