"""Streams of one container: its log (whole, or followed while something happens), exec status
frames, and the short form of a failed request. Pure helpers plus :class:`LogFollower`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import urllib3
from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:  # pragma: no cover
    from k8s_suite.context import RunContext

# Errors of one request that a wait loop retries (the deadline still bounds the whole wait).
TRANSIENT = (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError)


class WaitError(AssertionError):
    """A wait ran out of time, or its target became unreachable; the message has the last state."""


def log_lines(text: str) -> list[str]:
    """Lines of a log as the container wrote them (a final newline does not add an empty line)."""
    if text == "":
        return []
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def without_stream_end_error(lines: list[str], container_ids: Sequence[str]) -> tuple[list[str], str | None]:
    """A followed log stream whose container is removed while it is read can end with the kubelet's
    own error text (``rpc error: code = NotFound desc = ... container "<id>": not found``), written
    into the stream as if the container had printed it. Drop that last line when it names one of
    ``container_ids``; return the lines and the dropped text (None when there was none)."""
    if lines and lines[-1].startswith("rpc error: code = NotFound desc = ") and lines[-1].endswith("not found") \
            and any(f'"{cid}"' in lines[-1] for cid in container_ids if cid):
        return lines[:-1], lines[-1]
    return lines, None


# --- exec status ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExecResult:
    argv: tuple[str, ...]
    stdout: str
    stderr: str
    status: str | None  # Success | Failure | None (no status frame)
    exit_code: int | None  # the command's exit code, when the API reported one
    message: str

    def describe(self) -> str:
        return (f"exec {list(self.argv)}: status={self.status} exit_code={self.exit_code} "
                f"message={self.message!r} stdout={self.stdout!r} stderr={self.stderr!r}")


def parse_exec_status(raw: str) -> tuple[str | None, int | None, str]:
    """The exec error channel (a v1 Status) -> (status, exit code, message).

    ``Success`` is exit code 0; a ``Failure`` carries the code as the ``ExitCode`` cause when the
    command ran and exited non-zero, and no code when the command could not be started.
    """
    if not raw or not raw.strip():
        return None, None, "no status frame received"
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return None, None, f"unparseable status frame: {raw!r}"
    status = doc.get("status")
    if status == "Success":
        return "Success", 0, doc.get("message", "")
    code = None
    for cause in (doc.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                code = int(cause.get("message"))
            except (TypeError, ValueError):
                code = None
    return status, code, doc.get("message", "")


def _short(e: BaseException) -> str:
    if isinstance(e, ApiException):
        return f"HTTP {e.status} {e.reason}"
    return f"{type(e).__name__}: {str(e)[:200]}"


class LogFollower:
    """Streams a container's log (``follow=true``) in a thread, started before an action whose
    output must not be lost (S11 deletes the pod; the follow stream ends when the container does)."""

    def __init__(self, ctx: "RunContext", ns: str, name: str, container: str | None, timeout: float):
        self.ctx, self.ns, self.name, self.container, self.timeout = ctx, ns, name, container, timeout
        self.buf = bytearray()
        self.error: str | None = None
        self.ended = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"logs-{name}")

    def start(self) -> "LogFollower":
        self._thread.start()
        return self

    def _run(self) -> None:
        resp = None
        try:
            kw: dict[str, Any] = dict(follow=True, _preload_content=False, _request_timeout=(10, self.timeout))
            if self.container:
                kw["container"] = self.container
            resp = self.ctx.core.read_namespaced_pod_log(self.name, self.ns, **kw)
            for chunk in resp.stream(1024, decode_content=True):
                with self._changed:
                    self.buf.extend(chunk)
                    self._changed.notify_all()
        except (ApiException, *TRANSIENT) as e:
            self.error = _short(e)
        finally:
            if resp is not None:
                resp.release_conn()
            with self._changed:
                self.ended.set()
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return bytes(self.buf).decode("utf-8", "replace")

    def wait_for_line(self, line: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while line not in log_lines(bytes(self.buf).decode("utf-8", "replace")):
                left = deadline - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    why = f"stream ended ({self.error or 'EOF'})" if self.ended.is_set() else f"not within {timeout:.0f}s"
                    raise WaitError(f"log line {line!r} of {self.ns}/{self.name}: {why}; log so far: "
                                    f"{bytes(self.buf).decode('utf-8', 'replace')!r}")
                self._changed.wait(left)

    def wait_ended(self, timeout: float) -> None:
        if not self.ended.wait(timeout):
            raise WaitError(f"log stream of {self.ns}/{self.name} still open after {timeout:.0f}s "
                            f"(container still writing?); log so far: {self.text!r}")
