"""critest (cri-tools' CRI validation suite): build it, run it, judge it against a checked-in list.

Pure logic apart from :func:`build`; the phase (``ci/phases/critest.py``) drives it.

- :func:`build`: critest and the matching ginkgo CLI, built once through the Go module proxy into
  ``<cache>/tools/critest-<version>/`` (atomically: a half build never looks complete).
- :func:`argv`: critest's command line; :data:`OFFLINE_SKIP` the specs this pipeline cannot run.
- :func:`parse_junit` and :func:`judge`: ginkgo's JUnit against ``tests/critest/expected-<runtime>.yaml``.
  Reaper does not isolate on purpose, so some CRI expectations cannot hold on it; every such spec
  is listed with its reason, and both an unlisted failure and a listed spec that passes fail the run.
"""

from __future__ import annotations

import json
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ci import console
from ci.cluster.k8s_build import _atomically
from ci.errors import SetupError, ToolMissing, UsageError
from ci.tools import Runner, ShRunner, which

# The Go module proxy here serves only v1.34.0, v1.36.0 and v1.37.0 of sigs.k8s.io/cri-tools (no
# v1.33.x): v1.34.0 is the closest to the pipeline's Kubernetes v1.33. CRI v1 is backward compatible
# and newer features are probed at run time (the spec Skip()s when the runtime does not report them).
CRITEST_VERSION = "v1.34.0"
# `critest -parallel N` (N > 1) re-executes itself through the `ginkgo` CLI found on PATH; it must be
# the ginkgo/v2 that cri-tools v1.34.0's go.mod requires.
GINKGO_VERSION = "v2.25.0"
CRITEST_MODULE = "sigs.k8s.io/cri-tools"
GINKGO_MODULE = "github.com/onsi/ginkgo/v2"
BUILD_TIMEOUT = 1800.0  # seconds; ~60 s with a warm GOCACHE, more when every module is downloaded

# Specs this pipeline cannot run, matched by ginkgo against the full spec text (checked with
# `critest --ginkgo.dry-run`: 64 of the 108 validation specs remain). Only the test image is local.
OFFLINE_SKIP = "|".join([
    "Image Manager",  # removes its images and pulls them again from registry.k8s.io / gcr.io
    "portforward",  # nginx and hostnet-nginx images (not local) and fixed host ports 12001-12003
    "port mapping",  # nginx image; the host-port case needs the CNI portmap plugin (conflist: bridge+host-local)
    "Multiple Containers",  # httpd and nginx images, not overridable by -test-images-file
    "AppArmor",  # no AppArmor on the pipeline's hosts (the specs would Skip() themselves anyway)
    "SELinux",  # no SELinux (the specs are not even registered then)
    "SeccompProfilePath",  # host-written seccomp profiles: a kernel/host feature, not a CRI behaviour
    "NoNewPrivs",  # the nonewprivs image, not overridable
    "UserNamespaces",  # needs idmapped mounts reported by the handler (Skip()s otherwise)
    "SupplementalGroupsPolicy",  # the test-image-predefined-group image (gcr.io), not overridable
    "HostPID", "PodPID", "ContainerPID",  # the nginx image by a fixed name, not overridable
])

# ginkgo's suite-level nodes, reported as test cases: a failure counts, a pass is not a spec
SUITE_NODE = re.compile(r"\[(Synchronized)?(Before|After)Suite\]|\[Report(Before|After)Suite\]|\[DeferCleanup \(Suite\)\]")


# ------------------------------------------------------------------------------------ build


def _go_env() -> dict[str, str]:
    # Static binaries (critest is a `go test -c` binary: upstream builds it with CGO off too).
    return {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"}


def tool_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "tools" / f"critest-{CRITEST_VERSION}"


def build(cache_dir: Path, log: Path, runner: Runner | None = None, jobs: int = 2) -> Path:
    """Path to ``critest`` (``ginkgo`` beside it), built once into :func:`tool_dir` and reused."""
    out = tool_dir(cache_dir)
    if (out / "critest").is_file() and (out / "ginkgo").is_file():
        return out / "critest"
    go = which("go")
    if runner is None and not go:
        raise ToolMissing("`go` not found on PATH: critest is built through the Go module proxy; install Go "
                          "(apt-get install golang, or https://go.dev/dl)")
    run = runner if runner is not None else ShRunner(log)
    console.info(f"building critest {CRITEST_VERSION} and ginkgo {GINKGO_VERSION} into {out} (log: {log})")

    def step(argv: list[str], cwd: Path) -> str:
        r = run(argv, check=False, cwd=cwd, env=_go_env(), timeout=BUILD_TIMEOUT, stderr=False)
        if r.returncode != 0:
            last = " | ".join(ln.strip() for ln in (r.out + r.err).strip().splitlines()[-2:])[:300]
            raise SetupError(f"building critest {CRITEST_VERSION} failed: `{' '.join(argv[:3])} ...` exit "
                             f"{r.returncode} (log: {log}){': ' + last if last else ''}")
        return r.out

    def fill(staging: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="reaper-ci-critest-") as tmp:
            mod = Path(tmp)  # the wrapper module: cri-tools as a dependency (the NOTES' recipe)
            meta = json.loads(step(["go", "mod", "download", "-json", f"{CRITEST_MODULE}@{CRITEST_VERSION}"], mod))
            go_line = re.search(r"^go (\S+)$", Path(meta["GoMod"]).read_text(), re.M)
            (mod / "go.mod").write_text(wrapper_gomod(go_line.group(1) if go_line else "1.24.1"))
            ldflags = f"-s -w -X {CRITEST_MODULE}/pkg/version.Version={CRITEST_VERSION.lstrip('v')}"
            # cmd/critest holds only a _test.go file: `go build`/`go install` refuse it, `go test -c` builds it
            step(["go", "test", "-c", "-p", str(jobs), "-trimpath", "-ldflags", ldflags,
                  "-o", str(staging / "critest"), f"{CRITEST_MODULE}/cmd/critest"], mod)
            step(["go", "build", "-p", str(jobs), "-trimpath", "-ldflags", "-s -w",
                  "-o", str(staging / "ginkgo"), f"{GINKGO_MODULE}/ginkgo"], mod)
        missing = [b for b in ("critest", "ginkgo") if not (staging / b).is_file()]
        if missing:
            raise SetupError(f"critest build finished without {', '.join(missing)} (log: {log})")

    _atomically(out, fill)
    return out / "critest"


def wrapper_gomod(go_version: str) -> str:
    """The wrapper module's go.mod: requiring cri-tools and ginkgo pins both (ginkgo at the version
    cri-tools itself requires, so the CLI and the library inside critest agree)."""
    return (f"module reaperci.local/critestbuild\n\ngo {go_version}\n\n"
            f"require (\n\t{CRITEST_MODULE} {CRITEST_VERSION}\n\t{GINKGO_MODULE} {GINKGO_VERSION}\n)\n")


# ------------------------------------------------------------------------------------ run


SUITE_TIMEOUT = 600  # seconds: runc passes in about 1 minute, reaper's working specs in about 5 (4 in parallel)


def argv(critest: Path, endpoint: str, handler: str, junit: Path, skip: str = OFFLINE_SKIP, parallel: int = 1,
         images_file: Path | None = None, focus: str | None = None, timeout: float = SUITE_TIMEOUT) -> list[str]:
    """critest's command line. Both endpoints are explicit: they override /etc/crictl.yaml, which
    critest reads whatever -config says. JUnit goes through ginkgo (-report-dir is a no-op)."""
    sock = endpoint if "://" in endpoint else f"unix://{endpoint}"
    out = [str(critest), f"-runtime-endpoint={sock}", f"-image-endpoint={sock}", f"-runtime-handler={handler}"]
    if images_file is not None:
        out.append(f"-test-images-file={Path(images_file).resolve()}")
    if parallel > 1:
        out.append(f"-parallel={parallel}")  # needs `ginkgo` on PATH (the phase puts tool_dir first)
    if skip:
        out.append(f"--ginkgo.skip={skip}")
    if focus:
        out.append(f"--ginkgo.focus={focus}")
    # ginkgo's own deadline for the whole suite: a spec that hangs on the runtime (reaper's attach)
    # is interrupted then and reported failed in the JUnit, instead of holding the run for ginkgo's 1 h
    out += ["--ginkgo.no-color", "--ginkgo.v", f"--ginkgo.timeout={int(timeout)}s",
            f"--ginkgo.junit-report={Path(junit).resolve()}"]
    return out


def images_file(path: Path, image: str) -> Path:
    """critest's -test-images-file: the local test image for both overridable images. critest's
    busybox specs run top, sh, sleep, cat, echo, id, ls, touch, hostname, dd, ping and brctl and
    read /etc/passwd for RunAsUserName (nobody): the pipeline's image (Debian's busybox-static,
    one link per applet, root and nobody in /etc/passwd) has them. The web-server image is only
    used by specs OFFLINE_SKIP leaves out."""
    doc = {"defaultTestContainerImage": image, "webServerTestImage": image}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ judge


def case_name(case: ET.Element) -> str:
    """A JUnit testcase's spec text as ``--ginkgo.focus`` matches it (``[It] `` dropped)."""
    name = case.get("name", "").strip()
    return name[len("[It] "):] if name.startswith("[It] ") else name


def parse_junit(path: Path) -> dict[str, str]:
    """Spec text (``[It] `` dropped: the text --ginkgo.focus matches) -> passed|failed|skipped.
    ginkgo v2 writes <failure> (failed, timedout, aborted), <error> (panicked, interrupted) or
    <skipped> (skipped, pending); suite nodes keep their name ("[BeforeSuite]")."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise SetupError(f"the JUnit report {path} cannot be read: {e}") from None
    results: dict[str, str] = {}
    for case in root.iter("testcase"):
        name = case_name(case)
        if case.find("failure") is not None or case.find("error") is not None:
            state = "failed"
        elif case.find("skipped") is not None or case.get("status") in ("skipped", "pending"):
            state = "skipped"
        else:
            state = "passed" if case.get("status", "passed") == "passed" else "failed"
        if results.get(name) != "failed":  # a name seen twice (parallel nodes): a failure wins
            results[name] = state
    return results


@dataclass(frozen=True)
class Entry:
    spec: str  # the exact spec text, or a regex over it (full match)
    reason: str

    def matches(self, name: str) -> bool:
        if name == self.spec:
            return True
        try:
            return re.fullmatch(self.spec, name) is not None
        except re.error:
            return False


def load_expected(path: Path, tool: str = "critest") -> list[Entry]:
    """``tests/<tool>/expected-<runtime>.yaml``: a list of {spec, reason}; every reason is required."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"{tool}: expected-failure list {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{tool}: {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise UsageError(f"{tool}: {path}: expected a list of {{spec, reason}} entries (or [])")
    out = []
    for i, item in enumerate(doc, 1):
        where = f"{tool}: {path}: entry {i}"
        if not isinstance(item, dict) or set(item) - {"spec", "reason"}:
            raise UsageError(f"{where}: must be a mapping with only `spec` and `reason`, got {item!r}"[:300])
        spec, reason = item.get("spec"), item.get("reason")
        if not isinstance(spec, str) or not spec.strip():
            raise UsageError(f"{where}: `spec` is missing or empty")
        if not isinstance(reason, str) or not reason.strip():
            raise UsageError(f"{where} ({spec[:80]!r}): `reason` is missing or empty: say why it cannot pass")
        out.append(Entry(spec.strip(), " ".join(reason.split())))
    return out


@dataclass
class Verdict:
    unexpected_failures: list[str] = field(default_factory=list)  # failed, on no entry
    now_passing: list[tuple[str, str]] = field(default_factory=list)  # (spec, entry): listed, but passed
    expected_failed: list[tuple[str, str]] = field(default_factory=list)  # (spec, reason): listed and failed
    not_run: list[str] = field(default_factory=list)  # entries whose specs were all skipped or absent
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def ran(self) -> int:
        return self.passed + self.failed

    @property
    def ok(self) -> bool:
        """No unexpected failure, no listed spec that passes, and at least one spec ran (a skip regex
        or a focus that selects nothing must not look green)."""
        return not self.unexpected_failures and not self.now_passing and self.ran > 0


def judge(results: dict[str, str], expected: list[Entry]) -> Verdict:
    v = Verdict()
    for name, state in sorted(results.items()):
        if state == "failed" or not SUITE_NODE.match(name):
            setattr(v, state, getattr(v, state) + 1)
        entry = next((e for e in expected if e.matches(name)), None)
        if state == "failed":
            if entry is None:
                v.unexpected_failures.append(name)
            else:
                v.expected_failed.append((name, entry.reason))
        elif state == "passed" and entry is not None:
            v.now_passing.append((name, entry.spec))
    for e in expected:
        if not any(e.matches(n) and s != "skipped" for n, s in results.items()):
            v.not_run.append(e.spec)
    return v


def table(v: Verdict, tool: str = "critest") -> str:
    """A console summary: each spec that matters for the verdict, then the counts."""
    rows = [(n, "failed (unexpected)", "not on the expected-failure list") for n in v.unexpected_failures]
    rows += [(n, "now-passing", f"listed as {e[:60]!r}: remove it from the list") for n, e in v.now_passing]
    rows += [(n, "expected-failure", r[:80]) for n, r in v.expected_failed]
    rows += [(s, "skipped (listed, not run)", "skipped or absent in this run") for s in v.not_run]
    lines = console.grid(("Spec", "Result", "Note"), rows) if rows else []
    counts = (f"{v.passed} passed, {v.failed} failed ({len(v.expected_failed)} expected), {v.skipped} skipped; "
              f"{len(v.unexpected_failures)} unexpected failure(s), {len(v.now_passing)} now passing, "
              f"{len(v.not_run)} listed not run")
    status = "OK" if v.ok else ("FAILED: no spec ran" if v.ran == 0 else "FAILED")
    return "\n".join([*lines, counts, f"{tool} verdict: {status}"])
