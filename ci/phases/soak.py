"""``nox -s soak -- [--duration 75m] [--source PATH --runtime reaper|runc] [cluster options]``:
long-lived pods on the runtime under test, watched for the whole duration (default 75 minutes,
past the one-hour limits a runtime may hide).

On any provisioner (the cluster comes up as for ``k8s``): a Deployment-style counter, a pod with a
periodic exec liveness probe, a pod appending to a hostPath log (:mod:`ci.soak.pods`). The soak
fails at the first restart, container change, gap or restart of a counter, stalled counter,
problem event, extra or missing process of a workload on the node, or unanswered exec; it names
the moment and shows the runtime's, containerd's and the kubelet's log lines around it. A
progress line every few minutes. Reports: ``soak.json``, ``soak.xml`` (JUnit), ``soak.txt``, the
step summary; exit 0 passed, 1 the runtime failed, 2 usage, 3 setup.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from junit_xml import TestCase, TestSuite, to_xml_report_string

from ci import config as config_mod
from ci import console
from ci.cluster.base import ClusterInfo
from ci.config import Config
from ci.contract import EXIT_OK, EXIT_PRODUCT_FAILURE
from ci.phases import k8s
from ci.soak import checks, pods
from ci.soak.api import SoakApi
from ci.soak.watch import Failure, Soak, mmss

QUIET_LOGS = ("kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager")
TAIL = 20000  # lines read from the end of each log for the window around a failure


def progress_every(duration: float) -> float:
    """A progress line every 5 minutes, more often for a short soak (at least six lines)."""
    return min(300.0, max(30.0, duration / 6))


def run(cfg: Config) -> int:
    k8s.check_runtime_choice(cfg, prog="soak")

    def soak(info: ClusterInfo, path: Path) -> int:
        with console.phase(f"Soak: long-lived pods on {info.runtime} for {cfg.soak_duration / 60:.0f} min"):
            return watch(cfg, info)

    return k8s.provisioned(cfg, soak, prog="soak")


def watch(cfg: Config, info: ClusterInfo) -> int:
    run = pods.Run(token=secrets.token_hex(3), runtime_class=info.runtime_class, image=info.image, node=info.nodes[0])
    node = info.node_access_impl()
    s = Soak(SoakApi(info.kubeconfig, info.context), node, run, cfg.soak_duration,
             progress_every=progress_every(cfg.soak_duration))
    console.info(f"namespace {run.namespace} on node {run.node}: {', '.join(pods.NAMES)} (marker soak-{run.token}-*)")
    try:
        s.start()
        s.watch()
        lines = {name: diagnostics(info, node, f) for name, f in s.failures.items()}
    finally:
        s.cleanup()
    return report(cfg, info, s, lines)


def diagnostics(info: ClusterInfo, node, failure: Failure) -> dict[str, list[str]]:
    """The lines of the runtime's, containerd's and the kubelet's logs around the failure's moment."""
    logs = {k: v for k, v in info.component_logs.items() if k not in QUIET_LOGS}
    if info.runtime_log and info.runtime_log not in logs.values():
        logs["runtime"] = info.runtime_log
    out: dict[str, list[str]] = {}
    for name, path in sorted(logs.items()):
        r = node.run(info.nodes[0], ["tail", "-n", str(TAIL), path], timeout=60)
        out[name] = checks.window(r.stdout, failure.moment) if r.returncode == 0 else [f"(unreadable: {path})"]
    return out


def report(cfg: Config, info: ClusterInfo, s: Soak, lines: dict[str, dict[str, list[str]]]) -> int:
    art, st, failures = cfg.artifacts, s.state, s.failures
    cases, rows = [], []
    for name in pods.NAMES:
        f = failures.get(name)
        tc = TestCase(name, classname=f"soak.{info.runtime}", elapsed_sec=round(f.at if f else cfg.soak_duration, 1))
        if f:
            tc.add_failure_info(message=f.text[:500], output="\n".join(_flat(lines.get(name, {}))))
        cases.append(tc)
        rows.append((name, f"failed at {mmss(f.at)}" if f else "passed", f.text[:160] if f else
                     f"last counter {st.counters.get(name, 0)}, exec answered"))
    (art / "soak.xml").write_text(to_xml_report_string([TestSuite("soak", cases)]))
    latency = max(st.exec_latency) if st.exec_latency else None
    data = {"runtime": info.runtime, "source_commit": info.source_commit, "duration": cfg.soak_duration,
            "passed": not failures, "restarts": st.restarts, "counters": st.counters, "exec_latency_max": latency,
            "progress": st.progress,
            "failures": {n: {"at": round(f.at, 1), "moment": f.moment.isoformat(), "text": f.text, "logs": lines.get(n, {})}
                         for n, f in failures.items()}}
    (art / "soak.json").write_text(json.dumps(data, indent=2) + "\n")
    text = [f"Soak on {info.runtime}{' @ ' + info.source_commit[:12] if info.source_commit else ''} "
            f"({cfg.soak_duration / 60:.0f} min planned)", *console.grid(("Workload", "Result", "Detail"), rows)]
    for name, f in sorted(failures.items(), key=lambda kv: kv[1].at):
        text.append(f"FAILED {name} {mmss(f.at)} into the soak, at {f.moment:%Y-%m-%d %H:%M:%SZ}: {f.text}")
        for log, picked in lines.get(name, {}).items():
            shown = checks.loud(picked)
            text.append(f"--- {log} log around {f.moment:%H:%M:%SZ}: {len(shown)} of {len(picked)} lines (warnings and "
                        f"errors first; all in soak.json) ---")
            text.extend(ln[:400] for ln in shown)
    if not failures:
        text.append(f"passed: {cfg.soak_duration / 60:.0f} min, restarts 0, every counter contiguous, one process tree "
                    f"per workload" + (f", exec answered in ≤ {latency:.2f}s" if latency is not None else ""))
    console.write_text(art / "soak.txt", "\n".join(text) + "\n")
    print("\n".join(text), flush=True)
    console.append_step_summary([f"## Soak on {info.runtime}", "", *console.markdown(("Workload", "Result", "Detail"), rows), ""])
    for name, f in failures.items():
        console.annotate_error(f"soak: {name}", f"{mmss(f.at)} in: {f.text}")
    return EXIT_PRODUCT_FAILURE if failures else EXIT_OK


def _flat(lines: dict[str, list[str]]) -> list[str]:
    return [f"[{name}] {ln}" for name, picked in lines.items() for ln in picked]


def main(argv: list[str]) -> int:
    return k8s.setup_error_is_exit_3(run, config_mod.parse(argv, prog="soak", allow_pytest_args=False))
