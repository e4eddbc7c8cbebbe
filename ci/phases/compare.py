"""``nox -s compare -- --base REF --head REF [--repeat N]``: what a change did to the scenarios.

Both commits of the ``--source`` repository are checked out as worktrees beside it (never the
user's own checkout), built (cached by commit, one shared cargo target folder), and run through
the suite on one cluster, base first. Per scenario, base -> head:

* ``regression`` — passed on base, fails on head (its failure message on head is shown);
* ``fix`` — failed on base, passes on head;
* ``flaky`` — passed and failed on the same side (with ``--repeat``): not a regression;
* ``unchanged`` — the same on both (failing on both, or passing on both).

Exit 1 when there is a regression, else 0; ``compare.txt``, ``compare.json``, the step summary
and one ``::error`` per regression. Expected-outcome files do not apply (both sides are raw).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ci import config as config_mod
from ci import console, expect, revisions
from ci.config import Config
from ci.errors import CIError, SetupError, UsageError

ORDER = ("regression", "fix", "flaky", "unchanged")


def side_results(artifacts: Path) -> list[dict]:
    """The suite's verdict documents written under one side's artifacts (one per run)."""
    return [json.loads(p.read_text()) for p in sorted(Path(artifacts).glob("**/k8s-run/*/verdict.json"))]


def outcomes(docs: Sequence[Mapping]) -> dict[str, list[tuple[str, str]]]:
    """Scenario -> [(passed|failed|infrastructure|skipped, first failure line)] over the runs."""
    return {row: [(result, next((f"{p}: {m}" for p, m in fails.items()), "")) for result, fails in results]
            for row, results in expect.results_by_scenario(docs).items()}


@dataclass
class Change:
    scenario: str
    kind: str  # regression | fix | flaky | unchanged
    base: str  # e.g. "pass", "FAIL", "2/3 pass"
    head: str
    detail: str = ""


def _say(results: list[tuple[str, str]]) -> str:
    ran = [r for r, _ in results if r in ("passed", "failed")]
    if not ran:
        return results[0][0] if results else "absent"
    p = ran.count("passed")
    if p == len(ran):
        return "pass"
    return "FAIL" if p == 0 else f"{p}/{len(ran)} pass"


def classify(base: Mapping[str, list], head: Mapping[str, list]) -> list[Change]:
    out = []
    for row in sorted(set(base) | set(head)):
        b, h = base.get(row, []), head.get(row, [])
        sb, sh = _say(b), _say(h)
        head_fail = next((m for r, m in h if r == "failed"), "")
        if "/" in sb or "/" in sh:
            kind = "flaky"
        elif sb == "pass" and sh == "FAIL":
            kind = "regression"
        elif sb == "FAIL" and sh == "pass":
            kind = "fix"
        else:
            kind = "unchanged"
        out.append(Change(row, kind, sb, sh, head_fail if kind in ("regression", "flaky") else ""))
    return sorted(out, key=lambda c: (ORDER.index(c.kind), c.base != "FAIL", c.scenario))


def report(changes: Sequence[Change], base: str, head: str, artifacts: Path, seconds: dict[str, float]) -> str:
    counts = {k: sum(1 for c in changes if c.kind == k) for k in ORDER}
    shown = [c for c in changes if c.kind != "unchanged" or c.base != "pass"]
    head_row = ("Scenario", "Change", f"base {base[:7]}", f"head {head[:7]}", "Head's failure")
    lines = [f"Compare {base[:12]} -> {head[:12]}", *console.grid(head_row, [
        (c.scenario, c.kind, c.base, c.head, c.detail[:140]) for c in shown])]
    lines.append(f"Compare: {counts['regression']} regression(s), {counts['fix']} fix(es), {counts['flaky']} flaky, "
                 f"{counts['unchanged']} unchanged; suite {seconds.get('base', 0):.0f}s + {seconds.get('head', 0):.0f}s, "
                 f"builds {seconds.get('builds', 0):.0f}s, total {seconds.get('total', 0):.0f}s")
    text = "\n".join(lines)
    console.write_text(artifacts / "compare.txt", text + "\n")
    console.write_text(artifacts / "compare.json", json.dumps(
        {"base": base, "head": head, "counts": counts, "seconds": seconds, "scenarios": [c.__dict__ for c in changes]},
        indent=1) + "\n")
    console.append_step_summary([f"## Compare `{base[:7]}` → `{head[:7]}`", "",
                                 *console.markdown(head_row, [(f"`{c.scenario}`", c.kind, c.base, c.head, c.detail[:200])
                                                              for c in shown]), "", lines[-1], ""])
    for c in changes:
        if c.kind == "regression":
            console.annotate_error(f"regression: {c.scenario}", f"passed on {base[:7]}, fails on {head[:7]}: {c.detail}")
    return text


def build(cfg: Config, repo: Path, sha: str, side: str) -> tuple[Config, float]:
    """``sha``'s worktree built (cached by commit): the Config that runs it, and the build's seconds."""
    from ci.cluster import runtime as rt
    from ci.tools import ShRunner

    tree = revisions.checkout(repo, sha, cfg.cache_dir)
    sub = cfg.with_(source=tree, artifacts=cfg.artifacts / "compare" / side, keep_cluster=True, expect="none",
                    runtime="reaper", runtime_requested="reaper")
    started = time.monotonic()
    log = sub.artifacts / "runtime-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with console.phase(f"build {side} {sha[:12]} ({revisions.subject(repo, sha)[:60]})"):
        rt.build(sub, ShRunner(log), log)
    return sub, time.monotonic() - started


def run_side(sub: Config, sha: str, side: str) -> tuple[list[dict], float]:
    """The suite on a built side (the cluster kept for the next side); its verdict documents."""
    from ci.phases import k8s

    started = time.monotonic()
    with console.phase(f"compare: {side} {sha[:12]}"):
        try:
            k8s.run(sub)
        except SetupError:  # the cluster, not a scenario: the compare ends here
            raise
        except CIError as e:  # scenario failures are what we compare; anything else ends the compare
            if not side_results(sub.artifacts):
                raise
            console.error(f"{side}: {e}")
    docs = side_results(sub.artifacts)
    if not docs:
        raise SetupError(f"compare: the suite wrote no verdict on {side} {sha[:12]} (see {sub.artifacts})")
    return docs, time.monotonic() - started


def prepare(cfg: Config, flags: tuple[str, str], refs: tuple[str | None, str | None]) -> tuple[Path, str, str]:
    if cfg.source is None:
        raise UsageError(f"{flags[0]}/{flags[1]} compare commits of a workspace: --source PATH (a git checkout)")
    if cfg.provisioner == "existing":
        raise UsageError("compare and bisect install each commit's build: not on --provisioner existing")
    a, b = (revisions.resolve(cfg.source, r or "", f) for r, f in zip(refs, flags))
    import os

    os.environ["CARGO_TARGET_DIR"] = str(revisions.shared_target_dir(cfg.source, cfg.cache_dir))
    return cfg.source, a, b


def main(argv: list[str]) -> int:
    from ci.phases.k8s import setup_error_is_exit_3

    cfg = config_mod.parse(argv, prog="compare")
    return setup_error_is_exit_3(_run, cfg)


def _run(cfg: Config) -> int:
    repo, base, head = prepare(cfg, ("--base", "--head"), (cfg.base, cfg.head))
    started = time.monotonic()
    seconds: dict[str, float] = {}
    results = {}
    try:
        subs = {}
        for side, sha in (("base", base), ("head", head)):
            subs[side], seconds[f"build {side}"] = build(cfg, repo, sha, side)
        for side, sha in (("base", base), ("head", head)):
            results[side], seconds[side] = run_side(subs[side], sha, side)
    finally:
        if not cfg.keep_cluster:
            from ci.cluster import get_provisioner

            with console.phase("Tear-down"):
                try:
                    get_provisioner(cfg).down()
                except CIError as e:
                    console.error(f"tear-down failed: {e}")
    seconds["total"] = time.monotonic() - started
    seconds["builds"] = seconds["build base"] + seconds["build head"]
    changes = classify(outcomes(results["base"]), outcomes(results["head"]))
    print("\n" + report(changes, base, head, cfg.artifacts, seconds), flush=True)
    return 1 if any(c.kind == "regression" for c in changes) else 0
