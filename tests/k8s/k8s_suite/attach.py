"""Streams into a container through the API (exec, ``kubectl attach -i``): open one, feed stdin and
close it (the v5 protocol's half-close), wait for the container's streams to end."""

from __future__ import annotations

import time
from typing import Any, Callable

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from kubernetes.stream.ws_client import V5_CHANNEL_PROTOCOL

from k8s_suite import timeouts as T
from k8s_suite.context import InfrastructureError
from k8s_suite.streams import WaitError, _short

EOF_SETTLE = 10  # seconds for end of file to end the streams once the workload echoed all of stdin


def open_stream(kube: Any, method: str, name: str, container: str | None, timeout: float, what: str, **kw: Any):
    """A websocket to ``name``'s container through ``rest.Api.<method>`` (on this thread's own client)."""
    kw.update(_preload_content=False, _request_timeout=timeout)
    if container:
        kw["container"] = container
    try:
        return stream(getattr(kube.ctx.stream_api(), method), name, kube.ns, **kw)
    except ApiException as e:
        raise AssertionError(f"{what}: could not connect: {_short(e)}") from None


def feed_and_wait(ws: Any, stdin: str | None, timeout: float, what: str, echoed: str | None = None,
                  close: bool = True, ended: Callable[[], str | None] | None = None) -> None:
    """Write ``stdin`` (None: nothing, stdin stays as it is) and close it (``close``; a terminal's user
    does not: containerd hangs the terminal up when its stdin ends), then wait for the streams to end;
    ``echoed``: text whose return on stdout makes the end due within EOF_SETTLE seconds; ``ended``:
    asked between reads, says why the process behind the stream is certainly gone (the wait ends)."""
    if stdin is not None and not close:
        ws.write_stdin(stdin)
    elif stdin is not None:
        if ws.subprotocol != V5_CHANNEL_PROTOCOL:
            raise InfrastructureError(f"{what}: the API server answered stream protocol {ws.subprotocol!r}, which "
                                      f"cannot close stdin (needs {V5_CHANNEL_PROTOCOL})")
        if stdin:
            ws.write_stdin(stdin)
        ws.close_channel(0)
    began, out, gone = time.monotonic(), "", None
    if echoed is None:
        while ws.is_open() and time.monotonic() - began < timeout and gone is None:
            ws.update(timeout=1)
            gone = ended() if ended is not None and ws.is_open() else None
    else:  # the stream is read in steps: the echo is looked for between them (peek keeps it buffered)
        due = None
        while ws.is_open() and time.monotonic() - began < timeout and (due is None or time.monotonic() < due):
            ws.update(timeout=1)
            out = ws.peek_channel(1) if due is None else out
            if due is None and echoed in out:
                due = time.monotonic() + EOF_SETTLE
    if ws.is_open():
        raise WaitError(f"{what}: still running after {time.monotonic() - began:.0f}s"
                        f"{' (all of stdin came back: end of file was due)' if echoed and echoed in out else ''}"
                        f"{f' ({gone}: the runtime did not end its stream)' if gone else ''} "
                        f"(stdout so far {ws.read_channel(1)[-200:]!r}, stderr {ws.read_channel(2)[-200:]!r})")


def send_and_close(kube: Any, name: str, data: str, container: str | None = None, timeout: float = T.EXEC,
                   echoed: bool = False) -> None:
    """``kubectl attach -i``: write ``data`` to ``name``'s stdin, close it and wait until the
    container's streams end (a runtime that never gives the workload end of file fails here).
    ``echoed``: the workload writes its stdin back (``cat``): once all of it is back, end of file
    is due, and the streams get EOF_SETTLE seconds more, not the whole ``timeout``."""
    what = f"attach to {kube.ns}/{name} (stdin closed: end of file must reach the container)"
    ws = open_stream(kube, "connect_get_namespaced_pod_attach", name, container, timeout, what,
                     stdin=True, stdout=True, stderr=True, tty=False)
    try:
        feed_and_wait(ws, data, timeout, what, echoed=data if echoed else None)
    finally:
        ws.close()


def type_into(kube: Any, name: str, text: str, done: Any, timeout: float = T.EXEC) -> str:
    """``kubectl attach -it`` (``kubectl run -it``): write ``text`` to the terminal of ``name``'s
    container and keep the stream open (read each second) until ``done()``, ``timeout`` or the
    stream's end; what the terminal showed meanwhile."""
    what = f"attach with a terminal to {kube.ns}/{name}"
    ws = open_stream(kube, "connect_get_namespaced_pod_attach", name, None, timeout, what,
                     stdin=True, stdout=True, stderr=False, tty=True)
    try:
        ws.write_stdin(text)
        began = time.monotonic()
        while ws.is_open() and not done() and time.monotonic() - began < timeout:
            ws.update(timeout=1)
        return ws.read_channel(1)
    finally:
        ws.close()
