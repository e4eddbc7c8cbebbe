"""Scenario suite: edge values and the pure readers of what containers report (hex lines, environ, tokens)."""

from __future__ import annotations

import base64
import json
import subprocess

import _k8s_path  # noqa: F401
import pytest

from k8s_suite import edges


def test_hex_args_script_round_trips_every_edge_value_through_a_real_shell():
    proc = subprocess.run(["/bin/sh", "-c", edges.HEX_ARGS, "sh", *edges.EDGE_VALUES], capture_output=True, text=True,
                          check=True)
    assert edges.decode_hex_lines(proc.stdout.splitlines()) == [v.encode() for v in edges.EDGE_VALUES]
    assert edges.decode_hex_lines(["x6869\r", "x"]) == [b"hi", b""]  # a terminal's \r; an empty item
    with pytest.raises(ValueError, match="not an x<hex> line"):
        edges.decode_hex_lines(["6869"])


def test_environ_from_od_of_proc_environ():
    env = {"A": "", "B": "k=v=w", "C": "l1\nl2", "PATH": "/bin"}
    proc = subprocess.run(["/bin/sh", "-c", "od -An -tx1 -v /proc/$$/environ"], env=env, capture_output=True,
                          text=True, check=True)
    assert edges.environ(proc.stdout) == env


def test_env_problems_name_spec_mismatches_and_leaked_variables():
    spec = {"X": "a b", "E": ""}
    ok = {"X": "a b", "E": "", "PATH": "/bin", "HOSTNAME": "p", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert edges.env_problems(ok, spec) == []
    assert edges.env_problems({**ok, "TERM": "xterm"}, spec, tty=True) == []
    bad = {**ok, "X": "a  b", "REAPER_RUNTIME_PATH": "/bin/reaper-runtime", "TERM": "xterm"}
    got = edges.env_problems(bad, spec)
    assert got == ["X: expected 'a b', got 'a  b'",
                   "variables the spec does not give (the runtime's own environment leaked in): "
                   "REAPER_RUNTIME_PATH='/bin/reaper-runtime', TERM='xterm'"]
    assert edges.env_problems({"X": "a b", "E": ""}, spec) == ["PATH is unset"]


def _jwt(claims: dict) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{enc({'alg': 'RS256'})}.{enc(claims)}.sig"


def test_token_pod_reads_the_bound_token_claims():
    tok = _jwt({"kubernetes.io": {"namespace": "ns1", "pod": {"name": "p1", "uid": "u"}}})
    assert edges.token_pod(tok + "\n") == ("ns1", "p1")
    assert edges.token_pod(_jwt({"sub": "x"})) == (None, None)
    with pytest.raises(ValueError, match="not a JWT"):
        edges.token_pod("abc")


def test_printf_every_byte_prints_bytes_0_to_255_in_a_real_shell():
    proc = subprocess.run(["/bin/sh", "-c", f"printf '{edges.PRINTF_EVERY_BYTE}'; printf tail-t0"], capture_output=True,
                          check=True)
    assert proc.stdout == bytes(range(256)) + b"tail-t0"
    assert edges.binary("t0") == bytes(range(256)) * 64 + b"tail-t0"


def test_byte_difference_names_the_first_differing_byte():
    assert edges.byte_difference(b"abc", b"abc") == "none"
    assert edges.byte_difference(b"abXd", b"abcd") == "byte 2: b'abXd' vs b'abcd'"
    assert edges.byte_difference(b"ab", b"abc") == "byte 2: b'ab' vs b'abc'"
    assert edges.byte_difference(b"", b"\x00") == "byte 0: b'' vs b'\\x00'"


def test_descriptors_reads_ls_of_proc_fd():
    lines = ["total 0", "lrwx------    1 root     root    64 Dec  4 16:20 0 -> /dev/pts/0\r",
             "l-wx------    1 root     root    64 Dec  4 16:20 1 -> pipe:[123]", "lr-x------ 1 root root 64 Dec 4 12 -> /tmp"]
    assert edges.descriptors(lines) == {0: "/dev/pts/0", 1: "pipe:[123]", 12: "/tmp"}


def test_fds_script_lists_only_the_shells_own_descriptors_in_a_real_shell():
    """A process started with its three streams only: the listing adds none of its own (it runs in a child)."""
    proc = subprocess.run(["/bin/sh", "-c", edges.FDS], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=True)
    assert sorted(edges.descriptors(proc.stdout.splitlines())) == [0, 1, 2], proc.stdout
    with open("/dev/null") as extra:  # an inherited descriptor is listed
        fd = extra.fileno()
        proc = subprocess.run(["/bin/sh", "-c", edges.FDS], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              check=True, pass_fds=(fd,))
    assert edges.descriptors(proc.stdout.splitlines()).get(fd) == "/dev/null", proc.stdout
    assert sorted(edges.descriptors(proc.stdout.splitlines())) == [0, 1, 2, fd], proc.stdout
