"""The values of the pipeline's options, from the text a flag or its environment twin carries:
counts, seconds, durations (``75m``), exact versions. Each bad value is one-line UsageError (exit 2)."""

from __future__ import annotations

import re

from ci.errors import UsageError


def number(flag: str, raw: str | None, default, cast, ok, rule: str):
    """``raw`` (a flag's or variable's text) as ``cast``, or ``default`` when absent; one-line errors."""
    if raw is None:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise UsageError(f"{flag} {raw}: not {'a whole number' if cast is int else 'a number of seconds'}") from None
    if not ok(value):
        raise UsageError(f"{flag} {raw}: must be {rule}")
    return value


def count(flag: str, raw: str | None, default: int) -> int:
    return number(flag, raw, default, int, lambda v: v >= 1, "1 or more")


def seconds(flag: str, raw: str | None, default: float) -> float:
    return number(flag, raw, default, float, lambda v: v > 0, "more than 0 seconds")


DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def duration(flag: str, raw: str) -> float:
    """``75m``, ``1h30m``, ``90s`` or plain seconds (``4500``) as seconds; one-line errors."""
    text = raw.strip()
    if text.isdigit():
        seconds = int(text)
    else:
        m = DURATION.fullmatch(text)
        if not text or m is None or not any(m.groups()):
            raise UsageError(f"{flag} {raw!r}: expected a duration like 75m, 1h30m, 90s or seconds")
        h, mi, se = (int(g or 0) for g in m.groups())
        seconds = h * 3600 + mi * 60 + se
    if seconds < 60:
        raise UsageError(f"{flag} {raw!r}: at least 60 seconds (a soak shorter than that proves nothing)")
    return float(seconds)


VERSION = re.compile(r"v\d+\.\d+\.\d+")


def versions(flag: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list of exact versions (``v1.33.13``): each is built from source, so a
    typo must fail here, not after minutes of building."""
    items = tuple(dict.fromkeys(x.strip() for x in raw.split(",") if x.strip()))
    bad = [x for x in items if not VERSION.fullmatch(x)]
    if not items or bad:
        raise UsageError(f"{flag} {raw!r}: expected exact versions like v1.33.13, comma-separated"
                         + (f" (not: {', '.join(bad)})" if bad else ""))
    return items
