"""Expected outcomes: the scenario suite as a gate (known failures listed, strict both ways).

An expected file is a YAML list; each entry names a scenario and why it fails there:

    - scenario: S31                      # required: a scenario of tests/k8s (S01, S31, ...)
      phase: call                        # optional: call | setup | teardown (where it fails)
      match: "exit code must be 137"     # optional: a regex searched in that failure's first line
      reason: "reaper bug: an exec killed by a signal reports 1 (reaper-runtime/main.rs:1083)"
      flaky: true                        # optional: fails only sometimes (its failure neither fails
                                         # the run nor hides another; its rate is reported)

A bug class that can hit any scenario (say, a mount the runtime leaves whenever no later pod
replaced it first) is one entry with ``scenario: "*"``; it must be ``flaky`` and have a ``match``
(the failure's first line names what was left): a scenario that failed only that way is ``flaky``,
and a listed scenario's failure of that kind does not count as "otherwise than listed".

Per scenario the verdict is ``passed``; ``known`` (listed, failed as listed); ``new`` (not listed,
or failed otherwise than listed); ``fixed`` (listed, passed: the run fails so the list stays true);
``flaky`` (listed flaky; with ``--repeat`` also a scenario that passed in some runs and failed in
others while not listed as flaky, which is ``new``); ``skipped``; ``infrastructure`` (the cluster
failed, judged elsewhere). Exit 0 when nothing is ``new`` or ``fixed``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import yaml

from ci import console
from ci.config import REPO_ROOT
from ci.errors import UsageError

SUITE = REPO_ROOT / "tests" / "k8s"
PHASES = ("setup", "call", "teardown")
KEYS = {"scenario", "phase", "match", "reason", "flaky"}
ORDER = ("new", "fixed", "flaky", "known", "infrastructure", "skipped", "passed")


def suite_scenarios(suite: Path = SUITE) -> dict[str, str]:
    """Scenario ID (``S31``) -> its row name (``S31 killed_by_a_signal``), read from the test files."""
    out = {}
    for f in sorted(suite.glob("test_*.py")):
        for m in re.finditer(r"^def test_(s\d+)_(\w+)\(", f.read_text(encoding="utf-8"), re.M):
            out[m.group(1).upper()] = f"{m.group(1).upper()} {m.group(2)}"
    return out


@dataclass(frozen=True)
class Entry:
    scenario: str
    reason: str
    phase: str | None = None
    match: str | None = None
    flaky: bool = False

    def fits(self, failures: Mapping[str, str]) -> bool:
        """Whether a scenario's failures (phase -> first line) are all ones this entry describes: in
        its phase (when given) and matching its pattern (when given). A failure in another phase or
        with another message is not hidden by a listed one."""
        return bool(failures) and all((self.phase is None or p == self.phase)
                                      and (self.match is None or re.search(self.match, m or ""))
                                      for p, m in failures.items())


ANY = "*"  # an entry for a bug class that can hit any scenario (flaky, with a match, required)


@dataclass(frozen=True)
class Expectations:
    path: Path | None
    entries: Mapping[str, Entry] = field(default_factory=dict)  # by scenario ID
    anywhere: tuple[Entry, ...] = ()  # scenario "*": may fail any scenario this way

    @property
    def label(self) -> str:
        return str(self.path) if self.path else "none (every scenario must pass)"


def load(path: Path | None, scenarios: Mapping[str, str] | None = None) -> Expectations:
    """Read and check an expected file; every problem is one line (UsageError, exit 2)."""
    if path is None:
        return Expectations(None)
    scenarios = suite_scenarios() if scenarios is None else scenarios
    where = f"--expect {path}"
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"{where}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"{where}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        data = []
    if not isinstance(data, list):
        raise UsageError(f"{where}: expected a YAML list of entries (scenario, reason, ...), got {type(data).__name__}")
    entries: dict[str, Entry] = {}
    anywhere: list[Entry] = []
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise UsageError(f"{where}: entry {i} is not a mapping")
        unknown = sorted(set(item) - KEYS)
        if unknown:
            raise UsageError(f"{where}: entry {i} has unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
        sid = str(item.get("scenario") or "").strip().upper()
        if not sid:
            raise UsageError(f"{where}: entry {i} names no scenario")
        if sid != ANY and sid not in scenarios:
            raise UsageError(f"{where}: entry {i}: no scenario {sid} in the suite (it has {min(scenarios)}..{max(scenarios)})")
        if sid in entries:
            raise UsageError(f"{where}: entry {i}: {sid} is listed twice")
        reason = str(item.get("reason") or "").strip()
        if not reason:
            raise UsageError(f"{where}: entry {i} ({sid}) has no reason")
        phase = item.get("phase")
        if phase is not None and phase not in PHASES:
            raise UsageError(f"{where}: entry {i} ({sid}): phase {phase!r} is not one of {', '.join(PHASES)}")
        match = item.get("match")
        if match is not None:
            try:
                re.compile(str(match))
            except re.error as e:
                raise UsageError(f"{where}: entry {i} ({sid}): match is not a regex: {e}") from None
        flaky = item.get("flaky", False)
        if not isinstance(flaky, bool):
            raise UsageError(f"{where}: entry {i} ({sid}): flaky must be true or false")
        entry = Entry(sid, reason, phase, None if match is None else str(match), flaky)
        if sid == ANY:
            if not flaky or match is None:
                raise UsageError(f"{where}: entry {i} ({ANY}, any scenario) needs flaky: true and a match: a bug "
                                 "class that may hit any scenario, named by its message")
            anywhere.append(entry)
        else:
            entries[sid] = entry
    return Expectations(Path(path), entries, tuple(anywhere))


def default_path(runtime: str, commit: str | None, folder: Path = SUITE) -> Path | None:
    """The project's expected file for this runtime: ``expected-<runtime>-<commit7>.yaml`` when one
    exists for the source's commit, else ``expected-<runtime>.yaml``, else none."""
    for name in ([f"expected-{runtime}-{commit[:7]}.yaml"] if commit else []) + [f"expected-{runtime}.yaml"]:
        if (folder / name).is_file():
            return folder / name
    return None


@dataclass
class Judged:
    scenario: str  # row name
    verdict: str
    detail: str = ""
    rate: str = ""  # with repeats: failed k of n


def _sid(row: str) -> str:
    return row.split(" ", 1)[0]


def results_by_scenario(docs: Sequence[Mapping]) -> dict[str, list[tuple[str, Mapping[str, str]]]]:
    """The suite's verdict documents (one per run) per scenario: [(passed | failed | infrastructure |
    skipped, {failing phase: its first line})], one item per run (an error counts as failed)."""
    runs: dict[str, list[tuple[str, Mapping[str, str]]]] = {}
    for doc in docs:
        fails = doc.get("failures") or {}
        for key, result in (("passed", "passed"), ("failed", "failed"), ("errors", "failed"),
                            ("infrastructure", "infrastructure"), ("skipped", "skipped")):
            for row in doc.get(key, []):
                runs.setdefault(row, []).append((result, fails.get(row) or {}))
    return runs


def judge(docs: Sequence[Mapping], exp: Expectations) -> list[Judged]:
    """The suite's verdict documents (one per run) against the expectations, one row per scenario."""
    runs = results_by_scenario(docs)
    out = [_one(row, results, exp.entries.get(_sid(row)), exp.anywhere) for row, results in runs.items()]
    ran = {_sid(r) for r in runs}
    out += [Judged(f"{sid}", "skipped", f"listed but not run ({e.reason})") for sid, e in exp.entries.items()
            if sid not in ran]
    return sorted(out, key=lambda j: (ORDER.index(j.verdict), j.scenario))


def _covered(failure: Mapping[str, str], entry: Entry | None, anywhere: Sequence[Entry]) -> bool:
    """Every failing phase of one run is described by the scenario's entry or by an any-scenario one."""
    return bool(failure) and all((entry is not None and entry.fits({p: m})) or any(a.fits({p: m}) for a in anywhere)
                                 for p, m in failure.items())


def _one(row: str, results: list[tuple[str, Mapping[str, str]]], entry: Entry | None,
         anywhere: Sequence[Entry] = ()) -> Judged:
    kinds = [r for r, _ in results]
    failed = [f for r, f in results if r == "failed"]
    n = len(results)
    rate = f"failed {len(failed)} of {n}" if n > 1 else ""
    first = next((f"{p}: {m}" for f in failed for p, m in f.items()), "")
    if "infrastructure" in kinds and not failed:
        return Judged(row, "infrastructure", "the cluster failed under it", rate)
    if not failed:
        if kinds and all(k == "skipped" for k in kinds):
            return Judged(row, "skipped", entry.reason if entry else "")
        if entry and not entry.flaky:
            return Judged(row, "fixed", f"listed as failing ({entry.reason}) but passed", rate)
        return Judged(row, "passed", f"listed flaky, passed {n} of {n}" if entry else "", rate)
    by_class = [a for a in anywhere if any(a.fits({p: m}) for f in failed for p, m in f.items())]
    if entry is None and by_class and all(_covered(f, None, anywhere) for f in failed):
        return Judged(row, "flaky", f"{by_class[0].reason} (any scenario; {rate or 'failed'})", rate)
    if entry is None:
        if len(failed) < n and "passed" in kinds:
            return Judged(row, "new", f"flaky, not listed: {first}", rate)
        return Judged(row, "new", first, rate)
    if (by_class and not any(entry.fits(f) for f in failed) and all(_covered(f, None, anywhere) for f in failed)
            and all(entry.phase is None or entry.phase in f for f in failed)):
        # the class hit the phase the scenario's own failure is listed for first (a container killed before
        # the scenario could judge it): the scenario's reason would name what was never seen
        return Judged(row, "flaky", f"{by_class[0].reason} (any scenario; {rate or 'failed'})", rate)
    odd = [f for f in failed if not entry.fits(f) and not _covered(f, entry, anywhere)]
    if odd:
        got = "; ".join(f"{p}: {m}" for p, m in odd[0].items())
        want = f"{entry.phase or 'any phase'}" + (f" matching /{entry.match}/" if entry.match else "")
        return Judged(row, "new", f"failed otherwise than listed (listed: {want}): {got}", rate)
    if entry.flaky:
        return Judged(row, "flaky", f"{entry.reason} ({rate or 'failed'})", rate)
    if len(failed) < n:
        return Judged(row, "known", f"{entry.reason}; passed in {n - len(failed)} of {n} run(s): list it flaky?", rate)
    return Judged(row, "known", entry.reason, rate)


def gate_ok(rows: Iterable[Judged]) -> bool:
    return not any(j.verdict in ("new", "fixed") for j in rows)


def report(rows: Sequence[Judged], exp: Expectations, artifacts: Path) -> str:
    """Console table (new first, then fixed, flaky, known), k8s-gate.json, step summary, ::error lines."""
    counts = {v: sum(1 for j in rows if j.verdict == v) for v in ORDER}
    not_run = [j.scenario for j in rows if j.verdict == "skipped" and j.detail.startswith("listed but not run")]
    shown = [j for j in rows if j.verdict != "passed" and j.scenario not in not_run]
    head = ("Scenario", "Gate", "Why")
    table = console.grid(head, [(j.scenario, j.verdict, (j.detail + (f" [{j.rate}]" if j.rate and j.rate not in j.detail else ""))[:160])
                                for j in shown]) if shown else ["(every scenario passed)"]
    summary = ", ".join(f"{counts[v]} {v}" for v in ORDER if counts[v])
    extra = [f"listed but not run (not selected or skipped): {', '.join(not_run)}"] if not_run else []
    text = "\n".join([f"Gate: expected outcomes from {exp.label}", *table, *extra, f"Gate: {summary or 'nothing ran'}"])
    console.write_text(artifacts / "k8s-gate.txt", text + "\n")
    console.write_text(artifacts / "k8s-gate.json", json.dumps(
        {"expect": str(exp.path) if exp.path else None, "ok": gate_ok(rows), "counts": counts,
         "scenarios": [j.__dict__ for j in rows]}, indent=1) + "\n")
    md = ["## Gate: expected outcomes", "", f"From `{exp.label}`: **{summary}**", ""]
    if shown:
        md += console.markdown(head, [(f"`{j.scenario}`", j.verdict, j.detail[:200]) for j in shown])
    console.append_step_summary(md + [""])
    for j in rows:
        if j.verdict in ("new", "fixed"):
            console.annotate_error(j.scenario, f"{j.verdict}: {j.detail}")
    return text
