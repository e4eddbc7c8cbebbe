"""Phase 1 reporting: JUnit XML per Rust test case, the console table, GitHub Actions output.

JUnit layout (one file, ``<artifacts>/phase1-junit.xml``):

* suite ``phase1.steps``: one case per step (``cargo fmt --check``, ``cargo clippy -D warnings``,
  ``cargo test --no-run``), failed with the first error line and the full output;
* one suite per cargo target (name = target id, e.g. ``integration_io``), one case per Rust
  test (``classname`` = target id, ``name`` = the libtest path such as ``tests::reads_stdout``),
  with its duration; failures carry the panic message and the captured output; ignored tests
  are ``skipped`` with libtest's reason;
* a required target that does not exist, or was not built, is an ``error`` case in suite
  ``phase1.required``; a target that crashed, timed out or exited non-zero without a failing
  test gets an ``error`` case named ``<test binary>`` / ``<timeout>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from junit_xml import TestCase, TestSuite, to_xml_report_string

from ci import console
from ci.cargo import Step
from ci.cargo_libtest import Case, TargetResult

MAX_OUTPUT = 200_000  # characters of output kept per JUnit case


@dataclass
class Verdict:
    steps: list[Step]
    results: list[TargetResult]
    missing: list[str]  # required targets absent from the workspace, or not built
    not_run: list[tuple[str, str]]  # (target id, reason) selected but with no result
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (target id, reason) cargo did not build
    strays: list[str] = field(default_factory=list)  # processes of the workspace's binaries alive after every target

    @property
    def failed_tests(self) -> list[str]:
        return [f"{r.target}::{c.name}" for r in self.results for c in r.failures]

    @property
    def failed_steps(self) -> list[Step]:
        return [s for s in self.steps if not s.ok]

    @property
    def leaks(self) -> list[tuple[str, list[str]]]:
        """(who, what it left) per finding: the single tests that leave state, else the whole target."""
        out: list[tuple[str, list[str]]] = []
        for r in self.results:
            out += [(f"{r.target}::{n}", items) for n, items in sorted(r.leftover_tests.items())]
            named = {i for items in r.leftover_tests.values() for i in items}
            rest = [i for i in r.host_leftovers if i not in named]  # on the host, a single run finds it already there
            if rest:
                out.append((r.target, rest))
        if self.strays:  # escaped every guard (another namespace and session): whose, no one can say
            out.append(("phase1 (after every target ended)", [f"process {p} (ended by Phase 1)" for p in self.strays]))
        return out

    @property
    def ok(self) -> bool:
        return not (self.failed_tests or self.failed_steps or self.missing or self.not_run or self.leaks)

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "ignored": 0, "error": 0}
        for r in self.results:
            for k, v in r.counts().items():
                out[k] = out.get(k, 0) + v
        return out

    def headline(self, artifacts: Path | None = None, limit: int = 10) -> str:
        """The one line the user sees when the phase fails."""
        parts = []
        failed = self.failed_tests
        if failed:
            shown = ", ".join(failed[:limit]) + (f" and {len(failed) - limit} more" if len(failed) > limit else "")
            parts.append(f"{len(failed)} Rust test(s) failed: {shown}")
        if self.missing:
            parts.append(f"required cargo test target(s) missing: {', '.join(self.missing)}")
        for tid, why in self.not_run:
            parts.append(f"{tid} not run ({why})")
        for s in self.failed_steps:
            parts.append(f"{s.name} failed: {s.message}")
        leaks = self.leaks
        if leaks:
            parts.append(f"{len(leaks)} test(s) left state behind: {', '.join(w for w, _ in leaks[:limit])}")
        where = f" (details: {artifacts / 'phase1-junit.xml'}, log {artifacts / 'phase1.log'})" if artifacts else ""
        return "; ".join(parts) + where


_ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\([0-9A-Za-z])")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean(text: str | None) -> str:
    """Text safe for XML 1.0: colour codes and control characters removed."""
    return _XML_ILLEGAL.sub("", _ANSI.sub("", text or ""))


def _cut(text: str) -> str:
    text = clean(text)
    return text if len(text) <= MAX_OUTPUT else "[...cut...]\n" + text[-MAX_OUTPUT:]


def _case(r: TargetResult, c: Case) -> TestCase:
    tc = TestCase(clean(c.name), classname=r.target, elapsed_sec=round(c.seconds, 6), file=c.file, line=c.line)
    if c.result == "failed":
        tc.add_failure_info(message=clean(c.message) or "failed", output=_cut(c.output), failure_type="failure")
    elif c.result == "error":
        tc.add_error_info(message=clean(c.message) or "error", output=_cut(c.output), error_type="error")
    elif c.result == "ignored":
        tc.add_skipped_info(message=clean(c.message) or "ignored")
    return tc


def suites(v: Verdict) -> list[TestSuite]:
    out: list[TestSuite] = []
    if v.steps:
        cases = []
        for s in v.steps:
            tc = TestCase(s.name, classname="phase1.steps", elapsed_sec=round(s.seconds, 3), file=s.file, line=s.line)
            if not s.ok:
                tc.add_failure_info(message=clean(s.message), output=_cut(s.output), failure_type="failure")
            cases.append(tc)
        out.append(TestSuite("phase1.steps", cases))
    if v.missing or v.not_run:
        cases = []
        for name in v.missing:
            tc = TestCase(name, classname="phase1.required", elapsed_sec=0.0)
            tc.add_error_info(message=f"required cargo test target {name!r} is missing", error_type="missing")
            cases.append(tc)
        for tid, why in v.not_run:
            tc = TestCase(tid, classname="phase1.required", elapsed_sec=0.0)
            tc.add_error_info(message=f"{tid} was not run: {why}", error_type="not-run")
            cases.append(tc)
        out.append(TestSuite("phase1.required", cases))
    for tid, why in v.skipped:
        tc = TestCase("<not built>", classname=tid, elapsed_sec=0.0)
        tc.add_skipped_info(message=why)
        out.append(TestSuite(tid, [tc]))
    if v.leaks:
        cases = []
        for who, items in v.leaks:
            tc = TestCase(who, classname="phase1.host-leftovers", elapsed_sec=0.0)
            tc.add_failure_info(message=clean(f"left behind: {'; '.join(items[:6])}"), output=clean("\n".join(items)),
                                failure_type="host-leftovers")
            cases.append(tc)
        out.append(TestSuite("phase1.host-leftovers", cases))
    for r in v.results:
        props = {"package": r.package, "kind": r.kind, "command": " ".join(r.command), "cwd": r.cwd,
                 "exit": str(r.exit_code), "format": r.fmt}
        if r.note:
            props["note"] = r.note
        if r.leftovers:
            props["leftover_processes"] = "; ".join(r.leftovers)
        out.append(TestSuite(r.target, [_case(r, c) for c in r.cases], package=r.package, properties=props))
    return out


def write_junit(path: Path, v: Verdict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_xml_report_string(suites(v), encoding="utf-8"), encoding="utf-8")
    return path


# --- console and GitHub ---------------------------------------------------------------------------

def _status(r: TargetResult) -> str:
    if r.timed_out:
        return "timeout"
    if r.host_leftovers:
        return "left state" if r.ok else "failed, left state"
    return "passed" if r.ok else "failed"


def _rows(v: Verdict, md: bool = False) -> list[tuple[str, ...]]:
    """One row per step, target, missing target, not-run and skipped test: name, result, counts,
    time. In Markdown (``md``) names are code and the reasons go into the result cell."""
    code = (lambda s: f"`{s}`") if md else (lambda s: s)
    rows = [(s.name, "passed" if s.ok else "failed", "", "", "", f"{s.seconds:.1f}s") for s in v.steps]
    for r in v.results:
        c = r.counts()
        rows.append((code(r.target), _status(r), str(c["passed"]), str(c["failed"] + c["error"]), str(c["ignored"]),
                     f"{r.seconds:.1f}s"))
    blank = ("", "", "", "")
    rows += [(code(name), "missing (required)" if md else "missing", *blank) for name in v.missing]
    rows += [(code(tid), f"not run: {why}" if md else "not run", *blank) for tid, why in v.not_run]
    rows += [((code(tid), f"skipped: {why}") if md else (f"{tid} ({why})", "skipped")) + blank for tid, why in v.skipped]
    return rows


HEAD = ("Target / step", "Result", "Passed", "Failed", "Ignored", "Time")
NUMBERS = (2, 3, 4, 5)


def _totals(v: Verdict) -> str:
    c = v.counts()
    return f"{c['passed']} passed, {c['failed'] + c['error']} failed, {c['ignored']} ignored"


def table(v: Verdict) -> str:
    lines = ["Phase 1 summary", *console.grid(HEAD, _rows(v), right=NUMBERS)]
    lines.append(f"Rust tests: {_totals(v)} in {len(v.results)} target(s)")
    for r in v.results:
        if r.leftovers:
            lines.append(f"{r.target} left {len(r.leftovers)} process(es) running after it finished: "
                         + "; ".join(r.leftovers))
    if v.failed_tests:
        lines.append("Failed:")
        lines += [f"  {name}" for name in v.failed_tests]
    if v.leaks:
        lines.append("Left state behind (contained by the host guard; unguarded, it stays on the host):")
        lines += [f"  {who}: {'; '.join(items[:8])}" for who, items in v.leaks]
    return "\n".join(lines)


def step_summary(v: Verdict) -> None:
    """Markdown for ``$GITHUB_STEP_SUMMARY``: a row per step and target, then the failing tests."""
    out = ["## Phase 1: cargo", "", *console.markdown(HEAD, _rows(v, md=True), right=NUMBERS),
           "", f"**{_totals(v)}**", ""]
    if v.failed_tests:
        out += ["Failed tests:", ""] + [f"- `{n}`" for n in v.failed_tests] + [""]
    if v.leaks:
        out += ["Tests that left state behind:", ""] + [f"- `{w}`: {'; '.join(i[:6])}" for w, i in v.leaks] + [""]
    console.append_step_summary(out)


def annotate(v: Verdict, root: Path | None = None) -> None:
    """One ``::error`` per failing test / step (with file and line when a panic or error gave them)."""
    if not console.in_github():
        return
    for s in v.failed_steps:
        console.annotate_error(s.name, s.message, file=s.file, line=s.line)
    for r in v.results:
        for c in r.failures:
            console.annotate_error(f"{r.target}::{c.name}", c.message or "failed", file=c.file, line=c.line)
    for name in v.missing:
        console.annotate_error("phase1", f"required cargo test target {name!r} is missing")
    for who, items in v.leaks:
        console.annotate_error(who, f"left state behind: {'; '.join(items[:6])}")
