"""Every e2e pod on the handler under test: a MutatingAdmissionPolicy.

e2e has no flag for a RuntimeClass. A MutatingAdmissionPolicy (alpha ``v1alpha1`` in Kubernetes
1.32-1.33, beta ``v1beta1`` from 1.34; the local cluster's apiserver serves it) sets
``runtimeClassName`` on every pod created without one in a namespace e2e made (label
``e2e-framework``); specs that name a RuntimeClass themselves keep theirs. Nothing else on the
cluster is touched, and the policy and its binding are removed at the end.
"""

from __future__ import annotations

import json
import re
import time

from ci.errors import SetupError
from ci.tools import Runner, ShRunner

NAME = "reaper-ci-e2e-runtime-class"
NAMESPACE_LABEL = "e2e-framework"  # every namespace e2e's framework creates carries it
PROBE_NAMESPACE = "reaper-ci-e2e-policy-probe"  # labelled like e2e's: where the policy is proven active
ACTIVE_TIMEOUT = 60  # seconds for the apiserver to start applying a new policy (its informers sync)


def api_version(k8s_version: str) -> str:
    m = re.fullmatch(r"v?1\.(\d+)\.\d+.*", k8s_version)
    minor = int(m.group(1)) if m else 99
    return "admissionregistration.k8s.io/" + ("v1alpha1" if minor < 34 else "v1beta1")


def manifests(runtime_class: str, k8s_version: str) -> list[dict]:
    api = api_version(k8s_version)
    policy = {
        "apiVersion": api, "kind": "MutatingAdmissionPolicy", "metadata": {"name": NAME},
        "spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                                    "resources": ["pods"]}]},
            "matchConditions": [{"name": "no-runtime-class", "expression": "!has(object.spec.runtimeClassName)"}],
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {
                "expression": f'Object{{spec: Object.spec{{runtimeClassName: "{runtime_class}"}}}}'}}],
        },
    }
    binding = {
        "apiVersion": api, "kind": "MutatingAdmissionPolicyBinding", "metadata": {"name": NAME},
        "spec": {"policyName": NAME, "matchResources": {"namespaceSelector": {
            "matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "Exists"}]}}},
    }
    return [policy, binding]


class Policy:
    """Install (``kubectl apply``) and remove the policy; one line on failure (exit 3)."""

    def __init__(self, kubeconfig: str, context: str | None, runner: Runner | None = None):
        self.base = ["kubectl", "--kubeconfig", kubeconfig, *(["--context", context] if context else [])]
        self.runner = runner or ShRunner()

    def install(self, runtime_class: str, k8s_version: str) -> None:
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests(runtime_class, k8s_version)})
        r = self.runner([*self.base, "apply", "-f", "-"], check=False, input=doc, stderr=False, timeout=60)
        if r.returncode != 0:
            why = (r.stderr or r.stdout).strip().splitlines()
            raise SetupError(f"the MutatingAdmissionPolicy that puts e2e's pods on RuntimeClass {runtime_class} cannot be "
                             f"installed ({api_version(k8s_version)}: the apiserver needs --feature-gates="
                             f"MutatingAdmissionPolicy=true and --runtime-config for it): {why[-1] if why else 'no answer'}")

    def wait_active(self, runtime_class: str, sleep=time.sleep, clock=time.monotonic) -> float:
        """Seconds until a pod created (server-side dry run: admitted, never stored) in a namespace
        labelled like e2e's comes back with ``runtime_class``: a new policy applies only once the
        apiserver has seen it, and e2e's first pods must not slip through before."""
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROBE_NAMESPACE, "labels": {NAMESPACE_LABEL: "probe"}}}
        self.runner([*self.base, "apply", "-f", "-"], check=False, input=json.dumps(ns), stderr=False, timeout=60)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": PROBE_NAMESPACE},
               "spec": {"containers": [{"name": "c", "image": "probe"}]}}
        began = clock()
        last = "no answer"
        while clock() - began < ACTIVE_TIMEOUT:
            r = self.runner([*self.base, "create", "--dry-run=server", "-o", "json", "-f", "-"], check=False,
                            input=json.dumps(pod), stderr=False, timeout=60)
            try:
                got = json.loads(r.stdout).get("spec", {}).get("runtimeClassName") if r.returncode == 0 else None
            except ValueError:
                got = None
            if got == runtime_class:
                return clock() - began
            last = f"runtimeClassName {got!r}" if r.returncode == 0 else (r.stderr or r.stdout).strip()[-200:]
            sleep(0.5)
        raise SetupError(f"the MutatingAdmissionPolicy was installed but pods in e2e's namespaces still do not get "
                         f"RuntimeClass {runtime_class} after {ACTIVE_TIMEOUT}s ({last})")

    def remove(self) -> None:
        self.runner([*self.base, "delete", "namespace", PROBE_NAMESPACE, "--ignore-not-found", "--wait=false"],
                    check=False, stderr=False, timeout=60)
        for kind in ("mutatingadmissionpolicybinding", "mutatingadmissionpolicy"):
            self.runner([*self.base, "delete", kind, NAME, "--ignore-not-found"], check=False, stderr=False, timeout=60)
