"""S23-S24: identity (runAsUser/runAsGroup applied; privileges really dropped)."""

from __future__ import annotations

from k8s_suite.manifests import sh


def test_s23_uid_gid(kube):
    name = kube.name("ids")
    kube.create(kube.pod("ids", sh("id -u; id -g"), pod_security={"runAsUser": 1000, "runAsGroup": 1000}))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert lines == ["1000", "1000"], f"id -u / id -g: expected ['1000', '1000'], got {lines!r}"


def test_s24_privilege_drop(kube):
    # /etc is root-owned 0755 on the node and in the image: uid 1001 cannot create a file there
    target = f"/etc/reaper-ci-{kube.token}-s24"
    name = kube.name("drop")
    kube.create(kube.pod("drop", sh(f"id -u; id -g; if touch {target} 2>/dev/null; then echo write-succeeded; "
                                    f"rm -f {target}; else echo write-denied; fi"),
                         pod_security={"runAsUser": 1001, "runAsGroup": 1001}))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert lines == ["1001", "1001", "write-denied"], (
        f"expected ['1001', '1001', 'write-denied'] (ids dropped, root-only write refused), got {lines!r}")
