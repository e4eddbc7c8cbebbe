"""Command-line entry: ``python -m ci <command> [options] [-- pytest args]``.

The nox sessions call this inside their virtualenv. Every user-facing failure is a CIError,
printed here as one line with a non-zero exit; a traceback means a bug in the pipeline.
"""

from __future__ import annotations

import importlib
import sys

from ci import console, usage
from ci.errors import CIError, UsageError

COMMANDS = {
    "phase1": ("ci.phases.phase1", "Rust: fmt, clippy, build once, every cargo test target, per-test JUnit"),
    "cluster": ("ci.phases.cluster", "Cluster: up | down | status | logs"),
    "k8s": ("ci.phases.k8s", "Phases 2-4: provision, install the runtime, run tests/k8s, report"),
    "ci": ("ci.phases.full", "Phase 1 then Phases 2-4"),
    "critest": ("ci.phases.critest", "critest (cri-tools) against the local cluster's handler, vs tests/critest/expected-*.yaml"),
    "compare": ("ci.phases.compare", "two commits of the workspace through the suite: regressions, fixes, flaky"),
    "bisect": ("ci.phases.bisect", "git bisect over the workspace's commits with the selected scenarios as the test"),
    "conformance": ("ci.phases.conformance", "Kubernetes' NodeConformance e2e specs on the handler, vs tests/conformance/expected-*.yaml"),
    "soak": ("ci.phases.soak", "long-lived pods on the runtime under test for --duration (default 75m)"),
    "matrix": ("ci.phases.matrix", "Phases 2-4 on a fresh local cluster per containerd x Kubernetes version"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m ci <command> [options]\n")
        for name, (_, doc) in COMMANDS.items():
            print(f"  {name:8} {doc}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        console.error(f"unknown command {name!r}; choose one of: {', '.join(COMMANDS)}")
        return 2
    if usage.asks_for_help(rest) and name not in usage.OWN_HELP:
        print(usage.text(name, COMMANDS[name][1]))
        return 0
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except UsageError as e:
        console.error(str(e))
        return 2
    except CIError as e:
        console.error(str(e))
        return 1
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
