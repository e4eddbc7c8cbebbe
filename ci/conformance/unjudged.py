"""Specs whose pass judges nothing on the runtime under test: they ran the pause image as a workload.

reaper takes a container whose first argument names ``pause`` for the pod sandbox and starts
nothing (``is_sandbox_container``, containerd-shim-reaper-v2/main.rs:222-226 at d8d19fe), yet
reports it running and, on a kill, ended: a spec that only needs its pause container to run
(a host IP, submit and remove, activeDeadlineSeconds, hooks around a pause container) passes
without any process having run. Such a pass is reported as *not judged*, with the pods that prove
it, and counts as neither a pass nor a failure; a failure stays a failure.

Which spec ran which pod: e2e gives each spec its own namespace and logs it in the spec's JUnit
record (``Destroying namespace "pods-1234" for this suite.``); which pod ran the pause image: the
API's record of each e2e pod, kept while e2e runs (:class:`ci.conformance.proof.Records`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ci.critest import case_name
from ci.errors import SetupError

# runtimes that do not run the pause image's process as a workload (by their own design)
PAUSE_IS_SANDBOX = {"reaper": "reaper takes a container whose first argument names `pause` for the pod sandbox and "
                              "starts nothing, yet reports it running (is_sandbox_container, "
                              "containerd-shim-reaper-v2/main.rs:222-226 at d8d19fe)"}
_NAMESPACE = re.compile(r'Destroying namespace "([a-z0-9-]+)" for this suite')


def spec_namespaces(junit: Path) -> dict[str, set[str]]:
    """Spec text (as :func:`ci.critest.parse_junit` names it) -> the namespaces e2e made for it."""
    try:
        root = ET.parse(junit).getroot()
    except (ET.ParseError, OSError) as e:
        raise SetupError(f"the JUnit report {junit} cannot be read: {e}") from None
    out: dict[str, set[str]] = {}
    for case in root.iter("testcase"):
        name = case_name(case)
        text = "".join((case.findtext(tag) or "") for tag in ("system-err", "system-out"))
        out.setdefault(name, set()).update(_NAMESPACE.findall(text))
    return out


def not_judged(results: dict[str, str], namespaces: dict[str, set[str]], pause_pods: dict[str, set[str]],
               runtime: str) -> dict[str, str]:
    """Passed spec -> why its pass judges nothing (it ran the pause image as a workload on a runtime
    that starts nothing for it). ``pause_pods``: namespace -> pods with a started pause workload."""
    why = PAUSE_IS_SANDBOX.get(runtime)
    if why is None:
        return {}
    out = {}
    for name, state in results.items():
        pods = sorted(f"{ns}/{p}" for ns in namespaces.get(name, ()) for p in pause_pods.get(ns, ()))
        if state == "passed" and pods:
            out[name] = f"ran the pause image as a workload ({', '.join(pods[:3])}): {why}"
    return out
