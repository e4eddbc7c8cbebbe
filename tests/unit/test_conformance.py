"""nox -s conformance: which specs run, the admission policy, the e2e images' names, the proof."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci.cluster.base import ClusterInfo
from ci.conformance import build, images, policy, specs
from ci.conformance.proof import Records
from ci.errors import SetupError, UsageError
from ci.phases import conformance

MANIFEST = '''
	initRegistry = RegistryList{
		PromoterE2eRegistry:     "registry.k8s.io/e2e-test-images",
		GcRegistry:              "registry.k8s.io",
	}
	configs[Agnhost] = Config{list.PromoterE2eRegistry, "agnhost", "2.53"}
	configs[BusyBox] = Config{list.PromoterE2eRegistry, "busybox", "1.36.1-1"}
	configs[NonRoot] = Config{list.PromoterE2eRegistry, "nonroot", "1.4"}
	configs[Pause] = Config{list.GcRegistry, "pause", "3.10"}
	configs[Nginx] = Config{list.PromoterE2eRegistry, "nginx", "1.14-4"}
'''

PRIVILEGED = "[sig-node] PrivilegedPod [NodeConformance] should enable privileged commands [LinuxOnly]"
UNPRIVILEGED = ("[sig-node] Security Context When creating a pod with privileged should run the container as "
                "unprivileged when false [LinuxOnly] [NodeConformance] [Conformance]")
PULL = "[sig-node] Container Runtime blackbox test when running a container with a new image should be able to pull image [NodeConformance]"
LOGS = "[sig-node] Kubelet when scheduling a busybox command in a pod should print the output to logs [NodeConformance] [Conformance]"


def test_node_changing_specs_are_skipped_only_when_the_runtime_does_not_isolate():
    assert specs.skipped_by(PRIVILEGED, isolating=True) is None
    assert specs.skipped_by(PRIVILEGED, isolating=False) == (
        "runs `ip link add` as a privileged container: on a runtime without isolation that adds a link to the node")
    assert specs.skipped_by(UNPRIVILEGED, isolating=False) == (
        "runs `ip link add dummy0 type dummy` expecting it to fail: on a runtime without isolation it adds dummy0 to the node")
    assert specs.skipped_by(PULL, isolating=True) == (
        "pulls a public image: no registry is reachable here (and pulls are containerd's, not the runtime's)")
    assert specs.skipped_by(LOGS, isolating=False) is None
    assert "ip link" not in specs.skip_regex(True) and "PrivilegedPod" in specs.skip_regex(False)
    assert specs.skip_regex(True).startswith(specs.SKIP_TAGS)


def test_the_policy_sets_the_runtime_class_of_e2e_pods_only():
    pol, binding = policy.manifests("reaper-v2", "v1.33.13")
    assert pol["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1alpha1"
    assert policy.api_version("v1.35.8") == "admissionregistration.k8s.io/v1beta1"
    assert pol["spec"]["mutations"][0]["applyConfiguration"]["expression"] == \
        'Object{spec: Object.spec{runtimeClassName: "reaper-v2"}}'
    assert pol["spec"]["matchConditions"][0]["expression"] == "!has(object.spec.runtimeClassName)"  # a spec's own RuntimeClass stays
    assert pol["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "e2e-framework", "operator": "Exists"}]


class FakeRunner:
    def __init__(self, rc=0, err=""):
        self.calls, self.rc, self.err = [], rc, err

    def __call__(self, argv, check=False, input=None, stderr=True, timeout=None):
        from ci.tools import Result

        self.calls.append((argv, input))
        return Result(self.rc, "", self.err)


def test_policy_install_is_one_kubectl_apply_and_a_refusal_is_one_line():
    ok = FakeRunner()
    policy.Policy("/k", None, ok).install("reaper-v2", "v1.33.13")
    argv, doc = ok.calls[0]
    assert argv == ["kubectl", "--kubeconfig", "/k", "apply", "-f", "-"] and '"MutatingAdmissionPolicyBinding"' in doc
    bad = FakeRunner(1, 'error: resource mapping not found for name: "x": no matches for kind "MutatingAdmissionPolicy"')
    with pytest.raises(SetupError, match="cannot be installed .*feature-gates=MutatingAdmissionPolicy=true.*no matches for kind"):
        policy.Policy("/k", "ctx", bad).install("reaper-v2", "v1.33.13")
    assert bad.calls[0][0][:5] == ["kubectl", "--kubeconfig", "/k", "--context", "ctx"]


def test_image_names_come_from_the_versions_manifest():
    refs = images.manifest(MANIFEST)
    assert refs["BusyBox"].ref == "registry.k8s.io/e2e-test-images/busybox:1.36.1-1"
    assert refs["Pause"].ref == "registry.k8s.io/pause:3.10" and refs["Agnhost"].ref.endswith("/agnhost:2.53")
    with pytest.raises(SetupError, match="no Agnhost"):
        images.manifest(MANIFEST.replace("configs[Agnhost]", "configs[Other]"))


def test_proof_needs_every_e2e_pod_on_the_handler():
    r = Records()
    r.pods = {"u1": ("e2e-a/p1", "reaper-v2"), "u2": ("e2e-b/p2", "reaper-v2"), "u3": ("e2e-c/rc", "test-handler")}
    r.containers = {"c1": ("u1", "io.containerd.reaper.v2"), "c2": ("u2", "io.containerd.reaper.v2"), "x": ("other", "io.containerd.runc.v2")}
    ok, line = r.verdict("reaper-v2", "io.containerd.reaper.v2")
    assert ok and line.startswith("2 e2e pod(s) with RuntimeClass reaper-v2 (API), 2 of their containers on io.containerd.reaper.v2")
    r.pods["u4"] = ("e2e-d/p4", None)
    r.containers["c4"] = ("u1", "io.containerd.runc.v2")
    ok, line = r.verdict("reaper-v2", "io.containerd.reaper.v2")
    assert not ok and "WITHOUT RuntimeClass: e2e-d/p4" in line and "on another runtime: e2e-a/p1 (io.containerd.runc.v2)" in line
    assert not Records().verdict("reaper-v2", "x")[0]  # nothing seen proves nothing


def test_options_and_ginkgo_command_line(tmp_path):
    assert conformance.options(["--parallel", "3", "--runtime", "runc"], {})[::2] == (3, ["--runtime", "runc"])
    with pytest.raises(UsageError, match="--parallel 0"):
        conformance.options(["--parallel", "0"], {})
    info = ClusterInfo("local", "c", "/kc", "reaper", "reaper-v2", "s", ("n",), "img", "local")
    argv = conformance.ginkgo_argv(build.Built(tmp_path, None), info, tmp_path / "out", 4, False, None)
    sep = argv.index("--")
    assert argv[0] == str(tmp_path / "ginkgo") and "--procs=4" in argv and argv[sep - 1] == str(tmp_path / "e2e.test")
    assert "--label-filter=sig-node && NodeConformance" in argv[:sep] and not any(a.startswith("--focus") for a in argv)
    assert any("PrivilegedPod" in a for a in argv[:sep] if a.startswith("--skip="))
    narrowed = conformance.ginkgo_argv(build.Built(tmp_path, None), info, tmp_path / "out", 4, False, "Lifecycle Hook")
    assert "--focus=Lifecycle Hook" in narrowed  # one focus: it narrows the labelled specs, never widens them
    assert "--kubeconfig=/kc" in argv[sep:] and "--provider=skeleton" in argv[sep:]


def test_the_suite_file_is_shipped_and_registers_e2e_flags():
    text = build.SUITE.read_text()
    assert 'k8s.io/kubernetes/test/e2e/common/node"' in text and "framework.RegisterClusterFlags" in text
    assert Path(build.SUITE).name.endswith(".txt")  # not compiled as part of anything here


def test_the_policy_is_proven_active_before_e2e_starts():
    from ci.tools import Result

    answers = iter(['{"spec": {}}', '{"spec": {}}', '{"spec": {"runtimeClassName": "reaper-v2"}}'])

    class Runner(FakeRunner):
        def __call__(self, argv, check=False, input=None, stderr=True, timeout=None):
            self.calls.append((argv, input))
            return Result(0, next(answers) if "--dry-run=server" in argv else "")

    now = [0.0]
    r = Runner()
    took = policy.Policy("/k", None, r).wait_active("reaper-v2", sleep=lambda s: now.__setitem__(0, now[0] + s),
                                                     clock=lambda: now[0])
    assert took == 1.0 and sum("--dry-run=server" in a for a, _ in r.calls) == 3
    assert '"e2e-framework": "probe"' in r.calls[0][1]  # the probe's namespace is labelled like e2e's
    answers = iter(['{"spec": {}}'] * 1000)
    with pytest.raises(SetupError, match="still do not get RuntimeClass reaper-v2 after 60s"):
        policy.Policy("/k", None, Runner()).wait_active("reaper-v2", sleep=lambda s: now.__setitem__(0, now[0] + s),
                                                        clock=lambda: now[0])


PAUSE = "registry.k8s.io/pause:3.10"
HOST_IP = "[sig-node] Pods should get a host IP [NodeConformance] [Conformance]"
JUNIT = '''<testsuites><testsuite name="e2e">
<testcase name="[It] {host_ip}" status="passed"><system-err>STEP: Destroying namespace "pods-1" for this suite. - x</system-err></testcase>
<testcase name="[It] {logs}" status="passed"><system-err>STEP: Destroying namespace "kubelet-test-2" for this suite. - x</system-err></testcase>
<testcase name="[It] [sig-node] InitContainer should not start app containers" status="passed"><system-err>Destroying namespace "init-container-3" for this suite.</system-err></testcase>
</testsuite></testsuites>'''


def _pod(name, image, started, uid="u"):
    status = {"containerStatuses": [{"name": "c", "image": image, **({"containerID": "containerd://1"} if started else {})}]}
    return {"metadata": {"name": name, "uid": uid + name}, "spec": {"containers": [{"name": "c", "image": image}]}, "status": status}


def test_a_pass_that_ran_the_pause_image_as_a_workload_judges_nothing_on_reaper(tmp_path):
    from ci.conformance import unjudged

    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT.format(host_ip=HOST_IP, logs=LOGS))
    r = Records()
    r.see("pods-1", _pod("pod-hostip", PAUSE, started=True), PAUSE)
    r.see("kubelet-test-2", _pod("busybox", "registry.k8s.io/e2e-test-images/busybox:1.36.1-1", started=True), PAUSE)
    r.see("init-container-3", _pod("init-fails", PAUSE, started=False), PAUSE)  # never created: its check holds
    assert r.pause_pods == {"pods-1": {"pod-hostip"}} and r.pods["upod-hostip"] == ("pods-1/pod-hostip", None)
    spaces = unjudged.spec_namespaces(junit)
    assert spaces[HOST_IP] == {"pods-1"} and spaces[LOGS] == {"kubelet-test-2"}
    results = {HOST_IP: "passed", LOGS: "passed", "[sig-node] InitContainer should not start app containers": "passed"}
    hollow = unjudged.not_judged(results, spaces, r.pause_pods, "reaper")
    assert hollow == {HOST_IP: "ran the pause image as a workload (pods-1/pod-hostip): " + unjudged.PAUSE_IS_SANDBOX["reaper"]}
    assert unjudged.not_judged(results, spaces, r.pause_pods, "runc") == {}  # runc runs pause's process
    assert unjudged.not_judged({**results, HOST_IP: "failed"}, spaces, r.pause_pods, "reaper") == {}  # a failure stays one
