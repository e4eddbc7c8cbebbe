"""`nox -s ci`: Phase 1, then Phases 2-4, with one combined verdict.

Phase 4 runs even when Phase 1 failed (both reports are worth having); the exit status is the
worst of the two. Pipeline options apply to both; pytest arguments go to the scenario suite.
"""

from __future__ import annotations

from ci import config as config_mod
from ci import console
from ci.contract import EXIT_PRODUCT_FAILURE, EXIT_SETUP
from ci.errors import CIError, SetupError
from ci.phases import k8s, phase1


def main(argv: list[str]) -> int:
    cfg = config_mod.parse(argv, prog="ci")
    if cfg.runtime in ("reaper", "runc"):  # a bad expected file: one line, before Phase 1's minutes
        k8s.expectations(cfg, cfg.runtime)
    results: dict[str, int] = {}
    for name, fn in (("phase1", lambda: phase1.run(cfg.with_(pytest_args=()))), ("k8s", lambda: k8s.run(cfg))):
        try:
            results[name] = int(fn() or 0)
        except SetupError as e:  # infrastructure, by type (the message carries its own prefix)
            console.error(_prefixed(name, e))
            results[name] = EXIT_SETUP
        except CIError as e:
            console.error(_prefixed(name, e))
            results[name] = EXIT_PRODUCT_FAILURE
    console.info("ci: " + ", ".join(f"{n} {'passed' if rc == 0 else f'FAILED (exit {rc})'}" for n, rc in results.items()))
    return max(results.values())


def _prefixed(name: str, e: Exception) -> str:
    text = str(e)
    return text if text.startswith(f"{name}:") else f"{name}: {text}"
