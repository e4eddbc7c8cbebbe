"""The handshake between the pipeline (``ci/phases/scenarios.py``) and the scenario suite
(``tests/k8s``), and the pipeline's exit codes, named once so that neither side can drift.

The pipeline starts pytest with ``CLUSTER_INFO_ENV`` (the ClusterInfo JSON), ``RUN_TOKEN_ENV`` and
``ARTIFACTS_ENV`` set; the suite writes its run folder ``<artifacts>/k8s-run/<token>/`` with
``VERDICT_FILE`` (scenario names by verdict) and, when the cluster cannot run scenarios at all,
``SETUP_ERROR_FILE`` (one line) and exit ``SUITE_EXIT_SETUP``.
"""

from __future__ import annotations

# exit codes of `python -m ci ...` (and so of the nox sessions)
EXIT_OK = 0
EXIT_PRODUCT_FAILURE = 1  # a scenario, a cargo test or the smoke pod failed on the runtime under test
EXIT_USAGE = 2  # bad flag or environment, missing tool: nothing was started
EXIT_SETUP = 3  # infrastructure failed (cluster, images, install): not a product failure

# the suite's side
SUITE_EXIT_SETUP = 8  # pytest's exit from tests/k8s when this cluster cannot run scenarios (pytest uses 0-5)
CLUSTER_INFO_ENV = "REAPER_CI_CLUSTER_INFO"  # path of the ClusterInfo JSON
RUN_TOKEN_ENV = "REAPER_CI_RUN_TOKEN"  # the run token (names, labels, sleep markers)
ARTIFACTS_ENV = "CI_ARTIFACTS_DIR"  # where the run folder goes (./artifacts by default)
RUN_DIR = "k8s-run"  # <artifacts>/k8s-run/<token>/
SETUP_ERROR_FILE = "setup-error.txt"  # in the run folder: the suite's one-line reason
DURATIONS_ENV = "REAPER_CI_DURATIONS"  # a JSON file: scenario -> seconds last time on this runtime (longest first)
VERDICT_FILE = "verdict.json"  # in the run folder: scenario names by verdict (passed/failed/infrastructure/...)


def read_durations(path) -> dict[str, list[float]]:
    """The ``DURATIONS_ENV`` file: scenario row -> its measured seconds, oldest first ({} when the file
    is missing or unreadable; one number per scenario is the file of an earlier version)."""
    import json
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return {}
    out: dict[str, list[float]] = {}
    for k, v in (data.items() if isinstance(data, dict) else ()):
        vals = v if isinstance(v, list) else [v]
        nums = [float(x) for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if nums:
            out[k] = nums
    return out
