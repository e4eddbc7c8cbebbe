"""S23-S24: identity (runAsUser/runAsGroup and supplementary groups applied; privileges really dropped)."""

from __future__ import annotations

import re

from k8s_suite.manifests import sh

# The groups S23 asks for: runAsGroup (primary), supplementalGroups and fsGroup (both supplementary).
PRIMARY, SUPPLEMENTARY = 1000, (2000, 3000, 4000)

# touch's EACCES as busybox (the image, under runc) and GNU coreutils (the node's, under reaper) word it
EACCES_TOUCH = r"^touch: (?:cannot touch '{path}'|{path}): Permission denied$"


def test_s23_uid_gid(kube):
    name = kube.name("ids")
    kube.create(kube.pod("ids", sh("id -u; id -g; id -G"),
                         pod_security={"runAsUser": 1000, "runAsGroup": PRIMARY, "supplementalGroups": [2000, 3000],
                                       "fsGroup": 4000}))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert lines[:2] == ["1000", str(PRIMARY)], f"id -u / id -g: expected ['1000', '{PRIMARY}'], got {lines!r}"
    groups = lines[2].split() if len(lines) == 3 else None
    # exactly these groups: a runtime that never calls setgroups keeps root's (0) or drops the extra ones
    assert groups is not None and groups[:1] == [str(PRIMARY)] and sorted(map(int, groups[1:])) == list(SUPPLEMENTARY), (
        f"id -G: expected {PRIMARY} then exactly {list(SUPPLEMENTARY)} (supplementalGroups + fsGroup), "
        f"got {lines[2:]!r} (whole log {lines!r})")


def test_s24_privilege_drop(kube):
    # /etc is root-owned 0755 on the node and in the image: uid 1001 cannot create a file there
    target = f"/etc/reaper-ci-{kube.token}-s24"
    # control first: the same path is writable by root in a pod of the same runtime, so the refusal
    # below is the dropped privilege, not a read-only or missing folder
    root = kube.name("root")
    kube.create(kube.pod("root", sh(f"id -u; touch {target} 2>&1; echo rc=$?; rm -f {target}"),
                         pod_security={"runAsUser": 0, "runAsGroup": 0}))
    kube.wait_exited(root)
    control = kube.log_lines(root)
    assert control == ["0", "rc=0"], f"control pod (root) must be able to create {target}: got {control!r}"
    name = kube.name("drop")
    # (after the control has exited: under a shared overlay the two pods see one /etc)
    # touch's error goes to stdout too: one pipe, so the order of the lines is defined
    kube.create(kube.pod("drop", sh(f"id -u; id -g; touch {target} 2>&1; echo rc=$?; "
                                    f"if [ -e {target} ]; then echo file-exists; rm -f {target}; else echo file-absent; fi"),
                         pod_security={"runAsUser": 1001, "runAsGroup": 1001}))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert lines[:2] == ["1001", "1001"], f"ids: expected ['1001', '1001'], got {lines!r}"
    # EACCES exactly: EROFS or ENOENT would refuse the write too and prove nothing about privileges
    assert len(lines) == 5 and re.match(EACCES_TOUCH.format(path=re.escape(target)), lines[2]) \
        and lines[3] != "rc=0" and lines[4] == "file-absent", (
        f"expected touch {target} refused with 'Permission denied', a non-zero rc and no file; got {lines!r}")
