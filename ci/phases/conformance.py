"""``nox -s conformance -- [--source PATH --runtime reaper|runc] [--parallel N] [--focus REGEX]``:
Kubernetes' own NodeConformance e2e specs against the runtime under test.

Validation first (flags, the expected list), then the e2e binaries (built once per Kubernetes
version, :mod:`ci.conformance.build`), then the cluster as for ``k8s`` (any provisioner whose
apiserver serves MutatingAdmissionPolicy), the e2e images imported under their exact names, the
policy that puts every e2e pod on the handler, ginkgo with the specs of :mod:`ci.conformance.specs`
in parallel, and the verdict against ``tests/conformance/expected-<runtime>[-<commit7>].yaml``
(critest's model: a failure not listed, or a listed spec that passes, fails the run). Proof that
the pods ran on the handler: :mod:`ci.conformance.proof`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Mapping, Sequence

from ci import config as config_mod
from ci import console, critest, expect, tools
from ci.cluster import images as cluster_images
from ci.cluster.base import ClusterInfo
from ci.conformance import build as e2e_build, images as e2e_images, policy as e2e_policy, specs, unjudged
from ci.conformance.proof import Watcher
from ci.config import Config
from ci.contract import EXIT_OK, EXIT_PRODUCT_FAILURE
from ci.errors import SetupError, UsageError
from ci.phases import k8s

EXPECTED_DIR = config_mod.REPO_ROOT / "tests" / "conformance"
SUITE_TIMEOUT = "40m"  # ginkgo's own deadline (it still writes its JUnit)
RUN_TIMEOUT = 3000.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"conformance: {message}")


def options(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str | None, list[str]]:
    p = _Parser(prog="conformance", add_help=False, allow_abbrev=False)
    parallel, focus = config_mod.COMMAND_OPTIONS["conformance"]
    p.add_argument(parallel.flag)
    p.add_argument(focus.flag)
    ns, rest = p.parse_known_args(list(argv))
    raw = ns.parallel or env.get(parallel.env) or parallel.default
    if not raw.isdigit() or not 1 <= int(raw) <= 16:
        raise UsageError(f"conformance: --parallel {raw}: a whole number from 1 to 16")
    return int(raw), ns.focus, rest


def expected_path(runtime: str, commit: str | None) -> Path | None:
    """The project's list for the runtime and commit (the gate's rule: :func:`ci.expect.default_path`)."""
    return expect.default_path(runtime, commit, EXPECTED_DIR)


def ginkgo_argv(built: e2e_build.Built, info: ClusterInfo, out: Path, parallel: int, isolating: bool,
                focus: str | None) -> list[str]:
    return [str(built["ginkgo"]), f"--procs={parallel}", "--no-color", f"--timeout={SUITE_TIMEOUT}",
            f"--label-filter={specs.LABELS}", *([f"--focus={focus}"] if focus else []),  # --focus narrows (labels AND focus)
            f"--skip={specs.skip_regex(isolating)}",
            f"--output-dir={out}", "--junit-report=junit.xml", "--silence-skips",
            str(built["e2e.test"]), "--", f"--kubeconfig={info.kubeconfig}", "--provider=skeleton",
            *([f"--context={info.context}"] if info.context else []), f"--report-dir={out}", "--allowed-not-ready-nodes=0"]


def run(cfg: Config, parallel: int, focus: str | None) -> int:
    from ci.cluster.runtime import source_commit

    k8s.check_runtime_choice(cfg, prog="conformance")
    if not tools.which("kubectl"):
        raise UsageError("conformance: `kubectl` not found on PATH (it installs the admission policy)")
    expected_file = expected_path(cfg.runtime, source_commit(cfg.source) if cfg.runtime == "reaper" else None)
    expected = critest.load_expected(expected_file, tool="conformance") if expected_file else []
    out = cfg.artifacts / "conformance"
    out.mkdir(parents=True, exist_ok=True)
    built = e2e_build.build(cfg.cache_dir, cfg.k8s_version, out / "build.log")

    def body(info: ClusterInfo, path: Path) -> int:
        if info.runtime != cfg.runtime:
            raise SetupError(f"the cluster runs {info.runtime}, not {cfg.runtime}")
        node = info.node_access_impl()
        refs = e2e_images.manifest((built.dir / "manifest.go").read_text())
        pause = cfg.k8s_bin / "pause"
        tls = {n: (built.dir / n).read_bytes() for n in e2e_build.PORTER_FILES}
        tars = e2e_images.archives(refs, built["agnhost"], pause, out / "images", cluster_images.go_arch(), tls)
        e2e_images.load(info, node, tars)
        console.info(f"e2e images imported: {', '.join(refs[k].ref for k in tars)}")
        pol = e2e_policy.Policy(info.kubeconfig, info.context)
        pol.install(info.runtime_class, cfg.k8s_version)
        console.info(f"admission policy active after {pol.wait_active(info.runtime_class):.1f}s: e2e's pods get "
                     f"RuntimeClass {info.runtime_class}")
        watcher = Watcher(info, node, pause_ref=refs["Pause"].ref).start()
        isolating = info.runtime != "reaper"
        began = time.monotonic()
        try:
            argv = ginkgo_argv(built, info, out, parallel, isolating, focus)
            console.info(f"$ {' '.join(argv[:8])} ...")
            with console.phase(f"e2e NodeConformance on {info.runtime} ({parallel} ginkgo processes)"):
                # streamed (ginkgo reports each spec as it ends) and kept in e2e.log; its exit is judged below
                tools.run(tools.tool(argv[0]), *argv[1:], log=out / "e2e.log", ok_code=range(256), timeout=RUN_TIMEOUT,
                          what="ginkgo (e2e.test)")
        finally:
            records = watcher.stop()
            pol.remove()
        return report(cfg, info, out, expected, expected_file, records, isolating, time.monotonic() - began)

    return k8s.provisioned(cfg, body, prog="conformance")


def report(cfg, info, out: Path, expected, expected_file: Path, records, isolating: bool, seconds: float) -> int:
    junit = out / "junit.xml"
    if not junit.is_file():
        raise SetupError(f"ginkgo wrote no JUnit report ({junit}); see {out / 'e2e.log'}")
    results = critest.parse_junit(junit)
    hollow = unjudged.not_judged(results, unjudged.spec_namespaces(junit), records.pause_pods, info.runtime)
    verdict = critest.judge({n: s for n, s in results.items() if n not in hollow}, expected)
    named = {n: specs.skipped_by(n, isolating) for n, s in results.items() if s == "skipped"}
    reasons = {n: r for n, r in named.items() if r}
    on_handler, proof = records.verdict(info.runtime_class, info.runtime_type or "?")
    lines = [f"e2e NodeConformance on {info.runtime}{' @ ' + info.source_commit[:12] if info.source_commit else ''}: "
             f"{verdict.ran + len(hollow)} ran, {verdict.passed} passed, {verdict.failed} failed, {len(hollow)} passed without judging "
             f"anything (not counted), {len(reasons)} skipped by this pipeline with a reason, in {seconds / 60:.1f} min (expected list: {expected_file.name if expected_file else 'none'})",
             critest.table(verdict, tool="conformance"), f"on the handler: {'yes' if on_handler else 'NO'}: {proof}"]
    lines += [f"not judged: {n} -- {r}" for n, r in sorted(hollow.items())]
    lines += [f"skipped: {n} -- {r}" for n, r in sorted(reasons.items())]
    text = "\n".join(lines)
    print(text, flush=True)
    (out / "summary.txt").write_text(text + "\n")
    (out / "conformance.json").write_text(json.dumps({
        "runtime": info.runtime, "commit": info.source_commit, "seconds": round(seconds, 1), "results": results,
        "unexpected_failures": verdict.unexpected_failures, "now_passing": verdict.now_passing,
        "expected_failed": verdict.expected_failed, "not_judged": hollow, "skipped_with_reason": reasons, "on_handler": on_handler,
        "proof": proof, "pods_seen": len(records.pods), "proof_errors": records.errors}, indent=2) + "\n")
    console.append_step_summary([f"## e2e NodeConformance on {info.runtime}", "", "```", *lines[:3], "```", ""])
    for name in verdict.unexpected_failures:
        console.annotate_error("conformance: unexpected failure", name)
    if not on_handler:
        console.error(f"conformance: not every e2e pod ran on the handler under test: {proof}")
    return EXIT_OK if verdict.ok and on_handler else EXIT_PRODUCT_FAILURE


def main(argv: list[str]) -> int:
    import os

    parallel, focus, rest = options(argv, os.environ)
    cfg = config_mod.parse(rest, prog="conformance", allow_pytest_args=False)
    return k8s.setup_error_is_exit_3(lambda c: run(c, parallel, focus), cfg)
