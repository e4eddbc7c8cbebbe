"""The CRI container log file as the kubelet stores it (``<pod_logs_dir>/<ns>_<pod>_<uid>/<container>/N.log``).

Each line is ``<RFC 3339 time> <stream> <tag> <content>``: ``stream`` is ``stdout`` or ``stderr``
(which FIFO the runtime delivered the bytes on), ``tag`` is ``F`` (full line) or ``P`` (partial:
the line continues in the next record of the same stream). The API's log endpoint merges the
streams and drops the tags, so only this file shows on which stream each line arrived.
"""

from __future__ import annotations

from dataclasses import dataclass


class CriLogError(ValueError):
    """The text is not a CRI log file."""


@dataclass(frozen=True)
class Line:
    stream: str  # stdout | stderr
    text: str


def parse(text: str) -> list[Line]:
    """Whole lines with their stream; partial records (``P``) are joined per stream."""
    out: list[Line] = []
    pending: dict[str, str] = {}
    for raw in text.splitlines():
        if not raw:
            continue
        parts = raw.split(" ", 3)
        if len(parts) < 3 or parts[1] not in ("stdout", "stderr") or parts[2] not in ("F", "P"):
            raise CriLogError(f"not a CRI log record: {raw[:200]!r}")
        stream, tag, content = parts[1], parts[2], parts[3] if len(parts) > 3 else ""
        if tag == "P":
            pending[stream] = pending.get(stream, "") + content
            continue
        out.append(Line(stream, pending.pop(stream, "") + content))
    for stream, content in pending.items():  # a partial record never completed: keep it, visibly
        out.append(Line(stream, content))
    return out


def pod_dir(pod_logs_dir: str, namespace: str, name: str, uid: str) -> str:
    return f"{pod_logs_dir.rstrip('/')}/{namespace}_{name}_{uid}"


def container_log(pod_logs_dir: str, namespace: str, name: str, uid: str, container: str, restart: int = 0) -> str:
    """The log file of one container run (``restart`` is the container's restartCount at that run)."""
    return f"{pod_dir(pod_logs_dir, namespace, name, uid)}/{container}/{restart}.log"
