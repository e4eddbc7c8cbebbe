"""Build Kubernetes components and etcd from source through the Go module proxy.

The result is cached by version under ``<cache>/k8s/<version>/bin`` so that a
second run (or an air-gapped node that was handed the folder) needs no network
and no compiler. ``k8s.io/kubernetes`` cannot be ``go install``-ed directly: its
go.mod replaces the staging modules with local paths, and replace directives are
ignored for a dependency. A tiny wrapper module requires ``k8s.io/kubernetes``
and replaces each staging module with its published ``v0.X.Y`` twin instead.
etcd's server module has the same problem and gets the same treatment.

Runs with the standard library only, so it can be used before any venv exists:
``python -m ci.cluster.k8s_build --version v1.33.13 --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

K8S_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")
# containerd for the local cluster: Debian's 1.6.20 loses the tail of a container's CRI log when
# the container exits with output in flight ("Failed to pipe stdout ... file already closed");
# 1.7.x does not (runc S07: 9 of 10 runs truncated on 1.6.20, 0 of 10 on 1.7.29). Version: ci/config.py.
CONTAINERD_BINARIES = ("containerd", "containerd-shim-runc-v2", "ctr")
CONTAINERD_TAGS = "no_btrfs no_devmapper no_zfs no_aufs"  # static build without cgo-only snapshotters
ALL_BINARIES = K8S_COMPONENTS + ("etcd", "pause")


class BuildError(RuntimeError):
    """A build step failed; the message is one line, the log holds the rest."""


@dataclass(frozen=True)
class Versions:
    kubernetes: str = "v1.33.13"
    etcd: str = "v3.5.21"

    @property
    def staging(self) -> str:
        """Staging modules are published as v0.<minor>.<patch> for v1.<minor>.<patch>."""
        m = re.fullmatch(r"v1\.(\d+)\.(\d+)", self.kubernetes)
        if not m:
            raise BuildError(f"Kubernetes version must look like v1.33.13, got {self.kubernetes!r}")
        return f"v0.{m.group(1)}.{m.group(2)}"


def _run(cmd: list[str], cwd: Path, log, env: dict[str, str] | None = None) -> str:
    log.write(f"$ {' '.join(cmd)}  (in {cwd})\n")
    log.flush()
    proc = subprocess.run(
        cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
        raise BuildError(f"`{' '.join(cmd[:3])} ...` failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def _go_env() -> dict[str, str]:
    # Static binaries: they run on any glibc/musl node and can be copied to air-gapped hosts.
    return {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false", "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "auto")}


def kubernetes_wrapper(work: Path, v: Versions, log) -> tuple[Path, Path]:
    """Write the wrapper module for k8s.io/kubernetes; return (module dir, kubernetes source dir)."""
    info = json.loads(_run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{v.kubernetes}"], work, log))
    gomod = Path(info["GoMod"]).read_text()
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", gomod, re.M)))
    if not staging:
        raise BuildError(f"no staging replaces found in k8s.io/kubernetes@{v.kubernetes} go.mod")
    godebug = re.findall(r"^godebug .*$", gomod, re.M)
    go_line = re.search(r"^go (\S+)$", gomod, re.M)
    mod = work / "k8s"
    mod.mkdir(parents=True, exist_ok=True)
    lines = ["module reaperci.local/k8sbuild", "", f"go {go_line.group(1) if go_line else '1.24.0'}", *godebug, ""]
    lines.append(f"require k8s.io/kubernetes {v.kubernetes}")
    lines.append("")
    lines.append("replace (")
    lines += [f"\t{name} => {name} {v.staging}" for name in staging]
    lines.append(")")
    (mod / "go.mod").write_text("\n".join(lines) + "\n")
    return mod, Path(info["Dir"])


def etcd_wrapper(work: Path, v: Versions, log) -> Path:
    info = json.loads(_run(["go", "mod", "download", "-json", f"go.etcd.io/etcd/server/v3@{v.etcd}"], work, log))
    gomod = Path(info["GoMod"]).read_text()
    go_line = re.search(r"^go (\S+)$", gomod, re.M)
    mod = work / "etcd"
    mod.mkdir(parents=True, exist_ok=True)
    # The server's go.mod replaces its siblings with ../api etc.; pin them to the same release instead.
    # Each sibling's published version is the one the server's own require block names
    # (client/v2 is v2.305.x, the others v3.5.x).
    siblings = sorted(set(re.findall(r"^\s*(go\.etcd\.io/etcd/[\w./-]+)\s+=>\s+\.\./", gomod, re.M)))
    required = dict(re.findall(r"^\s*(go\.etcd\.io/etcd/[\w./-]+)\s+(v[\w.+-]+)", gomod, re.M))
    lines = ["module reaperci.local/etcdbuild", "", f"go {go_line.group(1) if go_line else '1.22'}", ""]
    lines.append(f"require go.etcd.io/etcd/server/v3 {v.etcd}")
    pinned = [(s, required[s]) for s in siblings if s in required]
    if pinned:
        lines += ["", "replace ("] + [f"\t{s} => {s} {ver}" for s, ver in pinned] + [")"]
    (mod / "go.mod").write_text("\n".join(lines) + "\n")
    return mod


def ldflags(v: Versions) -> str:
    m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+", v.kubernetes)
    assert m
    pkg = "k8s.io/component-base/version"
    parts = [
        f"-X {pkg}.gitVersion={v.kubernetes}",
        f"-X {pkg}.gitMajor={m.group(1)}",
        f"-X {pkg}.gitMinor={m.group(2)}",
        f"-X {pkg}.gitTreeState=clean",
        "-s -w",
    ]
    return " ".join(parts)


def _atomically(out: Path, fill) -> Path:
    """Run ``fill(folder)`` into a fresh staging folder beside ``out``, then rename it to ``out``:
    a half build never looks complete, and leftovers of an interrupted one are removed first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(".partial-*"):  # left by an interrupted build
        shutil.rmtree(stale, ignore_errors=True)
    staging_out = Path(tempfile.mkdtemp(prefix=".partial-", dir=out.parent))
    try:
        fill(staging_out)
    except BaseException:
        shutil.rmtree(staging_out, ignore_errors=True)
        raise
    staging_out.chmod(0o755)
    if out.exists():
        shutil.rmtree(out)
    staging_out.rename(out)
    return out


def build(out: Path, v: Versions, log, jobs: int = 2) -> Path:
    """Build every binary into ``out`` (atomically)."""
    def fill(staging_out: Path) -> None:
        _build_into(staging_out, v, log, jobs)
        (staging_out / "VERSIONS").write_text(f"kubernetes={v.kubernetes}\netcd={v.etcd}\n")

    return _atomically(out, fill)


def _build_into(staging_out: Path, v: Versions, log, jobs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="reaper-ci-gobuild-") as tmp:
        work = Path(tmp)
        mod, k8s_src = kubernetes_wrapper(work, v, log)
        pkgs = [f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMPONENTS]
        _run(["go", "build", "-p", str(jobs), "-trimpath", "-ldflags", ldflags(v), "-o", str(staging_out) + "/", *pkgs], mod, log, _go_env())
        emod = etcd_wrapper(work, v, log)
        _run(["go", "build", "-p", str(jobs), "-trimpath", "-ldflags", "-s -w", "-o", str(staging_out / "etcd"), "go.etcd.io/etcd/server/v3"], emod, log, _go_env())
        pause_c = k8s_src / "build" / "pause" / "linux" / "pause.c"
        cc = shutil.which("gcc") or shutil.which("cc")
        if not cc:
            raise BuildError("no C compiler (gcc) on PATH to build the pause binary")
        _run([cc, "-Os", "-static", "-DVERSION=reaper-ci", "-o", str(staging_out / "pause"), str(pause_c)], work, log)
    missing = [b for b in ALL_BINARIES if not (staging_out / b).is_file()]
    if missing:
        raise BuildError(f"build finished but these binaries are missing: {', '.join(missing)}")


def containerd_module(version: str) -> str:
    """containerd's Go module at ``version``: 2.x lives under the /v2 module path."""
    major = version.lstrip("v").split(".", 1)[0]
    return "github.com/containerd/containerd" + (f"/v{major}" if major.isdigit() and int(major) >= 2 else "")


def containerd_wrapper(work: Path, version: str, log) -> Path:
    """A wrapper module requiring containerd: its go.mod has ``exclude`` directives, so
    ``go install ...@version`` refuses it; as a dependency of a wrapper it builds."""
    module = containerd_module(version)
    info = json.loads(_run(["go", "mod", "download", "-json", f"{module}@{version}"], work, log))
    go_line = re.search(r"^go (\S+)$", Path(info["GoMod"]).read_text(), re.M)
    mod = work / "containerd"
    mod.mkdir(parents=True, exist_ok=True)
    (mod / "go.mod").write_text("\n".join(["module reaperci.local/containerdbuild", "",
                                           f"go {go_line.group(1) if go_line else '1.22'}", "",
                                           f"require {module} {version}", ""]))
    return mod


def build_containerd(out: Path, version: str, log, jobs: int = 2) -> Path:
    """containerd, its runc shim and ctr at ``version`` into ``out`` (atomically, like :func:`build`)."""
    def fill(staging_out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="reaper-ci-gobuild-") as tmp:
            mod = containerd_wrapper(Path(tmp), version, log)
            module = containerd_module(version)
            pkgs = [f"{module}/cmd/{b}" for b in CONTAINERD_BINARIES]
            flags = f"-s -w -X {module}/version.Version={version}"
            _run(["go", "build", "-p", str(jobs), "-trimpath", "-tags", CONTAINERD_TAGS, "-ldflags", flags,
                  "-o", str(staging_out) + "/", *pkgs], mod, log, _go_env())
        missing = [b for b in CONTAINERD_BINARIES if not (staging_out / b).is_file()]
        if missing:
            raise BuildError(f"containerd build finished but these binaries are missing: {', '.join(missing)}")

    return _atomically(out, fill)


def has_containerd(bindir: Path) -> bool:
    return all((bindir / b).is_file() and os.access(bindir / b, os.X_OK) for b in CONTAINERD_BINARIES)


def is_complete(bindir: Path) -> bool:
    return all((bindir / b).is_file() and os.access(bindir / b, os.X_OK) for b in ALL_BINARIES)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", default=Versions.kubernetes)
    p.add_argument("--etcd-version", default=Versions.etcd)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args(argv)
    v = Versions(a.version, a.etcd_version)
    if is_complete(a.out):
        print(f"cached: {a.out}")
        return 0
    try:
        build(a.out, v, sys.stdout, a.jobs)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"built: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
