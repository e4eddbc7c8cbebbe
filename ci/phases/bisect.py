"""``nox -s bisect -- --good REF --bad REF -k SEL``: the first commit where the selected scenarios fail.

git bisect over the ``--source`` repository's history between a good commit (the scenarios pass)
and a bad one (they fail), with the selected scenarios (pytest ``-k``, required) as the test. When
the bad commit is the older one, it hunts a fix: the first commit where they pass. The
bisection runs in a worktree of its own beside the user's checkout. Each step's commit is built
(cached by commit, one shared cargo target folder), installed on the local cluster and judged:
good when every selected scenario passes, bad when one fails, skipped (``git bisect skip``) when
it does not build or the cluster fails. A scenario's own assertions judge (its call phase); a leak
found at teardown is named but judges nothing. The answer names the first bad commit, its subject, the
scenarios' failure message there, how many builds it took and the wall time (``bisect.txt``,
``bisect.json``).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from ci import config as config_mod
from ci import console, revisions
from ci.config import Config
from ci.errors import CIError, SetupError, UsageError
from ci.phases.compare import prepare, side_results

_FIRST = re.compile(r"^([0-9a-f]{40}) is the first (\w+) commit", re.M)


def judge(docs: list[dict]) -> tuple[str, str]:
    """(good | bad | skip, why) of one commit's selected scenarios. What a scenario asserts decides
    (its call phase); a failure only at setup or teardown (a leak) is named but judges nothing."""
    ran, bad, notes = False, [], []
    for doc in docs:
        fails = doc.get("failures") or {}
        for row in doc.get("passed", []) + doc.get("failed", []) + doc.get("errors", []):
            ran = True
            phases = fails.get(row) or {}
            if "call" in phases:
                bad.append(f"{row}: {phases['call']}")
            elif phases:
                notes.append(f"{row} failed at {'/'.join(phases)} only (not judged)")
    if not ran:
        return "skip", "no selected scenario ran"
    if bad:
        return "bad", bad[0]
    return "good", "; ".join(notes)


def main(argv: list[str]) -> int:
    from ci.phases.k8s import setup_error_is_exit_3

    cfg = config_mod.parse(argv, prog="bisect")
    if not any(a == "-k" or a.startswith("-k") for a in cfg.pytest_args):
        raise UsageError("bisect: select the scenarios that tell good from bad with -k (e.g. -k s31)")
    return setup_error_is_exit_3(_run, cfg)


def _step(cfg: Config, repo: Path, sha: str, n: int) -> tuple[str, str, float]:
    from ci.phases import compare, k8s

    started = time.monotonic()
    try:
        sub, _ = compare.build(cfg, repo, sha, f"step-{n:02d}-{sha[:7]}")
    except SetupError as e:
        return "skip", f"does not build: {str(e)[:200]}", time.monotonic() - started
    try:
        k8s.run(sub)
    except SetupError as e:
        return "skip", f"cluster failed: {str(e)[:200]}", time.monotonic() - started
    except CIError as e:
        if not side_results(sub.artifacts):
            return "skip", f"no verdict: {str(e)[:200]}", time.monotonic() - started
    verdict, why = judge(side_results(sub.artifacts))
    return verdict, why, time.monotonic() - started


def _run(cfg: Config) -> int:
    repo, good, bad = prepare(cfg, ("--good", "--bad"), (cfg.good, cfg.bad))
    started = time.monotonic()
    tree = revisions.checkout(repo, bad, cfg.cache_dir)
    git = lambda *a: revisions._git(tree, *a, check=False)  # noqa: E731
    git("bisect", "reset")
    # the usual hunt: good is older, the first failing commit is wanted; a fix hunt (bad is older):
    # the first passing one. git's terms: "old" is the ancestor's state, "new" the descendant's
    fix_hunt = git("merge-base", "--is-ancestor", bad, good).returncode == 0
    old, new = ("failing", "passing") if fix_hunt else ("passing", "failing")
    term = {"good": "passing", "bad": "failing", "skip": "skip"}
    r = git("bisect", "start", f"--term-old={old}", f"--term-new={new}", *((good, bad) if fix_hunt else (bad, good)))
    if r.returncode != 0:
        raise UsageError(f"bisect: git bisect start {bad[:12]} {good[:12]} failed: {(r.err or r.out).strip()[:200]}")
    steps: list[dict] = []
    first_bad = None
    try:
        while first_bad is None:
            sha = git("rev-parse", "HEAD").out.strip()
            n = len(steps) + 1
            verdict, why, took = _step(cfg, repo, sha, n)
            steps.append({"commit": sha, "subject": revisions.subject(repo, sha), "verdict": verdict, "why": why,
                          "seconds": round(took, 1)})
            console.info(f"bisect step {n}: {sha[:12]} {verdict} in {took:.0f}s{': ' + why if why else ''}")
            out = git("bisect", term[verdict])
            m = _FIRST.search(out.out)
            if m:
                first_bad = m.group(1)
            elif out.returncode != 0 or "only skipped commits left" in out.out:
                raise SetupError(f"bisect: git could not narrow it down: {(out.out or out.err).strip()[-300:]}")
    finally:
        git("bisect", "reset")
        if not cfg.keep_cluster:
            from ci.cluster import get_provisioner

            try:
                get_provisioner(cfg).down()
            except CIError as e:
                console.error(f"tear-down failed: {e}")
    seconds = time.monotonic() - started
    why = next((s["why"] or s["verdict"] for s in steps if s["commit"] == first_bad), "") or "(judged by git from its neighbours)"
    built = sum(1 for s in steps if not s["why"].startswith("does not build"))
    what = "first commit where they pass" if fix_hunt else "first bad commit"
    text = (f"{what}: {first_bad[:12]} {revisions.subject(repo, first_bad)}\n"
            f"  there: {why}\n"
            f"  {len(steps)} step(s) ({built} built and run), {seconds:.0f}s wall; between good {good[:12]} and bad {bad[:12]}")
    print("\n" + text, flush=True)
    console.write_text(cfg.artifacts / "bisect.txt", text + "\n")
    console.write_text(cfg.artifacts / "bisect.json", json.dumps(
        {"good": good, "bad": bad, "fix_hunt": fix_hunt, "first": first_bad, "subject": revisions.subject(repo, first_bad),
         "failure": why, "steps": steps, "seconds": round(seconds, 1)}, indent=1) + "\n")
    console.append_step_summary([f"## Bisect: {what} `{first_bad[:12]}`", "", text, ""])
    return 0
