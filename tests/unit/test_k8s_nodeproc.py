"""Scenario suite: the node's process table (ps parsing, parent chains, zombies, shims and bundles)."""

from __future__ import annotations

import json

import _k8s_path  # noqa: F401
import pytest

from k8s_suite import nodeproc as np

SHIM = "containerd-shim-runc-v2"
SANDBOX = "a" * 64
CONTAINER = "b" * 64
PS = f"""    PID    PPID STAT COMMAND
      1       0 Ss   /sbin/init
    100       1 Ssl  containerd --config /etc/containerd.toml
    200       1 Sl   /usr/bin/{SHIM} -namespace k8s.io -id {SANDBOX} -address /run/containerd.sock
    210     200 Ss   /pause
    220     200 Ss   /bin/sh -c sleep 123456 & sleep 123456 & wait
    221     220 S    sleep 123456
    222     220 S    /bin/sleep 123456
    223     220 S    sleep 1234567
    230     200 Z    [sh] <defunct>
    300       1 S    reaper-runtime start {CONTAINER}
    301     300 S    sleep 654321
    400       2 I<   [kworker/0:1H-kblockd]
"""


def procs():
    return np.parse_ps(PS)


def test_parse_ps_rows_and_errors():
    ps = procs()
    assert len(ps) == 12
    assert ps[2] == np.Proc(200, 1, "Sl", f"/usr/bin/{SHIM} -namespace k8s.io -id {SANDBOX} -address /run/containerd.sock")
    assert ps[2].argv0 == SHIM
    with pytest.raises(np.PsError):
        np.parse_ps("")
    with pytest.raises(np.PsError):
        np.parse_ps("USER PID\nroot 1")
    with pytest.raises(np.PsError):
        np.parse_ps("PID PPID STAT COMMAND\nx y z")


def test_exact_argv_matching():
    found = np.with_args(procs(), ["sleep", "123456"])
    assert [p.pid for p in found] == [221, 222]  # not 223 (1234567), not the sh line that mentions it


def test_ancestors_and_shim_descent():
    ps = procs()
    assert [p.pid for p in np.ancestors(ps, 221)] == [220, 200, 1]
    assert np.ancestor_named(ps, 221, SHIM).pid == 200
    assert np.ancestor_named(ps, 301, SHIM) is None  # a daemonized workload: reparented to init
    assert "221 sleep 123456 <- 220" in np.describe_chain(ps, 221)
    assert np.ancestors(ps, 99999) == []


def test_ancestors_stop_on_a_cycle():
    ps = np.parse_ps("PID PPID STAT COMMAND\n5 6 S a\n6 5 S b\n")
    assert [p.pid for p in np.ancestors(ps, 5)] == [6]


def test_zombies_and_new_zombies():
    ps = procs()
    assert [z.pid for z in np.zombies(ps)] == [230]
    before = np.parse_ps("PID PPID STAT COMMAND\n230 200 Z [sh] <defunct>\n")
    assert np.new_zombies(before, ps) == []
    assert [z.pid for z in np.new_zombies([], ps)] == [230]
    # the same pid under another parent is a new zombie (pid reused)
    other = np.parse_ps("PID PPID STAT COMMAND\n230 999 Z [x] <defunct>\n")
    assert [z.pid for z in np.new_zombies(other, ps)] == [230]
    assert "parent:" in np.zombie_report(ps, np.zombies(ps)) and SHIM in np.zombie_report(ps, np.zombies(ps))


def test_judged_zombies_are_the_runtimes_own():
    owners = ("containerd", SHIM, "reaper-runtime")
    ps = procs() + np.parse_ps("PID PPID STAT COMMAND\n"
                               "500 1 Z [containerd-shim] <defunct>\n"  # init's to reap: the host's
                               "501 100 Z [containerd-shim] <defunct>\n"  # containerd's
                               "502 300 Z [sh] <defunct>\n")  # below the runtime
    assert [z.pid for z in np.judged_zombies([], ps, owners)] == [230, 501, 502]
    # below a shim another scenario judges: left to it; the baseline's zombies are not new
    assert [z.pid for z in np.judged_zombies([], ps, owners, {200})] == [501, 502]
    assert [z.pid for z in np.judged_zombies(ps, ps, owners)] == []


def test_shims_and_their_ids():
    found = np.shims(procs(), SHIM)
    assert [(s.pid, s.id) for s in found] == [(200, SANDBOX)]
    assert np.shim_id("x -namespace k8s.io -id=abc") == "abc"
    assert np.shim_id("x -namespace k8s.io") is None
    assert np.shims(procs(), "containerd-shim-reaper-v2") == []


def test_bundle_annotations_attribute_shims_to_namespaces():
    cfg = {"ociVersion": "1.0.2", "annotations": {np.NS_ANNOTATION: "reaper-ci-k3f9x2-s01",
                                                  np.POD_ANNOTATION: "s01-echo-k3f9x2",
                                                  np.SANDBOX_ID_ANNOTATION: SANDBOX}}
    text = f"=== 200\n{json.dumps(cfg, indent=2)}\n=== 201\n\n=== 202\nnot json\n"
    bundles = np.parse_bundles(text)
    assert set(bundles) == {200}
    shims = np.annotate(np.shims(procs(), SHIM), bundles)
    assert shims[0].namespace == "reaper-ci-k3f9x2-s01" and shims[0].pod == "s01-echo-k3f9x2"
    assert "for p in 200 201; do" in np.bundle_script([200, 201])


def test_leftover_shims_match_by_id_or_namespace():
    s_id = np.Shim(1, SANDBOX, f"shim -id {SANDBOX}")
    s_ns = np.Shim(2, "c" * 64, "shim -id ccc", namespace="reaper-ci-k3f9x2-s14")
    s_other = np.Shim(3, "d" * 64, "shim -id ddd", namespace="reaper-ci-zzzzzz-s14")
    s_arg = np.Shim(4, "e" * 64, f"shim -id eee --parent {CONTAINER}")
    got = np.leftover_shims([s_id, s_ns, s_other, s_arg], {SANDBOX, CONTAINER}, "reaper-ci-k3f9x2-")
    assert [s.pid for s in got] == [1, 2, 4]
    assert np.leftover_shims([s_other], set(), "reaper-ci-k3f9x2-") == []


def test_state_entries_that_are_container_ids():
    assert np.container_ids_in(["overlay", "overlay.lock", SANDBOX, "x" * 64]) == {SANDBOX}


def test_a_shims_bundle_is_read_once_per_shim(tmp_path):
    """RunContext.scan_shims asks the node for the bundles of shims it has not read yet only (a
    bundle that could not be read is asked again; a new process at an old pid is a new shim)."""
    from ci.cluster.base import ClusterInfo
    from ci.tools import Result
    from k8s_suite.context import RunContext
    from k8s_suite.runstate import RunDir

    cfg = json.dumps({"annotations": {np.NS_ANNOTATION: "reaper-ci-k3f9x2-s01"}})
    state = {"ps": PS, "readable": {200}}
    asked: list[list[int]] = []

    class Node:
        def run(self, node, argv, timeout=30, input=None):
            if argv[0] == "ps":
                return Result(0, state["ps"])
            pids = [int(p) for p in argv[-1].split(";")[0].split()[3:]]
            asked.append(pids)
            return Result(0, "".join(f"=== {p}\n{cfg if p in state['readable'] else ''}\n" for p in pids))

    info = ClusterInfo(provisioner="local", name="n", kubeconfig="k", runtime="runc", runtime_class="rc",
                       shim_process=SHIM, nodes=("vm",), image="i", node_access="local")
    ctx = RunContext(info, object(), Node(), "k3f9x2", RunDir(tmp_path), tmp_path)
    assert [s.namespace for s in ctx.scan_shims("vm")] == ["reaper-ci-k3f9x2-s01"]
    assert [s.namespace for s in ctx.scan_shims("vm")] == ["reaper-ci-k3f9x2-s01"] and asked == [[200]]
    second = f"    201       1 Sl   /usr/bin/{SHIM} -namespace k8s.io -id {CONTAINER} -address /run/containerd.sock\n"
    state["ps"] = PS + second
    assert [s.namespace for s in ctx.scan_shims("vm")] == ["reaper-ci-k3f9x2-s01", None]
    assert asked[-1] == [201]
    state["readable"].add(201)
    assert [s.namespace for s in ctx.scan_shims("vm")] == ["reaper-ci-k3f9x2-s01"] * 2 and asked[-1] == [201]
    assert len(asked) == 3
    state["ps"] = PS.replace(f"-id {SANDBOX}", f"-id {'f' * 64}")  # pid 200 is another shim now
    ctx.scan_shims("vm")
    assert asked[-1] == [200]


def test_the_shims_another_scenario_answers_for():
    live_other = np.Shim(10, "a" * 64, "shim -id a", namespace="ns-s13", pod="p")
    mine = np.Shim(11, "b" * 64, "shim -id b", namespace="ns-s16", pod="q")
    outlived = np.Shim(12, "c" * 64, "shim -id c")  # its pod (and bundle) gone; S63 recorded its id
    unknown = np.Shim(13, "d" * 64, "shim -id d")  # nobody recorded it: the scenario judging owns it
    mine_gone = np.Shim(14, "e" * 64, "shim -id e")
    got = np.others_shims([live_other, mine, outlived, unknown, mine_gone], "ns-s16", {"c" * 64})
    assert got == {10, 12}
