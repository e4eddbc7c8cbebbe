"""Helpers of the Kubernetes scenario suite (tests/k8s).

Pure logic (names, manifests, process tables, summaries) lives in modules that import nothing
from a cluster, so ``tests/unit/test_k8s_*.py`` test it without one:

* :mod:`.naming` - the run token and every name derived from it (namespaces, pods, node paths,
  process markers);
* :mod:`.manifests` - pods, ConfigMaps and Secrets as plain dicts from small factories;
* :mod:`.nodeproc` - ``ps`` parsing, parent chains, zombies, shim processes and their bundles;
* :mod:`.podstate` - reading pod dicts (phase, container states, one-paragraph descriptions);
* :mod:`.timeouts` - every deadline, named, in one place;
* :mod:`.runstate` - the run folder shared by pytest-xdist workers (ids seen, done markers,
  the node-wide barrier) and the summary table.

:mod:`.kube` and :mod:`.diagnostics` talk to the cluster and the node; :mod:`.preflight` is the
controller's look at the cluster before any scenario starts.
"""
