"""critest (ci/critest.py, ci/phases/critest.py): command line, JUnit, verdict, build reuse, one-line errors.
Nothing here builds, connects to a socket or starts a process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from ci import critest as ct
from ci.cluster.base import ClusterInfo
from ci.contract import EXIT_SETUP
from ci.errors import SetupError, UsageError
from ci.phases import critest as phase
from ci.tools import Result

# ginkgo v2.25's JUnit reporter: one <testcase> per spec, "[It] " + full text, status attribute,
# <failure>/<error>/<skipped> children (reporters/junit_report.go).
JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="6" disabled="1" errors="1" failures="1" time="12.5">
  <testsuite name="CRI validation" package="/tmp" tests="6" disabled="0" skipped="1" errors="1" failures="1" time="12.5">
    <properties><property name="SuiteSucceeded" value="false"></property></properties>
    <testcase name="[BeforeSuite]" classname="CRI validation" status="passed" time="0.01"></testcase>
    <testcase name="[It] [k8s.io] PodSandbox runtime should support running PodSandbox [Conformance]" classname="CRI validation" status="passed" time="1.2">
      <system-err>STEP: create</system-err>
    </testcase>
    <testcase name="[It] [k8s.io] Networking runtime should support set hostname [Conformance]" classname="CRI validation" status="failed" time="3.4">
      <failure message="Expected hostname" type="failed">[FAILED] Expected &lt;string&gt;: host</failure>
    </testcase>
    <testcase name="[It] [k8s.io] Container OOM runtime should output OOMKilled reason should terminate with exitCode 137 and reason OOMKilled" classname="CRI validation" status="panicked" time="0.5">
      <error message="runtime error" type="panicked">panic</error>
    </testcase>
    <testcase name="[It] [k8s.io] Image Manager public image with tag should be pulled and removed [Conformance]" classname="CRI validation" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[It] [k8s.io] Security Context NamespaceOption runtime should support HostIpc is true" classname="CRI validation" status="passed" time="2.0"></testcase>
  </testsuite>
</testsuites>
"""
SANDBOX = "[k8s.io] PodSandbox runtime should support running PodSandbox [Conformance]"
HOSTNAME = "[k8s.io] Networking runtime should support set hostname [Conformance]"
OOM = "[k8s.io] Container OOM runtime should output OOMKilled reason should terminate with exitCode 137 and reason OOMKilled"
IMAGE = "[k8s.io] Image Manager public image with tag should be pulled and removed [Conformance]"
HOSTIPC = "[k8s.io] Security Context NamespaceOption runtime should support HostIpc is true"


def test_argv_shape(tmp_path):
    images = ct.images_file(tmp_path / "images.yaml", "docker.io/library/busybox:reaper-ci")
    a = ct.argv(Path("/c/critest"), "/run/reaper-ci/containerd.sock", "reaper-v2", tmp_path / "j.xml",
                images_file=images)
    assert a[0] == "/c/critest"
    assert "-runtime-endpoint=unix:///run/reaper-ci/containerd.sock" in a
    assert "-image-endpoint=unix:///run/reaper-ci/containerd.sock" in a  # overrides /etc/crictl.yaml too
    assert "-runtime-handler=reaper-v2" in a
    assert f"--ginkgo.junit-report={tmp_path / 'j.xml'}" in a and Path(a[-1].split("=", 1)[1]).is_absolute()
    assert f"--ginkgo.skip={ct.OFFLINE_SKIP}" in a and "Image Manager" in ct.OFFLINE_SKIP
    assert f"-test-images-file={images}" in a
    assert not any(x.startswith(("-parallel", "--ginkgo.focus", "-report-dir")) for x in a)
    assert f"--ginkgo.timeout={ct.SUITE_TIMEOUT}s" in a  # a spec hanging on the runtime cannot hold the run for 1 h
    assert yaml.safe_load(images.read_text()) == {"defaultTestContainerImage": "docker.io/library/busybox:reaper-ci",
                                                 "webServerTestImage": "docker.io/library/busybox:reaper-ci"}
    b = ct.argv(Path("c"), "unix:///s.sock", "h", Path("j.xml"), skip="", parallel=3, focus="Conformance")
    assert "-runtime-endpoint=unix:///s.sock" in b and "-parallel=3" in b and "--ginkgo.focus=Conformance" in b
    assert not any(x.startswith("--ginkgo.skip") for x in b)
    assert Path(b[-1].split("=", 1)[1]) == Path("j.xml").resolve()


def test_offline_skip_is_one_regex_of_named_groups():
    import re

    rx = re.compile(ct.OFFLINE_SKIP)
    assert rx.search(IMAGE) and rx.search("[k8s.io] Security Context NamespaceOption runtime should support HostPID")
    assert not rx.search(SANDBOX) and not rx.search(HOSTNAME) and not rx.search(HOSTIPC)


def test_parse_junit(tmp_path):
    (tmp_path / "j.xml").write_text(JUNIT)
    assert ct.parse_junit(tmp_path / "j.xml") == {
        "[BeforeSuite]": "passed", SANDBOX: "passed", HOSTNAME: "failed", OOM: "failed", IMAGE: "skipped",
        HOSTIPC: "passed"}


def test_unreadable_junit_is_a_setup_error(tmp_path):
    (tmp_path / "j.xml").write_text("<testsuites><testcase")
    with pytest.raises(SetupError, match="cannot be read"):
        ct.parse_junit(tmp_path / "j.xml")


def _results(tmp_path):
    (tmp_path / "j.xml").write_text(JUNIT)
    return ct.parse_junit(tmp_path / "j.xml")


def test_judge_every_category(tmp_path):
    expected = [ct.Entry(HOSTNAME, "no UTS namespace"),  # fails: expected
                ct.Entry(r".*HostIpc is true", "a regex entry"),  # passes: now passing (fatal)
                ct.Entry(IMAGE, "skipped in this run"),  # not run
                ct.Entry("[k8s.io] Gone spec", "absent")]  # not run
    v = ct.judge(_results(tmp_path), expected)
    assert v.unexpected_failures == [OOM]
    assert v.expected_failed == [(HOSTNAME, "no UTS namespace")]
    assert v.now_passing == [(HOSTIPC, r".*HostIpc is true")]
    assert v.not_run == [IMAGE, "[k8s.io] Gone spec"]
    assert (v.passed, v.failed, v.skipped) == (2, 2, 1)  # a passing [BeforeSuite] is not a spec
    assert not v.ok
    text = ct.table(v)
    assert OOM in text and "now-passing" in text and "FAILED" in text.splitlines()[-1]


def test_judge_ok_only_when_the_list_is_exact(tmp_path):
    results = _results(tmp_path)
    exact = [ct.Entry(HOSTNAME, "r1"), ct.Entry(OOM, "r2"), ct.Entry(IMAGE, "skipped: reported, not fatal")]
    v = ct.judge(results, exact)
    assert v.ok and v.not_run == [IMAGE] and not v.unexpected_failures and not v.now_passing
    assert ct.table(v).splitlines()[-1] == "critest verdict: OK"
    assert not ct.judge(results, exact[:1]).ok  # OOM unlisted
    assert not ct.judge({IMAGE: "skipped"}, []).ok  # nothing ran is never green
    assert not ct.judge({"[BeforeSuite]": "passed", IMAGE: "skipped"}, []).ok
    assert ct.judge({"[AfterSuite]": "failed", SANDBOX: "passed"}, []).unexpected_failures == ["[AfterSuite]"]


def test_expected_list_needs_a_reason(tmp_path):
    f = tmp_path / "expected-reaper.yaml"
    f.write_text("- spec: a\n  reason: because\n- spec: b\n  reason: '  '\n")
    with pytest.raises(UsageError) as e:
        ct.load_expected(f)
    assert str(f) in str(e.value) and "entry 2" in str(e.value) and "reason" in str(e.value)
    f.write_text("- spec: a\n")
    with pytest.raises(UsageError, match="entry 1"):
        ct.load_expected(f)
    f.write_text("- spec: a\n  reason: r\n  note: x\n")
    with pytest.raises(UsageError, match="only `spec` and `reason`"):
        ct.load_expected(f)
    f.write_text("# header only\n[]\n")
    assert ct.load_expected(f) == []


def test_checked_in_lists_load():
    for runtime in ("reaper", "runc"):
        assert isinstance(ct.load_expected(phase.EXPECTED_DIR / f"expected-{runtime}.yaml"), list)
    # runc's list names only the offline test image's gaps (each with its reason), nothing of runc's
    runc = ct.load_expected(phase.EXPECTED_DIR / "expected-runc.yaml")
    assert runc and all(e.reason.startswith("test image:") for e in runc)


def test_build_reuses_a_cached_binary_without_go(tmp_path):
    out = ct.tool_dir(tmp_path)
    out.mkdir(parents=True)
    for b in ("critest", "ginkgo"):
        (out / b).write_text("#!/bin/sh\n")
    calls = []

    def runner(argv, **kw):
        calls.append(argv)
        return Result(1, "", "must not run")

    assert ct.build(tmp_path, tmp_path / "build.log", runner=runner) == out / "critest"
    assert calls == []


def test_build_failure_is_a_setup_error_naming_the_log(tmp_path):
    calls = []

    def runner(argv, **kw):
        calls.append(argv)
        return Result(1, "", "go: 403 Forbidden")

    with pytest.raises(SetupError) as e:
        ct.build(tmp_path, tmp_path / "build.log", runner=runner)
    assert str(tmp_path / "build.log") in str(e.value) and "403 Forbidden" in str(e.value)
    assert calls[0][:4] == ["go", "mod", "download", "-json"] and len(calls) == 1
    assert not ct.tool_dir(tmp_path).exists()  # no half build left looking complete


def test_wrapper_pins_both_modules():
    mod = ct.wrapper_gomod("1.24.1")
    assert "sigs.k8s.io/cri-tools v1.34.0" in mod and "github.com/onsi/ginkgo/v2 v2.25.0" in mod


# --------------------------------------------------------------------------- the phase's one-line errors


class Reached(Exception):
    pass


@pytest.fixture
def nothing_slow(monkeypatch):
    def build(*a, **kw):
        raise Reached("build")

    monkeypatch.setattr(ct, "build", build)
    monkeypatch.setattr(phase.os, "geteuid", lambda: 0)
    monkeypatch.delenv("REAPER_RUNTIME", raising=False)


def _argv(tmp_path, *extra):
    return ["--state-dir", str(tmp_path / "state"), "--artifacts", str(tmp_path / "art"),
            "--cache-dir", str(tmp_path / "cache"), *extra]


def _info(tmp_path, **kw) -> ClusterInfo:
    sock = tmp_path / "containerd.sock"
    sock.write_text("")
    info = ClusterInfo(provisioner="local", name="reaper-ci", kubeconfig="k", runtime="runc", runtime_class="reaper-v2",
                       shim_process="containerd-shim-runc-v2", nodes=("n",), image="docker.io/library/busybox:reaper-ci",
                       node_access="local", containerd_address=str(sock))
    info = dataclasses.replace(info, **kw)
    info.save(tmp_path / "state" / "cluster.json")
    return info


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_no_cluster_json(tmp_path, nothing_slow, capsys):
    assert phase.main(_argv(tmp_path, "--runtime", "reaper")) == EXIT_SETUP
    assert "run `nox -s cluster -- up --runtime reaper` first" in _one_line(capsys)


def test_runtime_mismatch(tmp_path, nothing_slow, capsys):
    _info(tmp_path, runtime="runc")
    assert phase.main(_argv(tmp_path, "--runtime", "reaper")) == EXIT_SETUP
    line = _one_line(capsys)
    assert "cluster runs runc" in line and "`nox -s cluster -- up --runtime reaper`" in line


def test_a_kind_cluster_is_refused(tmp_path, nothing_slow, capsys):
    _info(tmp_path, provisioner="kind", node_access="docker")
    assert phase.main(_argv(tmp_path)) == EXIT_SETUP
    assert "--provisioner local" in _one_line(capsys)


def test_matching_cluster_goes_on_to_the_build(tmp_path, nothing_slow):
    _info(tmp_path, runtime="reaper")
    with pytest.raises(Reached):
        phase.main(_argv(tmp_path, "--runtime=reaper"))  # no --source needed: critest builds no runtime
    with pytest.raises(Reached):
        phase.main(_argv(tmp_path))  # auto: whatever the cluster runs


def test_not_root_is_a_usage_error_before_anything(tmp_path, nothing_slow, monkeypatch):
    monkeypatch.setattr(phase.os, "geteuid", lambda: 1000)
    with pytest.raises(UsageError, match="must run as root"):
        phase.main(_argv(tmp_path))
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("argv, match", [
    (["--runtime", "crun"], "invalid choice"),
    (["--parallel", "0"], "--parallel 0"),
    (["--focus", "("], "not a regular expression"),
    (["--bogus"], "unknown option --bogus"),
])
def test_bad_flags(tmp_path, nothing_slow, argv, match):
    with pytest.raises(UsageError, match=match):
        phase.main(_argv(tmp_path, *argv))


def test_own_options_leave_the_rest_to_the_config():
    opts, rest = phase.options(["--parallel", "2", "--focus", "Conformance", "--artifacts", "a"], {"REAPER_RUNTIME": "runc"})
    assert opts == phase.Options("runc", 2, "Conformance") and rest == ["--artifacts", "a"]
    opts, rest = phase.options(["--runtime-class", "rc", "--runtime", "reaper", "--runtime-binary=x"], {})
    assert opts.runtime == "reaper" and rest == ["--runtime-class", "rc", "--runtime-binary=x"]
