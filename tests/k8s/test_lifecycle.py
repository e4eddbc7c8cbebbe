"""S01-S05: lifecycle and exit status (start, stdout relay, exit codes, spawn failure, env, cwd)."""

from __future__ import annotations

from k8s_suite import manifests as m
from k8s_suite import podstate
from k8s_suite import timeouts as T
from k8s_suite.manifests import sh


def test_s01_echo_stdout(kube):
    name = kube.name("echo")
    kube.create(kube.pod("echo", ["/bin/echo", "Hello from Reaper!"]))
    pod = kube.wait_phase(name, "Succeeded")
    term = podstate.terminated(pod)
    assert term is not None and term.get("exitCode") == 0, f"expected exitCode 0: {podstate.describe(pod)}"
    lines = kube.log_lines(name)
    assert lines == ["Hello from Reaper!"], f"log: expected exactly ['Hello from Reaper!'], got {lines!r}"


START_FAILURES = ("StartError", "ContainerCannotRun")  # the kubelet's reasons for a container that never started


def test_s02_exit_code(kube):
    name = kube.name("exit42")
    kube.create(kube.pod("exit42", sh("exit 42")))
    pod = kube.wait_phase(name, "Failed")
    term = podstate.terminated(pod)
    assert term is not None, f"no terminated state: {podstate.describe(pod)}"
    assert term.get("exitCode") == 42, f"exitCode: expected 42, got {term.get('exitCode')!r}: {podstate.describe(pod)}"


def test_s03_command_not_found(kube):
    name = kube.name("notfound")
    kube.create(kube.pod("notfound", ["/nonexistent/binary"]))
    # Failed within the deadline: never stuck Pending/Running (the wait stops early on Succeeded)
    pod = kube.wait_phase(name, "Failed", timeout=T.POD_FINISH)
    term = podstate.terminated(pod)
    assert term is not None, f"Failed but no terminated container state: {podstate.describe(pod)}"
    code = term.get("exitCode")
    assert isinstance(code, int) and code != 0, f"exitCode: expected non-zero, got {code!r}: {podstate.describe(pod)}"
    reason, message = (term.get("reason") or "").strip(), term.get("message") or ""
    # what the kubelet records when the runtime refuses to start the process (runc: StartError, exit
    # 128, "exec: \"/nonexistent/binary\": stat /nonexistent/binary: no such file or directory"): a
    # start failure, not a program that ran and failed, and the user is told which binary is missing
    assert reason in START_FAILURES, (
        f"reason: expected a start failure ({' or '.join(START_FAILURES)}), got {reason or 'none'!r} with exit code "
        f"{code}: the runtime reported a missing binary as a process that ran and failed: {podstate.describe(pod)}")
    assert "/nonexistent/binary" in message, (
        f"the container's message does not name the missing binary /nonexistent/binary: {message!r}")
    print(f"spawn failure recorded as exitCode={code} reason={reason} message={message!r}")


def test_s04_env_vars(kube):
    name = kube.name("env")
    # printf instead of printenv: Debian's busybox (the suite's image) has no printenv applet
    kube.create(kube.pod("env", sh('printf "%s\\n" "$MY_VAR" "$EQ_VAR"'),
                         env={"MY_VAR": "reaper-env-ok", "EQ_VAR": "a=b=c"}))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert lines == ["reaper-env-ok", "a=b=c"], f"MY_VAR, EQ_VAR: expected ['reaper-env-ok', 'a=b=c'], got {lines!r}"


def test_s05_working_dir(kube):
    # a folder no runtime would default to (not /, /tmp or the image's WORKDIR), made by the pod spec
    # itself (an emptyDir mounted there): a runtime that ignores workingDir cannot print it
    cwd = f"/s05-cwd-{kube.token}"
    name = kube.name("cwd")
    kube.create(kube.pod("cwd", ["pwd"], working_dir=cwd, volumes=[m.emptydir_volume("cwd")], mounts=[m.mount("cwd", cwd)]))
    kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert lines == [cwd], f"pwd: expected [{cwd!r}] (the container's workingDir), got {lines!r}"
