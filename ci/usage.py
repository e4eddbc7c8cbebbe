"""``python -m ci <command> --help``: the options every command reads, printed before any work.

The options are shared by all commands (``ci.config.OPTIONS``; each one's environment twin and
default); a command reads the ones its README section names and passes the rest after ``--`` to
pytest where it runs pytest.
"""

from __future__ import annotations

from ci.config import COMMAND_OPTIONS, OPTIONS

OWN_HELP = {"phase1"}  # commands that print a help of their own (every option explained)


def asks_for_help(args: list[str]) -> bool:
    """``-h``/``--help`` before a ``--`` (after it, the flag is pytest's: ``-- --help``)."""
    head = args[:args.index("--")] if "--" in args else args
    return any(a in ("-h", "--help") for a in head)


def text(command: str, doc: str) -> str:
    rows = [(o.flag + ("" if o.switch else " VALUE"), o.env, o.default, o.choices)
            for o in (*OPTIONS, *COMMAND_OPTIONS.get(command, ()))]
    width = max(len(r[0]) for r in rows)
    lines = [f"usage: python -m ci {command} [options] [-- pytest arguments]  (nox -s {command} -- [options])",
             "", doc, "", "options (each also read from its environment variable; a flag wins):"]
    for flag, env, default, choices in rows:
        extra = ", ".join(x for x in (f"one of {'|'.join(choices)}" if choices else "",
                                      f"default {default}" if default not in (None, "") else "") if x)
        lines.append(f"  {flag:<{width}}  {env or '-':<28} {extra}".rstrip())
    lines += ["", "Which options a command uses, and what it does: README.md (section of the session)."]
    return "\n".join(lines)
