"""Which e2e specs run, and which are skipped for a reason this pipeline names.

Run: the ``[NodeConformance]`` specs of ``[sig-node]`` (test/e2e/common/node: runtime, probes,
hooks, init containers, expansion, downward API, ConfigMap/Secret env, kubelet, /etc/hosts,
security context, pods...), minus ``[Serial]``, ``[Disruptive]``, ``[Slow]``, ``[Flaky]`` and
feature-gated specs. Skipped by reason, never silently: specs that need a registry or an image
that cannot be built offline, and, when the runtime does not isolate the workload from the node
(reaper runs commands on the host), the specs whose workload changes the node.
"""

from __future__ import annotations

import re

LABELS = "sig-node && NodeConformance"  # ginkgo labels e2e gives its specs (--label-filter)
SKIP_TAGS = r"\[Serial\]|\[Disruptive\]|\[Slow\]|\[Flaky\]|\[Feature:[^\]]+\]"

# spec (regex over the spec text) -> why it cannot run here, on any runtime
OFFLINE = {
    r".*should be able to pull image.*": "pulls a public image: no registry is reachable here (and pulls are containerd's, not the runtime's)",
    r".*should not be able to pull from private registry without secret.*": "pulls from a private registry: none is reachable here",
    r".*should not be able to pull image from invalid registry.*": "pulls from an invalid registry: offline, any pull fails, so it would pass without judging anything",
    r".*should run through the lifecycle of Pods and PodStatus.*": "uses the httpd image, which cannot be built offline",
    r".*Pods should be updated.*|.*should delete a collection of pods.*": "uses the nginx image, which cannot be built offline",
    r".*AllowPrivilegeEscalation.*": "uses the nonewprivs image, which cannot be built offline",
}

# spec -> why it must not run when the runtime shares the node (runs the workload on the host)
NODE_CHANGING = {
    r".*PrivilegedPod.*should enable privileged commands.*": "runs `ip link add` as a privileged container: on a runtime without isolation that adds a link to the node",
    r".*should run the container as unprivileged when false.*": "runs `ip link add dummy0 type dummy` expecting it to fail: on a runtime without isolation it adds dummy0 to the node",
    r".*Sysctls.*should support sysctls.*": "sets kernel.shm_rmid_forced in the pod: without the pod's own IPC namespace that is the node's setting",
}


def skips(isolating: bool) -> dict[str, str]:
    """Every spec pattern this run skips, with its reason."""
    return {**OFFLINE, **({} if isolating else NODE_CHANGING)}


def skip_regex(isolating: bool) -> str:
    return "|".join([SKIP_TAGS, *skips(isolating)])


def skipped_by(name: str, isolating: bool) -> str | None:
    """The reason a spec was skipped by this pipeline (None: it was not, or by e2e's own tags)."""
    for pattern, reason in skips(isolating).items():
        if re.fullmatch(pattern, name):
            return reason
    return None
