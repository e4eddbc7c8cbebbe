"""Cargo, driven through its machine-readable interfaces.

* :func:`discover` reads ``cargo metadata --no-deps`` and returns every target ``cargo test``
  would run (lib and bin unit tests, integration tests, benches/examples with ``test = true``,
  doctests), each with a stable, unique id (the target name unless that is ambiguous).
* :func:`build_tests` builds all of them once (``cargo test --no-run``) and attaches to each the
  executable cargo reported in its JSON messages; a compile error comes back as the compiler's
  first error line plus the full rendered output.
* :func:`lint` runs ``cargo fmt --check`` and ``cargo clippy --all-targets -- -D warnings``.
* :func:`run_env` is the environment cargo gives a test binary it runs (``CARGO_MANIFEST_DIR``,
  ``CARGO_PKG_*``, library path, ``[env]`` from ``.cargo/config.toml``), so binaries can be run
  directly and their per-test JSON read.

Everything that is not a cargo call is plain data (:class:`Target`, :class:`Step`) that the
phase writes to JSON for ``tests/cargo_phase.py``.
"""

from __future__ import annotations

import json
import re
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import sh

from ci.errors import CIError

LIB_KINDS = {"lib", "rlib", "dylib", "cdylib", "staticlib", "proc-macro"}
# What `cargo test` runs when a target does not say `test = ...` (cargo's own defaults).
DEFAULT_TESTED = {"lib": True, "bin": True, "test": True, "bench": False, "example": False}


@dataclass
class Target:
    """One thing ``cargo test`` runs: a test executable, or a library's doctests (kind ``doc``)."""

    id: str  # unique in the workspace; the pytest id and the JUnit suite name
    name: str
    kind: str  # lib | bin | test | bench | example | doc
    package: str
    package_id: str
    manifest_path: str
    src_path: str
    harness: bool = True  # False: a custom main (harness = false), run without libtest flags
    required_features: list[str] = field(default_factory=list)
    executable: str | None = None
    skip_reason: str | None = None  # set when cargo did not build it (unmet required-features)

    @property
    def manifest_dir(self) -> str:
        return str(Path(self.manifest_path).parent)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> "Target":
        return cls(**data)


@dataclass
class Workspace:
    root: Path
    target_directory: Path
    packages: dict[str, dict]  # package id -> cargo metadata package (no deps)
    targets: list[Target]


@dataclass
class Step:
    """A lint or build step, reported as its own JUnit case and summary line."""

    name: str
    ok: bool
    seconds: float
    message: str = ""  # one line: the first error, or the files rustfmt would change
    output: str = ""  # full output, for the JUnit case and the log
    file: str | None = None
    line: int | None = None


def kind_of(raw_kinds: Sequence[str]) -> str:
    kinds = list(raw_kinds)
    if any(k in LIB_KINDS for k in kinds):
        return "lib"
    return kinds[0] if kinds else "?"


def _tested(target: Mapping, kind: str) -> bool:
    if kind not in DEFAULT_TESTED:
        return False  # custom-build scripts and the like
    return bool(target.get("test", DEFAULT_TESTED[kind]))


def _harness_off(manifest_path: Path) -> set[tuple[str, str]]:
    """(kind, name) of targets declared with ``harness = false`` in Cargo.toml.

    cargo metadata does not report ``harness``; such a target has its own ``main`` and does not
    understand libtest's flags, so it is run bare and judged by its exit status.
    """
    try:
        doc = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return set()
    off: set[tuple[str, str]] = set()
    lib = doc.get("lib")
    if isinstance(lib, dict) and lib.get("harness") is False:
        name = lib.get("name") or str(doc.get("package", {}).get("name", "")).replace("-", "_")
        off.add(("lib", name))
    for section, kind in (("bin", "bin"), ("test", "test"), ("bench", "bench"), ("example", "example")):
        for entry in doc.get(section, []) or []:
            if isinstance(entry, dict) and entry.get("harness") is False and entry.get("name"):
                off.add((kind, entry["name"]))
    return off


def targets_from_metadata(meta: Mapping) -> list[Target]:
    """Every workspace target ``cargo test --workspace`` runs, in a stable order, with unique ids."""
    members = set(meta.get("workspace_members") or [])
    found: list[Target] = []
    for pkg in meta.get("packages", []):
        if members and pkg["id"] not in members:
            continue
        manifest = Path(pkg["manifest_path"])
        no_harness = _harness_off(manifest)
        for t in pkg.get("targets", []):
            kind = kind_of(t.get("kind", []))
            common = dict(package=pkg["name"], package_id=pkg["id"], manifest_path=str(manifest),
                          src_path=t.get("src_path", ""), required_features=list(t.get("required-features") or []))
            if _tested(t, kind):
                found.append(Target(id=t["name"], name=t["name"], kind=kind,
                                    harness=(kind, t["name"]) not in no_harness, **common))
            if t.get("doctest", kind == "lib") and {"lib", "rlib", "proc-macro"} & set(t.get("kind", [])):
                found.append(Target(id=f"doc:{t['name']}", name=t["name"], kind="doc", **common))
    _assign_ids(found)
    order = {"lib": 0, "bin": 1, "doc": 5, "test": 2, "bench": 3, "example": 4}
    found.sort(key=lambda x: (order.get(x.kind, 9), x.package, x.name))
    return found


def _assign_ids(targets: list[Target]) -> None:
    """Plain target names where unique; ``kind:name`` then ``package/kind:name`` where not."""

    def dupes(ids: Iterable[str]) -> set[str]:
        seen: dict[str, int] = {}
        for i in ids:
            seen[i] = seen.get(i, 0) + 1
        return {i for i, n in seen.items() if n > 1}

    clash = dupes(t.id for t in targets)
    for t in targets:
        if t.id in clash and t.kind != "doc":
            t.id = f"{t.kind}:{t.name}"
    clash = dupes(t.id for t in targets)
    for t in targets:
        if t.id in clash:
            t.id = f"{t.package}/{t.id}"


def discover(cargo: sh.Command, source: Path, log: Path | None = None) -> Workspace:
    """Read the workspace with ``cargo metadata --no-deps`` (no network, no build)."""
    stderr: list[str] = []
    try:
        out = cargo("metadata", "--format-version", "1", "--no-deps", _cwd=str(source), _tty_out=False,
                    _err=stderr.append)
    except sh.ErrorReturnCode as e:
        text = "".join(stderr) or e.stderr.decode(errors="replace")
        _append(log, f"$ cargo metadata --format-version 1 --no-deps\n{text}")
        raise CIError(f"cargo metadata failed in {source}: {first_error(text)}") from None
    meta = json.loads(str(out))
    return Workspace(
        root=Path(meta["workspace_root"]),
        target_directory=Path(meta["target_directory"]),
        packages={p["id"]: p for p in meta["packages"]},
        targets=targets_from_metadata(meta),
    )


def missing_required(targets: Sequence[Target], required: Iterable[str]) -> list[str]:
    """Required names that match no runnable target (by target name or id)."""
    names = {t.name for t in targets if t.kind != "doc"} | {t.id for t in targets}
    return [r for r in required if r not in names]


# --- build -------------------------------------------------------------------------------------

_ERROR_RE = re.compile(r"^error(\[E\d+\])?: ")
_LOC_RE = re.compile(r"^\s*--> (?P<file>[^:\s]+):(?P<line>\d+):(?P<col>\d+)")


def first_error(text: str) -> str:
    """The compiler's first error as one line (``error[E0308]: mismatched types at src/x.rs:4:9``).

    Falls back to the last non-empty line when no ``error:`` line is there.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _ERROR_RE.match(line) and not line.startswith("error: could not compile") and not line.startswith(
            "error: aborting"
        ):
            for nxt in lines[i + 1 : i + 4]:
                m = _LOC_RE.match(nxt)
                if m:
                    return f"{line.strip()} at {m['file']}:{m['line']}:{m['col']}"
            return line.strip()
    rest = [l.strip() for l in lines if l.strip()]
    return rest[-1][:300] if rest else "no output"


def first_error_location(text: str) -> tuple[str | None, int | None]:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if _ERROR_RE.match(line):
            for nxt in lines[i + 1 : i + 4]:
                m = _LOC_RE.match(nxt)
                if m:
                    return m["file"], int(m["line"])
    return None, None


def match_artifacts(targets: Sequence[Target], messages: Iterable[Mapping]) -> None:
    """Attach to each target the test executable cargo reported building for it."""
    exes: dict[tuple[str, str, str], str] = {}
    for m in messages:
        if m.get("reason") != "compiler-artifact" or not m.get("executable"):
            continue
        if not (m.get("profile") or {}).get("test"):
            continue  # examples are also built, as plain binaries; only test builds run
        t = m["target"]
        exes[(m["package_id"], t["name"], kind_of(t.get("kind", [])))] = m["executable"]
    for t in targets:
        if t.kind == "doc":
            continue
        t.executable = exes.get((t.package_id, t.name, t.kind))
        if t.executable is None and t.required_features:
            t.skip_reason = f"not built: needs feature(s) {', '.join(t.required_features)}"


def build_tests(
    cargo: sh.Command,
    source: Path,
    targets: Sequence[Target],
    *,
    log: Path | None,
    echo: bool = True,
    extra_args: Sequence[str] = (),
) -> tuple[Step, list[dict]]:
    """``cargo test --workspace --no-run`` once; fills in each target's executable.

    Cargo's JSON messages (stdout) are kept in memory and returned; the human-readable progress
    and the rendered diagnostics (stderr) stream to the console and the log.
    """
    args = ["test", "--workspace", "--no-run", "--message-format=json-render-diagnostics", *extra_args]
    messages: list[dict] = []
    text: list[str] = []
    fh = _open_log(log, f"$ cargo {' '.join(args)}")

    def on_out(line: str) -> None:
        try:
            messages.append(json.loads(line))
        except ValueError:
            on_err(line)

    on_err = _sink(text, echo, fh)

    start = time.monotonic()
    try:
        proc = cargo(*args, _cwd=str(source), _out=on_out, _err=on_err, _tty_out=False, _ok_code=list(range(256)),
                     _return_cmd=True)
        code = proc.exit_code
    finally:
        if fh:
            fh.close()
    took = time.monotonic() - start
    output = "".join(text)
    if code != 0:
        file, line = first_error_location(output)
        return Step("cargo test --no-run", False, took, first_error(output), output, file, line), messages
    match_artifacts(targets, messages)
    return Step("cargo test --no-run", True, took, f"built {sum(1 for t in targets if t.executable)} test executable(s)",
                output), messages


# --- lint ----------------------------------------------------------------------------------------

_FMT_DIFF_RE = re.compile(r"^Diff in (?P<file>.+?)(?::(?P<line>\d+))?:?\s*$")


def _sink(text: list[str], echo: bool, fh) -> Callable[[str], None]:
    """A line callback: keep the line, echo it to the console (``echo``), append it to the log."""
    def take(line: str) -> None:
        text.append(line)
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
        if fh:
            fh.write(line)
            fh.flush()

    return take


def _run_step(cargo: sh.Command, name: str, args: Sequence[str], source: Path, log: Path | None,
              echo: bool) -> tuple[int, str, float]:
    text: list[str] = []
    fh = _open_log(log, f"$ cargo {' '.join(args)}")

    out = _sink(text, echo, fh)

    start = time.monotonic()
    try:
        proc = cargo(*args, _cwd=str(source), _out=out, _err_to_out=True, _tty_out=False,
                     _ok_code=list(range(256)), _return_cmd=True)
        return proc.exit_code, "".join(text), time.monotonic() - start
    finally:
        if fh:
            fh.close()


def fmt_files(output: str, root: Path) -> list[tuple[str, int | None]]:
    """Files (relative to ``root``) and first lines that ``cargo fmt --check`` says differ."""
    seen: dict[str, int | None] = {}
    for line in output.splitlines():
        m = _FMT_DIFF_RE.match(line.strip())
        if m:
            path = m["file"]
            try:
                path = str(Path(path).resolve().relative_to(root.resolve()))
            except ValueError:
                pass
            seen.setdefault(path, int(m["line"]) if m["line"] else None)
    return list(seen.items())


def lint(cargo: sh.Command, source: Path, *, log: Path | None, echo: bool = True) -> list[Step]:
    """``cargo fmt --all -- --check`` and ``cargo clippy --workspace --all-targets -- -D warnings``.

    Both always run (a formatting slip should not hide a clippy finding); each is one Step.
    """
    steps: list[Step] = []
    code, out, took = _run_step(cargo, "fmt", ["fmt", "--all", "--", "--check", "--color", "never"], source, log, echo)
    if code == 0:
        steps.append(Step("cargo fmt --check", True, took, "formatted", out))
    else:
        files = fmt_files(out, source)
        if files:
            msg = f"rustfmt would reformat {len(files)} file(s): {', '.join(f for f, _ in files[:8])}"
            msg += " (run `cargo fmt --all`)"
            steps.append(Step("cargo fmt --check", False, took, msg, out, files[0][0], files[0][1]))
        else:
            steps.append(Step("cargo fmt --check", False, took, first_error(out), out))
    args = ["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]
    code, out, took = _run_step(cargo, "clippy", args, source, log, echo)
    if code == 0:
        steps.append(Step("cargo clippy -D warnings", True, took, "no warnings", out))
    else:
        file, line = first_error_location(out)
        steps.append(Step("cargo clippy -D warnings", False, took, first_error(out), out, file, line))
    return steps


# --- running test binaries -------------------------------------------------------------------------


# --- helpers --------------------------------------------------------------------------------------

def _open_log(log: Path | None, header: str):
    if log is None:
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "a", encoding="utf-8", errors="replace")
    fh.write(f"\n{header}\n")
    fh.flush()
    return fh


def _append(log: Path | None, text: str) -> None:
    fh = _open_log(log, text)
    if fh:
        fh.close()

