"""Every deadline of the suite, in seconds, named in one place (like the e2e framework's timeouts.go).

Deadlines are generous because a CI node may be slow; every wait stops as soon as its condition
holds (or can no longer hold), so a generous deadline costs nothing on a healthy run.
"""

API_PROBE = 10  # the API server answers /version
NAMESPACE_READY = 60  # a new namespace has its default ServiceAccount
POD_START = 120  # created -> Running (image is local: no pull)
POD_FINISH = 120  # created -> Succeeded/Failed for short commands
POD_DELETE = 90  # delete requested -> object gone
POD_TERMINATE = 60  # delete requested -> container terminated (status still readable)
EXEC = 60  # one exec round trip
VOLUME_UPDATE = 120  # a ConfigMap/Secret update reaches a mounted volume (kubelet sync period + its cache)
LOG_REQUEST = 30  # one log read
NODE_PROCESS = 30  # processes appear on / vanish from the node
NODE_COMMAND = 30  # one command run on the node
SHIM_EXIT = 60  # a deleted pod's shim process exits
SHIM_CONFIRM = 10  # a shim still there this long after its pod (and every pod of the run) was gone: judged
STATE_CLEANUP = 60  # a deleted container's runtime state entry is removed
ZOMBIE_SETTLE = 3  # a new zombie must be reaped by then (a parent that reaps does so in milliseconds; reaper's shim in its 100-200 ms wait loop)
LEAK_SETTLE = 30  # after a scenario's pods are gone, its processes/shims/state/mounts must be gone too
LEAK_CONFIRM = 2  # a mount only the runtime's own long-lived namespace keeps: seen again this much later, judged
RUN_PODS_GONE = 120  # every pod of this run is gone (namespaces deleted) before node-wide checks
TEARDOWN_GRACE = 1  # seconds of grace for the pods a scenario's teardown deletes (the scenario is over)
KILL_SETTLE = 30  # a deleted pod's container still running this long after its grace period ended: judged stuck
BARRIER = 1500  # node-wide scenarios wait this long for the others to finish
WATCH_CHUNK = 10  # one watch request (timeout_seconds; time-based early stops are looked at between them)
WATCH_SLACK = 5

# pytest-timeout per test (a backstop: the deadlines above fire first)
TEST_DEFAULT = 420
TEST_NODE_WIDE = 1800
