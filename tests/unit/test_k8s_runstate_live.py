"""Scenario suite: the pods a node-wide scenario keeps live beside its stage's checks (runstate.live_beside)."""

from __future__ import annotations

import _k8s_path  # noqa: F401

from k8s_suite import runstate


def test_a_namespace_marked_live_is_left_with_its_recorded_ids():
    entries = [
        {"ns": "run-s41", runstate.LIVE_BESIDE: True},
        {"ns": "run-s41", "container_ids": ["c41"], "shims": [{"id": "s41", "sandbox_id": "sb41"}]},
        {"ns": "run-s02", "container_ids": ["c02"], "shims": [{"id": "s02"}]},
        {"ns": "run-s02", "gone_at": 1.0},
    ]
    assert runstate.live_beside(iter(entries)) == ({"run-s41"}, {"c41", "s41", "sb41"})


def test_nothing_is_live_without_the_mark():
    assert runstate.live_beside([{"ns": "run-s02", "container_ids": ["c02"]}]) == (set(), set())
