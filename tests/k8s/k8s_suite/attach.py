"""Streams into a container through the API (exec, ``kubectl attach -i``): open one, feed stdin and
close it (the v5 protocol's half-close), wait for the container's streams to end."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from kubernetes.stream.ws_client import V5_CHANNEL_PROTOCOL

from k8s_suite import timeouts as T
from k8s_suite.context import InfrastructureError
from k8s_suite.streams import WaitError, _short


def open_stream(kube: Any, method: str, name: str, container: str | None, timeout: float, what: str, **kw: Any):
    """A websocket to ``name``'s container through ``CoreV1Api.<method>`` (on this thread's own client)."""
    kw.update(_preload_content=False, _request_timeout=timeout)
    if container:
        kw["container"] = container
    try:
        return stream(getattr(kube.ctx.stream_api(), method), name, kube.ns, **kw)
    except ApiException as e:
        raise AssertionError(f"{what}: could not connect: {_short(e)}") from None


def feed_and_wait(ws: Any, stdin: str | None, timeout: float, what: str) -> None:
    """Write ``stdin`` (None: nothing, stdin stays as it is) and close it, then wait for the streams to end."""
    if stdin is not None:
        if ws.subprotocol != V5_CHANNEL_PROTOCOL:
            raise InfrastructureError(f"{what}: the API server answered stream protocol {ws.subprotocol!r}, which "
                                      f"cannot close stdin (needs {V5_CHANNEL_PROTOCOL})")
        if stdin:
            ws.write_stdin(stdin)
        ws.close_channel(0)
    ws.run_forever(timeout=timeout)
    if ws.is_open():
        raise WaitError(f"{what}: still running after {timeout:.0f}s (stdout so far {ws.read_channel(1)[-200:]!r}, "
                        f"stderr {ws.read_channel(2)[-200:]!r})")


def send_and_close(kube: Any, name: str, data: str, container: str | None = None, timeout: float = T.EXEC) -> None:
    """``kubectl attach -i``: write ``data`` to ``name``'s stdin, close it and wait until the
    container's streams end (a runtime that never gives the workload end of file fails here)."""
    what = f"attach to {kube.ns}/{name} (stdin closed: end of file must reach the container)"
    ws = open_stream(kube, "connect_get_namespaced_pod_attach", name, container, timeout, what,
                     stdin=True, stdout=True, stderr=True, tty=False)
    try:
        feed_and_wait(ws, data, timeout, what)
    finally:
        ws.close()
