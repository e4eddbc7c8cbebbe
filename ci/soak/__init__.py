"""The soak tier: long-lived pods on the runtime under test, watched for hours (``nox -s soak``)."""
