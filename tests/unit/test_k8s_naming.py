"""Scenario suite: the run token and the names derived from it (namespaces, pods, node paths, markers)."""

from __future__ import annotations

import _k8s_path  # noqa: F401
import pytest

from k8s_suite import naming


def test_tokens_are_fresh_and_valid():
    tokens = {naming.new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert all(naming.TOKEN_RE.match(t) for t in tokens)


@pytest.mark.parametrize("bad", ["", "ABCDEF", "1abcde", "abc", "abcdefg", "ab-cde"])
def test_bad_tokens_are_refused(bad):
    with pytest.raises(ValueError):
        naming.check_token(bad)


def test_namespace_and_pod_names_carry_the_token():
    assert naming.namespace("k3f9x2", "s01") == "reaper-ci-k3f9x2-s01"
    assert naming.pod_name("k3f9x2", "s12", "pgkill") == "s12-pgkill-k3f9x2"
    assert naming.run_namespace_prefix("k3f9x2") == "reaper-ci-k3f9x2-"
    assert naming.namespace("k3f9x2", "s01").startswith(naming.run_namespace_prefix("k3f9x2"))


def test_dns_label_is_valid_and_bounded():
    long = naming.dns_label("S16_Create_Delete_" + "x" * 80)
    assert len(long) <= 63 and long == long.lower() and not long.endswith("-")
    assert naming.dns_label("test_s07_large_output[1]") == "test-s07-large-output-1"
    with pytest.raises(ValueError):
        naming.dns_label("___")


def test_scenario_ids_from_test_names():
    assert naming.scenario_id("test_s07_large_output") == "s07"
    assert naming.scenario_id("test_s16_create_delete_stress[x]") == "s16"
    assert naming.scenario_id("test_helper") is None


def test_node_paths_are_under_tmp_and_owned_by_the_run():
    assert naming.node_path("k3f9x2", "s20", "hostpath") == "/tmp/reaper-ci-k3f9x2-s20-hostpath"
    assert naming.node_path("k3f9x2", "s27") == "/tmp/reaper-ci-k3f9x2-s27"
    with pytest.raises(ValueError):
        naming.node_path("k3f9x2", "s20", "../etc")


def test_sleep_markers_are_large_stable_and_differ_between_runs():
    a = naming.sleep_seconds("k3f9x2", "s12")
    assert a == naming.sleep_seconds("k3f9x2", "s12")
    assert 100000 <= a <= 899999
    others = {naming.sleep_seconds(naming.new_token(), "s12") for _ in range(50)}
    assert len(others) >= 45  # fresh tokens give (almost always) fresh numbers
    assert naming.sleep_seconds("k3f9x2", "s12") != naming.sleep_seconds("k3f9x2", "s16")


def test_a_node_file_is_cleaned_up_with_the_folder_it_was_written_into():
    from types import SimpleNamespace

    import pytest

    from k8s_suite.kube import Kube

    written = []
    k = Kube.__new__(Kube)
    k.token, k.sid, k.node_paths = "abc123", "s20", []
    k.ctx = SimpleNamespace(node=SimpleNamespace(write_file=lambda node, path, content: written.append(path)))
    k.write_node_file("n1", "/tmp/reaper-ci-abc123-s20-hostpath/data.txt", "x\n")
    k.write_node_file("n1", "/tmp/reaper-ci-abc123-s20-control", "x\n")
    assert written == ["/tmp/reaper-ci-abc123-s20-hostpath/data.txt", "/tmp/reaper-ci-abc123-s20-control"]
    assert k.node_paths == [("n1", "/tmp/reaper-ci-abc123-s20-hostpath"), ("n1", "/tmp/reaper-ci-abc123-s20-control")]
    with pytest.raises(AssertionError, match="not this test's node path"):
        k.write_node_file("n1", "/tmp/reaper-ci-abc123-s21-x/f", "x\n")
