"""``nox -s matrix``: the scenario suite on a fresh local cluster per (containerd, Kubernetes) cell.

Each cell is ``k8s`` with those versions (built through the Go module proxy once per version and
cached, like the default ones): the cluster made fresh, the runtime installed, the suite run, the
cluster torn down, its reports in ``<artifacts>/matrix/<cell>/``. One table at the end, scenarios by
cells (pass / FAIL / infra / skip, and each cell's suite time), also as ``matrix-summary.txt`` and
``matrix.json``. Exit 1 when any cell has a product failure, 3 when the only failures are the
cluster's (setup errors or infrastructure), else 0.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ci import config as config_mod
from ci import console
from ci.config import Config
from ci.contract import EXIT_OK, EXIT_PRODUCT_FAILURE, EXIT_SETUP, RUN_DIR, VERDICT_FILE
from ci.errors import CIError, SetupError, UsageError

MARK = {"passed": "pass", "failed": "FAIL", "errors": "FAIL", "infrastructure": "infra", "skipped": "skip"}


@dataclass
class Cell:
    containerd: str
    kubernetes: str
    status: str = "not run"  # passed | product failure | setup error
    detail: str = ""
    seconds: float = 0.0  # the whole cell: cluster, install, suite, tear-down
    suite_seconds: float | None = None
    scenarios: dict[str, str] = field(default_factory=dict)  # "S01 echo_stdout" -> passed/failed/...

    @property
    def name(self) -> str:
        return f"containerd-{self.containerd}_k8s-{self.kubernetes}"

    @property
    def label(self) -> str:
        return f"cd {self.containerd.lstrip('v')} / k8s {self.kubernetes.lstrip('v')}"


def cells(cfg: Config) -> list[Cell]:
    return [Cell(c, k) for c in cfg.matrix_containerd for k in cfg.matrix_k8s]


def read_cell(cell: Cell, artifacts: Path) -> None:
    """The cell's scenario verdicts (the suite's verdict file) and suite time (its JUnit)."""
    runs = sorted((artifacts / RUN_DIR).glob(f"*/{VERDICT_FILE}"), key=lambda p: p.stat().st_mtime)
    if runs:
        doc = json.loads(runs[-1].read_text())
        for key in MARK:
            for name in doc.get(key, []):
                cell.scenarios[name] = key
    junit = artifacts / "k8s-junit.xml"
    if junit.is_file():
        try:
            root = ET.parse(junit).getroot()
            suite = root if root.tag == "testsuite" else root.find("testsuite")
            cell.suite_seconds = float(suite.get("time")) if suite is not None and suite.get("time") else None
        except (ET.ParseError, ValueError):
            pass


def run_cell(cfg: Config, cell: Cell) -> None:
    from ci.cluster.local import LocalProvisioner
    from ci.phases import k8s

    artifacts = cfg.artifacts / "matrix" / cell.name
    sub = cfg.with_(containerd_version=cell.containerd, k8s_version=cell.kubernetes, artifacts=artifacts,
                    keep_cluster=False, provisioner="local", repeat=1)
    started = time.monotonic()
    try:
        LocalProvisioner(sub).down()  # a fresh cluster per cell, whatever ran before
        rc = k8s.run(sub)
        cell.status = "passed" if rc == 0 else "product failure"
    except SetupError as e:  # incl. scenarios that failed only on the cluster (scenarios.verdict)
        cell.status, cell.detail = "setup error", str(e)
    except CIError as e:  # the runtime failed the smoke pod, pytest broke, ...
        cell.status, cell.detail = "product failure", str(e)
    cell.seconds = time.monotonic() - started
    read_cell(cell, artifacts)


def table(cells_: list[Cell]) -> str:
    names = sorted({n for c in cells_ for n in c.scenarios}, key=lambda n: (n.split(" ", 1)[0], n))
    head = ["Scenario", *(c.label for c in cells_)]
    rows = [[n, *(MARK.get(c.scenarios.get(n, ""), "-") for c in cells_)] for n in names]
    rows.append(["suite time", *(f"{c.suite_seconds:.0f}s" if c.suite_seconds is not None else "-" for c in cells_)])
    rows.append(["cell time", *(f"{c.seconds:.0f}s" for c in cells_)])
    rows.append(["verdict", *(c.status for c in cells_)])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = lambda r: "  ".join(r[i].ljust(widths[i]) for i in range(len(r))).rstrip()  # noqa: E731
    lines = [fmt(head), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]
    for c in cells_:
        rows_ = [r.strip() for r in c.detail.splitlines() if r.strip()]
        if rows_:  # the error's line, and its last line (often the cause: a log's tail)
            lines.append(f"{c.label}: {rows_[0][:300]}" + (f" ... {rows_[-1][:300]}" if len(rows_) > 1 else ""))
    return "\n".join(lines)


def exit_code(cells_: list[Cell]) -> int:
    if any(c.status == "product failure" for c in cells_):
        return EXIT_PRODUCT_FAILURE
    if any(c.status == "setup error" for c in cells_):
        return EXIT_SETUP
    return EXIT_OK


def run(cfg: Config) -> int:
    from ci.cluster import local_usable

    why = local_usable()
    if why is not None:
        raise UsageError(f"matrix: every cell is a local cluster, which needs Linux as root ({why})")
    from ci.phases.k8s import check_runtime_choice

    check_runtime_choice(cfg, prog="matrix")
    all_cells = cells(cfg)
    console.info(f"matrix: {len(all_cells)} cell(s): containerd {', '.join(cfg.matrix_containerd)} x Kubernetes "
                 f"{', '.join(cfg.matrix_k8s)}; runtime {cfg.runtime}")
    for i, cell in enumerate(all_cells, 1):
        with console.phase(f"matrix cell {i} of {len(all_cells)}: containerd {cell.containerd}, Kubernetes {cell.kubernetes}"):
            run_cell(cfg, cell)
        console.info(f"cell {cell.label}: {cell.status} in {cell.seconds:.0f}s")
    text = table(all_cells)
    title = f"Matrix: runtime {cfg.runtime}" + (f" from {cfg.source}" if cfg.source else "")
    print("\n" + title + "\n" + text, flush=True)
    console.write_text(cfg.artifacts / "matrix-summary.txt", title + "\n" + text + "\n")
    doc = {"runtime": cfg.runtime, "source": str(cfg.source) if cfg.source else None,
           "cells": [{"containerd": c.containerd, "kubernetes": c.kubernetes, "status": c.status, "detail": c.detail,
                      "seconds": round(c.seconds, 1), "suite_seconds": c.suite_seconds, "scenarios": c.scenarios}
                     for c in all_cells]}
    console.write_text(cfg.artifacts / "matrix.json", json.dumps(doc, indent=1) + "\n")
    cells_md = [(f"`{n}`", *(MARK.get(c.scenarios.get(n, ""), "-") for c in all_cells))
                for n in sorted({n for c in all_cells for n in c.scenarios})]
    console.append_step_summary([f"## {title}", "", *console.markdown(("Scenario", *(c.label for c in all_cells)), cells_md), ""])
    return exit_code(all_cells)


def main(argv: list[str]) -> int:
    from ci.phases.k8s import setup_error_is_exit_3

    return setup_error_is_exit_3(run, config_mod.parse(argv, prog="matrix"))
