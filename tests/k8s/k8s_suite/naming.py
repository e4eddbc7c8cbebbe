"""The run token and every name derived from it.

Each run of the suite has a token (6 characters, ``[a-z0-9]``, starting with a letter). It is in
every namespace, pod name, node path and process marker the run creates, so runs never collide:
they can run in parallel, re-run on a dirty cluster, or run while another run's leftovers exist.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

TOKEN_RE = re.compile(r"^[a-z][a-z0-9]{5}$")
NS_PREFIX = "reaper-ci"
RUN_LABEL = "reaper-ci/run"  # label on namespaces and pods: the run token
SCENARIO_LABEL = "reaper-ci/scenario"  # label on namespaces and pods: s01..s27
FINALIZER = "reaper-ci.test/hold"  # holds a pod object so its final status stays readable (S11)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SCENARIO = re.compile(r"test_(s\d\d)_")


def new_token() -> str:
    """A fresh run token."""
    first = secrets.choice(string.ascii_lowercase)
    return first + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))


def check_token(token: str) -> str:
    if not TOKEN_RE.match(token or ""):
        raise ValueError(f"run token {token!r} is not 6 characters [a-z0-9] starting with a letter")
    return token


def dns_label(text: str) -> str:
    """``text`` as a DNS-1123 label (lower case, [-a-z0-9], at most 63 characters), or ValueError."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if len(out) > 63:
        digest = hashlib.sha1(out.encode()).hexdigest()[:6]
        out = out[:56].rstrip("-") + "-" + digest
    if not _DNS1123_LABEL.match(out):
        raise ValueError(f"cannot make a DNS-1123 label from {text!r}")
    return out


def scenario_id(test_name: str) -> str | None:
    """``test_s07_large_output[...]`` -> ``s07``; None for a name without a scenario id."""
    m = _SCENARIO.match(test_name)
    return m.group(1) if m else None


def namespace(token: str, sid: str, suffix: str = "") -> str:
    """The namespace of one scenario in one run: ``reaper-ci-<token>-<sid>[-suffix]``."""
    return dns_label(f"{NS_PREFIX}-{check_token(token)}-{sid}" + (f"-{suffix}" if suffix else ""))


def run_namespace_prefix(token: str) -> str:
    return f"{NS_PREFIX}-{check_token(token)}-"


def other_run(namespace: str | None, token: str) -> bool:
    """``namespace`` is a scenario namespace of another run of this suite (not of run ``token``)."""
    import re

    return bool(namespace and re.match(rf"{NS_PREFIX}-[a-z][a-z0-9]{{5}}-s\d", namespace)
                and not namespace.startswith(run_namespace_prefix(token)))


def pod_name(token: str, sid: str, what: str) -> str:
    """A pod/ConfigMap/Secret name carrying the token: ``<sid>-<what>-<token>``."""
    return dns_label(f"{sid}-{what}-{check_token(token)}")


def node_path(token: str, sid: str, leaf: str = "") -> str:
    """A path on the node's real filesystem owned by this run: ``/tmp/reaper-ci-<token>-<sid>[-leaf]``."""
    check_token(token)
    if leaf and not re.match(r"^[A-Za-z0-9._-]+$", leaf):
        raise ValueError(f"node path leaf {leaf!r}: only [A-Za-z0-9._-]")
    return f"/tmp/{NS_PREFIX}-{token}-{sid}" + (f"-{leaf}" if leaf else "")


def sleep_seconds(token: str, what: str) -> int:
    """A process marker: ``sleep N`` with N in [100000, 899999], derived from (run token, what).

    A fresh token gives fresh numbers, so a leftover ``sleep`` of an earlier run is never counted
    as this run's; a number this large does not appear in a normal process table.
    """
    digest = hashlib.sha256(f"{check_token(token)}:{what}".encode()).digest()
    return 100000 + int.from_bytes(digest[:4], "big") % 800000
