"""S56-S58: what a pod may not reach, and the securityContext limits a runtime enforces
(docs/CONTRACT.md). reaper by design runs pods on the node without isolation; where it promises
protection (its overlay hides sensitive host files) the row checks the promise and its bypasses;
where it does not, the row holds on runc and is reaper's known limit (the expected file names it)."""

from __future__ import annotations

from k8s_suite.manifests import sh

SENSITIVE = "/etc/shadow"
VIEWS = (SENSITIVE, f"/proc/self/root{SENSITIVE}", f"/proc/1/root{SENSITIVE}")


def test_s56_one_view_of_a_sensitive_file(kube):
    """/etc/shadow reads the same directly, through /proc/self/root and through /proc/1/root: a
    runtime that hides it in the container's view must not leave the node's copy one path away."""
    name = kube.name("shadow")
    # { ...; } 2>/dev/null: the shell's own "can't open" for a missing file must not reach the log either
    script = "; ".join(f"echo {v} $({{ cat {v} | md5sum; }} 2>/dev/null | cut -c1-32) $({{ wc -c < {v}; }} 2>/dev/null "
                       "|| echo absent)" for v in VIEWS)
    kube.create(kube.pod("shadow", sh(script)))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert len(lines) == len(VIEWS), f"expected one line per view, got {lines!r}"
    seen = {l.split(" ", 1)[0]: l.split(" ", 1)[1] for l in lines}
    assert len(set(seen.values())) == 1, (
        f"{SENSITIVE} differs between views (md5 bytes): {seen}; the container's {SENSITIVE} is "
        f"{seen[SENSITIVE]!r} but /proc/1/root{SENSITIVE} is {seen[VIEWS[2]]!r}: PID 1's root is another filesystem")


def test_s57_read_only_root_filesystem(kube):
    """securityContext.readOnlyRootFilesystem: writing to / fails with EROFS; an emptyDir stays writable."""
    name = kube.name("rofs")
    target = f"/rci-{kube.token}-s57"
    c = kube.container("main", sh(f"touch {target} 2>&1; echo rc=$?; touch /tmp/x 2>&1; echo tmp-rc=$?"),
                       security={"readOnlyRootFilesystem": True})
    kube.create(kube.pod("rofs", containers=[c]))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert len(lines) == 4 and "Read-only file system" in lines[0] and lines[1] != "rc=0" \
        and "Read-only file system" in lines[2], (
        f"readOnlyRootFilesystem: touch {target} and /tmp/x must fail with 'Read-only file system', got {lines!r}")


def test_s58_capabilities_dropped(kube):
    """capabilities.drop [ALL] and allowPrivilegeEscalation false: the process has no effective,
    permitted or bounding capability and no_new_privs set, even as root."""
    name = kube.name("caps")
    c = kube.container("main", sh("grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status | tr -s '\\t ' ' '"),
                       security={"capabilities": {"drop": ["ALL"]}, "allowPrivilegeEscalation": False,
                                 "runAsUser": 0})
    kube.create(kube.pod("caps", containers=[c]))
    kube.wait_exited(name)
    got = dict(l.split(": ", 1) for l in kube.log_lines(name) if ": " in l)
    want = {"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapBnd": "0000000000000000",
            "NoNewPrivs": "1"}
    assert got == want, f"capabilities dropped and no_new_privs: expected {want}, got {got}"
