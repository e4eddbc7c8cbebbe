"""Scenario suite: exec status frames and exact log lines."""

from __future__ import annotations

import json

import _k8s_path  # noqa: F401

from k8s_suite.kube import ExecResult, log_lines, parse_exec_status


def test_success_is_exit_zero():
    assert parse_exec_status('{"metadata":{},"status":"Success"}') == ("Success", 0, "")


def test_non_zero_exit_code():
    raw = json.dumps({"status": "Failure", "message": "command terminated with exit code 7", "reason": "NonZeroExitCode",
                      "details": {"causes": [{"reason": "ExitCode", "message": "7"}]}})
    assert parse_exec_status(raw) == ("Failure", 7, "command terminated with exit code 7")


def test_start_failure_has_no_exit_code_but_a_message():
    raw = json.dumps({"status": "Failure", "reason": "InternalError", "code": 500,
                      "message": 'exec: "/nonexistent/binary": stat /nonexistent/binary: no such file or directory',
                      "details": {"causes": [{"message": "Internal error occurred"}]}})
    status, code, msg = parse_exec_status(raw)
    assert (status, code) == ("Failure", None) and "/nonexistent/binary" in msg


def test_missing_or_broken_status():
    assert parse_exec_status("") == (None, None, "no status frame received")
    assert parse_exec_status("{not json")[:2] == (None, None)
    bad = json.dumps({"status": "Failure", "details": {"causes": [{"reason": "ExitCode", "message": "x"}]}})
    assert parse_exec_status(bad)[:2] == ("Failure", None)


def test_exec_result_describe():
    r = ExecResult(("echo", "hi"), "hi\n", "", "Success", 0, "")
    assert "exit_code=0" in r.describe() and "stdout='hi\\n'" in r.describe()


def test_log_lines_are_exact():
    assert log_lines("") == []
    assert log_lines("a\n") == ["a"]
    assert log_lines("a\nb") == ["a", "b"]
    assert log_lines("a\n\n") == ["a", ""]  # an empty last line the container wrote is kept
    assert log_lines(" a \n") == [" a "]


def test_a_kubelet_error_ending_a_followed_stream_is_not_container_output():
    from k8s_suite.kube import without_stream_end_error

    cid = "3e2eefd217d50ac9b581cbb34ab4bf180af66827b3339bd219296772c62f2c7e"
    note = (f'rpc error: code = NotFound desc = an error occurred when try to find container "{cid}": not found')
    assert without_stream_end_error(["ready", "SIGTERM-received", note], [cid]) == (["ready", "SIGTERM-received"], note)
    # another container's id, or the same text printed earlier by the workload: kept
    assert without_stream_end_error(["ready", note], ["other"]) == (["ready", note], None)
    assert without_stream_end_error([note, "ready"], [cid]) == ([note, "ready"], None)
    assert without_stream_end_error([], [cid]) == ([], None)
