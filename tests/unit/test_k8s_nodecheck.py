"""Unit tests of the suite's per-scenario node checks: CRI log streams, runtime proof from
containerd's records, leak evaluation, zombies under reapers, sandbox readiness."""

import base64
import contextlib
import json
import os
import shutil
import subprocess

import _k8s_path  # noqa: F401
import pytest
from k8s_suite import crilog, invariants, nodeproc, podstate, proof, runstate

A, B, SB = "a" * 64, "b" * 64, "c" * 64


def test_cri_log_streams_and_partial_lines():
    text = ("2026-12-03T06:00:00.1Z stdout F stdout-ok\n"
            "2026-12-03T06:00:00.2Z stderr P stderr-\n"
            "2026-12-03T06:00:00.3Z stderr F ok\n"
            "2026-12-03T06:00:00.4Z stdout F \n")
    assert [(ln.stream, ln.text) for ln in crilog.parse(text)] == [
        ("stdout", "stdout-ok"), ("stderr", "stderr-ok"), ("stdout", "")]
    with pytest.raises(crilog.CriLogError):
        crilog.parse("stdout-ok\n")
    assert crilog.container_log("/var/log/pods/", "ns", "p", "u-1", "main") == "/var/log/pods/ns_p_u-1/main/0.log"


def _info(cid, runtime, sandbox=None, handler=None, uid="u-1"):
    doc = {"ID": cid, "Runtime": {"Name": runtime}, "Labels": {"io.kubernetes.pod.uid": uid},
           "Spec": {"annotations": {"io.kubernetes.cri.sandbox-id": sandbox or cid}}}
    if handler is not None:
        meta = {"Version": "v1", "Metadata": {"ID": cid, "RuntimeHandler": handler}}
        doc["Extensions"] = {proof.SANDBOX_METADATA: {"type_url": "x", "value": base64.b64encode(
            json.dumps(meta).encode()).decode()}}
    return json.dumps(doc, indent=1)


def test_proof_reads_runtime_and_sandbox_handler():
    text = (f"=== {A}\n{_info(A, 'io.containerd.reaper.v2', SB)}\n=== {SB}\n"
            f"{_info(SB, 'io.containerd.reaper.v2', handler='reaper-v2')}\n"
            f"=== {B}\nctr: container \"{B}\" in namespace \"k8s.io\": not found\n")
    recs = proof.parse_infos(text)
    assert recs[A].sandbox_id == SB and recs[SB].handler == "reaper-v2"
    proofs, problems = proof.judge(recs, [A, B], "reaper-v2", "io.containerd.reaper.v2")
    assert len(proofs) == 1 and not problems  # B is gone: neither proof nor problem
    proofs, problems = proof.judge(recs, [A], "reaper-v2", "io.containerd.runc.v2")
    assert not proofs and "runs on runtime 'io.containerd.reaper.v2'" in problems[0]
    proofs, problems = proof.judge(recs, [A], "other", None)
    assert not proofs and "created with handler 'reaper-v2', not 'other'" in problems[0]


def test_proof_reads_past_ctr_warnings():
    """containerd 2.2's ctr warns (logrus, on stderr, merged) on every call on a cgroup v1 host."""
    warn = ('time="2026-12-03T11:49:15Z" level=warning msg="DEPRECATION: The support for cgroup v1 is deprecated '
            'since containerd v2.2"')
    recs = proof.parse_infos(f"=== {A}\n{warn}\n{_info(A, 'io.containerd.reaper.v2', SB)}\n"
                             f"=== {B}\n{warn}\nctr: container \"{B}\" in namespace \"k8s.io\": not found\n")
    assert recs[A].sandbox_id == SB
    assert recs[B] == f'ctr: container "{B}" in namespace "k8s.io": not found'


def test_proof_script_only_takes_container_ids():
    script = proof.info_script("/x/ctr", "/run/c.sock", [A, "; rm -rf /", ""])
    assert A in script and "rm -rf" not in script


def _procs(rows):
    return nodeproc.parse_ps("PID PPID STAT COMMAND\n" + "\n".join(rows))


def test_reapers_are_shims_and_runtime_processes_not_workloads():
    procs = _procs(["1 0 S init", f"10 1 S containerd-shim-reaper-v2 -id {SB}", f"11 10 S reaper-runtime start {A}",
                    "12 11 S sleep 100000", "13 10 Z [true] <defunct>", "14 12 Z [sleep] <defunct>",
                    f"20 1 S reaper-runtime start {B}", "21 20 Z [x] <defunct>"])
    shims = [nodeproc.Shim(10, SB, f"containerd-shim-reaper-v2 -id {SB}", "ns1", "p", SB)]
    owner = invariants.Owner("ns1", frozenset({A, SB}), frozenset(), frozenset())
    reapers = invariants.reapers(procs, shims, owner, ["reaper-runtime"])
    assert reapers == {10, 11}
    assert [z.pid for z in invariants.owned_zombies(procs, reapers)] == [13]  # 14's parent is the workload


def test_leaked_processes_by_environment_cgroup_and_marker():
    procs = _procs(["1 0 S init", "5 1 S sleep 123456", "6 1 S sh -c x", "7 1 Z [sh] <defunct>", "8 1 S other"])
    matches = invariants.parse_pid_matches("env /proc/6/environ\ncgroup /proc/6/cgroup\nenv /proc/7/environ\n"
                                           "env /proc/99/environ\n")
    owner = invariants.Owner("ns", frozenset(), frozenset(), frozenset({"p"}), (("sleep", "123456"),))
    out = invariants.leaked_processes(procs, matches, owner)
    assert len(out) == 2 and out[0].endswith("[cgroup/env]") and out[1].endswith("[marker]")


def test_pid_match_script_quotes_and_covers_both_cgroup_spellings():
    owner = invariants.Owner("ns", frozenset({A}), frozenset({"u-1"}), frozenset({"s01-echo-abcdef"}))
    script = invariants.pid_match_script(owner.hostnames, owner.patterns)
    assert "-e HOSTNAME=s01-echo-abcdef" in script and "-e u-1" in script and "-e u_1" in script
    assert invariants.pid_match_script([], []) == "true"


def test_leaked_shims_state_and_mounts():
    owner = invariants.Owner("ns1", frozenset({A, SB}), frozenset({"u-1"}), frozenset())
    shims = [nodeproc.Shim(1, SB, "x"), nodeproc.Shim(2, "z" * 64, "y", "ns1"), nodeproc.Shim(3, "q", "z", "ns2")]
    assert [s.pid for s in invariants.owned_shims(shims, owner)] == [1, 2]
    assert invariants.leaked_state({A, B, "x"}, owner) == [A]
    assert invariants.leaked_state(None, owner) == []
    procs = _procs(["1 0 S init", "12 1 S reaper-runtime start x"])
    assert invariants.leaked_mounts("\n 12: 600 1 0:5 / /run/x/" + A + " rw\n", procs) == [
        f"600 1 0:5 / /run/x/{A} rw  [in the mount namespace of pid 12 (reaper-runtime start x)]"]
    leaks = invariants.Leaks(state=[A])
    assert leaks and "1 runtime state entr(y/ies)" in leaks.describe("n") and not invariants.Leaks()


def test_a_leak_at_teardown_is_the_scenarios_failure_not_an_error():
    o = runstate.Outcome("t::test_s01_x")
    o.add("setup", "passed", 0)
    o.add("call", "passed", 0)
    o.add("teardown", "failed", 0)
    assert o.result == "error"
    o.leak = True
    assert o.result == "failed"
    assert runstate.verdict_doc([o])["failed"] == ["S01 x"]


def test_descends_from():
    procs = _procs(["1 0 S init", "2 1 S /usr/bin/containerd", "3 2 S containerd-shim-runc-v2 -id x",
                    "4 3 Z [sh] <defunct>", "5 1 Z [y] <defunct>"])
    assert nodeproc.descends_from(procs, 4, ["containerd-shim-runc-v2", None]).pid == 3
    assert nodeproc.descends_from(procs, 4, ["containerd"]).pid == 2
    assert nodeproc.descends_from(procs, 5, ["containerd", "containerd-shim-runc-v2"]) is None


# --- node access failures inside the suite's reads ------------------------------------------------------

class _FlakyNode:
    """A NodeAccess double: answers from a script of results, one per call."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def run(self, node, argv, timeout=30, input=None):
        import subprocess

        self.calls.append(list(argv))
        a = self.answers.pop(0)
        if isinstance(a, Exception):
            raise a
        rc, out, err = a
        return subprocess.CompletedProcess(argv, rc, out, err)


def _ctx(node, **info_kw):
    from ci.cluster.base import ClusterInfo
    from k8s_suite.kube import RunContext

    info = ClusterInfo(provisioner="local", name="t", kubeconfig="/nonexistent", runtime="reaper",
                       runtime_class="reaper-v2", shim_process="containerd-shim-reaper-v2", nodes=("n",),
                       image="i", node_access="local", **info_kw)
    return RunContext(info=info, api=None, node=node, token="abcdef", run=None, artifacts=None)


PS = "PID PPID STAT COMMAND\n1 0 S init\n2 1 S a\n3 1 S b\n"


def test_ps_retries_a_transient_node_failure():
    node = _FlakyNode([TimeoutError("slow"), (0, PS, "")])
    assert len(_ctx(node).ps("n")) == 3 and len(node.calls) == 2
    from k8s_suite.kube import NodeCommandError

    with pytest.raises(NodeCommandError):
        _ctx(_FlakyNode([TimeoutError("x")] * 3)).ps("n")


def test_missing_runtime_log_is_a_failure_not_infrastructure():
    from k8s_suite.kube import NodeCommandError

    ctx = _ctx(_FlakyNode([(2, "", "grep: /x/runtime.log: No such file or directory")]), runtime_log="/x/runtime.log")
    with pytest.raises(AssertionError, match="not proven") as e:
        ctx.runtime_log_mentions("n", "abc")
    assert not isinstance(e.value, NodeCommandError)


def test_a_declared_state_folder_that_does_not_exist_fails():
    ctx = _ctx(_FlakyNode([(2, "", "ls: cannot access '/s': No such file or directory")] * 2), runtime_state_dir="/s")
    with pytest.raises(AssertionError, match="does not exist"):
        ctx.state_entries("n")
    assert ctx.state_entries("n", required=False) == set()


def test_node_failure_after_problems_keeps_the_problems():
    from k8s_suite.kube import NodeCommandError, failing_with

    problems = ["2 shim(s) of these pods still running"]
    with pytest.raises(AssertionError, match="shim") as e:
        with failing_with(problems):
            raise NodeCommandError("node n: ps: timed out")
    assert "note: node access then failed" in str(e.value) and not isinstance(e.value, NodeCommandError)
    with pytest.raises(NodeCommandError):
        with failing_with([]):
            raise NodeCommandError("node n: ps: timed out")


def test_unreadable_state_is_named_in_one_line():
    from types import SimpleNamespace

    from k8s_suite import nodecheck

    cid = "d" * 64
    start_error = {"metadata": {"name": "p"}, "spec": {"nodeName": "n"}, "status": {"containerStatuses": [
        {"name": "main", "containerID": f"containerd://{cid}", "state": {"terminated": {
            "exitCode": 128, "reason": "StartError", "containerID": f"containerd://{cid}",
            "message": 'failed to start containerd task "x": Failed to parse state output: EOF while parsing'}}}]}}

    class Ctx:
        def __init__(self, out):
            self.out, self.calls = out, []

        def node_sh(self, node, script, ok=None):
            self.calls.append(script)
            return SimpleNamespace(stdout=self.out)

    kube = SimpleNamespace(info=SimpleNamespace(component_logs={"containerd": "/l/containerd.log"}, nodes=("n",)),
                           ctx=Ctx(""), node_of=lambda pod: "n")
    line = nodecheck.unreadable_state(kube, start_error)
    assert line.startswith("the runtime returned an unreadable state: container main") and "\n" not in line
    exit255 = {"metadata": {"name": "p"}, "spec": {"nodeName": "n"}, "status": {"containerStatuses": [
        {"name": "main", "state": {"terminated": {"exitCode": 255, "reason": "Unknown",
                                                  "containerID": f"containerd://{cid}"}}}]}}
    assert nodecheck.unreadable_state(kube, exit255) == ""  # containerd said nothing about it
    kube.ctx = Ctx(f'level=error msg="failed to get task exit status for {cid}: Failed to parse state output: EOF"\n')
    assert "ended with exit 255" in nodecheck.unreadable_state(kube, exit255) and cid in kube.ctx.calls[0]
    ok = {"status": {"containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 0}}}]}}
    assert nodecheck.unreadable_state(kube, ok) == ""


def test_only_mounts_in_the_runtimes_own_namespace_are_judged_after_the_short_confirmation():
    procs = _procs(["12 1 S sleep 5"])
    bound = invariants.leaked_mounts("@/run/reaper/shared-mnt-ns: 600 1 0:5 / /etc/x rw\n")
    assert bound == ["600 1 0:5 / /etc/x rw  [in the mount namespace bound at /run/reaper/shared-mnt-ns]"]
    assert invariants.Leaks(mounts=bound).confirm_after(2, 10) == 2
    held = invariants.leaked_mounts("12: 600 1 0:5 / /etc/x rw\n", procs)
    assert invariants.Leaks(mounts=held).confirm_after(2, 10) is None  # a process holds it: it may still exit
    rt = invariants.leaked_mounts("13: 600 1 0:5 / /etc/x rw\n", _procs(["13 1 S reaper-runtime start abc"]),
                                  ["reaper-runtime"])
    assert rt == ["600 1 0:5 / /etc/x rw  [in the mount namespace the runtime holds: pid 13 (reaper-runtime start abc)]"]
    assert invariants.Leaks(mounts=rt).confirm_after(2, 10) == 2
    assert invariants.Leaks(mounts=bound, shims=["shim 42"]).confirm_after(2, 10) == 10  # a shim may still exit
    assert invariants.Leaks().confirm_after(2, 10) is None


def test_an_orphaned_runtime_process_is_judged_sooner_than_a_shim():
    owner = invariants.Owner("ns1", frozenset({A}), frozenset(), frozenset())
    procs = _procs([f"40 1 S reaper-runtime start {A}", f"41 7 S reaper-runtime start {A}", f"42 1 S sleep {A}"])
    got = invariants.leaked_processes(procs, {40: {"id"}, 41: {"id"}, 42: {"id"}}, owner, ["reaper-runtime"])
    assert [("orphaned" in g) for g in got] == [True, False, False]
    assert invariants.Leaks(processes=got[:1]).confirm_after(2, 10) == 2
    assert invariants.Leaks(processes=got[:2]).confirm_after(2, 10) == 10  # its parent may still stop it
    assert invariants.Leaks(processes=got[:1], shims=["shim 9"]).confirm_after(2, 10) == 10


def test_a_process_in_a_namespace_bound_to_a_file_does_not_make_its_mounts_wait():
    # reaper keeps its overlay namespace bound at a file: a workload of another pod in it is not
    # what keeps the mount, so the leak is as final as one only the file keeps
    procs = _procs(["2246 1 S sleep 754864"])
    got = invariants.leaked_mounts("2246@/run/reaper/shared-mnt-ns: 119 74 0:41 /x /s05 rw\n", procs)
    assert got == ["119 74 0:41 /x /s05 rw  [in the mount namespace bound at /run/reaper/shared-mnt-ns, "
                   "pid 2246 (sleep 754864) in it]"]
    assert invariants.Leaks(mounts=got).confirm_after(2, 10) == 2
    held = invariants.leaked_mounts("2246: 119 74 0:41 /x /s05 rw\n", procs)
    assert invariants.Leaks(mounts=held).confirm_after(2, 10) is None  # only a process keeps it: it may exit


def test_how_long_leaks_are_seen_again_before_they_are_judged():
    bound = ["m  [in the mount namespace bound at /run/x]"]
    orphan = [f"p  [id; {invariants.ORPHANED_RUNTIME}]"]
    assert invariants.Leaks(mounts=bound, processes=orphan).confirm_after(2, 10) == 2
    assert invariants.Leaks(shims=["shim 9"]).confirm_after(2, 10) == 10  # a shim whose pods are gone
    assert invariants.Leaks(mounts=bound, shims=["shim 9"]).confirm_after(2, 10) == 10
    assert invariants.Leaks(mounts=bound, state=["/run/reaper/abc"]).confirm_after(2, 10) == 10
    assert invariants.Leaks(processes=["p  [env]"]).confirm_after(2, 10) == 10  # its pods are gone
    assert invariants.Leaks(mounts=["m  [in the mount namespace of pid 7 (sleep 1)]"]).confirm_after(2, 10) is None
    assert invariants.Leaks().confirm_after(2, 10) is None


@contextlib.contextmanager
def _bound_namespace(tmp_path, marker: str):
    """A mount namespace bound at ``<tmp_path>/ns`` (as reaper keeps its own) holding a tmpfs named
    ``marker`` at /mnt, with a process (``sleep 60``) in it: yields (the file, the process)."""
    ns = tmp_path / "ns"
    subprocess.run(["mount", "--bind", str(tmp_path), str(tmp_path)], check=True)
    holder = None
    try:
        subprocess.run(["mount", "--make-private", str(tmp_path)], check=True)
        ns.touch()
        holder = subprocess.Popen(["unshare", f"--mount={ns}", "sh", "-c",
                                   f"mount -t tmpfs {marker} /mnt && echo up && exec sleep 60"],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "up"
        yield ns, holder
    finally:
        if holder:
            holder.kill()
            holder.wait()
        subprocess.run(["umount", "-l", str(ns)], check=False)
        subprocess.run(["umount", "-l", str(tmp_path)], check=False)


def _run_script(shell: str, script: str, prefix: str, marker: str) -> None:
    """The mounts script finds exactly the marker's tmpfs at /mnt, prefixed as ``prefix``."""
    out = subprocess.run([shell, "-c", script], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix) and " /mnt " in lines[0] \
        and lines[0].split(" - ", 1)[1].split()[:2] == ["tmpfs", marker], out


ROOT_UNSHARE = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")


@ROOT_UNSHARE
@pytest.mark.parametrize("shell", ["sh", "bash"])  # nodes run it with /bin/sh (dash on Debian)
def test_the_mounts_script_names_the_file_a_process_held_namespace_is_bound_at(tmp_path, shell):
    """Run for real: a namespace bound at a file with a process in it is listed as ``<pid>@<file>``,
    and once the process is gone as ``@<file>`` (read through nsenter); a pattern with a backslash
    that matches nothing changes nothing (patterns reach awk unescaped)."""
    marker = f"zz{os.getpid()}leak"
    with _bound_namespace(tmp_path, marker) as (ns, holder):
        script = invariants.mounts_script([r"no\\such\tmount", marker])
        _run_script(shell, script, f"{holder.pid}@{ns}: ", marker)
        holder.kill()
        holder.wait()
        _run_script(shell, script, f"@{ns}: ", marker)


@ROOT_UNSHARE
@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_namespace_whose_first_process_is_gone_is_still_read(tmp_path, shell):
    """Run for real: on a busy node the first process listed in a namespace (the lowest pid) may
    exit before its mountinfo is read. The namespace is then read through its next process, and a
    bound namespace none of whose listed processes is left, through its file. (The first version
    took the first process only and skipped the namespace: a leaked mount went unseen.)"""
    marker = f"zz{os.getpid()}gone"
    with _bound_namespace(tmp_path, marker) as (ns, holder):
        mnt = os.readlink(f"/proc/{holder.pid}/ns/mnt")
        gone = f"echo '{mnt} /proc/999999999/ns'"  # a pid no process has: exited since it was listed
        _run_script(shell, invariants.mounts_script([marker], f"{gone}; {invariants.NAMESPACES}"),
                    f"{holder.pid}@{ns}: ", marker)
        _run_script(shell, invariants.mounts_script([marker], gone), f"@{ns}: ", marker)


def test_a_leaks_summary_names_the_kinds_and_the_mount_points():
    mounts = ["47 54 0:41 /var/lib/kubelet/pods/u/volumes/x /run/secrets/kubernetes.io/serviceaccount ro - overlay  [in ...]",
              "48 54 0:41 /var/lib/kubelet/pods/u/volumes/y /s05-cwd rw - overlay  [in ...]"]
    lk = invariants.Leaks(processes=["p"], shims=["s1", "s2"], mounts=mounts)
    assert lk.summary() == "1 process(es); 2 shim(s); mounts at /run/secrets/kubernetes.io/serviceaccount, /s05-cwd"
    assert invariants.Leaks().summary() == ""


def test_a_lost_exit_status_is_named_in_one_line(tmp_path):
    import subprocess
    from types import SimpleNamespace

    from k8s_suite import nodecheck

    cid, other = "a" * 64, "b" * 64
    log = tmp_path / "containerd.log"
    log.write_text(
        f'time="t0" level=info msg="StartContainer for \\"{cid}\\" returns successfully"\n'
        f'time="t1" level=error msg="failed to get task exit status for \\"{cid}\\"" error="Failed to execute '
        f'reaper-runtime state: No child processes (os error 10): unknown"\n'
        f'time="t2" level=info msg="received exit event container_id:\\"{cid}\\" exit_status:255"\n')

    class Ctx:  # the node is this host: the real grep pipeline runs
        def node_sh(self, node, script, ok=None):
            return SimpleNamespace(stdout=subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout)

    kube = SimpleNamespace(info=SimpleNamespace(component_logs={"containerd": str(log)}, nodes=("n",)),
                           ctx=Ctx(), seen_ids={other, cid})
    line = nodecheck.lost_exit_status(kube)
    assert line == ("containerd lost the exit status of container aaaaaaaaaaaa: the runtime's task Wait failed "
                    '("Failed to execute reaper-runtime state: No child processes (os error 10): unknown"), so '
                    "containerd recorded exit 255 and killed the container's processes")
    assert nodecheck.lost_exit_status(kube, [other]) == ""  # containerd lost only another container's
    kube.seen_ids = set()
    assert nodecheck.lost_exit_status(kube) == ""
    kube.info.component_logs = {}
    assert nodecheck.lost_exit_status(kube, [cid]) == ""  # no containerd log to read (kind): no hint


def test_a_lost_exit_status_goes_first_in_the_failure(monkeypatch):
    from types import SimpleNamespace

    from k8s_suite import nodecheck

    crash = SimpleNamespace(message="WaitError: node vm: the process tree did not start within 30s")
    rep, notes = SimpleNamespace(longrepr=SimpleNamespace(reprcrash=crash)), []
    monkeypatch.setattr(nodecheck, "lost_exit_status", lambda k: "containerd lost the exit status of container x")
    nodecheck.lost_exit_first(object(), rep, notes)
    assert crash.message.splitlines() == ["containerd lost the exit status of container x",
                                          "WaitError: node vm: the process tree did not start within 30s"]
    assert notes == ["containerd lost the exit status of container x"]
    monkeypatch.setattr(nodecheck, "lost_exit_status", lambda k: "")
    crash.message = "unchanged"
    nodecheck.lost_exit_first(object(), rep, [])
    assert crash.message == "unchanged"
