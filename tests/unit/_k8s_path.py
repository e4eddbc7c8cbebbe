"""Makes tests/k8s importable (its helper package ``k8s_suite``) for the unit tests of the suite's logic."""

import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "k8s"
if str(SUITE) not in sys.path:
    sys.path.insert(0, str(SUITE))
