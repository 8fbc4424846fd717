"""Servers and tools a test needs from the machine: a skip here, a failure in CI."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing_component(what: str, package: str) -> None:
    """Skip a test whose server is missing here; in CI that is a failure, not a skip."""
    message = f"{what} is not available: install {package}"
    if IN_CI:
        pytest.fail(f"{message} (CI must provide every component)")
    pytest.skip(message)
