"""Errors the pipeline shows to users as one line (never a traceback)."""


class CIError(Exception):
    """A user-facing failure: bad flag, missing tool, failed step. ``str(e)`` is the one line shown."""


class UsageError(CIError):
    """The command line or environment is wrong (bad flag, bad path)."""


class ClientMismatch(UsageError):
    """The Kubernetes Python client lacks what the pipeline calls (another version than
    requirements.txt pins): no wait fixes it, and it must not read as an unhealthy cluster."""


class SetupError(CIError):
    """Infrastructure failed (cluster, images, install): not a failure of the product under test."""


class ToolMissing(CIError):
    """A required binary is not on PATH."""


class RuntimeFailure(CIError):
    """The runtime under test failed outside the scenario suite (the provisioner's smoke pod ran on
    it and failed): a product failure (exit 1), never reported as a setup error."""


class SmokeFailed(SetupError):
    """The smoke pod failed on the reference runtime: the cluster itself is broken (a setup error).
    A definite verdict: waiting longer cannot change it."""
