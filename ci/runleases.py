"""The Leases by which runs of the scenario suite on one cluster know of each other (the protocol
is the suite's: ``tests/k8s/k8s_suite/runlock.py``). Here: their names and when one is live, so
that the pipeline's own clean-up (the shared host-exec pods) spares a run still going."""

from __future__ import annotations

from datetime import datetime, timedelta

NAMESPACE = "default"
RUN_PREFIX = "reaper-ci-run-"
LOCK = "reaper-ci-node-wide"
PHASE = "reaper-ci.dev/phase"
SELECTOR = "app.kubernetes.io/managed-by=reaper-ci"
DURATION = 60  # seconds without renewal after which a run is taken for dead


def live(lease: dict, now: datetime) -> bool:
    """The Lease was renewed within its duration (``now``: timezone-aware UTC)."""
    spec = lease.get("spec") or {}
    renewed = spec.get("renewTime")
    if not renewed:
        return False
    t = datetime.fromisoformat(renewed.replace("Z", "+00:00"))
    return now - t < timedelta(seconds=spec.get("leaseDurationSeconds") or DURATION)


def live_runs(leases: list[dict], now: datetime) -> list[str]:
    """Tokens of the runs whose run Lease is live."""
    return [(x.get("spec") or {}).get("holderIdentity", "?") for x in leases
            if x["metadata"]["name"].startswith(RUN_PREFIX) and live(x, now)]
