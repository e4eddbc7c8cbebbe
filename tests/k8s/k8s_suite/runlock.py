"""Two suite runs on one cluster: each sees only its own work, node-wide checks judge only their run.

Every live run holds a Lease ``reaper-ci-run-<token>`` (namespace ``default``, renewed every
:data:`RENEW` seconds by the controller process, annotated with its phase). Node-wide scenarios
(zombies, shims, state entries, a containerd restart) judge the whole node, so they run only while
no other run has work on it:

* ``parallel``: the run's ordinary scenarios run. A run enters it only while no other run holds
  the node-wide lock (else it waits in ``waiting``, with no pod of its own);
* ``node-wide``: the run holds the Lease ``reaper-ci-node-wide``, taken only while no other live run
  is ``parallel`` (checked again after taking it: the loser of a race gives it back). It is released
  when the run ends.

A run that died stops renewing: its Leases are stale after :data:`DURATION` seconds, ignored, and
removed by the next run that looks. Pure decisions (``blocking``) are separate from the API calls.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from ci.runleases import DURATION, LOCK, NAMESPACE, PHASE, RUN_PREFIX, SELECTOR, live

RENEW = 15  # seconds between renewals (DURATION covers several missed ones)
POLL = 1.0  # seconds between looks while waiting for another run


def _now() -> datetime:
    return datetime.now(timezone.utc)


def blocking(leases: list[dict], token: str, now: datetime, want: str) -> list[str]:
    """The other live runs that keep this run from entering ``want`` (``parallel``: one holding the
    node-wide lock; ``node-wide``: one whose ordinary scenarios run, or that holds the lock)."""
    out = []
    for lease in leases:
        name = lease["metadata"]["name"]
        holder = (lease.get("spec") or {}).get("holderIdentity")
        if holder == token or not live(lease, now):
            continue
        phase = ((lease["metadata"].get("annotations") or {}).get(PHASE))
        if name == LOCK or (want == "node-wide" and name.startswith(RUN_PREFIX) and phase == "parallel"):
            out.append(f"{holder} ({'node-wide' if name == LOCK else phase})")
    return out


class Runs:
    """This run's Leases. ``api``: a kubernetes ApiClient."""

    def __init__(self, api: Any, token: str, clock: Callable[[], datetime] = _now):
        from kubernetes import client

        self.coord = client.CoordinationV1Api(api)
        self.token, self.clock = token, clock
        self.name = RUN_PREFIX + token
        self._stop = threading.Event()

    # --- the API -------------------------------------------------------------------------------
    def _body(self, name: str, phase: str | None) -> dict:
        meta: dict = {"name": name, "labels": {"app.kubernetes.io/managed-by": "reaper-ci"}}
        if phase:
            meta["annotations"] = {PHASE: phase}
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.token, "leaseDurationSeconds": DURATION,
                         "renewTime": self.clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}

    def leases(self) -> list[dict]:
        import json

        r = self.coord.list_namespaced_lease(NAMESPACE, label_selector=SELECTOR,
                                             _preload_content=False, _request_timeout=10)
        items = json.loads(r.data).get("items", [])
        now = self.clock()
        for lease in items:  # a dead run's leases: removed by whoever sees them
            if not live(lease, now) and lease["metadata"]["name"] != self.name:
                self._delete(lease["metadata"]["name"], None)
        return [x for x in items if live(x, now) or x["metadata"]["name"] == self.name]

    def _delete(self, name: str, only_holder: str | None) -> None:
        from kubernetes.client.rest import ApiException

        try:
            if only_holder is not None:
                cur = self.coord.read_namespaced_lease(name, NAMESPACE, _request_timeout=10)
                if (cur.spec.holder_identity or "") != only_holder:
                    return
            self.coord.delete_namespaced_lease(name, NAMESPACE, _request_timeout=10)
        except ApiException as e:
            if e.status != 404:
                raise

    def _renew(self, name: str, phase: str | None = None) -> None:
        """A merge patch (a Lease's update needs its resourceVersion; a patch does not): renewTime,
        and the phase when given."""
        body: dict = {"spec": {"renewTime": self.clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}
        if phase:
            body["metadata"] = {"annotations": {PHASE: phase}}
        self.coord.patch_namespaced_lease(name, NAMESPACE, body, _request_timeout=10)

    def set_phase(self, phase: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self._renew(self.name, phase)
        except ApiException as e:
            if e.status != 404:
                raise
            self.coord.create_namespaced_lease(NAMESPACE, self._body(self.name, phase), _request_timeout=10)

    def _take_lock(self) -> bool:
        from kubernetes.client.rest import ApiException

        try:
            self.coord.create_namespaced_lease(NAMESPACE, self._body(LOCK, None), _request_timeout=10)
            return True
        except ApiException as e:
            if e.status != 409:
                raise
        cur = self.coord.read_namespaced_lease(LOCK, NAMESPACE, _request_timeout=10)
        return (cur.spec.holder_identity or "") == self.token

    def holds_lock(self) -> bool:
        return any(x["metadata"]["name"] == LOCK and x["spec"].get("holderIdentity") == self.token
                   for x in self.leases())

    # --- the protocol ------------------------------------------------------------------------------
    def enter(self, want: str, log: Callable[[str], None] = print) -> float:
        """Wait until this run may enter ``want`` (``parallel`` or ``node-wide``) and enter it;
        seconds waited (each new blocker is logged once)."""
        began, said = time.monotonic(), set()
        while True:
            if want == "node-wide" and self.holds_lock():
                return time.monotonic() - began
            others = blocking(self.leases(), self.token, self.clock(), want)
            if not others:
                if want == "parallel":
                    self.set_phase("parallel")
                    again = blocking(self.leases(), self.token, self.clock(), want)
                    if not again:
                        return time.monotonic() - began
                    self.set_phase("waiting")  # a node-wide lock taken meanwhile: step back
                elif self._take_lock():
                    if not blocking(self.leases(), self.token, self.clock(), want):
                        self.set_phase("node-wide")
                        return time.monotonic() - began
                    self._delete(LOCK, self.token)  # another run began its scenarios meanwhile
            else:
                self.set_phase("waiting")
                for o in set(others) - said:
                    log(f"run {self.token} waits for run {o} before its {want} scenarios")
                said |= set(others)
            time.sleep(POLL)  # the other run's progress is what is waited for: poll its Leases

    def heartbeat(self) -> "Runs":
        """Renew this run's Leases (and the lock, if held) until :meth:`close`."""
        def loop() -> None:
            while not self._stop.wait(RENEW):
                try:
                    for lease in self.leases():
                        if lease["spec"].get("holderIdentity") == self.token:
                            self._renew(lease["metadata"]["name"])
                except Exception:  # noqa: BLE001 - a missed renewal is retried; DURATION covers several
                    pass
        threading.Thread(target=loop, daemon=True, name="run-lease").start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._delete(LOCK, self.token)
        self._delete(self.name, None)
