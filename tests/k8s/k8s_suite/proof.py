"""Runtime identity from containerd's own records (``ctr containers info``), read on the node.

A pod's RuntimeClass only says what the API server was asked for. containerd records, per
container, the runtime that runs it (``Runtime.Name``, e.g. ``io.containerd.reaper.v2``) and the
pod sandbox it belongs to (the ``io.kubernetes.cri.sandbox-id`` annotation of its spec); the
sandbox's CRI metadata records the RuntimeClass handler containerd used to create it. Together
they prove a pod ran behind the handler under test, even after its processes are gone.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from dataclasses import dataclass
from typing import Iterable, Mapping

SANDBOX_METADATA = "io.cri-containerd.sandbox.metadata"
SANDBOX_ID_ANNOTATION = "io.kubernetes.cri.sandbox-id"
POD_UID_LABEL = "io.kubernetes.pod.uid"
_HEX_ID = re.compile(r"^[0-9a-f]{64}$")


class ProofError(ValueError):
    """containerd's record could not be read as expected."""


@dataclass(frozen=True)
class Record:
    """What containerd says about one container (or sandbox) id."""

    id: str
    runtime: str | None  # Runtime.Name
    sandbox_id: str | None  # for a container: its sandbox; for a sandbox: None or itself
    pod_uid: str | None
    handler: str | None  # for a sandbox: the RuntimeClass handler it was created with

    def line(self) -> str:
        return (f"{self.id[:12]} runtime={self.runtime} sandbox={(self.sandbox_id or '-')[:12]} "
                f"handler={self.handler or '-'} pod_uid={self.pod_uid or '-'}")


def info_script(ctr: str, address: str, ids: Iterable[str]) -> str:
    """A shell script printing ``=== <id>`` then ``ctr containers info <id>`` for each id."""
    safe = [i for i in ids if _HEX_ID.match(i or "")]
    base = f"{shlex.quote(ctr)} --address {shlex.quote(address)} -n k8s.io containers info"
    return "".join(f'echo "=== {i}"; {base} {i} 2>&1; ' for i in safe) or "true"


_CTR_NOTICE = re.compile(r'^time="[^"]*" level=(warning|info|debug) ')


def parse_infos(text: str) -> dict[str, Record | str]:
    """``id -> Record`` (or the error text ctr printed for that id) from :func:`info_script` output."""
    out: dict[str, Record | str] = {}
    cur: str | None = None
    buf: list[str] = []

    def flush() -> None:
        if cur is None:
            return
        # ctr's own log lines (containerd 2.2 warns on every call on a cgroup v1 host) are not the answer
        raw = "\n".join(ln for ln in buf if not (ln.startswith("time=") and _CTR_NOTICE.match(ln))).strip()
        try:
            out[cur] = record(cur, json.loads(raw))
        except (json.JSONDecodeError, ProofError):
            out[cur] = raw[:300] or "(no output)"

    for ln in text.splitlines():
        m = re.match(r"^=== ([0-9a-f]{64})$", ln)
        if m:
            flush()
            cur, buf = m.group(1), []
        else:
            buf.append(ln)
    flush()
    return out


def record(cid: str, doc: Mapping) -> Record:
    if not isinstance(doc, Mapping):
        raise ProofError("not a JSON object")
    runtime = (doc.get("Runtime") or {}).get("Name")
    spec = doc.get("Spec") or {}
    annotations = spec.get("annotations") or {} if isinstance(spec, Mapping) else {}
    labels = doc.get("Labels") or {}
    handler = sandbox_handler(doc.get("Extensions") or {})
    sandbox = annotations.get(SANDBOX_ID_ANNOTATION) or doc.get("SandboxID") or None
    return Record(cid, runtime, sandbox, labels.get(POD_UID_LABEL), handler)


def sandbox_handler(extensions: Mapping) -> str | None:
    """The RuntimeHandler in the CRI sandbox metadata extension (``{"Version": .., "Metadata": {..}}``,
    JSON inside a protobuf Any whose value ctr prints base64-encoded)."""
    ext = extensions.get(SANDBOX_METADATA)
    if not isinstance(ext, Mapping):
        return None
    value = ext.get("value") if "value" in ext else ext.get("Value")
    if not isinstance(value, str):
        return None
    try:
        meta = json.loads(base64.b64decode(value))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(meta, Mapping):
        return None
    inner = meta.get("Metadata") if isinstance(meta.get("Metadata"), Mapping) else meta
    handler = inner.get("RuntimeHandler")
    return handler if isinstance(handler, str) else None


def judge(records: Mapping[str, Record | str], container_ids: Iterable[str], handler: str,
          runtime_type: str | None) -> tuple[list[str], list[str]]:
    """(proofs, problems) for ``container_ids`` whose records were read (sandbox records included
    in ``records``). An id containerd no longer knows is neither (its pod was deleted)."""
    proofs, problems = [], []
    for cid in container_ids:
        rec = records.get(cid)
        if rec is None or (isinstance(rec, str) and "not found" in rec):
            continue
        if isinstance(rec, str):
            problems.append(f"container {cid[:12]}: containerd's record unreadable: {rec[:200]}")
            continue
        if runtime_type and rec.runtime != runtime_type:
            problems.append(f"container {cid[:12]} runs on runtime {rec.runtime!r}, not {runtime_type!r}")
            continue
        sb = records.get(rec.sandbox_id or "")
        if not isinstance(sb, Record):
            if sb is None or "not found" in str(sb):
                continue  # the sandbox went away with its pod
            problems.append(f"container {cid[:12]}: sandbox {rec.sandbox_id} record unreadable: {str(sb)[:200]}")
            continue
        if sb.handler != handler:
            problems.append(f"container {cid[:12]}: its sandbox {sb.id[:12]} was created with handler "
                            f"{sb.handler!r}, not {handler!r}")
            continue
        proofs.append(f"container {cid[:12]}: runtime {rec.runtime}, sandbox {sb.id[:12]} handler {sb.handler}")
    return proofs, problems
