"""Progress, summary tables and GitHub Actions integration (groups, annotations, step summary)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

_COLOR = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
_CODES = {"PASS": "32", "passed": "32", "FAIL": "31", "failed": "31", "error": "31", "ERROR": "31",
          "SKIP": "33", "skipped": "33", "ignored": "33", "phase": "1;36"}


def paint(text: str, kind: str) -> str:
    code = _CODES.get(kind)
    return f"\033[{code}m{text}\033[0m" if (_COLOR and code) else text


def in_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def info(msg: str) -> None:
    print(f"[reaper-ci] {msg}", flush=True)


def error(msg: str) -> None:
    """One-line error for the user (and an annotation under GitHub Actions)."""
    print(paint(f"[reaper-ci] error: {msg}", "error"), file=sys.stderr, flush=True)
    if in_github():
        print(f"::error::{_escape(msg)}", flush=True)


def annotate_error(title: str, msg: str, file: str | None = None, line: int | None = None) -> None:
    """An ``::error`` annotation (pinned to ``file``:``line`` when given) under GitHub Actions."""
    if in_github():
        where = (f"file={_escape_prop(file)}," if file else "") + (f"line={int(line)}," if file and line else "")
        print(f"::error {where}title={_escape_prop(title)}::{_escape(msg)}", flush=True)


def _escape(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(s: str) -> str:
    return _escape(s).replace(":", "%3A").replace(",", "%2C")


@contextlib.contextmanager
def phase(title: str) -> Iterator[None]:
    """A titled, timed block; a log group under GitHub Actions."""
    start = time.monotonic()
    if in_github():
        print(f"::group::{title}", flush=True)
    else:
        print(paint(f"\n=== {title} ===", "phase"), flush=True)
    ok = False
    try:
        yield
        ok = True
    finally:
        took = time.monotonic() - start
        if in_github():
            print("::endgroup::", flush=True)
        info(f"{title}: {'done' if ok else 'FAILED'} in {took:.1f}s")


@dataclass
class Row:
    name: str
    result: str  # passed | failed | error | skipped | ignored
    seconds: float
    detail: str = ""


ICONS = {"passed": "✅", "failed": "❌", "error": "💥", "skipped": "⏭️", "ignored": "⏭️", "timeout": "⏱️",
         "missing": "💥", "not run": "💥"}


def grid(head: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """Aligned plain-text rows under a header; column 1 is the result, painted by its first word;
    columns in ``right`` are right-aligned (numbers, durations)."""
    n = len(head)
    widths = [max([len(head[i])] + [len(r[i]) for r in rows]) for i in range(n)]

    def fmt(row: Sequence[str], paint_it: bool) -> str:
        cells = [row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i]) for i in range(n)]
        if paint_it and n > 1:
            word = row[1].split(" ")[0]
            cells[1] = paint(cells[1], word if word in ("passed", "skipped", "ignored") else "failed")
        return "  ".join(cells).rstrip()

    return [fmt(head, False), "  ".join("-" * w for w in widths)] + [fmt(r, True) for r in rows]


def markdown(head: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> list[str]:
    """The same table as :func:`grid` in Markdown, the result cell (column 1) with its icon."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    for r in rows:
        cells = list(r)
        if len(cells) > 1:
            cells[1] = f"{ICONS.get(cells[1].split(':')[0].split(' (')[0], '')} {cells[1]}".strip()
        out.append("|" + "|".join(f" {c} " if c else " " for c in cells) + "|")
    return out


def append_step_summary(lines: Sequence[str]) -> None:
    """Append Markdown to $GITHUB_STEP_SUMMARY when it is set (GitHub Actions), else nothing."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def table(title: str, rows: Sequence[Row]) -> str:
    """A plain-text summary table (also printed), with totals."""
    cells = [(r.name, r.result, f"{r.seconds:.2f}s") for r in rows]
    return "\n".join([title, *grid(("Test", "Result", "Time"), cells, right=(2,)), totals(rows)])


def totals(rows: Sequence[Row]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.result] = counts.get(r.result, 0) + 1
    order = ["passed", "failed", "error", "skipped", "ignored"]
    parts = [f"{counts.get(k, 0)} {k}" for k in order if k in counts or k in ("passed", "failed")]
    return ", ".join(parts)


def step_summary(title: str, rows: Sequence[Row], note: str = "") -> None:
    """The scenario table as Markdown in $GITHUB_STEP_SUMMARY (when set)."""
    cells = [(f"`{r.name}`", r.result, f"{r.seconds:.2f}s") for r in rows]
    out = [f"## {title}", "", *markdown(("Test", "Result", "Duration"), cells), "", f"**{totals(rows)}**", ""]
    append_step_summary(out + ([note, ""] if note else []))


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
