"""HTTP services for each plugin auth type, and a real MCP server, served by fixtures."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import secrets
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp.server.mcpserver import MCPServer

from tests.support.network import free_port, serving_http

SLOW_S = 3.0


TOKEN_LIFETIME_S = 3600


@dataclass
class ServiceState:
    """The secrets the services expect, and what they saw."""

    api_key: str = field(default_factory=lambda: f"canary-key-{secrets.token_hex(4)}")
    bearer: str = field(default_factory=lambda: f"canary-bearer-{secrets.token_hex(4)}")
    client_id: str = "agent-client"
    client_secret: str = field(default_factory=lambda: f"canary-secret-{secrets.token_hex(4)}")
    issued: set[str] = field(default_factory=set)
    token_requests: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    cookies_seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self) -> str:
        """A new access token."""
        token = f"canary-token-{secrets.token_hex(6)}"
        with self.lock:
            self.issued.add(token)
            self.token_requests += 1
        return token


@dataclass(frozen=True)
class PluginServices:
    """Where the services listen, and their shared state."""

    base_url: str
    state: ServiceState

    def url(self, service: str) -> str:
        """The `api_base_url` of one of the services."""
        return f"{self.base_url}/{service}"


class Handler(BaseHTTPRequestHandler):
    """The services; `state` is set on a subclass per server."""

    protocol_version = "HTTP/1.1"
    state: ServiceState

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        service = parts.path.removesuffix("/health").strip("/")
        with self.state.lock:
            self.state.requests[service] += 1
            if self.headers.get("Cookie"):
                self.state.cookies_seen.append(self.headers["Cookie"])
        if not parts.path.endswith("/health"):
            return self._answer(404, {"status": "not found"})
        if service == "slow":
            time.sleep(SLOW_S)
        if not self._authorised(service, parse_qs(parts.query)):
            return self._answer(401, {"error": "unauthorised"})
        body = {"degraded": {"status": "degraded"}}.get(service, {"status": "ok"})
        self._answer(500 if service == "fail" else 200, body, cookie=True)

    def do_POST(self) -> None:
        if self.path != "/oauth/token":
            return self._answer(404, {})
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        client = self._client(form)
        if client != (self.state.client_id, self.state.client_secret):
            return self._answer(401, {"error": "invalid_client"})
        if form.get("grant_type") != ["client_credentials"]:
            return self._answer(400, {"error": "unsupported_grant_type"})
        token = self.state.issue()
        self._answer(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S}
        )

    def _client(self, form: dict[str, list[str]]) -> tuple[str, str] | None:
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            user, _, password = base64.b64decode(basic[6:]).decode().partition(":")
            return user, password
        if "client_id" in form and "client_secret" in form:
            return form["client_id"][0], form["client_secret"][0]
        return None

    def _authorised(self, service: str, query: dict[str, list[str]]) -> bool:
        authorization = self.headers.get("Authorization", "")
        if service == "apikey":
            return self.headers.get("X-API-Key") == self.state.api_key
        if service == "apikey-query":
            return query.get("api_key") == [self.state.api_key]
        if service == "bearer":
            return authorization == f"Bearer {self.state.bearer}"
        if service == "oauth":
            return authorization.removeprefix("Bearer ") in self.state.issued
        return True

    def _answer(self, status: int, body: dict[str, Any], cookie: bool = False) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if cookie:
                self.send_header("Set-Cookie", f"session={secrets.token_hex(4)}; Path=/")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting

    def log_message(self, format: str, *args: object) -> None:
        pass


def serving(state: ServiceState, context: ssl.SSLContext | None = None) -> Any:
    """A threaded HTTP server for `state` on a loopback port, optionally behind TLS."""
    return serving_http(type("Handler", (Handler,), {"state": state}), context)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key, and that key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def echo(text: str) -> str:
    """Say it back."""
    return text


def echo_twice(text: str, times: int = 2) -> str:
    """Say it back, more than once."""
    return text * times


def now_utc() -> str:
    """The time on the server."""
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass
class McpServers:
    """A running MCP server, over streamable HTTP (`http_url`) and SSE (`sse_url`)."""

    server: MCPServer
    http_url: str
    sse_url: str

    def change_tools(self) -> None:
        """Remove `add`, give `echo` a new input schema, add `now`."""
        self.server.remove_tool("add")
        self.server.remove_tool("echo")
        self.server.add_tool(echo_twice, name="echo", description="Say it back.")
        self.server.add_tool(now_utc, name="now")


class Uvicorn:
    """A uvicorn server in a thread, for one ASGI app on a loopback port."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Uvicorn:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the MCP test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
