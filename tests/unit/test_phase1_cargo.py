"""Phase 1 pure logic: target discovery from cargo metadata, build messages, compiler and rustfmt output."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci import cargo, cargo_env
from ci.cargo import Target


def _pkg(tmp_path: Path, name: str, targets: list[dict], toml: str = "", **extra) -> dict:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    (d / "Cargo.toml").write_text(toml or f'[package]\nname = "{name}"\nversion = "0.1.0"\n')
    return {"name": name, "id": f"path+file://{d}#{name}@0.1.0", "version": "0.1.0",
            "manifest_path": str(d / "Cargo.toml"), "targets": targets, **extra}


def _t(name, kind, **kw):
    return {"name": name, "kind": [kind] if isinstance(kind, str) else kind, "src_path": f"/x/{name}.rs", **kw}


def _meta(*pkgs):
    return {"packages": list(pkgs), "workspace_members": [p["id"] for p in pkgs]}


def test_targets_cargo_test_runs(tmp_path):
    pkg = _pkg(tmp_path, "reaper", [
        _t("reaper", "lib", test=True, doctest=True),
        _t("reaper-runtime", "bin", test=True, doctest=False),
        _t("integration_io", "test", test=True, doctest=False),
        _t("bench_x", "bench", test=False, doctest=False),
        _t("example_y", "example", test=False, doctest=False),
        _t("example_z", "example", test=True, doctest=False),
        _t("build-script-build", "custom-build", test=False, doctest=False),
    ])
    got = {(t.id, t.kind) for t in cargo.targets_from_metadata(_meta(pkg))}
    assert got == {("reaper", "lib"), ("reaper-runtime", "bin"), ("integration_io", "test"),
                   ("example_z", "example"), ("doc:reaper", "doc")}


def test_cargo_defaults_when_metadata_omits_test_flag(tmp_path):
    pkg = _pkg(tmp_path, "p", [_t("p", "lib"), _t("b", "bench"), _t("it", "test")])
    ids = [t.id for t in cargo.targets_from_metadata(_meta(pkg))]
    assert sorted(ids) == ["doc:p", "it", "p"]


def test_lib_kinds_and_proc_macro_doctests(tmp_path):
    pkg = _pkg(tmp_path, "m", [_t("m", "proc-macro", test=True, doctest=True)])
    pkg2 = _pkg(tmp_path, "c", [_t("c", ["cdylib"], test=True, doctest=True)])
    got = {(t.id, t.kind) for t in cargo.targets_from_metadata(_meta(pkg, pkg2))}
    assert got == {("m", "lib"), ("doc:m", "doc"), ("c", "lib")}  # a cdylib-only crate has no doctests


def test_ids_are_unique_and_plain_where_possible(tmp_path):
    a = _pkg(tmp_path, "a", [_t("a", "lib", doctest=False), _t("a", "bin"), _t("integration", "test"),
                             _t("only_here", "test")])
    b = _pkg(tmp_path, "b", [_t("b", "lib", doctest=False), _t("integration", "test")])
    ids = [t.id for t in cargo.targets_from_metadata(_meta(a, b))]
    assert len(ids) == len(set(ids))
    assert {"lib:a", "bin:a", "a/test:integration", "b/test:integration", "only_here", "b"} == set(ids)


def test_non_members_are_ignored(tmp_path):
    a = _pkg(tmp_path, "a", [_t("a", "lib", doctest=False)])
    dep = _pkg(tmp_path, "dep", [_t("dep", "lib", doctest=False)])
    meta = {"packages": [a, dep], "workspace_members": [a["id"]]}
    assert [t.id for t in cargo.targets_from_metadata(meta)] == ["a"]


def test_harness_false_is_read_from_the_manifest(tmp_path):
    toml = ('[package]\nname = "h"\nversion = "0.1.0"\n[[test]]\nname = "custom"\nharness = false\n'
            '[[test]]\nname = "normal"\n')
    pkg = _pkg(tmp_path, "h", [_t("custom", "test"), _t("normal", "test")], toml=toml)
    by_id = {t.id: t for t in cargo.targets_from_metadata(_meta(pkg))}
    assert by_id["custom"].harness is False
    assert by_id["normal"].harness is True


def test_required_features_recorded(tmp_path):
    pkg = _pkg(tmp_path, "r", [_t("agent", "bin", **{"required-features": ["agent"]})])
    (t,) = cargo.targets_from_metadata(_meta(pkg))
    assert t.required_features == ["agent"]


def _target(id_, kind="test", pkg_id="P", **kw):
    return Target(id=id_, name=kw.pop("name", id_), kind=kind, package="p", package_id=pkg_id,
                  manifest_path="/w/Cargo.toml", src_path="", **kw)


def test_match_artifacts_uses_test_builds_only():
    targets = [_target("integration_io"), _target("p", kind="lib"), _target("ex", kind="example"),
               _target("agent", kind="bin", required_features=["agent"]), _target("doc:p", kind="doc", name="p")]
    msgs = [
        {"reason": "compiler-artifact", "package_id": "P", "target": {"name": "integration_io", "kind": ["test"]},
         "profile": {"test": True}, "executable": "/t/integration_io-1"},
        {"reason": "compiler-artifact", "package_id": "P", "target": {"name": "p", "kind": ["lib"]},
         "profile": {"test": False}, "executable": None},
        {"reason": "compiler-artifact", "package_id": "P", "target": {"name": "p", "kind": ["lib"]},
         "profile": {"test": True}, "executable": "/t/p-2"},
        {"reason": "compiler-artifact", "package_id": "P", "target": {"name": "ex", "kind": ["example"]},
         "profile": {"test": False}, "executable": "/t/examples/ex"},
        {"reason": "build-finished", "success": True},
    ]
    cargo.match_artifacts(targets, msgs)
    got = {t.id: (t.executable, t.skip_reason) for t in targets}
    assert got["integration_io"] == ("/t/integration_io-1", None)
    assert got["p"] == ("/t/p-2", None)
    assert got["ex"] == (None, None)  # built as a plain example: not a test executable
    assert got["agent"][0] is None and "needs feature(s) agent" in got["agent"][1]
    assert got["doc:p"] == (None, None)


def test_missing_required():
    targets = [_target("integration_io"), _target("doc:p", kind="doc", name="p"), _target("bin:x", name="x")]
    assert cargo.missing_required(targets, ["integration_io", "integration_exec", "x", "bin:x"]) == [
        "integration_exec"]
    assert cargo.missing_required(targets, []) == []


RUSTC_ERR = """\
   Compiling p1-broken v0.1.0 (/w)
warning: unused variable: `x`
 --> src/lib.rs:1:5
error[E0308]: mismatched types
 --> tests/integration_io.rs:3:18
  |
3 |     let n: u32 = "not a number";
  |            ---   ^^^^^^^^^^^^^^ expected `u32`, found `&str`
error: could not compile `p1-broken` (test "integration_io") due to 1 previous error
"""


def test_first_error_is_the_compiler_error_with_location():
    assert cargo.first_error(RUSTC_ERR) == "error[E0308]: mismatched types at tests/integration_io.rs:3:18"
    assert cargo.first_error_location(RUSTC_ERR) == ("tests/integration_io.rs", 3)


def test_first_error_without_code_or_location():
    text = "error: failed to parse manifest at `/w/Cargo.toml`\n\nCaused by:\n  bad\n"
    assert cargo.first_error(text) == "error: failed to parse manifest at `/w/Cargo.toml`"


def test_first_error_falls_back_to_last_line():
    assert cargo.first_error("something\nwent wrong\n\n") == "went wrong"
    assert cargo.first_error("") == "no output"


def test_fmt_files_relative_to_root(tmp_path):
    out = f"Diff in {tmp_path}/src/lib.rs:5:\n-a\n+b\nDiff in {tmp_path}/src/lib.rs:9:\nDiff in {tmp_path}/t/x.rs:1:\n"
    assert cargo.fmt_files(out, tmp_path) == [("src/lib.rs", 5), ("t/x.rs", 1)]


def test_package_env_splits_the_version():
    pkg = {"name": "p", "version": "1.2.3-rc.1+build.5", "manifest_path": "/w/p/Cargo.toml", "authors": ["a", "b"],
           "description": "d", "readme": "/w/p/README.md", "rust_version": "1.70"}
    env = cargo_env.package_env(pkg)
    assert env["CARGO_MANIFEST_DIR"] == "/w/p"
    assert (env["CARGO_PKG_VERSION_MAJOR"], env["CARGO_PKG_VERSION_MINOR"], env["CARGO_PKG_VERSION_PATCH"],
            env["CARGO_PKG_VERSION_PRE"]) == ("1", "2", "3", "rc.1")
    assert env["CARGO_PKG_AUTHORS"] == "a:b"
    assert env["CARGO_PKG_README"] == "README.md"
    assert env["CARGO_PKG_RUST_VERSION"] == "1.70"
    assert env["CARGO_PKG_HOMEPAGE"] == ""


def test_config_env_nearest_wins_and_respects_force(tmp_path, monkeypatch):
    monkeypatch.setenv("ALREADY", "from-shell")
    (tmp_path / ".cargo").mkdir()
    (tmp_path / ".cargo" / "config.toml").write_text('[env]\nOUTER = "o"\nSHARED = "outer"\n')
    inner = tmp_path / "ws"
    (inner / ".cargo").mkdir(parents=True)
    (inner / ".cargo" / "config.toml").write_text(
        '[env]\nSHARED = "inner"\nALREADY = "cfg"\nFORCED = { value = "f", force = true }\n'
        'REL = { value = "data", relative = true }\n')
    env = cargo_env.config_env(inner, home=tmp_path / "nohome")
    assert env["OUTER"] == "o" and env["SHARED"] == "inner" and env["FORCED"] == "f"
    assert "ALREADY" not in env  # without force, the shell's value stays
    assert env["REL"] == str(inner / "data")


def test_run_env_library_path_and_package_vars(monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/old")
    t = _target("integration_io", executable="/w/target/debug/deps/integration_io-1")
    env = cargo_env.run_env(t, {"CARGO_PKG_NAME": "p"}, cargo_path="/bin/cargo", sysroot_libs=["/sys/lib"],
                        config_dir=Path("/nonexistent"))
    assert env["CARGO_PKG_NAME"] == "p" and env["CARGO"] == "/bin/cargo"
    assert env["LD_LIBRARY_PATH"].split(":") == ["/w/target/debug", "/w/target/debug/deps", "/sys/lib", "/old"]


def test_target_json_round_trip():
    t = _target("integration_io", harness=False, required_features=["f"], executable="/x")
    assert Target.from_json(t.to_json()) == t
    assert t.manifest_dir == "/w"


@pytest.mark.parametrize("kinds, kind", [(["lib"], "lib"), (["rlib", "cdylib"], "lib"), (["proc-macro"], "lib"),
                                         (["bin"], "bin"), (["test"], "test"), ([], "?")])
def test_kind_of(kinds, kind):
    assert cargo.kind_of(kinds) == kind


def test_required_targets_the_workspace_lacks_are_a_usage_error_before_lint(tmp_path, monkeypatch):
    """`--required-targets nope`: one line, exit 2, before fmt/clippy (cargo metadata --no-deps knows at once)."""
    from ci import cargo as cargo_mod
    from ci import config as config_mod
    from ci.errors import UsageError
    from ci.phases import phase1

    (tmp_path / "Cargo.toml").write_text("[workspace]\n")
    linted = []
    ws = cargo_mod.Workspace(tmp_path, tmp_path / "target", {}, [])
    monkeypatch.setattr(phase1, "tool", lambda name: name)
    monkeypatch.setattr(cargo_mod, "discover", lambda cargo, source, log=None: ws)
    monkeypatch.setattr(cargo_mod, "lint", lambda *a, **k: linted.append(a) or [])
    cfg = config_mod.parse(["--source", str(tmp_path), "--required-targets", "nope", "--artifacts", str(tmp_path / "a")],
                           {}, prog="phase1", cwd=tmp_path)
    with pytest.raises(UsageError, match="--required-targets names target.*nope"):
        phase1.run(cfg)
    assert not linted
