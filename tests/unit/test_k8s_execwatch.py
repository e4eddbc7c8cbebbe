"""The exec watch: an exec whose process is gone while its stream stays open is judged early."""

import os
import subprocess

import _k8s_path  # noqa: F401
from k8s_suite import execwatch as ew

SLEEP = "7 sleep 9999\n"  # the pod's main process, there before the exec


def test_the_pods_processes_are_read_by_pid():
    assert ew.parse("12 /bin/sh -c exit 42 \n7 sleep 9999\njunk\n") == {12: "/bin/sh -c exit 42", 7: "sleep 9999"}


def test_only_processes_that_were_there_before_the_exec_mean_nothing_of_it_is_left():
    argv = ["/bin/sh", "-c", "exit 42"]
    assert ew.judge({7: "sleep 9999"}, argv, {7}).startswith("every process of the pod (1) was there before")
    assert ew.judge({7: "sleep 9999", 30: "od -An"}, argv, {7}) is None  # a process came since: maybe the exec's
    assert ew.judge({7: "/bin/sh -c exit 42"}, argv, {7}) is None  # runs the exec's command line


def _watch(answers, now):
    return ew.Watch(["/bin/sh", "-c", "exit 1"], lambda: answers.pop(0) if len(answers) > 1 else answers[0],
                    clock=lambda: now[0])


def test_judged_only_after_the_exec_had_time_and_two_looks_found_nothing_new():
    now, looks = [0.0], []
    w = ew.Watch(["/bin/sh", "-c", "exit 1"], lambda: looks.append(now[0]) or SLEEP, clock=lambda: now[0])
    assert looks == [0.0] and w.baseline == {7}  # the baseline, read before the exec is requested
    for t in (1, 5, 9.9):
        now[0] = t
        assert w.check() is None
    assert looks == [0.0]  # nothing looked at before AFTER
    now[0] = ew.AFTER
    assert w.check() is None  # the first look that finds nothing new
    now[0] = ew.AFTER + 1
    assert w.check() is None and len(looks) == 2  # not looked at again before EVERY
    now[0] = ew.AFTER + ew.CONFIRM
    assert w.check().startswith("every process of the pod")


def test_a_new_process_between_the_looks_starts_the_confirmation_again():
    now = [0.0]
    w = _watch([SLEEP, SLEEP, SLEEP + "40 od\n", SLEEP], now)
    now[0] = ew.AFTER
    assert w.check() is None
    now[0] += ew.EVERY
    assert w.check() is None  # a process came since the exec: the wait goes on
    now[0] += ew.EVERY
    assert w.check() is None  # nothing new again, but only once so far
    now[0] += ew.EVERY
    assert w.check() is not None


def test_no_baseline_no_early_judgement():
    now = [ew.AFTER * 3]
    empty = ew.Watch(["x"], lambda: "", clock=lambda: now[0])  # the pod's processes are not found by HOSTNAME

    def fails():
        raise OSError("node gone")

    broken = ew.Watch(["x"], fails, clock=lambda: now[0])
    for _ in range(4):
        now[0] += ew.EVERY
        assert empty.check() is None and broken.check() is None
    assert empty.baseline is None and broken.baseline is None


def test_the_node_script_lists_the_processes_of_one_hostname():
    host = f"ew-test-{os.getpid()}"
    sleeper = subprocess.Popen(["sleep", "77.5"], env=dict(os.environ, HOSTNAME=host))
    try:
        out = subprocess.run(["sh", "-c", ew.script(host)], capture_output=True, text=True, check=True,
                             env={k: v for k, v in os.environ.items() if k != "HOSTNAME"}).stdout
        assert ew.parse(out) == {sleeper.pid: "sleep 77.5"}
    finally:
        sleeper.kill()
        sleeper.wait()
