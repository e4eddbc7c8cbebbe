"""Run one cargo test target and read its result per Rust test case.

A libtest binary is run directly (as ``cargo test`` would: cwd = the package's folder, cargo's
environment) with ``--format json -Z unstable-options --report-time``; ``RUSTC_BOOTSTRAP=1`` in
the *binary's* environment lets a stable-built libtest accept those flags. The variable must not
reach a cargo or rustc that a test starts itself (reaper's ``test_exec_command_help`` runs
``cargo run``): build scripts that watch it would rerun and cargo would rebuild the whole
dependency graph, then again on the next plain build. So the binary also gets a PATH folder of
``cargo``/``rustc``/``rustdoc`` shims (:func:`write_shims`) that restore the user's own value
before running the real tool. Each JSON event gives a test's outcome, duration and
captured output. When a binary refuses the flags, it is run again plainly and libtest's text
output is parsed (no durations then). Doctests are run with ``cargo test --doc`` and read the
same text way. A ``harness = false`` target is one case, judged by its exit status.

A test that was running when the binary died (signal, abort, ``process::exit``) or hit the
deadline is a failure naming what happened; a binary that fails with no failing test gets an
error case, so a non-zero exit can never be reported as green.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Mapping

from ci.cargo_proc import _describe_exit, processes_under, _stream, terminate, bootstrap_env
from ci.cargo import Target
from ci.hostguard import HostGuard, attribute

JSON_FLAGS = ("--format", "json", "-Z", "unstable-options", "--report-time")
_NIGHTLY_ONLY = "only accepted on the nightly compiler"
_PANIC_AT = re.compile(r"panicked at (?P<file>[^\s:][^:\n]*):(?P<line>\d+):\d+")
_TEXT_RESULT = re.compile(r"^test (?P<name>.+?) \.\.\. (?P<res>ok|FAILED|ignored)(?:, (?P<msg>.*))?\s*$")
_TEXT_FAIL_HDR = re.compile(r"^---- (?P<name>.+?) stdout ----\s*$")


@dataclass
class Case:
    name: str
    result: str  # passed | failed | ignored | error
    seconds: float = 0.0
    output: str = ""
    message: str = ""
    file: str | None = None
    line: int | None = None


@dataclass
class TargetResult:
    target: str  # Target.id
    package: str
    kind: str
    command: list[str]
    cwd: str
    exit_code: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    fmt: str = "json"  # json | text | exit-status
    cases: list[Case] = field(default_factory=list)
    note: str = ""
    leftovers: list[str] = field(default_factory=list)  # "pid command" of processes it left running
    host_leftovers: list[str] = field(default_factory=list)  # what the guarded run left (ci.hostguard)
    leftover_tests: dict[str, list[str]] = field(default_factory=dict)  # single tests that leave it, by name
    leftover_untried: list[str] = field(default_factory=list)  # tests not re-run alone (time budget)

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "ignored": 0, "error": 0}
        for c in self.cases:
            out[c.result] = out.get(c.result, 0) + 1
        return out

    @property
    def failures(self) -> list[Case]:
        return [c for c in self.cases if c.result in ("failed", "error")]

    @property
    def ok(self) -> bool:
        return not self.failures and self.exit_code == 0 and not self.timed_out

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> "TargetResult":
        """Read a result file, ignoring fields this version does not know."""
        known = {f.name for f in fields(cls)} - {"cases"}
        case_fields = {f.name for f in fields(Case)}
        cases = [Case(**{k: v for k, v in c.items() if k in case_fields}) for c in data.get("cases", [])]
        return cls(**{k: v for k, v in data.items() if k in known}, cases=cases)


# --- parsing ---------------------------------------------------------------------------------------

def _locate(output: str) -> tuple[str | None, int | None]:
    m = _PANIC_AT.search(output or "")
    return (m["file"], int(m["line"])) if m else (None, None)


def _first_line(text: str) -> str:
    """The most telling line of a failure: the panic message, else the first non-empty line."""
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    for i, l in enumerate(lines):
        if "panicked at" in l:
            msg = lines[i + 1] if l.endswith(":") and i + 1 < len(lines) else l
            return msg[:300]
    return lines[0][:300] if lines else ""


class JsonEvents:
    """Accumulates libtest ``--format json`` events into :class:`Case` rows."""

    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.running: dict[str, float] = {}
        self.suites = 0
        self.suite_done = 0

    def feed(self, event: Mapping) -> Case | None:
        """Record one event; returns the finished case, if this event finished one."""
        kind, ev = event.get("type"), event.get("event")
        if kind == "suite":
            if ev == "started":
                self.suites += 1
            elif ev in ("ok", "failed"):
                self.suite_done += 1
            return None
        if kind != "test":
            return None
        name = event.get("name", "?")
        if ev == "started":
            self.running[name] = time.monotonic()
            return None
        if ev == "timeout":  # libtest's "running for over 60 seconds" warning: the test goes on
            return None
        self.running.pop(name, None)
        secs = float(event.get("exec_time") or 0.0)
        out = event.get("stdout") or ""
        if ev == "ok":
            case = Case(name, "passed", secs)
        elif ev == "ignored":
            case = Case(name, "ignored", 0.0, message=event.get("message") or "")
        elif ev == "failed":
            message = event.get("message") or _first_line(out) or f"test {ev}"
            file, line = _locate(out)
            case = Case(name, "failed", secs, output=out, message=message, file=file, line=line)
        else:
            return None
        self.cases[name] = case
        return case

    def finish(self, exit_code: int | None, why: str) -> list[Case]:
        """Cases still running when the binary stopped become failures naming why."""
        now = time.monotonic()
        extra = []
        for name, started in sorted(self.running.items()):
            extra.append(Case(name, "failed", now - started, message=f"did not finish: {why}"))
        self.running.clear()
        for c in extra:
            self.cases[c.name] = c
        return extra


def parse_text(output: str) -> list[Case]:
    """Cases from libtest's human output (``test x ... ok``; ``---- x stdout ----`` sections)."""
    results: dict[str, Case] = {}
    for line in output.splitlines():
        m = _TEXT_RESULT.match(line)
        if m:
            res = {"ok": "passed", "FAILED": "failed", "ignored": "ignored"}[m["res"]]
            results[m["name"]] = Case(m["name"], res, 0.0, message=(m["msg"] or "") if res == "ignored" else "")
    # failure sections: from a header to the next header or the "failures:" list
    current: str | None = None
    buf: list[str] = []

    def close() -> None:
        if current is not None and current in results:
            text = "\n".join(buf).strip("\n") + "\n"
            c = results[current]
            c.output = text
            c.message = _first_line(text) or "test failed"
            c.file, c.line = _locate(text)

    for line in output.splitlines():
        m = _TEXT_FAIL_HDR.match(line)
        if m:
            close()
            current, buf = m["name"], []
        elif current is not None and (line.strip() == "failures:" or line.startswith("test result:")):
            close()
            current, buf = None, []
        elif current is not None:
            buf.append(line)
    close()
    for c in results.values():
        if c.result == "failed" and not c.message:
            c.message = "test failed"
    return list(results.values())


# --- running -----------------------------------------------------------------------------------------


Echo = Callable[[str], None]
Wrap = Callable[[list[str]], list[str]]  # the command as run (a guard's namespace wrapper), from the command


def _fmt_case(target_id: str, c: Case) -> str:
    word = {"passed": "ok", "failed": "FAILED", "ignored": "ignored", "error": "ERROR"}[c.result]
    took = f" ({c.seconds:.2f}s)" if c.result != "ignored" else (f" ({c.message})" if c.message else "")
    line = f"    {word:8} {target_id}::{c.name}{took}\n"
    if c.result in ("failed", "error") and c.output:
        line += "".join(f"      | {l}\n" for l in c.output.rstrip("\n").splitlines())
    return line


def run_target(
    target: Target,
    *,
    env: Mapping[str, str],
    timeout: float,
    raw_log: Path | None = None,
    echo: Echo | None = None,
    cargo: str = "cargo",
    workspace_root: str | None = None,
    shim_dir: Path | None = None,
    leftovers_under: Path | None = None,
    kill_leftovers: bool = True,
    guard: HostGuard | None = None,
) -> TargetResult:
    """Run ``target`` once and return its per-test results (never raises for a failing test).

    With ``leftovers_under`` (the cargo target folder), processes running a binary from there
    that the run started and left behind (daemons a test spawned) are listed in the result and,
    with ``kill_leftovers``, terminated so they cannot affect later targets or phases. With
    ``guard`` the binary runs with private state (:mod:`ci.hostguard`); what it left anyway is
    ``host_leftovers``, and the single tests that leave it are found by running each alone.
    """
    echo = echo or (lambda s: None)
    before = processes_under(leftovers_under) if leftovers_under else {}
    run = guard.start(target.id) if guard else None
    result = _run_target(target, run.env(env) if run else env, timeout, raw_log, echo, cargo, workspace_root, shim_dir,
                         run.wrap if run else list)
    if run:
        _guarded(result, target, run.finish(), guard, env, echo)
    if leftovers_under:
        left = {pid: cmd for pid, cmd in processes_under(leftovers_under).items() if pid not in before}
        if left:
            result.leftovers = [f"{pid} {cmd}" for pid, cmd in sorted(left.items())]
            action = "terminated" if kill_leftovers else "left running (targets run in parallel)"
            echo(f"    {target.id} left {len(left)} process(es) running; {action}:\n")
            echo("".join(f"      {line}\n" for line in result.leftovers))
            if kill_leftovers:
                terminate(list(left))
    return result


def _guarded(result: TargetResult, target: Target, left: list[str], guard: HostGuard, env: Mapping[str, str],
             echo: Echo) -> None:
    """Record what a guarded run left and, for a libtest binary, which of its tests leave it."""
    if not left:
        return
    result.host_leftovers = left
    echo(f"    {target.id} left state behind ({len(left)} item(s); {guard.describe().split(';')[0]}):\n")
    echo("".join(f"      {line}\n" for line in left))
    ran = [c.name for c in result.cases if c.result in ("passed", "failed") and not c.name.startswith("<")]
    if target.kind == "doc" or not target.harness or not target.executable or not ran:
        return
    echo(f"    finding which of its {len(ran)} test(s) leave it: each run alone, guarded the same way\n")
    result.leftover_tests, result.leftover_untried = attribute(guard, target.executable, ran, cwd=target.manifest_dir,
                                                               env=env)
    for name, items in sorted(result.leftover_tests.items()):
        echo(f"      {target.id}::{name} leaves: {'; '.join(items)}\n")
    if result.leftover_untried:
        echo(f"      not tried (time budget): {', '.join(result.leftover_untried)}\n")


def _run_target(target: Target, env: Mapping[str, str], timeout: float, raw_log: Path | None, echo: Echo,
                cargo: str, workspace_root: str | None, shim_dir: Path | None, wrap: Wrap = list) -> TargetResult:
    raw = open(raw_log, "w", encoding="utf-8", errors="replace") if raw_log else None
    try:
        if target.kind == "doc":
            cmd = [cargo, "test", "--doc", "--package", target.package]
            return _run_text(target, cmd, workspace_root or target.manifest_dir, env, timeout, raw, echo, "text", wrap)
        assert target.executable, f"{target.id}: no executable"
        if not target.harness:
            return _run_text(target, [target.executable], target.manifest_dir, env, timeout, raw, echo, "exit-status",
                             wrap)
        result = _run_json(target, env, timeout, raw, echo, shim_dir, wrap)
        if result is None:  # this libtest refused the JSON flags: read its text output instead
            echo(f"    ({target.id}: libtest rejected --format json; reading its text output)\n")
            return _run_text(target, [target.executable], target.manifest_dir, env, timeout, raw, echo, "text", wrap)
        return result
    finally:
        if raw:
            raw.close()


def _run_json(target: Target, env: Mapping[str, str], timeout: float, raw, echo: Echo,
              shim_dir: Path | None = None, wrap: Wrap = list) -> TargetResult | None:
    cmd = [target.executable, *JSON_FLAGS]
    events = JsonEvents()
    other: list[str] = []
    saw_json = False

    def on_line(stream: str, line: str) -> None:
        nonlocal saw_json
        if raw:
            raw.write(line)
        if stream == "out" and line.startswith("{"):
            try:
                ev = json.loads(line)
            except ValueError:
                ev = None
            if isinstance(ev, dict):
                saw_json = True
                case = events.feed(ev)
                if case:
                    echo(_fmt_case(target.id, case))
                return
        other.append(line)
        echo(line)

    code, timed_out, took = _stream(wrap(cmd), target.manifest_dir, bootstrap_env(env, shim_dir), timeout, on_line)
    text = "".join(other)
    if not saw_json and code not in (0, None) and _NIGHTLY_ONLY in text:
        return None
    result = TargetResult(target.id, target.package, target.kind, cmd, target.manifest_dir, code, took, timed_out)
    why = f"timed out after {timeout:g}s" if timed_out else f"the test binary stopped ({_describe_exit(code)})"
    for case in events.finish(code, why):
        echo(_fmt_case(target.id, case))
    result.cases = sorted(events.cases.values(), key=lambda c: c.name)  # libtest finishes them in any order
    _guard_exit(result, text, why)
    return result


def _run_text(target: Target, cmd: list[str], cwd: str, env: Mapping[str, str], timeout: float, raw, echo: Echo,
              fmt: str, wrap: Wrap = list) -> TargetResult:
    chunks: list[str] = []

    def on_line(stream: str, line: str) -> None:
        if raw:
            raw.write(line)
        chunks.append(line)
        echo(line)

    code, timed_out, took = _stream(wrap(cmd), cwd, env, timeout, on_line)
    text = "".join(chunks)
    result = TargetResult(target.id, target.package, target.kind, cmd, cwd, code, took, timed_out, fmt=fmt)
    why = f"timed out after {timeout:g}s" if timed_out else f"the test binary stopped ({_describe_exit(code)})"
    if fmt == "exit-status":
        ok = code == 0 and not timed_out
        file, line = _locate(text)
        result.cases = [Case(target.name, "passed" if ok else "failed", took, output="" if ok else text,
                             message="" if ok else (_first_line(text) or why), file=file, line=line)]
        result.note = "harness = false: one case, judged by the exit status"
        return result
    result.cases = sorted(parse_text(text), key=lambda c: c.name)
    result.note = "libtest text output: no per-test durations"
    _guard_exit(result, text, why)
    return result


def _guard_exit(result: TargetResult, text: str, why: str) -> None:
    """A failed run must show as failed even when no test case says so."""
    if result.timed_out and not result.failures:
        result.cases.append(Case("<timeout>", "error", result.seconds, output=text[-20000:], message=why))
    elif result.exit_code not in (0, None) and not result.failures:
        msg = _first_line(text) or why
        file, line = _locate(text)
        result.cases.append(Case("<test binary>", "error", result.seconds, output=text[-20000:],
                                 message=f"{why}: {msg}" if msg != why else why, file=file, line=line))


def result_filename(target_id: str) -> str:
    """A file name for ``target_id`` (ids may hold ``:`` and ``/``), unique per id."""
    import hashlib

    safe = re.sub(r"[^\w.-]", "_", target_id)
    if safe != target_id:
        safe += "-" + hashlib.sha1(target_id.encode()).hexdigest()[:8]
    return safe


