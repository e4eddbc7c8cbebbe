"""Errors the pipeline shows to users as one line (never a traceback)."""


class CIError(Exception):
    """A user-facing failure: bad flag, missing tool, failed step. ``str(e)`` is the one line shown."""


class UsageError(CIError):
    """The command line or environment is wrong (bad flag, bad path)."""


class SetupError(CIError):
    """Infrastructure failed (cluster, images, install): not a failure of the product under test."""


class ToolMissing(CIError):
    """A required binary is not on PATH."""
