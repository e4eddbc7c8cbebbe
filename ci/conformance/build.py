"""Kubernetes' own e2e specs for the node, built from the Kubernetes source at the cluster's version.

Three binaries, through the Go module proxy (the wrapper module of :mod:`ci.cluster.k8s_build`),
cached by version under ``<cache>/conformance/<version>/``:

- ``e2e.test``: the specs of ``k8s.io/kubernetes/test/e2e/common/node`` (and what they import) with
  test/e2e's own flags and framework set-up (``nodeconformance_test.go.txt``). Not ``test/e2e``
  itself: it links every e2e package, and one of their dependencies (``k8s.io/sample-apiserver``)
  is not served by the Go module proxy here;
- ``agnhost`` (``test/images/agnhost``), the e2e specs' Swiss-army workload, for its image;
- ``ginkgo`` at the version Kubernetes pins, to run the specs in parallel processes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ci import console
from ci.cluster import k8s_build as kb
from ci.errors import SetupError

SUITE = Path(__file__).with_name("nodeconformance_test.go.txt")
BINARIES = ("e2e.test", "agnhost", "ginkgo")
PORTER_FILES = ("localhost.crt", "localhost.key")


@dataclass(frozen=True)
class Built:
    dir: Path
    source: Path | None  # k8s.io/kubernetes in the module cache (None: cached build, not looked up)

    def __getitem__(self, name: str) -> Path:
        return self.dir / name


def cache_dir(cache: Path, k8s_version: str) -> Path:
    return Path(cache) / "conformance" / k8s_version


def complete(out: Path) -> bool:
    return all((out / b).is_file() for b in (*BINARIES, *PORTER_FILES, "manifest.go"))


def build(cache: Path, k8s_version: str, log_path: Path, jobs: int = 2) -> Built:
    """The binaries for ``k8s_version`` (cached; the first build takes minutes)."""
    out = cache_dir(cache, k8s_version)
    if complete(out):
        console.info(f"e2e binaries for Kubernetes {k8s_version}: cached in {out}")
        return Built(out, None)
    v = kb.Versions(kubernetes=k8s_version)
    began = time.monotonic()
    console.info(f"building e2e.test, agnhost and ginkgo of Kubernetes {k8s_version} (log: {log_path}; minutes the first time)")
    source: list[Path] = []

    def fill(staging: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="reaper-ci-e2e-") as tmp, open(log_path, "a") as log:
            mod, src = kb.kubernetes_wrapper(Path(tmp), v, log)
            source.append(src)
            suite = mod / "nodeconformance"
            suite.mkdir()
            shutil.copy(SUITE, suite / "suite_test.go")
            env = kb._go_env()
            common = ["-p", str(jobs), "-trimpath"]
            kb._run(["go", "test", "-c", "-vet=off", *common, "-ldflags", kb.ldflags(v), "-o", str(staging / "e2e.test"),
                     "./nodeconformance"], mod, log, env)
            kb._run(["go", "build", *common, "-ldflags", "-s -w", "-o", str(staging / "agnhost"),
                     "k8s.io/kubernetes/test/images/agnhost"], mod, log, env)
            kb._run(["go", "build", *common, "-o", str(staging / "ginkgo"), "github.com/onsi/ginkgo/v2/ginkgo"], mod, log, env)
            shutil.copy(src / "test" / "utils" / "image" / "manifest.go", staging / "manifest.go")
            for name in PORTER_FILES:  # agnhost's TLS key pair, as its image has them at /
                shutil.copy(src / "test" / "images" / "agnhost" / "porter" / name, staging / name)

    try:
        kb._atomically(out, fill)
    except kb.BuildError as e:
        raise SetupError(f"building the e2e binaries of Kubernetes {k8s_version} failed: {e} (log: {log_path})") from None
    console.info(f"e2e binaries built in {time.monotonic() - began:.0f}s into {out}")
    return Built(out, source[0] if source else None)
