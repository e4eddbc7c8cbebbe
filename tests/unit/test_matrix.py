"""The version matrix's own logic: cells from the options, a cell's verdicts read from its reports,
the table and the exit code (the real proof is the matrix run in the closing note)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci.config import parse
from ci.errors import UsageError
from ci.phases import matrix


def test_cells_are_every_containerd_by_kubernetes_pair(tmp_path):
    cfg = parse(["--containerd", "v1.7.29,v2.2.9", "--k8s", "v1.33.13,v1.35.8"], {}, cwd=tmp_path)
    assert [(c.containerd, c.kubernetes) for c in matrix.cells(cfg)] == [
        ("v1.7.29", "v1.33.13"), ("v1.7.29", "v1.35.8"), ("v2.2.9", "v1.33.13"), ("v2.2.9", "v1.35.8")]
    assert matrix.cells(cfg)[3].name == "containerd-v2.2.9_k8s-v1.35.8"


@pytest.mark.parametrize("flag, value", [("--containerd", "2.2"), ("--k8s", "v1.35"), ("--k8s", ","), ("--containerd", "latest")])
def test_versions_must_be_exact_before_anything_builds(tmp_path, flag, value):
    with pytest.raises(UsageError, match="expected exact versions like v1.33.13"):
        parse([flag, value], {}, cwd=tmp_path)


def _reports(folder: Path, verdict: dict, suite_time: str = "71.5") -> None:
    run = folder / "k8s-run" / "tok123"
    run.mkdir(parents=True)
    (run / "verdict.json").write_text(json.dumps(verdict))
    (folder / "k8s-junit.xml").write_text(f'<testsuites><testsuite name="k8s-scenarios" time="{suite_time}"/></testsuites>')


def test_a_cell_reads_its_verdicts_and_suite_time(tmp_path):
    cell = matrix.Cell("v2.2.9", "v1.35.8")
    _reports(tmp_path, {"passed": ["S01 echo_stdout"], "failed": ["S13 no_defunct"], "errors": [],
                        "infrastructure": ["S16 create_delete_stress"], "skipped": ["S26 overlay_sharing"]})
    matrix.read_cell(cell, tmp_path)
    assert cell.scenarios == {"S01 echo_stdout": "passed", "S13 no_defunct": "failed",
                              "S16 create_delete_stress": "infrastructure", "S26 overlay_sharing": "skipped"}
    assert cell.suite_seconds == 71.5


def test_table_and_exit_code():
    a = matrix.Cell("v1.7.29", "v1.33.13", status="passed", seconds=90, suite_seconds=70,
                    scenarios={"S01 echo_stdout": "passed", "S13 no_defunct": "passed"})
    b = matrix.Cell("v2.2.9", "v1.33.13", status="product failure", seconds=100, suite_seconds=80,
                    scenarios={"S01 echo_stdout": "passed", "S13 no_defunct": "failed"})
    c = matrix.Cell("v2.2.9", "v1.35.8", status="setup error", detail="kubelet exited; its log:\nnoise\nthe cause\n", seconds=5)
    text = matrix.table([a, b, c])
    rows = {line.split("  ")[0].strip(): line.split() for line in text.splitlines()}
    assert rows["S13 no_defunct"][-3:] == ["pass", "FAIL", "-"]
    assert "cd 2.2.9 / k8s 1.35.8: kubelet exited; its log: ... the cause" in text and "noise" not in text
    assert rows["suite time"][-3:] == ["70s", "80s", "-"]
    assert matrix.exit_code([a, b, c]) == 1
    assert matrix.exit_code([a, c]) == 3
    assert matrix.exit_code([a]) == 0
