"""`kubectl attach -i` through the API: write to a running container's stdin, then close it."""

from __future__ import annotations

from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from kubernetes.stream.ws_client import V5_CHANNEL_PROTOCOL

from k8s_suite import timeouts as T
from k8s_suite.context import InfrastructureError
from k8s_suite.streams import WaitError, _short


def send_and_close(kube: Any, name: str, data: str, container: str | None = None, timeout: float = T.EXEC) -> None:
    """Attach to ``name``'s stdin, write ``data``, close stdin (the v5 protocol's half-close, as
    ``kubectl attach -i`` does at end of input) and wait until the container's streams end."""
    kw: dict[str, Any] = dict(stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False,
                              _request_timeout=timeout)
    if container:
        kw["container"] = container
    try:
        ws = stream(kube.ctx.stream_api().connect_get_namespaced_pod_attach, name, kube.ns, **kw)
    except ApiException as e:
        raise AssertionError(f"attach to {kube.ns}/{name}: could not connect: {_short(e)}") from None
    try:
        if ws.subprotocol != V5_CHANNEL_PROTOCOL:
            raise InfrastructureError(f"attach: the API server answered stream protocol {ws.subprotocol!r}, which "
                                      f"cannot close stdin (needs {V5_CHANNEL_PROTOCOL})")
        ws.write_stdin(data)
        ws.close_channel(0)
        ws.run_forever(timeout=timeout)
        if ws.is_open():
            raise WaitError(f"attach to {kube.ns}/{name}: the container's streams are still open {timeout:.0f}s after "
                            f"stdin was closed (end of file never reached it?); output so far {ws.read_channel(1)[-200:]!r}")
    finally:
        ws.close()
