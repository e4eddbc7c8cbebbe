"""Commits of the workspace under test, as checkouts the pipeline can build: for compare and bisect.

* :func:`resolve`: a ref (branch, tag, sha, ``HEAD~3``) of the ``--source`` repository -> its full
  sha, or a one-line UsageError;
* :func:`checkout`: a detached worktree of that commit under ``<cache>/revisions/<repo>/<sha12>``
  (made once, reused), never touching the user's own checkout;
* :func:`shared_target_dir`: one CARGO_TARGET_DIR for every worktree of a repository, so a second
  commit rebuilds only what changed;
* the built shim and runtime are kept per commit by :func:`ci.cluster.runtime.build` (a clean
  checkout's build is cached under ``<cache>/builds/<sha>``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ci.errors import SetupError, UsageError
from ci.tools import ShRunner


def _git(repo: Path, *args: str, check: bool = True, timeout: float = 120):
    r = ShRunner()(["git", "-C", str(repo), *args], check=False, stderr=False, timeout=timeout)
    if check and r.returncode != 0:
        raise SetupError(f"git {' '.join(args[:3])} in {repo} failed: {(r.err or r.out).strip()[:300]}")
    return r


def resolve(repo: Path, ref: str, flag: str) -> str:
    if not ref:
        raise UsageError(f"{flag}: give a commit of {repo} (a sha, tag, branch or HEAD~N)")
    if _git(repo, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise UsageError(f"{flag} {ref}: {repo} is not a git repository (compare and bisect need the workspace's history)")
    r = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if r.returncode != 0 or not r.out.strip():
        raise UsageError(f"{flag} {ref}: no such commit in {repo}")
    return r.out.strip()


def subject(repo: Path, sha: str) -> str:
    return _git(repo, "log", "-1", "--format=%s", sha).out.strip()


def _repo_key(repo: Path) -> str:
    return hashlib.sha1(str(repo.resolve()).encode()).hexdigest()[:10]


def shared_target_dir(repo: Path, cache_dir: Path) -> Path:
    return Path(cache_dir) / "revisions" / _repo_key(repo) / "target"


def checkout(repo: Path, sha: str, cache_dir: Path) -> Path:
    """A detached worktree of ``sha`` (made once; reset to ``sha`` if someone changed it)."""
    where = Path(cache_dir) / "revisions" / _repo_key(repo) / sha[:12]
    if (where / ".git").exists():
        _git(where, "checkout", "--quiet", "--force", "--detach", sha)
        _git(where, "clean", "-fdq")
        return where
    where.parent.mkdir(parents=True, exist_ok=True)
    _git(repo, "worktree", "prune", check=False)
    _git(repo, "worktree", "add", "--quiet", "--force", "--detach", str(where), sha, timeout=600)
    return where


def clean(tree: Path) -> bool:
    """Whether ``tree`` is a git checkout with no uncommitted change (its build is its commit's)."""
    r = _git(tree, "status", "--porcelain", "--untracked-files=no", check=False)
    return r.returncode == 0 and not r.out.strip()
