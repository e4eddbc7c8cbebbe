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
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

from ci.config_values import count as _count, duration, seconds as _seconds, versions as _versions
from ci.errors import UsageError
from ci.hostguard import DEFAULT_PRIVATE_PATHS, DEFAULT_STATE_ENV, parse_state_env

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_REQUIRED_TARGETS = ("integration_io", "integration_exec")
DEFAULT_TARGET_TIMEOUT = 1800.0  # seconds one cargo test binary may run before it is killed
DEFAULT_K8S_VERSION = "v1.33.13"
DEFAULT_ETCD_VERSION = "v3.5.21"
DEFAULT_CONTAINERD_VERSION = "v1.7.29"
# matrix defaults: reaper claims "Kubernetes 1.25+" (its Helm chart) and both containerd config
# layouts (1.x and 2.x) without an upper bound; the cells are the oldest and newest of each that the
# Go module proxy serves and that build with this toolchain, proven here (README: Version matrix)
DEFAULT_MATRIX_CONTAINERD = ("v1.7.29", "v2.2.9")
DEFAULT_MATRIX_K8S = ("v1.33.13", "v1.35.8")
DEFAULT_IMAGE = "docker.io/library/busybox:reaper-ci"
DEFAULT_PAUSE_IMAGE = "registry.k8s.io/pause:reaper-ci"
# kindest/node image for the kind path, same minor as the local path's Kubernetes: the v1.33
# image of kind v0.29.0's release notes, pinned by digest (multi-arch amd64/arm64).
DEFAULT_KIND_NODE_IMAGE = "kindest/node:v1.33.1@sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f"
DEFAULT_STATE_DIR = Path("/var/lib/reaper-ci")
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "reaper-ci"


@dataclass(frozen=True)
class Config:
    # Inputs
    source: Path | None  # Cargo workspace under test (None: no source, reference runtime only)
    artifacts: Path
    required_targets: tuple[str, ...] = DEFAULT_REQUIRED_TARGETS
    # Phase 1
    lint: bool = True  # cargo fmt --check + cargo clippy (--no-lint / REAPER_NO_LINT=1 skips them)
    target_timeout: float = DEFAULT_TARGET_TIMEOUT
    private_paths: tuple[str, ...] = DEFAULT_PRIVATE_PATHS  # host folders each test binary sees empty and its own
    state_env: tuple[tuple[str, str], ...] = ()  # (variable, path in the binary's scratch folder)
    private_ns: bool = True  # root: each test binary in a private mount namespace (--no-private-ns: on the host)
    test_jobs: int | None = None  # test binaries at once (None: 4 with private namespaces, else 1)
    test_threads: int = 8  # libtest threads per test binary (RUST_TEST_THREADS; the caller's own wins)
    serial_targets: tuple[str, ...] = ()  # targets that must run alone (nothing else at the same time)
    # Cluster
    provisioner: str = "auto"  # auto | kind | local | existing
    kubeconfig: Path | None = None  # existing: the cluster's kubeconfig (kind/local write their own)
    context: str | None = None  # existing: a context of that kubeconfig (None: its current one)
    node_access: str = "auto"  # auto (the provisioner's own: host shell, docker exec) | pods (host-exec pods)
    node_selector: str | None = None  # label selector: the nodes the run uses (None: every schedulable node)
    nodes: int = 1  # kind: how many nodes (1 control plane + nodes-1 workers)
    containerd_restart: str | None = None  # node command restarting containerd in place (S41), overrides discovery
    # matrix: the cells are every containerd x Kubernetes version pair
    matrix_containerd: tuple[str, ...] = DEFAULT_MATRIX_CONTAINERD
    matrix_k8s: tuple[str, ...] = DEFAULT_MATRIX_K8S
    runtime: str = "runc"  # reaper | runc: what will run behind the handler (``auto`` resolved by parse; existing: by the nodes)
    runtime_requested: str = "auto"  # auto | reaper | runc: what the command line or environment asked for
    cluster_name: str = "reaper-ci"
    keep_cluster: bool = False
    repeat: int = 1  # run the scenario suite this many times on one cluster (flake counting)
    base: str | None = None  # compare: the commit before the change
    head: str | None = None  # compare: the commit after it
    good: str | None = None  # bisect: a commit where the selected scenarios pass
    bad: str | None = None  # bisect: a commit where they fail
    soak_duration: float = 4500.0  # soak: seconds the long-lived pods are watched (default 75 min: past reaper's 1 h wait limit)
    expect: str | None = None  # expected-outcomes file (None: the project's default for the runtime; "none": no list)
    k8s_version: str = DEFAULT_K8S_VERSION
    etcd_version: str = DEFAULT_ETCD_VERSION
    containerd_version: str = DEFAULT_CONTAINERD_VERSION
    k8s_bin_dir: Path | None = None
    cache_dir: Path = DEFAULT_CACHE_DIR
    state_dir: Path = DEFAULT_STATE_DIR
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


@dataclass(frozen=True)
class Option:
    """One option: its flag, its environment twin and its default (the text a flag would carry;
    None: absent). :func:`parse` turns the text into the Config field's type."""

    flag: str
    env: str
    default: str | None = None
    choices: tuple[str, ...] = ()
    switch: bool = False  # a flag without a value (its twin: 1/true/yes/on)

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("--source", "REAPER_SOURCE"),
    Option("--artifacts", "CI_ARTIFACTS_DIR"),
    Option("--required-targets", "REAPER_REQUIRED_TARGETS"),
    Option("--no-lint", "REAPER_NO_LINT", switch=True),
    Option("--target-timeout", "REAPER_TARGET_TIMEOUT"),
    Option("--private-paths", "REAPER_CI_PRIVATE_PATHS", ",".join(DEFAULT_PRIVATE_PATHS)),
    Option("--state-env", "REAPER_CI_STATE_ENV", ",".join(DEFAULT_STATE_ENV)),
    Option("--no-private-ns", "REAPER_CI_NO_PRIVATE_NS", switch=True),
    Option("--test-jobs", "REAPER_TEST_JOBS"),
    Option("--test-threads", "REAPER_TEST_THREADS", "8"),
    Option("--serial-targets", "REAPER_SERIAL_TARGETS"),
    Option("--provisioner", "REAPER_PROVISIONER", "auto", choices=("auto", "kind", "local", "existing")),
    Option("--kubeconfig", "REAPER_KUBECONFIG"),
    Option("--context", "REAPER_KUBE_CONTEXT"),
    Option("--node-access", "REAPER_NODE_ACCESS", "auto", choices=("auto", "pods")),
    Option("--node-selector", "REAPER_NODE_SELECTOR"),
    Option("--nodes", "REAPER_KIND_NODES"),
    Option("--containerd-restart", "REAPER_CONTAINERD_RESTART"),
    Option("--containerd", "REAPER_MATRIX_CONTAINERD", ",".join(DEFAULT_MATRIX_CONTAINERD)),
    Option("--k8s", "REAPER_MATRIX_K8S", ",".join(DEFAULT_MATRIX_K8S)),
    Option("--runtime", "REAPER_RUNTIME", "auto", choices=("auto", "reaper", "runc")),
    Option("--cluster-name", "REAPER_CLUSTER_NAME", "reaper-ci"),
    Option("--keep-cluster", "REAPER_KEEP_CLUSTER", switch=True),
    Option("--repeat", "REAPER_K8S_REPEAT"),
    Option("--expect", "REAPER_EXPECT"),
    Option("--duration", "REAPER_SOAK_DURATION", "75m"),
    Option("--base", "REAPER_COMPARE_BASE"),
    Option("--head", "REAPER_COMPARE_HEAD"),
    Option("--good", "REAPER_BISECT_GOOD"),
    Option("--bad", "REAPER_BISECT_BAD"),
    Option("--k8s-version", "REAPER_K8S_VERSION", DEFAULT_K8S_VERSION),
    Option("--etcd-version", "REAPER_ETCD_VERSION", DEFAULT_ETCD_VERSION),
    Option("--containerd-version", "REAPER_CONTAINERD_VERSION", DEFAULT_CONTAINERD_VERSION),
    Option("--k8s-bin-dir", "REAPER_K8S_BIN_DIR"),
    Option("--cache-dir", "REAPER_CI_CACHE", str(DEFAULT_CACHE_DIR)),
    Option("--state-dir", "REAPER_CI_STATE_DIR", str(DEFAULT_STATE_DIR)),
    Option("--kind-node-image", "REAPER_KIND_NODE_IMAGE", DEFAULT_KIND_NODE_IMAGE),
    Option("--runtime-class", "REAPER_RUNTIME_CLASS", "reaper-v2"),
    Option("--shim-binary", "REAPER_SHIM_BINARY", "containerd-shim-reaper-v2"),
    Option("--runtime-binary", "REAPER_RUNTIME_BINARY", "reaper-runtime"),
    Option("--image", "REAPER_TEST_IMAGE", DEFAULT_IMAGE),
)


# options a command parses itself, besides OPTIONS (its parser and `python -m ci <command> --help` read them here)
COMMAND_OPTIONS: dict[str, tuple[Option, ...]] = {
    "conformance": (Option("--parallel", "REAPER_CONFORMANCE_PARALLEL", "4"), Option("--focus", "")),
    "critest": (Option("--parallel", "", "1"), Option("--focus", "")),
}

def _parser(prog: str, actions: Sequence[str] = ()) -> _Parser:
    p = _Parser(prog=prog, add_help=False, allow_abbrev=False)
    for o in OPTIONS:
        if o.switch:
            p.add_argument(o.flag, action="store_true", default=None)
        else:
            p.add_argument(o.flag, choices=o.choices or None)
    if actions:
        p.add_argument("action", nargs="?", choices=tuple(actions))
    return p


def _values(ns: argparse.Namespace, env: Mapping[str, str], prog: str) -> dict[str, object]:
    """Each option's value: the flag, else its environment twin, else its default (switches: bool)."""
    out: dict[str, object] = {}
    for o in OPTIONS:
        given = getattr(ns, o.dest)
        if o.switch:
            out[o.dest] = bool(given) if given is not None else _truthy(_env(env, o.env))
            continue
        value = given if given is not None else (_env(env, o.env) or o.default)
        if o.choices and value is not None and value not in o.choices:
            raise UsageError(f"{prog}: {o.env}={value!r}: expected one of {', '.join(o.choices)}")
        out[o.dest] = value
    return out


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

    v = _values(ns, env, prog)
    source = _resolve_source(v["source"], cwd)
    artifacts = Path(v["artifacts"] or (cwd / "artifacts")).resolve()
    targets_raw = v["required_targets"]
    required = DEFAULT_REQUIRED_TARGETS if targets_raw is None else tuple(t for t in targets_raw.split(",") if t.strip())
    bin_dir = v["k8s_bin_dir"]
    if bin_dir is not None and not Path(bin_dir).is_dir():
        raise UsageError(f"--k8s-bin-dir {bin_dir}: no such directory")
    target_timeout = _seconds("--target-timeout", v["target_timeout"], DEFAULT_TARGET_TIMEOUT)
    repeat = _count("--repeat", v["repeat"], 1)
    private_paths = tuple(x.strip().rstrip("/") for x in v["private_paths"].split(",") if x.strip())
    bad = [x for x in private_paths if not x.startswith("/") or x in ("", "/") or ".." in Path(x).parts]
    if bad:
        raise UsageError(f"{prog}: --private-paths {v['private_paths']!r}: absolute folders below / expected "
                         f"(not: {', '.join(bad) or '/'})")
    try:
        state_env = parse_state_env([x.strip() for x in v["state_env"].split(",") if x.strip()])
    except ValueError as e:
        raise UsageError(f"{prog}: --state-env {e}") from None
    for flag in ("--runtime-class", "--cluster-name"):  # a RuntimeClass/handler and a kind cluster are DNS labels
        value = v[flag[2:].replace("-", "_")]
        if not _DNS_LABEL.fullmatch(value):
            raise UsageError(f"{prog}: {flag} {value!r}: must be a DNS label (lowercase letters, digits and '-', "
                             "starting and ending with a letter or digit, at most 63 characters)")
    for flag in ("--shim-binary", "--runtime-binary"):
        value = v[flag[2:].replace("-", "_")]
        if not value or "/" in value:
            raise UsageError(f"{prog}: {flag} {value!r}: must be the name of a binary the workspace builds (no '/')")
    provisioner, kubeconfig = v["provisioner"], v["kubeconfig"]
    if provisioner == "existing" and not kubeconfig:
        raise UsageError(f"{prog}: --provisioner existing needs --kubeconfig PATH (or REAPER_KUBECONFIG): the cluster "
                         "to test on")
    if kubeconfig and provisioner != "existing":
        raise UsageError(f"{prog}: --kubeconfig is for --provisioner existing (kind and local write their own)")
    if v["context"] and provisioner != "existing":
        raise UsageError(f"{prog}: --context is for --provisioner existing")
    nodes = _count("--nodes", v["nodes"], 1)
    if nodes > 1 and provisioner != "kind":
        raise UsageError(f"{prog}: --nodes {nodes}: only the kind provisioner makes more than one node "
                         "(the local cluster is this host; an existing cluster has the nodes it has: --node-selector)")
    requested = v["runtime"]
    if requested == "reaper" and source is None and provisioner != "existing":
        raise UsageError(f"{prog}: --runtime reaper needs a Cargo workspace: --source PATH (or REAPER_SOURCE), or run "
                         "it in the workspace")
    return Config(
        source=source,
        artifacts=artifacts,
        required_targets=tuple(t.strip() for t in required),
        lint=not v["no_lint"],
        target_timeout=target_timeout,
        private_paths=private_paths,
        state_env=state_env,
        private_ns=not v["no_private_ns"],
        test_jobs=None if v["test_jobs"] in (None, "auto") else _count("--test-jobs", v["test_jobs"], 1),
        test_threads=_count("--test-threads", v["test_threads"], 1),
        serial_targets=tuple(t.strip() for t in (v["serial_targets"] or "").split(",") if t.strip()),
        provisioner=provisioner,
        kubeconfig=Path(kubeconfig).expanduser().resolve() if kubeconfig else None,
        context=v["context"],
        node_access=v["node_access"],
        node_selector=v["node_selector"],
        nodes=nodes,
        containerd_restart=v["containerd_restart"],
        matrix_containerd=_versions("--containerd", v["containerd"]),
        matrix_k8s=_versions("--k8s", v["k8s"]),
        # existing: what runs behind the handler is read from the nodes (``auto`` stays until then)
        runtime=requested if requested != "auto" or provisioner == "existing" else ("reaper" if source else "runc"),
        runtime_requested=requested,
        cluster_name=v["cluster_name"],
        keep_cluster=v["keep_cluster"],
        repeat=repeat,
        expect=v["expect"],
        soak_duration=duration("--duration", v["duration"]),
        base=v["base"], head=v["head"], good=v["good"], bad=v["bad"],
        k8s_version=v["k8s_version"],
        etcd_version=v["etcd_version"],
        containerd_version=v["containerd_version"],
        k8s_bin_dir=Path(bin_dir).resolve() if bin_dir else None,
        cache_dir=Path(v["cache_dir"]).resolve(),
        state_dir=Path(v["state_dir"]),
        kind_node_image=v["kind_node_image"],
        runtime_class=v["runtime_class"],
        shim_binary=v["shim_binary"],
        runtime_binary=v["runtime_binary"],
        image=v["image"],
        pytest_args=pytest_args,
        action=getattr(ns, "action", None),
        ci=_env(env, "CI") in ("1", "true", "True"),
        github_actions=_env(env, "GITHUB_ACTIONS") == "true",
    )


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _truthy(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


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
