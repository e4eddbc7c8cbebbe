"""The one wait loop of the pipeline: poll a probe until it says done, or a deadline passes.

A probe returns ``True`` (or any truthy value that is not a string) when done; anything else is
the state seen, kept for the timeout message. An exception from the probe is a state too ("not
ready yet"), except the ``definite`` ones, which are verdicts waiting cannot change, and
:class:`~ci.errors.ClientMismatch` (the API client lacks what the probe calls). ``check``
runs after each unready poll and may raise (a watched process died). Clock and sleep are
injectable so the tests of a provisioner run without waiting.
"""

from __future__ import annotations

import time
from typing import Callable

from ci.errors import ClientMismatch, SetupError

Probe = Callable[[], object]


def done(result: object) -> bool:
    return result is True or bool(result and not isinstance(result, str))


def until(what: str, probe: Probe, timeout: float, *, poll: float = 0.5, definite: tuple[type[BaseException], ...] = (),
          check: Callable[[], None] | None = None, detail: Callable[[], str] | None = None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll ``probe`` every ``poll`` seconds until it is done; :class:`SetupError` after ``timeout``
    naming ``what``, the last state seen and ``detail()`` (e.g. the tail of a log)."""
    deadline = clock() + timeout
    last: object = "not looked at yet"
    while True:
        try:
            last = probe()
            if done(last):
                return
        except (*definite, ClientMismatch):  # a verdict, or a client waiting cannot change
            raise
        except Exception as e:  # noqa: BLE001 - any probe failure is "not ready yet"; kept as the last state
            last = f"{type(e).__name__}: {e}"
        if check is not None:
            check()
        if clock() >= deadline:
            raise SetupError(f"{what} not ready after {timeout:.0f}s (last seen: {str(last)[:400]})"
                             + (detail() if detail is not None else ""))
        sleep(poll)
