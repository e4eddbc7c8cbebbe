"""S49-S55, S60: every code path (main, exec, with and without a terminal, attach) with the same
expectations, and the whole exit range (docs/CONTRACT.md)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from k8s_suite import attach, edges, podstate
from k8s_suite import manifests as m
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh
from k8s_suite.streams import WaitError

EXIT_CODES = (0, 1, 2, 42, 126, 127, 128, 129, 200, 254, 255)
EXEC_SIGNALS = {"TERM": 143, "KILL": 137, "USR1": 138}
TYPED_EXIT = 30  # seconds from the end of the attach to the exit of the shell the attach typed `exit` into
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


def test_s60_main_container_with_a_terminal(kube):
    """`tty: true` main containers (`kubectl run -it`): the same identity, env, cwd, streams and exit
    status as without a terminal; output arrives whole (its unterminated last line too); what is typed
    through `kubectl attach -it` reaches an interactive shell, whose `exit` ends the container."""
    t, many = kube.token, 300
    value = f"s60-{t}"
    script = ('tty; id -u; id -g; id -G; pwd; printf "%s\\n" "$S60"; printf "%s-%s\\n" err ' + t + ' >&2; '
              f'i=0; while [ $i -lt {many} ]; do echo line-$$i; i=$$((i+1)); done; printf last-{t}; exit 7')
    plain = kube.container("main", sh(script), env={"S60": value}, working_dir="/tmp")
    plain["tty"] = True
    shell = kube.container("main", ["sh"])
    shell.update({"tty": True, "stdin": True, "stdinOnce": True})
    ids = {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]}
    kube.create(kube.pod("tty", containers=[plain], pod_security=ids))
    kube.create(kube.pod("runit", containers=[shell]))
    problems = []
    pod = kube.wait_exited(kube.name("tty"), require_zero=False)
    code = (podstate.terminated(pod) or {}).get("exitCode")
    log = [ln.rstrip("\r") for ln in kube.log_lines(kube.name("tty"))]
    who = ["1000", "3000", "3000 4000", "/tmp", value, f"err-{t}"]
    if code != 7:
        problems.append(f"`tty: true` container `exit 7`: exitCode {code!r}")
    if not log or not re.fullmatch(r"/dev/pts/\d+", log[0]) or log[1:7] != who:
        problems.append(f"`tty: true` container: expected a /dev/pts/N line, then uid, gid, groups, cwd, env and the "
                        f"stderr line {who}; got {log[:7]!r}")
    output = [f"line-{i}" for i in range(many)] + [f"last-{t}"]
    if log[7:] != output:
        problems.append(f"`tty: true` container: expected {many} lines and an unterminated last-{t} after them; got "
                        f"{len(log[7:])} line(s), ending {log[-2:]!r}")
    runit = kube.name("runit")
    kube.wait_running(runit)
    typed = f"printf '%s-%s\\n' typed {t}; exit 5\n"
    began = time.monotonic()
    shown = attach.type_into(kube, runit, typed, lambda: podstate.all_exited(kube.get(runit)))
    try:  # the attach ends with the terminal; the kubelet reports the exit a moment later
        pod = kube.wait_exited(runit, timeout=TYPED_EXIT, require_zero=False)
    except WaitError:
        pod = kube.get(runit)
    code = (podstate.terminated(pod) or {}).get("exitCode")
    log = [ln.rstrip("\r") for ln in kube.log_lines(runit)]
    if not podstate.all_exited(pod):
        problems.append(f"`kubectl run -it` (stdin + tty, attached), typed {typed!r}: the shell still ran "
                        f"{time.monotonic() - began:.0f}s later (the typed `exit 5` never reached it); terminal "
                        f"{shown[-200:]!r}: {podstate.describe(pod)}")
    elif code != 5 or f"typed-{t}" not in log:
        problems.append(f"`kubectl run -it` (stdin + tty, attached), typed {typed!r}: expected the line typed-{t} in its "
                        f"log and exit 5; got exit {code!r}, log {log[-5:]!r}, terminal {shown[-200:]!r}")
    assert not problems, "; ".join(problems)


def test_s61_binary_data_on_every_stream(kube):
    """Binary data byte for byte: exec stdin to stdout (`head -c N`), and a main container's stdout
    and stderr into its log. (An exec's stderr is S28's, in text: with binary on it, runc itself lost
    all 16 KiB in 2 of about 17 runs here, the exec stream's own truncation, kubernetes#124571's class.)"""
    data = edges.binary(kube.token)
    # busybox printf: \NNN octal escapes, NUL included; the kubelet leaves no `$(` to expand here
    loop = (f"i=0; while [ $i -lt 64 ]; do printf '{edges.PRINTF_EVERY_BYTE}'; i=$$((i+1)); done; "
            f"printf tail-{kube.token}")
    name = kube.name("bin")
    kube.create(kube.pod("bin", containers=[kube.container("out", sh(loop)),
                                            kube.container("err", sh(f"{{ {loop}; }} >&2"))]))
    sleeper, _, _ = kube.sleeping_pod("exec")
    problems = []
    # `head -c N` ends after N bytes: stdin stays open (end of file is S30's check, not this one's)
    n = len(data)
    res = kube.exec(sleeper, ["head", "-c", str(n)], stdin=data, typed=True)
    if res.exit_code != 0 or res.stdout != data or res.stderr:
        problems.append(f"exec `head -c {n}`: {n} bytes in, {len(res.stdout)} back on stdout (first difference at "
                        f"{edges.byte_difference(res.stdout, data)}), {len(res.stderr)} on stderr, exit {res.exit_code!r}")
    kube.wait_exited(name)
    for c in ("out", "err"):
        log = kube.ctx.logs(kube.ns, name, c, raw=True)
        if log != data:
            problems.append(f"main container printing to std{c}: {n} bytes printed, {len(log)} in its log (first "
                            f"difference at {edges.byte_difference(log, data)})")
    assert not problems, "binary data must arrive byte for byte: " + "; ".join(problems)


def test_s62_no_descriptor_of_the_runtime_reaches_the_workload(kube):
    """The workload's open descriptors are its three streams and nothing else, on every path (main
    container and exec, each with and without a terminal): a runtime's state file, log, socket, pipe
    or terminal master must not leak."""
    mains = {"main container": "fds", "main container with a terminal": "fdstty"}
    for what in mains.values():
        c = kube.container("main", sh(edges.FDS.replace("$", "$$")))  # the kubelet turns "$$" into "$"
        c["tty"] = what == "fdstty"
        kube.create(kube.pod(what, containers=[c]))
    sleeper, _, _ = kube.sleeping_pod("exec")
    listing = ["/bin/sh", "-c", edges.FDS]
    got = {"exec": edges.descriptors(kube.exec(sleeper, listing).stdout.splitlines()),
           "exec with a terminal": edges.descriptors(kube.exec(sleeper, listing, tty=True).stdout.splitlines())}
    for path, what in mains.items():
        kube.wait_exited(kube.name(what))
        got[path] = edges.descriptors(kube.log_lines(kube.name(what)))
    problems = [f"{what}: {fds!r}" for what, fds in got.items() if sorted(fds) != [0, 1, 2]]
    assert not problems, "the workload must hold only its descriptors 0, 1 and 2: " + "; ".join(problems)
