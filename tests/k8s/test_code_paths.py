"""S49-S55: every code path (main, exec, with and without a terminal, attach) with the same
expectations, and the whole exit range (docs/CONTRACT.md)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from k8s_suite import attach, edges, naming, podstate
from k8s_suite import manifests as m
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh

EXIT_CODES = (0, 1, 2, 42, 126, 127, 128, 129, 200, 254, 255)
EXEC_SIGNALS = {"TERM": 143, "KILL": 137, "USR1": 138}
RUNS_AT_ONCE = 15  # seconds a one-line command may be seen running before it is judged not to end


def test_s49_a_workload_named_pause_runs(kube):
    """A workload whose path contains "pause" (say /opt/pause-exporter) is a workload like any other."""
    name = kube.name("pause")
    init = kube.container("link", sh("mkdir -p /w/pause && ln -s /bin/busybox /w/pause/sh"), mounts=[m.mount("w", "/w")])
    main = kube.container("main", ["/w/pause/sh", "-c", f"echo ran-{kube.token}"], mounts=[m.mount("w", "/w")])
    kube.create(kube.pod("pause", containers=[main], volumes=[m.emptydir_volume("w")],
                         spec_extra={"initContainers": [init]}))
    # `echo` ends at once: a container still "running" SETTLE seconds after it was first seen running
    # runs something else (a runtime that took it for the sandbox runs nothing, forever)
    kube.wait(name, podstate.all_exited, "the container exited", T.POD_FINISH,
              stop=podstate.running_longer_than("main", RUNS_AT_ONCE))
    assert kube.log_lines(name) == [f"ran-{kube.token}"], (
        f"/w/pause/sh -c 'echo ran-...' must run and print its line: log {kube.log_lines(name)!r} "
        "(a runtime that takes any command naming 'pause' for the pod sandbox runs nothing)")


def test_s50_exit_range_main_and_exec(kube):
    """Exit codes 0..255 (a sample with both ends) of main containers and of execs with and without a
    terminal; an exec killed by a signal reports 128+N."""
    name = kube.name("codes")
    containers = [kube.container(f"c{code}", sh(f"exit {code}")) for code in EXIT_CODES]
    kube.create(kube.pod("codes", containers=containers))
    sleeper, _, _ = kube.sleeping_pod("exec")
    problems = []

    def exec_code(argv, tty):
        res = kube.exec(sleeper, argv, tty=tty)
        return res.exit_code, res.describe()

    cases = [(f"exit {c}", ["/bin/sh", "-c", f"exit {c}"], c, tty) for c in EXIT_CODES for tty in (False, True)]
    cases += [(f"kill -{s} $$", ["/bin/sh", "-c", f"kill -{s} $$"], code, tty)
              for s, code in EXEC_SIGNALS.items() for tty in (False, True)]
    pod = kube.wait_exited(name, require_zero=False)
    for code in EXIT_CODES:  # the main containers first: each path's problems are named in order
        term = podstate.terminated(pod, f"c{code}") or {}
        if term.get("exitCode") != code:
            problems.append(f"main container `exit {code}`: exitCode {term.get('exitCode')!r}")
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda c: exec_code(c[1], c[3]), cases))
    for (what, _, want, tty), (code, desc) in zip(cases, got):
        if code != want:
            problems.append(f"exec{' with a terminal' if tty else ''} `{what}`: exit {code!r}, expected {want} ({desc})")
    assert not problems, f"{len(problems)} exit status(es) wrong: " + "; ".join(problems)


def test_s51_working_dir_that_does_not_exist(kube):
    """A workingDir the image lacks is created (as runc does), for the main process and for an exec."""
    cwd = f"/tmp/rci-{kube.token}-s51/made/by/runtime"
    name, _, _ = kube.sleeping_pod("cwd", working_dir=cwd)
    res = kube.exec(name, ["pwd"])
    assert res.exit_code == 0 and res.stdout == cwd + "\n", f"exec pwd: expected {cwd!r}: {res.describe()}"
    once = kube.name("once")
    kube.create(kube.pod("once", ["pwd"], working_dir=f"{cwd}-2"))
    kube.wait_exited(once)
    assert kube.log_lines(once) == [f"{cwd}-2"], f"main process pwd: expected {cwd}-2, log {kube.log_lines(once)!r}"


def test_s52_termination_message(kube):
    """terminationMessagePath (the default /dev/termination-log) reaches status.terminated.message, and
    FallbackToLogsOnError takes the log's tail; the node's own /dev gets nothing."""
    words = f"last-words-{kube.token}"
    file_c = kube.container("file", sh(f"printf %s {words} > /dev/termination-log; exit 3"))
    logs_c = kube.container("logs", sh(f"echo log-words-{kube.token}; exit 4"))
    logs_c["terminationMessagePolicy"] = "FallbackToLogsOnError"
    name = kube.name("msg")
    kube.create(kube.pod("msg", containers=[file_c, logs_c]))
    pod = kube.wait_exited(name, require_zero=False)
    got = {c: (podstate.terminated(pod, c) or {}) for c in ("file", "logs")}
    assert (got["file"].get("exitCode"), got["file"].get("message")) == (3, words), (
        f"container writing /dev/termination-log: expected exit 3 and message {words!r}, got {got['file']!r}")
    assert (got["logs"].get("exitCode"), got["logs"].get("message")) == (4, f"log-words-{kube.token}\n"), (
        f"FallbackToLogsOnError: expected exit 4 and the log's tail as message, got {got['logs']!r}")
    node = kube.node_of(pod)
    leaked = kube.ctx.node_sh(node, f"grep -l -F {words} /dev/termination-log 2>/dev/null; true").stdout.strip()
    assert not leaked, f"the container's termination message was written into node {node}'s own /dev/termination-log"


def test_s53_terminal_exec_keeps_the_containers_identity(kube):
    """An exec with a terminal runs as the container's user and group, in its workingDir, with its env."""
    value = f"s53-{kube.token}"
    name, _, _ = kube.sleeping_pod("ids", env={"S53": value}, working_dir="/tmp",
                                   pod_security={"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]})
    script = 'id -u; id -g; id -G; pwd; printf "%s\\n" "$S53"'
    want = ["1000", "3000", "3000 4000", "/tmp", value]
    plain = kube.exec(name, ["/bin/sh", "-c", script])
    tty = kube.exec(name, ["/bin/sh", "-c", script], tty=True)
    got_tty = [l.rstrip("\r") for l in tty.stdout.splitlines()]
    assert plain.stdout.splitlines() == want and got_tty == want, (
        f"identity, cwd and env of an exec: expected {want}; without a terminal {plain.stdout.splitlines()}, "
        f"with a terminal {got_tty} ({tty.describe()})")


def test_s54_attach_stdin_reaches_eof(kube):
    """`kubectl run -i` / `kubectl attach`: a container with stdin gets what the client writes and,
    when the client closes stdin (stdinOnce), end of file: `cat` then ends and the pod Succeeds."""
    name = kube.name("attach")
    c = kube.container("main", sh(f"cat; echo eof-{kube.token}"))
    c.update({"stdin": True, "stdinOnce": True})
    kube.create(kube.pod("attach", containers=[c]))
    kube.wait_running(name)
    data = "".join(f"in-{i}-{kube.token}\n" for i in range(20))
    attach.send_and_close(kube, name, data, echoed=True)
    kube.wait_exited(name)
    want = [l for l in data.splitlines()] + [f"eof-{kube.token}"]
    assert kube.log_lines(name) == want, f"attached stdin then EOF: expected {len(want)} lines, got {kube.log_lines(name)!r}"


def test_s55_argv_edges_on_every_path(kube):
    """argv items with edge values reach the process byte for byte: main container, exec, exec with a
    terminal (empty, spaces, '=', newline, unicode, '-n', '*', '$HOME', quotes, a tab)."""
    want = [v.encode() for v in edges.EDGE_VALUES]
    # "$$": the kubelet expands $(VAR) and "$$" in commands; the edge "$HOME" is an arg, escaped for it
    args_for_kubelet = [v.replace("$", "$$") for v in edges.EDGE_VALUES]
    name = kube.name("argv")
    kube.create(kube.pod("argv", ["/bin/sh", "-c", edges.HEX_ARGS, "sh", *args_for_kubelet]))
    sleeper, _, _ = kube.sleeping_pod("exec")
    argv = ["/bin/sh", "-c", edges.HEX_ARGS, "sh", *edges.EDGE_VALUES]
    problems = []
    for what, res in (("exec", kube.exec(sleeper, argv)), ("exec with a terminal", kube.exec(sleeper, argv, tty=True))):
        got = edges.decode_hex_lines(res.stdout.splitlines())
        if got != want:
            problems.append(f"{what}: got {got!r} ({res.describe()})")
    kube.wait_exited(name)
    main = edges.decode_hex_lines(kube.log_lines(name))
    if main != want:
        problems.append(f"main container: got {main!r}")
    assert not problems, f"argv must arrive byte for byte as {want!r}: " + "; ".join(problems)
