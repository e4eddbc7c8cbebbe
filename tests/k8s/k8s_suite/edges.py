"""Edge data the scenarios send through every channel, and pure readers of what came back.

A container reports bytes as hex (``od -An -tx1 -v``), one item per line, each line prefixed with
``x`` so an empty item is still a line: what a terminal or the log pipeline does to line ends or
non-ASCII bytes cannot blur the comparison.
"""

from __future__ import annotations

import base64
import json
from typing import Mapping, Sequence

# argv items and env values: empty, spaces, '=', a newline, unicode, things a shell would expand
EDGE_VALUES: tuple[str, ...] = ("", " spaced  out ", "k=v=w", "l1\nl2", "ünïcødé ✓", "-n", "*", "$HOME", "'\"\\",
                                "tab\there")

# print each argument as one "x<hex>" line (sh -c SCRIPT sh ARGS...: "$@" is ARGS)
HEX_ARGS = 'for a in "$@"; do printf x; printf %s "$a" | od -An -tx1 -v | tr -d " \\n"; echo; done'

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

# the variables a runtime may add to a container's environment beside the spec's (runc/containerd:
# PATH from the image, HOSTNAME, HOME; TERM with a terminal) and the kubelet's service links
ALLOWED_EXTRA = ("PATH", "HOSTNAME", "HOME")


def decode_hex_lines(lines: Sequence[str]) -> list[bytes]:
    """``x<hex>`` lines (a terminal's ``\\r`` removed) -> the bytes they stand for."""
    out = []
    for line in lines:
        line = line.rstrip("\r")
        if not line.startswith("x"):
            raise ValueError(f"not an x<hex> line: {line!r}")
        out.append(bytes.fromhex(line[1:]))
    return out


def environ(hex_text: str) -> dict[str, str]:
    """``od -An -tx1 -v /proc/PID/environ`` output -> the environment (NUL-separated NAME=value)."""
    raw = bytes.fromhex("".join(hex_text.split()))
    out = {}
    for item in raw.split(b"\0"):
        if item:
            name, _, value = item.decode("utf-8", errors="replace").partition("=")
            out[name] = value
    return out


def env_problems(env: Mapping[str, str], spec: Mapping[str, str], *, tty: bool = False) -> list[str]:
    """What is wrong with a process's environment given the container spec's ``spec`` variables:
    a spec value not byte-exact, or a variable that is neither the spec's, a runtime's usual
    (``ALLOWED_EXTRA``, ``TERM`` with a terminal) nor a service link (``KUBERNETES_*``)."""
    problems = [f"{k}: expected {v!r}, got {env.get(k, '<unset>')!r}" for k, v in spec.items() if env.get(k) != v]
    allowed = set(spec) | set(ALLOWED_EXTRA) | ({"TERM"} if tty else set())
    extra = sorted(k for k in env if k not in allowed and not k.startswith("KUBERNETES_"))
    if extra:
        problems.append("variables the spec does not give (the runtime's own environment leaked in): "
                        + ", ".join(f"{k}={env[k][:60]!r}" for k in extra))
    if "PATH" not in env:
        problems.append("PATH is unset")
    return problems


def jwt_claims(token: str) -> dict:
    """The payload of a service-account token (no signature check: the API server issued it)."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise ValueError(f"not a JWT ({len(parts)} part(s)): {token[:40]!r}")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def token_pod(token: str) -> tuple[str | None, str | None]:
    """(namespace, pod name) a bound service-account token was issued for."""
    claims = jwt_claims(token).get("kubernetes.io") or {}
    return claims.get("namespace"), (claims.get("pod") or {}).get("name")


# --- binary data and descriptors (S61, S62) ------------------------------------------------------------

PRINTF_EVERY_BYTE = "".join(f"\\{i:03o}" for i in range(256))  # a printf format printing bytes 0..255
FDS = "ls -l /proc/$$/fd; exit 0"  # the shell's descriptors, listed by a child (not last: the shell forks for it)


def binary(token: str) -> bytes:
    """Every byte value 64 times (NUL, CR, LF, ESC, invalid UTF-8 included), then an unterminated tail:
    what ``printf PRINTF_EVERY_BYTE`` 64 times and ``printf tail-<token>`` print."""
    return bytes(range(256)) * 64 + f"tail-{token}".encode()


def byte_difference(got: bytes, want: bytes) -> str:
    """Where two byte strings first differ, with a little context: "none" when equal."""
    i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    if i == len(got) == len(want):
        return "none"
    return f"byte {i}: {got[max(0, i - 8):i + 8]!r} vs {want[max(0, i - 8):i + 8]!r}"


def descriptors(lines: Sequence[str]) -> dict[int, str]:
    """``ls -l /proc/N/fd`` lines (``lrwx------ … 0 -> /dev/null``, a terminal's ``\\r`` too) ->
    {descriptor: target}; other lines (``total 0``) are ignored."""
    out = {}
    for ln in lines:
        left, sep, target = ln.rstrip("\r").partition(" -> ")
        if sep and left.split() and left.split()[-1].isdigit():
            out[int(left.split()[-1])] = target
    return out
