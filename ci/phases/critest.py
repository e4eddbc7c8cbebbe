"""``nox -s critest -- [--runtime reaper|runc] [--parallel N] [--focus REGEX]``: cri-tools' CRI
validation suite against the local cluster's containerd, through the RuntimeClass handler.

The cluster must be up (``nox -s cluster -- up``): its ClusterInfo names the containerd socket,
the handler, what runs behind it and the test image. critest (pinned, built once through the Go
module proxy) runs as root on this host; its JUnit is judged against
``tests/critest/expected-<runtime>.yaml``: exit 1 on a failure not listed there or on a listed
spec that passes, 3 when critest could not run at all (setup), 2 on bad flags or not root.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from ci import config as config_mod
from ci import console, critest, tools
from ci.cluster.base import ClusterInfo, info_path
from ci.config import Config
from ci.contract import EXIT_OK, EXIT_PRODUCT_FAILURE, EXIT_SETUP
from ci.errors import SetupError, UsageError

EXPECTED_DIR = config_mod.REPO_ROOT / "tests" / "critest"
# ginkgo interrupts the suite after 1 h (--ginkgo.timeout's default) and still writes its JUnit;
# this outer limit only catches a critest that hangs past that.
RUN_TIMEOUT = 3900.0


@dataclass(frozen=True)
class Options:
    runtime: str = "auto"  # auto (whatever the cluster runs) | reaper | runc
    parallel: int = 1
    focus: str | None = None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"critest: {message}")


def options(argv: Sequence[str], env: Mapping[str, str]) -> tuple[Options, list[str]]:
    """critest's own flags, and the rest for :func:`ci.config.parse`. ``--runtime`` is read here,
    not by the Config: it names what the running cluster must have behind the handler, and
    critest builds no runtime, so it needs no Cargo workspace (``--source``)."""
    p = _Parser(prog="critest", add_help=False, allow_abbrev=False)
    p.add_argument("--runtime", choices=("auto", "reaper", "runc"))
    parallel_opt, focus_opt = config_mod.COMMAND_OPTIONS["critest"]
    p.add_argument(parallel_opt.flag)
    p.add_argument(focus_opt.flag)
    ns, rest = p.parse_known_args(list(argv))
    runtime = ns.runtime or env.get("REAPER_RUNTIME") or "auto"
    if runtime not in ("auto", "reaper", "runc"):
        raise UsageError(f"critest: REAPER_RUNTIME={runtime!r}: expected one of auto, reaper, runc")
    parallel = int(parallel_opt.default)
    if ns.parallel is not None:
        if not ns.parallel.isdigit() or int(ns.parallel) < 1:
            raise UsageError(f"critest: --parallel {ns.parallel}: must be a whole number, 1 or more")
        parallel = int(ns.parallel)
    if ns.focus is not None:
        try:
            re.compile(ns.focus)
        except re.error as e:
            raise UsageError(f"critest: --focus {ns.focus!r}: not a regular expression ({e})") from None
    return Options(runtime, parallel, ns.focus or None), rest


def cluster(cfg: Config, requested: str) -> ClusterInfo:
    """The running local cluster, checked against what was asked; one-line SetupErrors otherwise."""
    path = info_path(cfg.state_dir)
    up = f"nox -s cluster -- up{'' if requested == 'auto' else ' --runtime ' + requested}"
    if not path.is_file():
        raise SetupError(f"critest: no cluster ({path} is missing): run `{up}` first")
    try:
        info = ClusterInfo.load(path)
    except (OSError, ValueError, TypeError) as e:
        raise SetupError(f"critest: cannot read {path} ({e}): run `{up}` again") from None
    if requested != "auto" and info.runtime != requested:
        raise SetupError(f"critest: --runtime {requested}, but the cluster runs {info.runtime} behind handler "
                         f"{info.runtime_handler}: run `nox -s cluster -- up --runtime {requested}`")
    if info.provisioner != "local" or info.node_access != "local":
        raise SetupError(f"critest: runs against this host's containerd, but the cluster is {info.provisioner} "
                         f"(nodes reached by {info.node_access}): run `{up} --provisioner local`")
    if info.runtime_class != cfg.runtime_class:
        raise SetupError(f"critest: --runtime-class {cfg.runtime_class}, but the cluster's RuntimeClass is "
                         f"{info.runtime_class}: run `{up} --runtime-class {cfg.runtime_class}`")
    if not Path(info.containerd_address).exists():
        raise SetupError(f"critest: containerd's socket {info.containerd_address} (from {path}) does not exist: "
                         "is the cluster still up? (`nox -s cluster -- status`)")
    return info


@contextlib.contextmanager
def kubelet_paused(cfg: Config, info: ClusterInfo) -> Iterator[None]:
    """critest must be the CRI server's only client (cri-tools docs/validation.md): the cluster's
    kubelet kills the pods it does not know within seconds (and deletes their logs), which failed
    four specs on runc. The kubelet is stopped for the run and started again as it was (argv,
    environment, cgroups), then the node must be Ready again."""
    from ci.cluster import restart_local
    from ci.cluster.local.layout import Layout
    from ci.cluster.verify import Verifier
    from ci.wait import until

    lay = Layout(Path(cfg.state_dir))
    pidfile, klog = lay.pidfile("kubelet"), lay.log("kubelet")
    try:
        kubelet = restart_local.Captured(pidfile)
        kubelet.stop()
    except (restart_local.RestartError, OSError) as e:
        raise SetupError(f"critest: cannot stop the cluster's kubelet for the run ({e})") from None
    console.info(f"critest: kubelet (pid {kubelet.pid}) stopped for the run; started again afterwards")
    try:
        yield
    finally:
        try:
            kubelet.launch(pidfile, klog, "started again after critest")
            api = Verifier(info.kubeconfig, info.context)
            until(f"node {', '.join(info.nodes)} Ready after the kubelet's restart", lambda: api.nodes_ready(info.nodes), 120)
        except (restart_local.RestartError, OSError) as e:
            raise SetupError(f"critest: the kubelet did not start again ({e}; log {klog}): "
                             "`nox -s cluster -- up` repairs the cluster") from None


def run(cfg: Config, opts: Options, started: float) -> int:
    info = cluster(cfg, opts.runtime)
    expected_path = EXPECTED_DIR / f"expected-{info.runtime}.yaml"
    expected = critest.load_expected(expected_path)  # a bad list fails before anything slow
    art = cfg.artifacts
    art.mkdir(parents=True, exist_ok=True)
    junit, log, summary = art / "critest-junit.xml", art / "critest.log", art / "critest-summary.txt"
    for stale in (junit, log, summary):  # never judge, or append to, a previous run's files
        stale.unlink(missing_ok=True)

    with console.phase(f"critest {critest.CRITEST_VERSION}: build (cached in {critest.tool_dir(cfg.cache_dir)})"):
        binary = critest.build(cfg.cache_dir, art / "critest-build.log")
    built = time.monotonic()
    images = critest.images_file(art / "critest-images.yaml", info.image)
    argv = critest.argv(binary, info.containerd_address, info.runtime_handler, junit,
                        parallel=opts.parallel, images_file=images, focus=opts.focus)
    path_env = {"PATH": os.pathsep.join([str(binary.parent), os.environ.get("PATH", "")])}  # ginkgo, for -parallel
    with console.phase(f"critest: runtime {info.runtime} behind handler {info.runtime_handler} "
                       f"({info.containerd_address})"), kubelet_paused(cfg, info):
        proc = tools.run(tools.tool(argv[0]), *argv[1:], log=log, env=path_env, ok_code=range(256),
                         timeout=RUN_TIMEOUT, what="critest")
    code = proc.exit_code
    if not junit.is_file():
        raise SetupError(f"critest exited {code} without writing its JUnit {junit}: the suite did not run (output: {log})")
    results = critest.parse_junit(junit)
    for node in ("[BeforeSuite]", "[SynchronizedBeforeSuite]"):
        if results.get(node) == "failed":
            raise SetupError(f"critest's {node} failed (test images file {images}), so no spec ran: see {log}")
    verdict = critest.judge(results, expected)
    ended = time.monotonic()
    text = "\n".join([
        f"critest {critest.CRITEST_VERSION}: runtime {info.runtime}, handler {info.runtime_handler}, "
        f"endpoint unix://{info.containerd_address}, image {info.image}",
        f"expected failures: {expected_path} ({len(expected)} entr{'y' if len(expected) == 1 else 'ies'}); "
        f"critest exit {code}",
        critest.table(verdict),
        f"wall time {ended - started:.1f}s (build {built - started:.1f}s, suite {ended - built:.1f}s)",
        f"JUnit: {junit}; log: {log}",
    ])
    print(text, flush=True)
    console.write_text(summary, text + "\n")
    return EXIT_OK if verdict.ok else EXIT_PRODUCT_FAILURE


def main(argv: list[str]) -> int:
    started = time.monotonic()
    opts, rest = options(argv, os.environ)
    env = {k: v for k, v in os.environ.items() if k != "REAPER_RUNTIME"}  # read by options() above
    cfg = config_mod.parse(rest, env, prog="critest", allow_pytest_args=False)
    if os.geteuid() != 0:
        raise UsageError("critest: must run as root (critest bind-mounts host paths and talks to containerd's "
                         "root-owned socket): run it with sudo")
    try:
        return run(cfg, opts, started)
    except SetupError as e:
        console.error(str(e))
        return EXIT_SETUP
