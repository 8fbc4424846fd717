"""Helpers the fixtures share."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def missing_component(what: str, package: str) -> None:
    """Skip a test whose server is missing here; in CI that is a failure, not a skip."""
    message = f"{what} is not available: install {package}"
    if IN_CI:
        pytest.fail(f"{message} (CI must provide every component)")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
