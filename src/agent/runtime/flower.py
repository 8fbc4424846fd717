"""Flower never starts open: task arguments and results are not for anyone who finds the port.

`celery -A agent flower` imports the app before Flower reads its options, so the app's
import calls `require_auth`, which supplies basic auth from the agent's settings or stops
the process with a clear message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence

from agent.core.settings import Settings, get_settings

AUTH_OPTIONS = ("--basic-auth", "--basic_auth", "--auth")
AUTH_VARIABLES = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")


class FlowerAuthMissing(SystemExit):
    """Flower was asked to start without any authentication."""


def is_flower_command(argv: Sequence[str]) -> bool:
    """Whether this process is `celery ... flower ...`."""
    # `celery` on the PATH, or `python -m celery` (argv[0] is then celery/__main__.py).
    return bool(argv) and "celery" in argv[0] and "flower" in argv[1:]


def has_auth(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether Flower was given an authentication option or variable."""
    if any(environ.get(name) for name in AUTH_VARIABLES):
        return True
    return any(arg.split("=", 1)[0] in AUTH_OPTIONS for arg in argv)


def basic_auth(settings: Settings) -> str | None:
    """`user:password` for Flower's basic auth, when a password is configured."""
    if settings.flower_password is None:
        return None
    return f"{settings.flower_user}:{settings.flower_password.get_secret_value()}"


def require_auth(argv: Sequence[str], environ: MutableMapping[str, str] | None = None) -> None:
    """Make sure a Flower process about to start has authentication, or stop it."""
    environ = os.environ if environ is None else environ
    if not is_flower_command(argv) or has_auth(argv, environ):
        return
    credentials = basic_auth(get_settings())
    if credentials is None:
        raise FlowerAuthMissing(
            "refusing to start Flower without authentication: set AGENT_FLOWER_PASSWORD "
            "(and AGENT_FLOWER_USER), or pass --basic-auth / --auth"
        )
    environ["FLOWER_BASIC_AUTH"] = credentials
