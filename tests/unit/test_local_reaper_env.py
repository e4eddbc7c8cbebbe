"""reaper as its users deploy it on the local cluster: no overlay overrides, the runtime binary named
by --runtime-binary, /run/reaper's overlay state claimed only when nobody else's is there."""

from pathlib import Path

import pytest

from ci.cluster import local, runtime as rt
from ci.cluster.local import host
from ci.errors import SetupError


def test_reaper_env_keeps_reapers_overlay_defaults_and_names_the_runtime_binary():
    env = rt.reaper_env("/b", "/r", "/l", "/c.conf", runtime_binary="my-runtime")
    assert env["REAPER_RUNTIME_PATH"] == "/b/my-runtime"
    assert not [k for k in env if k.startswith(("REAPER_OVERLAY", "REAPER_FILTER"))]
    assert rt.reaper_env("/b", "/r", "/l", "/c")["REAPER_RUNTIME_PATH"] == "/b/reaper-runtime"


def test_handler_passes_reaper_annotations_through():
    entry = rt.handler_toml("reaper-v2", "reaper", "io.containerd.reaper.v2", None)
    assert 'pod_annotations = ["reaper.runtime/*"]' in entry
    assert "pod_annotations" not in rt.handler_toml("reaper-v2", "runc", "x", None)


def test_reaper_home_entries_and_the_claim(tmp_path, monkeypatch):
    home = tmp_path / "run-reaper"
    monkeypatch.setattr(host, "REAPER_HOME", home)
    assert local.reaper_home_entries() == []
    (home / "ns").mkdir(parents=True)
    (home / "overlay-default.lock").write_text("")
    (home / "runtime.log").write_text("")  # not overlay state
    assert [p.name for p in local.reaper_home_entries()] == ["ns", "overlay-default.lock"]

    class Lay:
        state = tmp_path / "state"

    (tmp_path / "state").mkdir()
    prov = local.LocalProvisioner.__new__(local.LocalProvisioner)
    prov.lay = Lay()
    with pytest.raises(SetupError, match="did not make"):
        prov._claim_reaper_home()
    assert not (tmp_path / "state" / local.OWNS_REAPER_HOME).exists()
    for p in local.reaper_home_entries():
        p.rmdir() if p.is_dir() else p.unlink()
    prov._claim_reaper_home()
    assert (tmp_path / "state" / local.OWNS_REAPER_HOME).exists()


def test_nsfs_detection_is_false_for_plain_files_and_folders(tmp_path):
    f = tmp_path / "x"
    f.write_text("")
    assert not local._is_nsfs(f) and not local._is_nsfs(tmp_path) and not local._is_nsfs(Path("/nonexistent"))
