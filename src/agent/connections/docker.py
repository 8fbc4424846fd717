"""Reaching a Docker Engine API: its config and TLS material, a bounded client, errors.

The `docker_api` probe and the Docker discoverer share it. Over `unix://` and `tcp://` the
SDK's requests go through `agent.connections.dockerwire` (deadline, size cap, address policy);
failures are classified by what the SDK's exceptions wrap.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import docker
import httpx
import paramiko
import requests
import requests.adapters
from docker.errors import APIError, DockerException, TLSParameterError
from docker.tls import TLSConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.connections.address_policy import current, first_permitted
from agent.connections.dockerwire import DockerAdapter
from agent.connections.guarded import guard_adapter
from agent.core.addresses import Family
from agent.core.causes import causes
from agent.core.credentials import PREFIXES, CredentialError
from agent.core.results import ErrorClass, ProbeError

DEFAULT_DOCKER_HOST = "unix:///run/podman/podman.sock"
SCHEMES = ("unix", "tcp", "ssh")
STATES = ("running", "exited", "paused", "created", "restarting", "dead")
HEALTHS = ("healthy", "unhealthy", "starting")


# The connection_config fields that hold secrets: references only, never shown.
SECRET_FIELDS: tuple[str, ...] = ("client_key",)


class Config(BaseModel):
    """A Docker Engine API endpoint and its TLS material (references, never values)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    host: str = Field(
        default="",
        description=(
            "the instance's host; with `port` and no `docker_host`, the endpoint is "
            "`tcp://<host>:<port>`"
        ),
    )
    port: int | None = Field(default=None, ge=1, le=65535, description="the instance's port")
    docker_host: str = Field(
        default="",
        description=(
            "the endpoint as the Docker CLI spells it: `unix:///path` (on the worker), "
            "`tcp://host:port`, `ssh://user@host[:port]`; default `unix:///run/podman/podman.sock`"
        ),
    )
    tls: bool | None = Field(
        default=None,
        description=(
            "force TLS on or off for `tcp://` (on unless false; the server's certificate is always "
            "verified)"
        ),
    )
    ca_cert: str | None = Field(
        default=None,
        description=(
            "PEM text or a secret reference: the CA to verify the engine with, else the worker's "
            "trust store"
        ),
    )
    client_cert: str | None = Field(
        default=None,
        description="PEM text or a secret reference: the client certificate, with `client_key`",
    )
    client_key: str | None = Field(
        default=None, description="the client certificate's key, with `client_cert`"
    )

    @model_validator(mode="after")
    def _endpoint_is_usable(self) -> Config:
        check_endpoint(self.endpoint)
        check_tls_fields(self)
        return self

    @property
    def endpoint(self) -> str:
        """The URL the client talks to."""
        if self.docker_host:
            return self.docker_host
        if self.port is not None and self.host:
            host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
            return f"tcp://{host}:{self.port}"
        return DEFAULT_DOCKER_HOST

    @property
    def scheme(self) -> str:
        """`unix`, `tcp` or `ssh`."""
        return urlsplit(self.endpoint).scheme

    @property
    def uses_tls(self) -> bool:
        """Whether the client speaks TLS: on for `tcp://` unless `tls: false`."""
        return self.scheme == "tcp" and self.tls is not False


def check_endpoint(url: str) -> None:
    """Refuse an endpoint URL the probe cannot use."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"docker_host must start with one of {', '.join(SCHEMES)}://")
    if parts.scheme == "unix" and (parts.netloc or not parts.path.startswith("/")):
        raise ValueError("a unix:// docker_host needs an absolute socket path: unix:///path")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"a {parts.scheme}:// docker_host needs a host name")
    if parts.scheme == "tcp" and parts.port is None:
        raise ValueError("a tcp:// docker_host needs a port")


def check_tls_fields(config: Config) -> None:
    """Refuse TLS fields that cannot apply, a lone half of a key pair, or a clear-text key."""
    given = [name for name in ("ca_cert", "client_cert", "client_key") if getattr(config, name)]
    if given and not config.uses_tls:
        raise ValueError(f"{', '.join(given)} only apply to a tcp:// endpoint with TLS")
    if bool(config.client_cert) != bool(config.client_key):
        raise ValueError("client_cert and client_key go together")
    if config.client_key and not config.client_key.startswith(PREFIXES):
        raise ValueError("client_key must be a secret reference (enc:, env: or file:)")
    for name in ("ca_cert", "client_cert"):
        value = getattr(config, name)
        if value and not value.startswith(PREFIXES) and "-----BEGIN" not in value:
            raise ValueError(f"{name} must be PEM text or a secret reference")


class Resolver(Protocol):
    """Anything that turns a secret reference into its value."""

    def resolve(self, reference: str) -> str:
        """The secret a reference stands for."""
        ...


def _pem(value: str, resolver: Resolver) -> str:
    return resolver.resolve(value) if value.startswith(PREFIXES) else value


def _write_private(path: Path, text: str) -> str:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    return str(path)


@contextmanager
def tls_config(config: Config, resolver: Resolver) -> Iterator[TLSConfig | None]:
    """The client's TLS settings, their files alive only inside the `with` block."""
    if not config.uses_tls:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="agent-docker-tls-") as folder:
        paths = {
            name: _write_private(Path(folder) / f"{name}.pem", _pem(value, resolver))
            for name in ("ca_cert", "client_cert", "client_key")
            if (value := getattr(config, name))
        }
        pair = (paths["client_cert"], paths["client_key"]) if "client_key" in paths else None
        yield TLSConfig(client_cert=pair, ca_cert=paths.get("ca_cert"), verify=True)


class EngineClient(docker.APIClient):
    """The docker SDK's low-level client: through `dockerwire`, policed, following no redirect.

    Its requests go through `dockerwire` (the check's deadline, a size cap) when there is a
    bounded adapter; that adapter, like any the SDK mounts (`ssh://`), connects only to
    addresses the instances' address policy permits. It also keeps its own CA when the
    environment names one: `requests` lets REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) override a
    session's CA file (psf/requests#3829), so a `ca_cert` would silently give way to the
    system bundle.
    """

    def __init__(self, wire: DockerAdapter | None, **options: Any) -> None:
        # Set before the SDK's constructor, which mounts adapters and asks for the API version.
        self._wire = wire
        self.max_redirects = 0
        super().__init__(**options)

    def mount(self, prefix: str | bytes, adapter: requests.adapters.BaseAdapter) -> None:
        """Mount `adapter` with its connections held to the instances' address policy."""
        guard_adapter(adapter, lambda: current(Family.INSTANCES))
        super().mount(prefix, adapter)

    def get_adapter(self, url: str) -> Any:
        """Every request goes through the bounded adapter, when there is one."""
        return self._wire if self._wire is not None else super().get_adapter(url)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send without following a redirect: an engine that answers with one is refused."""
        response = super().send(request, **{**kwargs, "allow_redirects": False})
        if response.is_redirect:
            response.close()
            raise ProbeError(ErrorClass.POLICY, "the engine answered with a redirect: not followed")
        return response

    def close(self) -> None:
        """Close the SDK's adapters and the bounded one."""
        super().close()
        if self._wire is not None:
            self._wire.close()

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        """The environment's settings, except that this client's own CA file wins."""
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str):
            settings["verify"] = self.verify
        return settings


@contextmanager
def client_for(config: Config, resolver: Resolver, timeout_s: float) -> Iterator[docker.APIClient]:
    """A low-level client for the endpoint, closed (and its TLS files removed) on exit.

    Creating it already asks the server for its API version, so it can fail like any call
    (and then the bounded adapter's connections are closed all the same).
    """
    if config.scheme == "ssh":  # paramiko connects by name; judge the name's addresses first
        parts = urlsplit(config.endpoint)
        first_permitted(parts.hostname or "", parts.port or 22, current(Family.INSTANCES))
    with tls_config(config, resolver) as tls, closing(wire_for(config)) as wire:
        client = EngineClient(
            wire,
            base_url=config.endpoint,
            version="auto",
            timeout=timeout_s,
            tls=tls or False,
        )
        try:
            yield client
        finally:
            client.close()


def wire_for(config: Config) -> DockerAdapter | None:
    """The bounded adapter for a `unix://` or `tcp://` endpoint; None for `ssh://`.

    Over `tcp://` it connects only to addresses the instances' address policy permits; a
    `unix://` socket is on the worker itself, named by the operator's default or the row.
    """
    if config.scheme == "ssh":
        return None
    if config.scheme == "unix":
        return DockerAdapter(urlsplit(config.endpoint).path)
    return DockerAdapter(None, policy_of=lambda: current(Family.INSTANCES))


@contextmanager
def closing(wire: DockerAdapter | None) -> Iterator[DockerAdapter | None]:
    """`wire` (or None), closed on exit."""
    try:
        yield wire
    finally:
        if wire is not None:
            wire.close()


def check_socket(config: Config, timeout_s: float) -> None:
    """Fail early, naming the socket, when a unix endpoint's socket is missing or dead.

    Connecting once first also spares a leak: the docker SDK's unix connection does not
    close its socket when `connect()` fails, which surfaces as a ResourceWarning.
    """
    if config.scheme != "unix":
        return
    path = urlsplit(config.endpoint).path
    try:
        _connect_once(path, timeout_s)
    except FileNotFoundError:
        raise ProbeError(ErrorClass.UNREACHABLE, f"Docker socket {path} does not exist") from None
    except ConnectionRefusedError:
        message = f"Docker socket {path} refuses connections: nothing listens on it"
        raise ProbeError(ErrorClass.REFUSED, message) from None
    except PermissionError:
        message = f"Docker socket {path}: permission denied to the worker's user"
        raise ProbeError(ErrorClass.AUTH, message) from None
    except OSError as exc:
        raise ProbeError(error_class(exc), f"Docker socket {path}: {exc.strerror or exc}") from None


def _connect_once(path: str, timeout_s: float) -> None:
    if not stat.S_ISSOCK(os.stat(path).st_mode):
        raise ProbeError(ErrorClass.CONFIG, f"Docker endpoint {path} is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe_socket:
        probe_socket.settimeout(timeout_s)
        probe_socket.connect(path)


def _kind(*types: type[BaseException]) -> Callable[[BaseException], bool]:
    return lambda link: isinstance(link, types)


def _plain_os_error(link: BaseException) -> bool:
    # requests' exceptions derive from OSError too; they are wrappers, not the reason.
    return isinstance(link, OSError) and not isinstance(link, requests.RequestException)


_RULES: tuple[tuple[Callable[[BaseException], bool], ErrorClass], ...] = (
    (_kind(CredentialError, TLSParameterError, ValidationError), ErrorClass.CONFIG),
    (_kind(ssl.SSLError, ssl.CertificateError, requests.exceptions.SSLError), ErrorClass.TLS),
    (lambda link: "known_hosts" in str(link), ErrorClass.HOST_KEY),  # paramiko RejectPolicy
    (_kind(paramiko.BadHostKeyException), ErrorClass.HOST_KEY),
    (_kind(paramiko.AuthenticationException), ErrorClass.AUTH),
    (_kind(socket.gaierror), ErrorClass.DNS),
    (_kind(ConnectionRefusedError), ErrorClass.REFUSED),
    # Not urllib3's TimeoutError: its NewConnectionError (refused, unreachable) inherits it.
    (_kind(requests.Timeout, TimeoutError, httpx.TimeoutException), ErrorClass.TIMEOUT),
    (_kind(APIError), ErrorClass.PROTOCOL),
    # Connected, then dropped or answered in something other than HTTP: not the engine's API.
    (
        _kind(
            ConnectionResetError,
            http.client.HTTPException,
            httpx.ProtocolError,
            json.JSONDecodeError,
        ),
        ErrorClass.PROTOCOL,
    ),
    (_plain_os_error, ErrorClass.UNREACHABLE),
    (
        _kind(DockerException, requests.RequestException, paramiko.SSHException),
        ErrorClass.PROTOCOL,
    ),
)


def error_class(exc: BaseException) -> ErrorClass:
    """The class of a docker SDK failure, read through the exceptions it wraps."""
    chain = list(causes(exc))
    recognised = _recognised(chain)
    if recognised is not None:  # ours inside the SDK's wrapping: a policy, a redirect, a cap
        return recognised.error_class
    for matches, found in _RULES:
        if any(matches(link) for link in chain):
            return found
    return ErrorClass.INTERNAL


def explain(exc: BaseException, config: Config, timeout_s: float) -> ProbeError:
    """A ProbeError that names the endpoint and the innermost reason, not the SDK's wrapping."""
    recognised = _recognised(list(causes(exc)))
    if recognised is not None:  # ours, raised inside the SDK (the address policy, a redirect)
        return ProbeError(recognised.error_class, f"{config.endpoint}: {recognised}")
    found = error_class(exc)
    if found is ErrorClass.TIMEOUT:
        return ProbeError(found, f"{config.endpoint}: no answer within {timeout_s:g}s")
    if isinstance(exc, APIError):
        reason = f"API error {exc.status_code}: {exc.explanation or exc}"
    else:
        reason = _innermost(exc)
    return ProbeError(found, f"{config.endpoint}: {reason}")


def _recognised(chain: Iterable[BaseException]) -> ProbeError | None:
    return next((link for link in chain if isinstance(link, ProbeError)), None)


def _innermost(exc: BaseException) -> str:
    chain = [link for link in causes(exc) if str(link)]
    for kinds in (ssl.SSLError, OSError):
        found = [link for link in chain if isinstance(link, kinds)]
        if found:
            return found[-1].strerror or str(found[-1])
    return str(chain[-1]) if chain else type(exc).__name__
