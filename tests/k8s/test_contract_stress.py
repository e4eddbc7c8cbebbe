"""S41-S43: volume and restarts of the node's own services (long log lines and bursts, containerd
restarted under a running pod, many containers ending at once). Catalogue: ``docs/CONTRACT.md``."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from k8s_suite import naming, podstate, runstate
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh

LONG_LINE = 1 << 20  # S42: one line of 1 MiB
BURST = 100_000  # S42: short lines in one burst
MANY = 20  # S43: pods ending at once, and concurrent execs
CRI_BACK = 30  # S41: seconds after the restart within which exec must work again


def test_s42_long_lines_and_bursts(kube):
    name = kube.name("flood")
    head, tail = f"long-{kube.token}-", f"-end-{kube.token}"
    # `yes a | head -c 2*N | tr -d '\n'`: N bytes of 'a' with no newline (busybox has no printf padding)
    kube.create(kube.pod("flood", sh(f"printf '%s' {head}; yes a | head -c {2 * LONG_LINE} | tr -d '\\n'; "
                                     f"echo {tail}; seq 1 {BURST}")))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    want_long = head + "a" * LONG_LINE + tail
    assert lines and lines[0] == want_long, (
        f"the first log line must be the {len(want_long)}-byte line: got {len(lines)} lines, the first of "
        f"{len(lines[0]) if lines else 0} bytes ({_describe_long(lines[0] if lines else '', head, tail)})")
    rest = lines[1:]
    if rest != [str(i) for i in range(1, BURST + 1)]:
        bad = next((i for i, v in enumerate(rest) if v != str(i + 1)), len(rest))
        pytest.fail(f"after the long line, the {BURST} burst lines 1..{BURST} must follow complete and in order: got "
                    f"{len(rest)} lines; first difference at line {bad + 1}: {rest[bad:bad + 3]!r}")


def _describe_long(line: str, head: str, tail: str) -> str:
    return (f"starts with the marker: {line.startswith(head)}, ends with it: {line.endswith(tail)}, "
            f"'a' count {line.count('a')}, other bytes {len(re.sub('a', '', line)) - len(head) - len(tail)}")


def test_s43_many_exits_and_execs_at_once(kube):
    node = kube.info.nodes[0]
    token = kube.token
    names = [kube.name(f"exit{i}") for i in range(MANY)]
    # each pod blocks reading its own FIFO, then ends with its own code; the releases are execs, all
    # at once, so the 20 exits and 20 more execs race in the runtime together (a FIFO: a poll of
    # `sleep 0.05` in 20 pods forked ~400 processes a second beside every other scenario)
    pods = [kube.pod(f"exit{i}", sh(f"f={_go(token, i)}; mkfifo $f || exit 3; echo start-{i}-{token}; read -r _ < $f; "
                                    f"echo end-{i}-{token}; exit {10 + i}"), node_name=node, grace=1)
            for i in range(MANY)]
    target, _, _ = kube.sleeping_pod("execs", node_name=node)
    with ThreadPoolExecutor(2 * MANY) as pool:
        list(pool.map(kube.create, pods))
        list(pool.map(kube.wait_running, names))
        releases = [pool.submit(kube.exec, names[i], ["/bin/sh", "-c", _release(token, i)]) for i in range(MANY)]
        execs = [pool.submit(kube.exec, target, ["/bin/sh", "-c", f"echo exec-{i}-{token}; echo err-{i}-{token} >&2; "
                                                 f"exit {i + 1}"]) for i in range(MANY)]
        releases, execs = [f.result() for f in releases], [f.result() for f in execs]
        ended = list(pool.map(lambda nm: _exited_or_why(kube, nm), names))
    # every result is judged, whatever else failed: the 20 execs into one pod, the 20 releases, the 20 exits
    problems = []
    for i, res in enumerate(execs):
        if (res.stdout, res.stderr, res.exit_code) != (f"exec-{i}-{token}\n", f"err-{i}-{token}\n", i + 1):
            problems.append(f"exec {i}: expected stdout exec-{i}, stderr err-{i}, exit {i + 1}: {res.describe()}")
    for i, pod in enumerate(ended):
        if isinstance(pod, str):
            problems.append(f"pod {i}: {pod}")
            continue
        code = (podstate.terminated(pod) or {}).get("exitCode")
        lines = kube.log_lines(names[i])
        ok = code == 10 + i and lines == [f"start-{i}-{token}", f"end-{i}-{token}"]
        if not ok:
            problems.append(f"pod {i}: expected exit {10 + i} and its two lines, got exit {code!r}, log {lines!r}: "
                            f"{podstate.describe(pod)}")
        # the release's own status: 0, or 137 when its container ended while the exec was still exiting
        # (the container's end kills what is left in it: runc does so) and the release did its work
        r = releases[i]
        if r.exit_code != 0 and not (r.exit_code == 137 and ok):
            problems.append(f"release of pod {i} (an exec that lets its container end): {r.describe()}")
    assert not problems, f"{len(problems)} of {3 * MANY} exact results wrong:\n" + "\n".join(problems)


def _go(token: str, i: int) -> str:
    return f"/tmp/go-{token}-{i}"


def _release(token: str, i: int) -> str:
    """The release of S43's pod ``i``: a line into its FIFO, opened read-write (never blocks, even
    with no reader left); it waits up to 5 s for the pod to have made the FIFO (exit 2 otherwise)."""
    return (f"f={_go(token, i)}; n=0; while [ ! -p $f ] && [ $n -lt 100 ]; do n=$((n+1)); sleep 0.05; done; "
            "[ -p $f ] || { echo \"no FIFO $f\" >&2; exit 2; }; exec 3<>$f; echo go >&3")


def _exited_or_why(kube, name: str):
    """The pod once every container exited, or why it did not (a string)."""
    try:
        return kube.wait_exited(name, require_zero=False)
    except AssertionError as e:
        return str(e).splitlines()[0]


@pytest.mark.node_wide(stage=3, beside=True)  # once S13/S14/S16's pods are gone, beside their node checks
def test_s41_containerd_restart(ctx, node_wide, kube, evidence):
    restart = ctx.info.containerd_restart
    if not restart:
        pytest.skip(f"the {ctx.info.provisioner} cluster declares no way to restart containerd (containerd_restart)")
    # the node-wide checks of this stage (and the other scenarios' own, which judge only their pods)
    # leave this pod, its shim and its zombies to this scenario's teardown (runstate.live_beside):
    # recorded before the pod exists
    ctx.run.record({"ns": kube.ns, runstate.LIVE_BESIDE: True})
    name = kube.name("survivor")
    seconds = naming.sleep_seconds(kube.token, "s41")  # an upper bound of ticks, unique to the run
    # a counter the log must keep showing, continuously, across the restart (the same process); it
    # ends on SIGTERM (as PID 1 of a container it would ignore it, and its delete, the last step of the
    # run, would wait out the grace period for the SIGKILL)
    kube.create(kube.pod("survivor", sh(f"trap 'exit 0' TERM; i=0; while [ $i -lt {seconds} ]; do i=$((i+1)); "
                                        "echo tick-$i; sleep 0.2; done"), grace=1))
    pod = kube.wait_running(name)
    kube.record_ids()
    node = kube.node_of(pod)
    cid = podstate.container_id(podstate.container_status(pod))
    kube.follow_logs(name, timeout=T.POD_START).wait_for_line("tick-3", T.POD_START)
    # the pod starts beside the other scenarios; only the restart waits for them (it would break
    # every other scenario's pods and execs)
    node_wide.wait()
    began, marks = time.monotonic(), []
    r = ctx.node_sh(node, restart, timeout=90, ok=None)
    evidence.append(f"containerd restart: exit {r.returncode}: {(r.stdout + r.stderr).strip()}")
    assert r.returncode == 0, f"restarting containerd on {node} failed (exit {r.returncode}): {(r.stdout + r.stderr).strip()}"
    print(f"containerd restarted: {r.stdout.strip()}")
    marks.append(f"restart {time.monotonic() - began:.1f}s")
    at_restart = _last_tick(kube, name)
    # exec works again once the kubelet reaches the new containerd (bounded retry, each attempt
    # logged); a container that ended meanwhile did not survive the restart: that is the verdict
    deadline, attempts = time.monotonic() + CRI_BACK, []
    while True:
        ended = podstate.terminated(kube.get(name))
        assert not ended, (
            f"the container did not survive the containerd restart: it ended with exit {ended.get('exitCode')} "
            f"({ended.get('reason')}) at {ended.get('finishedAt')}: the runtime's shim lost its task or containerd "
            f"could not reconnect to it: {podstate.describe(kube.get(name))}")
        res = kube.exec(name, ["/bin/sh", "-c", f"echo exec-after-restart-{kube.token}"])
        attempts.append(res.describe())
        if res.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # retry interval while the CRI comes back
    assert res.exit_code == 0 and res.stdout == f"exec-after-restart-{kube.token}\n", (
        f"exec after the containerd restart ({len(attempts)} attempts within {CRI_BACK}s): " + " | ".join(attempts[-3:]))
    marks.append(f"exec works +{time.monotonic() - began:.1f}s ({len(attempts)} attempt(s))")
    deadline = time.monotonic() + T.NODE_PROCESS
    while _last_tick(kube, name) < at_restart + 5:  # 1 s of ticks written after containerd came back
        assert time.monotonic() < deadline, (
            f"the log stopped growing after the containerd restart: last tick {_last_tick(kube, name)}, "
            f"{at_restart} when containerd came back")
        time.sleep(0.25)  # poll interval until the deadline
    lines = kube.log_lines(name)
    assert lines == [f"tick-{i}" for i in range(1, len(lines) + 1)], (
        f"the counter must run on without a restart or a gap: {_gaps(lines)}")
    pod = kube.get(name)
    cs = podstate.container_status(pod) or {}
    assert podstate.phase(pod) == "Running" and cs.get("restartCount") == 0 and podstate.container_id(cs) == cid, (
        f"the pod must keep running the same container (id {cid[:12] if cid else None}, no restart): "
        f"{podstate.describe(pod)}")
    marks.append(f"ticks and checks +{time.monotonic() - began:.1f}s")
    kube.delete_pod(name)
    kube.wait_gone(name)
    print("after the barrier: " + ", ".join(marks + [f"pod gone +{time.monotonic() - began:.1f}s"]))


def _last_tick(kube, name: str) -> int:
    tail = kube.ctx.logs(kube.ns, name, tail=1).strip()
    return int(tail.split("-")[1]) if tail.startswith("tick-") else 0


def _gaps(lines: list[str]) -> str:
    for i, v in enumerate(lines):
        if v != f"tick-{i + 1}":
            return f"line {i + 1} is {v!r} (around: {lines[max(0, i - 2):i + 3]!r}), {len(lines)} lines"
    return f"{len(lines)} lines"
