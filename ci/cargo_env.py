"""The environment a cargo test binary runs with, as `cargo test` gives it: the package's CARGO_PKG_* variables, [env] from .cargo/config.toml, CARGO/CARGO_MANIFEST_DIR and the toolchain's library path."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import sh

from ci.errors import CIError

if TYPE_CHECKING:  # pragma: no cover
    from ci.cargo import Target


def _version_parts(version: str) -> dict[str, str]:
    core, _, pre = version.split("+", 1)[0].partition("-")
    parts = (core.split(".") + ["", "", ""])[:3]
    return {"CARGO_PKG_VERSION_MAJOR": parts[0], "CARGO_PKG_VERSION_MINOR": parts[1],
            "CARGO_PKG_VERSION_PATCH": parts[2], "CARGO_PKG_VERSION_PRE": pre}


def package_env(pkg: Mapping) -> dict[str, str]:
    """The ``CARGO_PKG_*`` / ``CARGO_MANIFEST_*`` variables cargo sets when it runs a test binary."""
    manifest = Path(pkg["manifest_path"])
    readme = pkg.get("readme") or ""
    return {
        "CARGO_MANIFEST_DIR": str(manifest.parent),
        "CARGO_MANIFEST_PATH": str(manifest),
        "CARGO_PKG_NAME": pkg["name"],
        "CARGO_PKG_VERSION": pkg["version"],
        **_version_parts(pkg["version"]),
        "CARGO_PKG_AUTHORS": ":".join(pkg.get("authors") or []),
        "CARGO_PKG_DESCRIPTION": pkg.get("description") or "",
        "CARGO_PKG_HOMEPAGE": pkg.get("homepage") or "",
        "CARGO_PKG_REPOSITORY": pkg.get("repository") or "",
        "CARGO_PKG_LICENSE": pkg.get("license") or "",
        "CARGO_PKG_LICENSE_FILE": pkg.get("license_file") or "",
        "CARGO_PKG_README": str(Path(readme).name) if readme else "",
        "CARGO_PKG_RUST_VERSION": pkg.get("rust_version") or "",
    }


def config_env(start: Path, home: Path | None = None) -> dict[str, str]:
    """``[env]`` of ``.cargo/config.toml`` files from ``start`` up, then ``$CARGO_HOME`` (nearest wins)."""
    files: list[Path] = []
    for d in [start, *start.parents]:
        for name in ("config.toml", "config"):
            if (d / ".cargo" / name).is_file():
                files.append(d / ".cargo" / name)
                break
    home = home or Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    for name in ("config.toml", "config"):
        if (home / name).is_file() and (home / name) not in files:
            files.append(home / name)
            break
    env: dict[str, str] = {}
    for path in reversed(files):  # farthest first, nearest overrides
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8")).get("env") or {}
        except (OSError, tomllib.TOMLDecodeError):
            continue
        for key, val in table.items():
            if isinstance(val, dict):
                value = str(val.get("value", ""))
                if val.get("relative"):
                    value = str(path.parent.parent / value)
                if not val.get("force") and key in os.environ:
                    continue
                env[key] = value
            elif key not in os.environ:
                env[key] = str(val)
    return env


def run_env(target: Target, pkg_env: Mapping[str, str], *, cargo_path: str, sysroot_libs: Sequence[str] = (),
            config_dir: Path | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment cargo would give ``target``'s test binary (merged over ``os.environ``).

    ``pkg_env`` is :func:`package_env` of the target's package; ``config_dir`` is where cargo
    was invoked (its ``.cargo/config.toml`` ``[env]`` applies).
    """
    env = {**os.environ, **config_env(config_dir or Path(target.manifest_dir))}
    env.update(pkg_env)
    env["CARGO"] = cargo_path
    if target.executable:
        deps = Path(target.executable).parent
        libs = [str(deps.parent), str(deps), *sysroot_libs]
        old = os.environ.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + ([old] if old else []))
    env.update(extra or {})
    return env


def sysroot_libs(source: Path) -> list[str]:
    """The toolchain's library folders (cargo puts them on the test binary's library path)."""
    try:
        from ci.tools import tool

        rustc = tool("rustc")
        sysroot = str(rustc("--print", "sysroot", _cwd=str(source), _tty_out=False)).strip()
        host = next(l.split(":", 1)[1].strip() for l in str(rustc("-vV", _cwd=str(source), _tty_out=False)).splitlines()
                    if l.startswith("host:"))
    except (CIError, sh.ErrorReturnCode, StopIteration):
        return []
    return [str(Path(sysroot) / "lib" / "rustlib" / host / "lib"), str(Path(sysroot) / "lib")]
