"""One frozen configuration object, built once from flags and environment, passed explicitly.

Every nox session parses its positional arguments (``nox -s X -- ...``) with :func:`parse`.
Options the pipeline knows are consumed; everything else is handed to pytest untouched
(``-k exit_code``, ``-x``), so pytest's own selection works. Environment variables give
defaults that flags override.
"""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

from ci.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_REQUIRED_TARGETS = ("integration_io", "integration_exec")
DEFAULT_TARGET_TIMEOUT = 1800.0  # seconds one cargo test binary may run before it is killed
DEFAULT_K8S_VERSION = "v1.33.13"
DEFAULT_ETCD_VERSION = "v3.5.21"
DEFAULT_CONTAINERD_VERSION = "v1.7.29"
DEFAULT_IMAGE = "docker.io/library/busybox:reaper-ci"
DEFAULT_PAUSE_IMAGE = "registry.k8s.io/pause:reaper-ci"
# kindest/node image for the kind path, same minor as the local path's Kubernetes: the v1.33
# image of kind v0.29.0's release notes, pinned by digest (multi-arch amd64/arm64).
DEFAULT_KIND_NODE_IMAGE = "kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f"


@dataclass(frozen=True)
class Config:
    # Inputs
    source: Path | None  # Cargo workspace under test (None: no source, reference runtime only)
    artifacts: Path
    required_targets: tuple[str, ...] = DEFAULT_REQUIRED_TARGETS
    # Phase 1
    lint: bool = True  # cargo fmt --check + cargo clippy (--no-lint / REAPER_NO_LINT=1 skips them)
    target_timeout: float = DEFAULT_TARGET_TIMEOUT
    # Cluster
    provisioner: str = "auto"  # auto | kind | local
    runtime: str = "runc"  # reaper | runc: what will run behind the handler (``auto`` resolved by parse)
    runtime_requested: str = "auto"  # auto | reaper | runc: what the command line or environment asked for
    cluster_name: str = "reaper-ci"
    keep_cluster: bool = False
    repeat: int = 1  # run the scenario suite this many times on one cluster (flake counting)
    k8s_version: str = DEFAULT_K8S_VERSION
    etcd_version: str = DEFAULT_ETCD_VERSION
    containerd_version: str = DEFAULT_CONTAINERD_VERSION
    k8s_bin_dir: Path | None = None
    cache_dir: Path = Path.home() / ".cache" / "reaper-ci"
    state_dir: Path = Path("/var/lib/reaper-ci")
    kind_node_image: str = DEFAULT_KIND_NODE_IMAGE
    # Runtime under test
    runtime_class: str = "reaper-v2"
    runtime_type: str = "io.containerd.reaper.v2"
    shim_binary: str = "containerd-shim-reaper-v2"
    runtime_binary: str = "reaper-runtime"
    image: str = DEFAULT_IMAGE
    pause_image: str = DEFAULT_PAUSE_IMAGE
    # Pass-through
    pytest_args: tuple[str, ...] = ()
    action: str | None = None  # for `nox -s cluster -- up|down|status|logs`
    ci: bool = False
    github_actions: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def k8s_bin(self) -> Path:
        """Folder holding kube-* binaries, etcd and pause (given, or the build cache)."""
        if self.k8s_bin_dir is not None:
            return self.k8s_bin_dir
        return self.cache_dir / "k8s" / f"{self.k8s_version}-etcd-{self.etcd_version}" / "bin"

    @property
    def containerd_bin(self) -> Path:
        """Folder holding containerd, containerd-shim-runc-v2 and ctr for the local cluster: the
        given --k8s-bin-dir when it has them, else the build cache."""
        from ci.cluster.k8s_build import CONTAINERD_BINARIES  # standard library only

        if self.k8s_bin_dir is not None and all((self.k8s_bin_dir / b).is_file() for b in CONTAINERD_BINARIES):
            return self.k8s_bin_dir
        return self.cache_dir / "containerd" / self.containerd_version / "bin"

    @property
    def node_arch(self) -> str:
        return platform.machine()

    def with_(self, **kw) -> "Config":
        return replace(self, **kw)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit 2; we want one line
        raise UsageError(f"{self.prog}: {message}")


def _parser(prog: str, actions: Sequence[str] = ()) -> _Parser:
    p = _Parser(prog=prog, add_help=False, allow_abbrev=False)
    p.add_argument("--source")
    p.add_argument("--artifacts")
    p.add_argument("--required-targets")
    p.add_argument("--no-lint", action="store_true", default=None)
    p.add_argument("--target-timeout")
    p.add_argument("--provisioner", choices=("auto", "kind", "local"))
    p.add_argument("--runtime", choices=("auto", "reaper", "runc"))
    p.add_argument("--cluster-name")
    p.add_argument("--keep-cluster", action="store_true", default=None)
    p.add_argument("--repeat")
    p.add_argument("--k8s-version")
    p.add_argument("--etcd-version")
    p.add_argument("--containerd-version")
    p.add_argument("--k8s-bin-dir")
    p.add_argument("--cache-dir")
    p.add_argument("--state-dir")
    p.add_argument("--kind-node-image")
    p.add_argument("--runtime-class")
    p.add_argument("--shim-binary")
    p.add_argument("--runtime-binary")
    p.add_argument("--image")
    if actions:
        p.add_argument("action", nargs="?", choices=tuple(actions))
    return p


def _env(env: Mapping[str, str], name: str) -> str | None:
    v = env.get(name)
    return v if v not in (None, "") else None


def parse(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    prog: str = "nox",
    actions: Sequence[str] = (),
    allow_pytest_args: bool = True,
    cwd: Path | None = None,
) -> Config:
    """Build the Config from ``argv`` (nox posargs) and ``env``.

    Unknown ``-x``-style arguments are passed to pytest when ``allow_pytest_args``; otherwise
    they are a usage error. ``--opt`` spellings that look like ours but are not are always errors
    (a typo like ``--runtme`` must not silently reach pytest).
    """
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    p = _parser(prog, actions)
    ns, rest = p.parse_known_args(list(argv))
    known_long = {a for act in p._actions for a in act.option_strings}
    for arg in rest:
        if arg.startswith("--") and arg != "--" and not allow_pytest_args:
            raise UsageError(f"{prog}: unknown option {arg} (see README.md for the options)")
        if arg.startswith("--") and "=" not in arg and _looks_like_ours(arg, known_long):
            raise UsageError(f"{prog}: unknown option {arg}; did you mean {_looks_like_ours(arg, known_long)}?")
    if rest and not allow_pytest_args:
        raise UsageError(f"{prog}: unexpected argument(s): {' '.join(rest)}")
    pytest_args = tuple(a for a in rest if a != "--")

    source = _resolve_source(ns.source or _env(env, "REAPER_SOURCE"), cwd)
    artifacts = Path(ns.artifacts or _env(env, "CI_ARTIFACTS_DIR") or (cwd / "artifacts")).resolve()
    targets_raw = ns.required_targets if ns.required_targets is not None else _env(env, "REAPER_REQUIRED_TARGETS")
    required = DEFAULT_REQUIRED_TARGETS if targets_raw is None else tuple(t for t in targets_raw.split(",") if t.strip())
    cache = Path(ns.cache_dir or _env(env, "REAPER_CI_CACHE") or (Path.home() / ".cache" / "reaper-ci"))
    bin_dir = ns.k8s_bin_dir or _env(env, "REAPER_K8S_BIN_DIR")
    if bin_dir is not None and not Path(bin_dir).is_dir():
        raise UsageError(f"--k8s-bin-dir {bin_dir}: no such directory")
    no_lint = ns.no_lint if ns.no_lint is not None else _truthy(_env(env, "REAPER_NO_LINT"))
    target_timeout = _seconds("--target-timeout", ns.target_timeout or _env(env, "REAPER_TARGET_TIMEOUT"), DEFAULT_TARGET_TIMEOUT)
    repeat = _count("--repeat", ns.repeat or _env(env, "REAPER_K8S_REPEAT"), 1)
    keep = ns.keep_cluster if ns.keep_cluster is not None else (_env(env, "REAPER_KEEP_CLUSTER") in ("1", "true", "yes"))
    names = {"--runtime-class": ns.runtime_class or _env(env, "REAPER_RUNTIME_CLASS") or "reaper-v2",
             "--cluster-name": ns.cluster_name or _env(env, "REAPER_CLUSTER_NAME") or "reaper-ci"}
    for flag, value in names.items():  # a RuntimeClass/handler and a kind cluster are DNS labels
        if not _DNS_LABEL.fullmatch(value):
            raise UsageError(f"{prog}: {flag} {value!r}: must be a DNS label (lowercase letters, digits and '-', "
                             "starting and ending with a letter or digit, at most 63 characters)")
    for flag, value in (("--shim-binary", ns.shim_binary or _env(env, "REAPER_SHIM_BINARY")),
                        ("--runtime-binary", ns.runtime_binary or _env(env, "REAPER_RUNTIME_BINARY"))):
        if value is not None and (not value or "/" in value):
            raise UsageError(f"{prog}: {flag} {value!r}: must be the name of a binary the workspace builds (no '/')")
    requested = ns.runtime or _env(env, "REAPER_RUNTIME") or "auto"
    if requested not in ("auto", "reaper", "runc"):
        raise UsageError(f"{prog}: REAPER_RUNTIME={requested!r}: expected auto, reaper or runc")
    if requested == "reaper" and source is None:
        raise UsageError(f"{prog}: --runtime reaper needs a Cargo workspace: --source PATH (or REAPER_SOURCE), or run "
                         "it in the workspace")
    return Config(
        source=source,
        artifacts=artifacts,
        required_targets=tuple(t.strip() for t in required),
        lint=not no_lint,
        target_timeout=target_timeout,
        provisioner=ns.provisioner or _env(env, "REAPER_PROVISIONER") or "auto",
        runtime=requested if requested != "auto" else ("reaper" if source else "runc"),
        runtime_requested=requested,
        cluster_name=ns.cluster_name or _env(env, "REAPER_CLUSTER_NAME") or "reaper-ci",
        keep_cluster=bool(keep),
        repeat=repeat,
        k8s_version=ns.k8s_version or _env(env, "REAPER_K8S_VERSION") or DEFAULT_K8S_VERSION,
        etcd_version=ns.etcd_version or _env(env, "REAPER_ETCD_VERSION") or DEFAULT_ETCD_VERSION,
        containerd_version=ns.containerd_version or _env(env, "REAPER_CONTAINERD_VERSION") or DEFAULT_CONTAINERD_VERSION,
        k8s_bin_dir=Path(bin_dir).resolve() if bin_dir else None,
        cache_dir=cache.resolve(),
        state_dir=Path(ns.state_dir or _env(env, "REAPER_CI_STATE_DIR") or "/var/lib/reaper-ci"),
        kind_node_image=ns.kind_node_image or _env(env, "REAPER_KIND_NODE_IMAGE") or DEFAULT_KIND_NODE_IMAGE,
        runtime_class=ns.runtime_class or _env(env, "REAPER_RUNTIME_CLASS") or "reaper-v2",
        shim_binary=ns.shim_binary or _env(env, "REAPER_SHIM_BINARY") or "containerd-shim-reaper-v2",
        runtime_binary=ns.runtime_binary or _env(env, "REAPER_RUNTIME_BINARY") or "reaper-runtime",
        image=ns.image or _env(env, "REAPER_TEST_IMAGE") or DEFAULT_IMAGE,
        pytest_args=pytest_args,
        action=getattr(ns, "action", None),
        ci=_env(env, "CI") in ("1", "true", "True"),
        github_actions=_env(env, "GITHUB_ACTIONS") == "true",
    )


_DNS_LABEL = __import__("re").compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _truthy(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def _number(flag: str, raw: str | None, default, cast, ok, rule: str):
    """``raw`` (a flag's or variable's text) as ``cast``, or ``default`` when absent; one-line errors."""
    if raw is None:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise UsageError(f"{flag} {raw}: not {'a whole number' if cast is int else 'a number of seconds'}") from None
    if not ok(value):
        raise UsageError(f"{flag} {raw}: must be {rule}")
    return value


def _count(flag: str, raw: str | None, default: int) -> int:
    return _number(flag, raw, default, int, lambda v: v >= 1, "1 or more")


def _seconds(flag: str, raw: str | None, default: float) -> float:
    return _number(flag, raw, default, float, lambda v: v > 0, "more than 0 seconds")


def _looks_like_ours(arg: str, known: set[str]) -> str | None:
    """Return our option that ``arg`` is a near-miss of (edit distance <= 2), if any."""
    import difflib

    name = arg.split("=", 1)[0]
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    return close[0] if close else None


def _resolve_source(raw: str | None, cwd: Path) -> Path | None:
    """The Cargo workspace: given explicitly (must exist and hold Cargo.toml), else cwd if it is one."""
    if raw is None:
        return cwd.resolve() if (cwd / "Cargo.toml").is_file() else None
    path = Path(raw).expanduser()
    if not path.exists():
        raise UsageError(f"--source {raw}: no such directory")
    if not path.is_dir():
        raise UsageError(f"--source {raw}: not a directory")
    if not (path / "Cargo.toml").is_file():
        raise UsageError(f"--source {raw}: no Cargo.toml there (not a Cargo workspace)")
    return path.resolve()
