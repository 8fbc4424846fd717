"""Property: a secret of any shape leaves a failed check in no form (issue 15).

Random secrets (CR, LF, quotes, `=`, non-ASCII) go into each credential field an HTTP check
sends (an instance's bearer token; an installation's API key in a header, in the query
string, as a bearer token) and the checks fail every way a tenant's server can make them: a
header the client cannot send, and a server that echoes the request back as its answer (so
the client's parse error quotes the request, secret and all, in whatever encoding the
request carried it). The result, its JSON, and every log record must hold no form of it.
"""

import base64
import json
import logging
import socket
import threading
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.credentials import SecretResolver
from agent.core.results import Status
from agent.plugins.client import ClientLimits, build_pool
from agent.plugins.installation import InstallationProbe, InstallationSpec
from agent.probes import probe_for

pytestmark = pytest.mark.timeout(300)

VARIABLE = "AGENT_SECRET_PROPERTY"
SECRETS = st.text(
    alphabet=st.sampled_from("abcXYZ019=+/'\"\r\n é€ü:;%&?#"), min_size=8, max_size=40
).filter(lambda s: sum(c.isalnum() for c in s) >= 4)


class EchoServer:
    """Answers every request with the request itself: a status line no client accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def echo_server():
    server = EchoServer()
    yield server
    server.close()


def spellings(secret: str) -> set[str]:
    """How the libraries in the path could print `secret` (computed here, independently)."""
    raw = secret.encode()
    found = {
        secret,
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        base64.b64encode(raw).decode().rstrip("="),
        json.dumps(secret)[1:-1],
    }
    found.add(repr(raw)[2:-1])
    found |= {piece for piece in secret.replace("\r", "\n").split("\n") if len(piece) >= 6}
    return {form for form in found if len(form) >= 4}


def failing_checks(port: int, pool):
    """(name, probe) for each credential field, all pointed at the echo server."""
    resolver = SecretResolver(None)
    reference = f"env:{VARIABLE}"
    yield (
        "http.bearer_token",
        probe_for("http", "127.0.0.1", port, {"bearer_token": reference}, resolver, 5.0),
    )
    for name, auth_type, auth_config, credentials in (
        ("api_key.header", "api_key", {}, {"api_key": reference}),
        ("api_key.query", "api_key", {"location": "query", "param": "sig"}, {"api_key": reference}),
        ("bearer", "bearer", {}, {"token": reference}),
    ):
        spec = InstallationSpec(
            id=name, name=name, space_id=None, api_base_url=f"http://127.0.0.1:{port}",
            auth_type=auth_type, auth_config=auth_config, credentials=credentials,
        )  # fmt: skip
        yield name, InstallationProbe(spec, pool, resolver)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=SECRETS)
def test_a_secret_of_any_shape_leaves_a_failed_check_in_no_form(
    secret, echo_server, monkeypatch, caplog
):
    monkeypatch.setenv(VARIABLE, secret)
    caplog.clear()
    pool = build_pool(ClientLimits(timeout_s=5.0))
    try:
        with caplog.at_level(logging.DEBUG):
            results = {name: probe.run() for name, probe in failing_checks(echo_server.port, pool)}
    finally:
        pool.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for name, result in results.items():
        assert result.status is not Status.OK, name
        shown = json.dumps(result.as_dict()) + result.message
        for form in spellings(secret):
            assert form not in shown, (name, form, result.message)
            assert form not in logged, (name, form)
