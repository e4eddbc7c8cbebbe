"""Phase 1 test-binary runner: libtest JSON and text parsing, crashes, deadlines, fallbacks.

The "test binaries" here are small Python scripts that print what libtest prints, so every
path (crash mid-test, hang, a libtest that refuses the JSON flags) runs as a real process.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ci.cargo import Target
from ci.cargo_libtest import JsonEvents, TargetResult, parse_text, result_filename, run_target


def ev(**kw) -> str:
    return json.dumps(kw)


def fake_binary(tmp_path: Path, body: str, name: str = "fake_test") -> Target:
    """A Target whose executable is a Python script; ``body`` sees ``argv`` and ``emit(dict)``."""
    pkg = tmp_path / "pkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "Cargo.toml").write_text("")
    exe = tmp_path / name
    exe.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import json, os, sys, time, signal, subprocess
        argv = sys.argv[1:]
        def emit(d):
            print(json.dumps(d), flush=True)
        """) + textwrap.dedent(body))
    exe.chmod(0o755)
    return Target(id=name, name=name, kind="test", package="pkg", package_id="P", manifest_path=str(pkg / "Cargo.toml"),
                  src_path="", executable=str(exe))


def run(t: Target, timeout: float = 30, **kw) -> TargetResult:
    lines: list[str] = []
    r = run_target(t, env=dict(os.environ), timeout=timeout, echo=lines.append, **kw)
    r.echoed = "".join(lines)  # type: ignore[attr-defined]
    return r


def test_json_events_to_cases():
    e = JsonEvents()
    for event in [
        {"type": "suite", "event": "started", "test_count": 4},
        {"type": "test", "event": "started", "name": "a"},
        {"type": "test", "event": "ok", "name": "a", "exec_time": 0.5},
        {"type": "test", "event": "ignored", "name": "b", "message": "slow"},
        {"type": "test", "event": "started", "name": "c"},
        {"type": "test", "event": "failed", "name": "c", "exec_time": 0.25,
         "stdout": "thread 'c' (7) panicked at tests/x.rs:12:5:\nboom\n"},
        {"type": "test", "event": "started", "name": "d"},
    ]:
        e.feed(event)
    extra = e.finish(134, "the test binary stopped (killed by SIGABRT)")
    got = {c.name: c for c in e.cases.values()}
    assert (got["a"].result, got["a"].seconds) == ("passed", 0.5)
    assert (got["b"].result, got["b"].message) == ("ignored", "slow")
    assert (got["c"].result, got["c"].message, got["c"].file, got["c"].line) == ("failed", "boom", "tests/x.rs", 12)
    assert [c.name for c in extra] == ["d"] and got["d"].message == "did not finish: the test binary stopped (killed by SIGABRT)"


TEXT = """\
running 4 tests
test tests::ok ... ok
test tests::slow ... ignored, needs a node
test src/lib.rs - double (line 3) ... ok
test tests::bad ... FAILED

failures:

---- tests::bad stdout ----
some output

thread 'tests::bad' panicked at src/lib.rs:9:5:
assertion failed: false
note: run with `RUST_BACKTRACE=1`

failures:
    tests::bad

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s
"""


def test_parse_text():
    got = {c.name: c for c in parse_text(TEXT)}
    assert {n: c.result for n, c in got.items()} == {"tests::ok": "passed", "tests::slow": "ignored",
                                                      "src/lib.rs - double (line 3)": "passed", "tests::bad": "failed"}
    assert got["tests::slow"].message == "needs a node"
    bad = got["tests::bad"]
    assert bad.message == "assertion failed: false" and (bad.file, bad.line) == ("src/lib.rs", 9)
    assert "some output" in bad.output and "failures:" not in bad.output


def test_run_json_binary(tmp_path):
    t = fake_binary(tmp_path, """
        assert argv == ["--format", "json", "-Z", "unstable-options", "--report-time"], argv
        assert os.environ["RUSTC_BOOTSTRAP"] == "1"
        assert os.getcwd() == os.path.dirname(os.path.abspath(__file__)) + "/pkg"
        emit({"type": "suite", "event": "started", "test_count": 2})
        emit({"type": "test", "event": "started", "name": "good"})
        emit({"type": "test", "event": "ok", "name": "good", "exec_time": 0.125})
        print("plain line from the test binary", flush=True)
        emit({"type": "test", "event": "started", "name": "bad"})
        emit({"type": "test", "event": "failed", "name": "bad", "exec_time": 0.5,
              "stdout": "thread 'bad' panicked at tests/t.rs:3:9:\\nno good\\n"})
        emit({"type": "suite", "event": "failed", "passed": 1, "failed": 1})
        sys.exit(101)
    """)
    raw = tmp_path / "raw.log"
    r = run(t, raw_log=raw)
    assert r.exit_code == 101 and not r.ok and r.fmt == "json"
    assert [(c.name, c.result, c.seconds) for c in r.cases] == [("bad", "failed", 0.5), ("good", "passed", 0.125)]
    assert r.cases[0].message == "no good"
    assert "ok       fake_test::good (0.12s)" in r.echoed and "FAILED   fake_test::bad" in r.echoed
    assert "plain line from the test binary" in r.echoed
    assert '"name": "good"' in raw.read_text()


def test_nonzero_exit_without_failing_test_is_an_error(tmp_path):
    t = fake_binary(tmp_path, """
        emit({"type": "suite", "event": "started", "test_count": 0})
        print("fatal: could not set up", file=sys.stderr, flush=True)
        sys.exit(3)
    """)
    r = run(t)
    assert not r.ok
    (case,) = r.cases
    assert case.result == "error" and case.name == "<test binary>"
    assert "exit 3" in case.message and "fatal: could not set up" in case.message


def test_crash_mid_test_fails_the_running_test(tmp_path):
    t = fake_binary(tmp_path, """
        emit({"type": "suite", "event": "started", "test_count": 2})
        emit({"type": "test", "event": "started", "name": "first"})
        emit({"type": "test", "event": "ok", "name": "first", "exec_time": 0.01})
        emit({"type": "test", "event": "started", "name": "crasher"})
        os.kill(os.getpid(), signal.SIGABRT)
    """)
    r = run(t)
    assert r.exit_code == -6
    got = {c.name: c for c in r.cases}
    assert got["first"].result == "passed"
    assert got["crasher"].result == "failed" and "killed by SIGABRT" in got["crasher"].message


def test_deadline_kills_the_binary_and_names_the_hanging_test(tmp_path):
    t = fake_binary(tmp_path, """
        emit({"type": "suite", "event": "started", "test_count": 1})
        emit({"type": "test", "event": "started", "name": "hangs"})
        time.sleep(600)
    """)
    start = time.monotonic()
    r = run(t, timeout=1.5)
    assert time.monotonic() - start < 15
    assert r.timed_out and not r.ok
    (case,) = r.cases
    assert case.name == "hangs" and case.result == "failed" and case.message == "did not finish: timed out after 1.5s"


def test_grandchild_holding_the_pipe_does_not_block(tmp_path):
    t = fake_binary(tmp_path, """
        subprocess.Popen(["sleep", "30"])  # inherits stdout/stderr and outlives the binary
        emit({"type": "suite", "event": "started", "test_count": 1})
        emit({"type": "test", "event": "started", "name": "spawns"})
        emit({"type": "test", "event": "ok", "name": "spawns", "exec_time": 0.01})
    """)
    start = time.monotonic()
    r = run(t, timeout=60)
    assert time.monotonic() - start < 10
    assert r.ok and [c.name for c in r.cases] == ["spawns"]


def test_libtest_refusing_json_flags_falls_back_to_text(tmp_path):
    t = fake_binary(tmp_path, f"""
        if "-Z" in argv:
            print("error: the option `Z` is only accepted on the nightly compiler", file=sys.stderr)
            sys.exit(101)
        sys.stdout.write({TEXT!r})
        sys.exit(101)
    """)
    r = run(t)
    assert r.fmt == "text" and "-Z" not in r.command
    assert {c.name: c.result for c in r.cases}["tests::bad"] == "failed"
    assert "rejected --format json" in r.echoed


def test_harness_false_is_one_case_by_exit_status(tmp_path):
    t = fake_binary(tmp_path, """
        assert argv == [], argv
        print("custom main failing", flush=True)
        sys.exit(2)
    """)
    t.harness = False
    r = run(t)
    assert r.fmt == "exit-status" and not r.ok
    (case,) = r.cases
    assert (case.name, case.result, case.message) == ("fake_test", "failed", "custom main failing")


def test_result_json_round_trip(tmp_path):
    t = fake_binary(tmp_path, """
        emit({"type": "test", "event": "started", "name": "x"})
        emit({"type": "test", "event": "ok", "name": "x", "exec_time": 0.1})
    """)
    r = run(t)
    back = TargetResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back.cases == r.cases and back.ok
    data = r.to_json()
    data["added_later"] = 1
    data["cases"][0]["also_new"] = 2
    assert TargetResult.from_json(data).cases == r.cases  # a newer writer does not crash an older reader


@pytest.mark.parametrize("tid, name", [("integration_io", "integration_io"), ("doc:reaper", None),
                                       ("pkg/test:it", None)])
def test_result_filename(tid, name):
    got = result_filename(tid)
    assert "/" not in got and ":" not in got
    if name:
        assert got == name
    assert result_filename("doc:reaper") != result_filename("doc_reaper")


@pytest.mark.parametrize("original, seen", [(None, "unset"), ("mycrate", "mycrate")])
def test_shims_undo_our_rustc_bootstrap(tmp_path, original, seen):
    """A cargo/rustc a test starts sees the user's RUSTC_BOOTSTRAP, not the one given to libtest."""
    real = tmp_path / "real"
    real.mkdir()
    for name in ("cargo", "rustc"):
        (real / name).write_text(f'#!/bin/sh\necho "{name} ${{RUSTC_BOOTSTRAP-unset}} $*"\n')
        (real / name).chmod(0o755)
    from ci.cargo_proc import bootstrap_env, write_shims

    shims = write_shims(tmp_path / "shims", original, path=str(real))
    assert sorted(p.name for p in shims.iterdir()) == ["cargo", "rustc"]  # no rustdoc on this PATH
    env = bootstrap_env({"PATH": f"{real}:/usr/bin:/bin"}, shims)
    assert env["RUSTC_BOOTSTRAP"] == "1" and env["CARGO"] == str(shims / "cargo")
    import subprocess

    out = subprocess.run(["cargo", "build", "--x y"], env=env, capture_output=True, text=True, check=True).stdout
    assert out == f"cargo {seen} build --x y\n"
    out = subprocess.run([env["CARGO"], "-V"], env=env, capture_output=True, text=True, check=True).stdout
    assert out == f"cargo {seen} -V\n"


def test_interrupt_kills_the_binary(tmp_path):
    """Ctrl-C while a target runs must not leave its test binary (in its own session) behind."""
    from ci.cargo_proc import _stream

    pidfile = tmp_path / "pid"
    t = fake_binary(tmp_path, f"""
        open({str(pidfile)!r}, "w").write(str(os.getpid()))
        print("started", flush=True)
        time.sleep(600)
    """)

    def on_line(stream, line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _stream([t.executable], str(tmp_path), dict(os.environ), 60, on_line)
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("kill", [True, False])
def test_processes_left_behind_are_reported_and_terminated(tmp_path, kill):
    """A daemon a test started from the cargo target folder is listed, and stopped unless told not to."""
    import shutil

    target_dir = tmp_path / "target"
    target_dir.mkdir()
    daemon = target_dir / "daemon-sleep"
    shutil.copy(shutil.which("sleep"), daemon)
    pidfile = tmp_path / "daemon.pid"
    t = fake_binary(tmp_path, f"""
        p = subprocess.Popen([{str(daemon)!r}, "300"], start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        open({str(pidfile)!r}, "w").write(str(p.pid))
        emit({{"type": "test", "event": "started", "name": "spawns_daemon"}})
        emit({{"type": "test", "event": "ok", "name": "spawns_daemon", "exec_time": 0.01}})
    """)
    r = run(t, leftovers_under=target_dir, kill_leftovers=kill)
    pid = int(pidfile.read_text())
    try:
        assert r.ok  # leftovers are reported, not a test failure
        assert r.leftovers == [f"{pid} {daemon} 300"]
        assert f"fake_test left 1 process(es) running; {'terminated' if kill else 'left running'}" in r.echoed
        from ci.cargo_proc import _alive

        assert _alive(pid) is (not kill)
    finally:
        if not kill:
            os.kill(pid, 9)


def test_libtests_sixty_second_warning_is_not_a_verdict():
    """libtest's ``timeout`` event says a test has run for over 60 s; the test goes on and ends ok."""
    e = JsonEvents()
    assert e.feed({"type": "test", "event": "started", "name": "slow"}) is None
    assert e.feed({"type": "test", "event": "timeout", "name": "slow"}) is None
    assert "slow" in e.running and "slow" not in e.cases
    done = e.feed({"type": "test", "event": "ok", "name": "slow", "exec_time": 136.6})
    assert done.result == "passed" and e.cases["slow"].result == "passed" and not e.running
