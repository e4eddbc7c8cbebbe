"""Build and install the runtime under test behind the RuntimeClass handler.

``runtime=reaper``: ``cargo build --release --bin <shim> --bin <runtime>`` in ``cfg.source``;
both binaries are installed into a folder on containerd's PATH (containerd resolves
``runtime_type = io.containerd.X.v2`` to a binary ``containerd-shim-X-v2`` on its PATH).
``runtime=runc``: the handler is served by runc (the reference runtime; nothing to build).

Install steps take a :class:`NodeAccess` and a node name: the kind and local paths share them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ci.cluster.base import ClusterInfo, NodeAccess
from ci.config import Config
from ci.errors import SetupError, ToolMissing, UsageError

from ci import tools
from ci.tools import ShRunner

if TYPE_CHECKING:  # pragma: no cover
    from ci.tools import Runner

RUNC_RUNTIME_TYPE = "io.containerd.runc.v2"
RUNC_SHIM = "containerd-shim-runc-v2"


def resolve(cfg: Config) -> str:
    """``auto`` -> reaper when a Cargo workspace is given, else runc (:func:`ci.config.parse` has
    already done this for a parsed Config; kept for Configs made by hand)."""
    if cfg.runtime == "auto":
        return "reaper" if cfg.source else "runc"
    if cfg.runtime == "reaper" and cfg.source is None:
        raise UsageError("--runtime reaper needs --source <cargo workspace> (or REAPER_SOURCE)")
    return cfg.runtime


@dataclass(frozen=True)
class Built:
    shim: Path
    runtime: Path

    def digest(self) -> str:
        h = hashlib.sha256()
        for p in (self.shim, self.runtime):
            h.update(p.name.encode())
            h.update(file_digest(p).encode())
        return h.hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


BUILD_TIMEOUT = 3600  # cargo build of shim + runtime (cold: minutes)
COMMAND_TIMEOUT = 120  # rustup / cargo metadata


def build(cfg: Config, run: "Runner", log: Path, target: str | None = None) -> Built:
    """``cargo build --release`` of the shim and runtime binaries in ``cfg.source`` (for ``target``,
    a Rust target triple such as a kind node's static musl one, or the host). The binaries are
    found under cargo's own target directory (``cargo metadata --no-deps``: it follows
    ``CARGO_TARGET_DIR`` and the workspace's config)."""
    from ci import console, tools

    assert cfg.source is not None
    if target is not None:
        try:  # the toolchain of the workspace (rust-toolchain.toml applies: cwd is the source)
            targets = run(["rustup", "target", "list", "--installed"], cwd=cfg.source, check=False,
                          timeout=COMMAND_TIMEOUT, stderr=False)
        except ToolMissing:
            targets = None  # Rust without rustup: cargo says what is missing
        if targets is not None and targets.returncode == 0 and target not in targets.out.split():
            raise ToolMissing(f"the Rust target {target} (static build for the kind node) is not installed: "
                              f"`rustup target add {target}` in {cfg.source} (and apt-get install musl-tools)")
    cache = _build_cache(cfg, target)
    if cache is not None and all((cache / b).is_file() for b in (cfg.shim_binary, cfg.runtime_binary)):
        console.info(f"{cfg.shim_binary} + {cfg.runtime_binary}: the build of commit {cache.name[:12]} (cached in {cache})")
        return Built(cache / cfg.shim_binary, cache / cfg.runtime_binary)
    console.info(f"building {cfg.shim_binary} + {cfg.runtime_binary}{f' for {target}' if target else ''} in "
                 f"{cfg.source} (log: {log})")
    started = time.monotonic()
    argv = ["cargo", "build", "--release", *(["--target", target] if target else []),
            "--bin", cfg.shim_binary, "--bin", cfg.runtime_binary]
    try:
        run(argv, cwd=cfg.source, timeout=BUILD_TIMEOUT)
    except SetupError as e:
        if target is not None and "musl" in target and tools.which("musl-gcc") is None:
            raise SetupError(f"{e} (no musl-gcc on PATH: crates that compile C code need apt-get install musl-tools)") from None
        raise
    console.info(f"built in {time.monotonic() - started:.0f}s")
    meta = run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=cfg.source, timeout=COMMAND_TIMEOUT,
               stderr=False).out
    try:
        target_dir = Path(json.loads(meta)["target_directory"])
    except (ValueError, KeyError, TypeError):
        target_dir = cfg.source / "target"
    out = target_dir / target / "release" if target else target_dir / "release"
    built = Built(out / cfg.shim_binary, out / cfg.runtime_binary)
    for p in (built.shim, built.runtime):
        if not p.is_file():
            raise SetupError(f"cargo build succeeded but {p} is missing (log: {log})")
    if cache is not None:  # a clean checkout: keep its binaries by commit (compare, bisect, re-runs)
        import shutil
        import tempfile

        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache.parent))
        for p in (built.shim, built.runtime):
            shutil.copy2(p, tmp / p.name)
        try:
            tmp.rename(cache)
        except OSError:  # another run cached it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        built = Built(cache / cfg.shim_binary, cache / cfg.runtime_binary)
    return built


def _build_cache(cfg: Config, target: str | None) -> Path | None:
    """``<cache>/builds/<sha>[-<target>]`` for a source that is a clean git checkout, else None
    (uncommitted changes, a mutant for instance, are never cached)."""
    from ci import revisions

    commit = source_commit(cfg.source)
    if not commit or not revisions.clean(cfg.source):
        return None
    return Path(cfg.cache_dir) / "builds" / (commit + (f"-{target}" if target else ""))


def source_commit(source: Path | None) -> str | None:
    if source is None:
        return None
    if not tools.which("git"):
        return None
    r = ShRunner()(["git", "-C", str(source), "rev-parse", "HEAD"], check=False, stderr=False)
    return r.out.strip() if r.returncode == 0 else None


def install_reaper(access: NodeAccess, node: str, built: Built, bin_dir: str, cfg: Config) -> dict[str, str]:
    """Install shim + runtime into ``bin_dir`` on the node; returns {binary name: node path}."""
    shim_dest = f"{bin_dir}/{cfg.shim_binary}"
    runtime_dest = f"{bin_dir}/{cfg.runtime_binary}"
    access.put(node, built.shim, shim_dest)
    access.put(node, built.runtime, runtime_dest)
    r = access.run(node, [runtime_dest, "--help"], timeout=30)
    if r.returncode != 0:
        raise SetupError(f"installed {runtime_dest} does not run on {node}: {(r.stderr or r.stdout).strip()[:300]}")
    return {cfg.shim_binary: shim_dest, cfg.runtime_binary: runtime_dest}


def reaper_env(bin_dir: str, run_dir: str, log_dir: str, config_file: str,
               runtime_binary: str = "reaper-runtime") -> dict[str, str]:
    """Environment given to containerd (and so to every shim it starts) for reaper.

    Only where reaper's binaries, state entries, logs and config file are: its overlay (the
    isolation its users get: one node-wide overlay at d8d19fe, one per Kubernetes namespace at
    later commits) keeps reaper's defaults under /run/reaper, as reaper's own install leaves it.
    Overriding REAPER_OVERLAY_BASE/NS/LOCK would collapse every namespace into one overlay.
    """
    return {
        "REAPER_RUNTIME_PATH": f"{bin_dir}/{runtime_binary}",
        "REAPER_RUNTIME_ROOT": f"{run_dir}",
        "REAPER_RUNTIME_LOG": f"{log_dir}/reaper-runtime.log",
        "REAPER_SHIM_LOG": f"{log_dir}/reaper-shim.log",
        "REAPER_CONFIG": config_file,
    }


def handler_toml(handler: str, runtime: str, runtime_type: str, runc_root: str | None, config_version: int = 2) -> str:
    """The containerd CRI runtime entry for the RuntimeClass handler.

    ``config_version`` 2 (containerd 1.x: plugin ``io.containerd.grpc.v1.cri``) or 3 (containerd
    2.x: plugin ``io.containerd.cri.v1.runtime``). ``runc_root`` None keeps runc's default root.
    """
    plugin = {2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}.get(config_version)
    if plugin is None:
        raise SetupError(f"containerd config version {config_version} is not supported (2 or 3)")
    base = f'[plugins."{plugin}".containerd.runtimes.{_toml_key(handler)}]'
    if runtime == "runc":
        opts = "  SystemdCgroup = false\n" + (f'  Root = "{runc_root}"\n' if runc_root else "")
        return f'{base}\n  runtime_type = "{RUNC_RUNTIME_TYPE}"\n{base[:-1]}.options]\n{opts}'
    # podsandbox is the default sandbox mode of containerd 1.7/2.x; 1.6 has no such setting and ignores it
    mode = '  sandbox_mode = "podsandbox"\n' if config_version == 2 else ""
    # reaper reads its per-pod settings from reaper.runtime/* annotations (as reaper's kind config passes them)
    return f'{base}\n  runtime_type = "{runtime_type}"\n{mode}  pod_annotations = ["reaper.runtime/*"]\n'


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else '"' + key.replace('"', '\\"') + '"'


def shim_process(cfg: Config, runtime: str) -> str:
    return cfg.shim_binary if runtime == "reaper" else RUNC_SHIM


COMMON_FIELDS = ("name", "runtime", "runtime_class", "shim_process", "image", "source", "source_commit",
                 "runtime_type", "runtime_binary")


def cluster_info(cfg: Config, runtime: str, **where) -> ClusterInfo:
    """The :class:`ClusterInfo` fields every provisioner fills the same way (the run's names,
    what is behind the handler, the source it was built from); ``where`` gives the rest: the
    provisioner, kubeconfig, nodes, node access and where the node keeps things."""
    reaper = runtime == "reaper"
    common = dict(
        name=cfg.cluster_name, runtime=runtime, runtime_class=cfg.runtime_class, shim_process=shim_process(cfg, runtime),
        image=cfg.image, source=str(cfg.source) if cfg.source else None, source_commit=source_commit(cfg.source),
        runtime_type=cfg.runtime_type if reaper else RUNC_RUNTIME_TYPE, runtime_binary=cfg.runtime_binary if reaper else "runc",
    )
    return ClusterInfo(**{**common, **where})


def refresh_info(cfg: Config, runtime: str, info: ClusterInfo, **where) -> ClusterInfo:
    """A recorded ClusterInfo brought up to this run's Config (a reused cluster): the common fields
    anew, the provisioner's own kept unless ``where`` gives them again."""
    kept = {k: v for k, v in json.loads(info.to_json()).items() if k not in COMMON_FIELDS}
    return cluster_info(cfg, runtime, **{**kept, "nodes": tuple(info.nodes), **where})



# ---------------------------------------------------------------------------- a node's own containerd (kind)

SYSTEMD_CONTAINERD_RESTART = ("systemctl", "restart", "containerd")  # a node running containerd as a systemd unit (kind)


def restart_containerd(access: NodeAccess, node: str, restart: tuple[str, ...] = SYSTEMD_CONTAINERD_RESTART,
                       timeout: float = 60) -> None:
    """Restart the node's containerd and wait (with a deadline) until ``ctr version`` answers."""
    import time

    r = access.run(node, list(restart), timeout=timeout)
    if r.returncode != 0:
        raise SetupError(f"{node}: {' '.join(restart)} failed: {(r.stderr or r.stdout).strip()[:300]}")
    end = time.monotonic() + timeout
    last = ""
    while time.monotonic() < end:
        r = access.run(node, ["ctr", "version"], timeout=10)
        if r.returncode == 0:
            return
        last = (r.stderr or r.stdout).strip()
        time.sleep(0.5)
    raise SetupError(f"{node}: containerd did not answer within {timeout:.0f}s of a restart (last: {last[:300]})")
