"""Reaching a Kubernetes API server: its config, the secrets resolved, a bounded client, errors.

The `kubernetes` probe and discoverer share it. The client is the SDK's `ApiClient` fitted
with the address policy, the per-call deadline and the size caps of `agent.connections.kubeapi`;
errors are classified by what they wrap.
"""

from __future__ import annotations

import base64
import binascii
import ssl
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.connections.address_policy import current
from agent.connections.guarded import guard_pool_manager
from agent.connections.kubeapi import (
    Deadline,
    Forbidden,
    Limits,
    Listing,
    bounded,
    fold_list,
    status_message,
    watch_sockets,
)
from agent.core.addresses import Family
from agent.core.causes import causes
from agent.core.credentials import PREFIXES, CredentialError, SecretResolver
from agent.core.results import ErrorClass, ProbeError
from agent.core.results import classify as classify_standard
from agent.core.results import parse_config as base_parse_config

DEFAULT_PORT = 6443


# --- configuration -----------------------------------------------------------------------


def _is_reference(value: str) -> str:
    if not value.startswith(PREFIXES):
        raise ValueError("must be a secret reference (enc:, env: or file:), not a clear value")
    return value


# The connection_config fields that hold secrets: references only, never shown.
SECRET_FIELDS: tuple[str, ...] = ("kubeconfig", "token")


class Config(BaseModel):
    """One cluster's connection settings, from an instance's host, port and connection_config."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    host: str = Field(
        default="", description="the instance's host: the API server when there is no `api_url`"
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="the instance's port (default 6443) when there is no `api_url`",
    )
    kubeconfig: str | None = Field(default=None, description="kubeconfig YAML; or else `token`")
    context: str | None = Field(default=None, description="the kubeconfig's context to use")
    api_url: str | None = Field(
        default=None,
        description=(
            "an `https://` URL of the API server (default `https://<host>:<port or 6443>`), with "
            "`token`"
        ),
    )
    token: str | None = Field(default=None, description="a bearer token; or else `kubeconfig`")
    ca_cert: str | None = Field(
        default=None,
        description=(
            "PEM text or a secret reference, with `token` (default: the system's trust store)"
        ),
    )
    verify_tls: bool = Field(
        default=True,
        description=(
            "false alone is refused: set `insecure_skip_tls_verify` to turn verification off"
        ),
    )
    insecure_skip_tls_verify: bool = Field(
        default=False,
        description="skip TLS verification explicitly; the result then says so at warning level",
    )
    page_size: int = Field(default=500, ge=1, le=5000, description="items per List page")
    max_response_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        le=1024**3,
        description="largest body of one response",
    )
    max_items: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="most items read from one List, over its pages",
    )

    @field_validator("kubeconfig", "token")
    @classmethod
    def _references_only(cls, value: str | None) -> str | None:
        return None if value is None else _is_reference(value)

    @field_validator("api_url")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("must be an https:// URL")
        return None if value is None else value.rstrip("/")

    @field_validator("ca_cert")
    @classmethod
    def _pem_or_reference(cls, value: str | None) -> str | None:
        if value is None or value.lstrip().startswith("-----BEGIN"):
            return value
        return _is_reference(value)

    @model_validator(mode="after")
    def _one_way_in(self) -> Config:
        if self.kubeconfig and (self.token or self.api_url or self.ca_cert):
            raise ValueError("give either kubeconfig or api_url/token/ca_cert, not both")
        if not self.kubeconfig and not self.token:
            raise ValueError("needs kubeconfig, or token (with api_url or the instance's host)")
        if self.context and not self.kubeconfig:
            raise ValueError("context applies only to a kubeconfig")
        if not (self.kubeconfig or self.api_url or self.host):
            raise ValueError("needs api_url when the instance has no host")
        if not self.verify_tls and not self.insecure_skip_tls_verify:
            raise ValueError(
                "verify_tls: false alone does not turn verification off;"
                " set insecure_skip_tls_verify: true to do so explicitly"
            )
        return self

    @property
    def verify(self) -> bool:
        """Whether the server's certificate is verified."""
        return not self.insecure_skip_tls_verify

    @property
    def limits(self) -> Limits:
        """How Lists are paged and capped."""
        return Limits(self.page_size, self.max_response_bytes, self.max_items)

    @property
    def server(self) -> str:
        """The API server's base URL for token access."""
        if self.api_url:
            return self.api_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port or DEFAULT_PORT}"


def parse_config(host: str, port: int | None, connection_config: Mapping[str, Any]) -> Config:
    """The typed config of an instance; a `ProbeError(CONFIG)` that never echoes values."""
    return base_parse_config(Config, {**(connection_config or {}), "host": host, "port": port})


# --- connection: the config with its secrets resolved -----------------------------------


@dataclass(frozen=True)
class Connection:
    """Where and how to reach one API server, secrets resolved (in memory only)."""

    server: str
    verify: bool
    ca_pem: str | None = None
    tls_server_name: str | None = None
    token: str | None = field(default=None, repr=False)
    client_cert_pem: str | None = field(default=None, repr=False)
    client_key_pem: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values to scrub from every message."""
        return tuple(s for s in (self.token, self.client_key_pem) if s)


def connection_for(config: Config, resolver: SecretResolver) -> Connection:
    """Resolve `config`'s secrets; a `ProbeError(CONFIG)` when they cannot be used."""
    try:
        if config.kubeconfig:
            return _from_kubeconfig(resolver.resolve(config.kubeconfig), config)
        ca_pem = _resolve_ca(config.ca_cert, resolver)
        token = resolver.resolve(config.token or "")
    except CredentialError as exc:
        raise ProbeError(ErrorClass.CONFIG, str(exc)) from None
    return _checked(Connection(config.server, config.verify, ca_pem, token=token))


def _resolve_ca(ca_cert: str | None, resolver: SecretResolver) -> str | None:
    if ca_cert is None or ca_cert.lstrip().startswith("-----BEGIN"):
        return ca_cert
    return resolver.resolve(ca_cert)


def _checked(connection: Connection) -> Connection:
    if connection.ca_pem is not None:
        try:
            ssl.create_default_context(cadata=connection.ca_pem)
        except (ssl.SSLError, ValueError):
            raise ProbeError(ErrorClass.CONFIG, "the CA certificate is not valid PEM") from None
    return connection


def _from_kubeconfig(text: str, config: Config) -> Connection:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:  # its message quotes the document, which holds secrets
        raise ProbeError(ErrorClass.CONFIG, "kubeconfig is not valid YAML") from None
    if not isinstance(document, dict):
        raise ProbeError(ErrorClass.CONFIG, "kubeconfig is not a YAML mapping")
    name = config.context or document.get("current-context")
    context = _entry(document, "contexts", name, "context")
    cluster = _entry(document, "clusters", context.get("cluster"), "cluster")
    user = _entry(document, "users", context.get("user"), "user")
    return _checked(Connection(**_cluster_fields(cluster, config), **_user_credentials(user)))


def _entry(document: Mapping, section: str, name: Any, key: str) -> Mapping[str, Any]:
    for item in document.get(section) or ():
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(key), dict):
            return item[key]
    raise ProbeError(ErrorClass.CONFIG, f"kubeconfig has no {section[:-1]} named {name!r}")


def _cluster_fields(cluster: Mapping[str, Any], config: Config) -> dict[str, Any]:
    if not isinstance(cluster.get("server"), str) or not cluster["server"].startswith("https://"):
        raise ProbeError(ErrorClass.CONFIG, "kubeconfig cluster needs an https:// server")
    if cluster.get("insecure-skip-tls-verify") and config.verify:
        raise ProbeError(
            ErrorClass.CONFIG,
            "kubeconfig cluster sets insecure-skip-tls-verify; set insecure_skip_tls_verify:"
            " true in connection_config to allow that explicitly",
        )
    return {
        "server": cluster["server"].rstrip("/"),
        "verify": config.verify,
        "ca_pem": _kubeconfig_data(cluster, "certificate-authority"),
        "tls_server_name": cluster.get("tls-server-name"),
    }


def _user_credentials(user: Mapping[str, Any]) -> dict[str, Any]:
    unsupported = sorted(set(user) & {"exec", "auth-provider", "username", "tokenFile"})
    if unsupported:
        raise ProbeError(
            ErrorClass.CONFIG,
            f"kubeconfig user authenticates with {', '.join(unsupported)}; the agent supports"
            " token and client-certificate-data/client-key-data",
        )
    credentials = {
        "token": user.get("token"),
        "client_cert_pem": _kubeconfig_data(user, "client-certificate"),
        "client_key_pem": _kubeconfig_data(user, "client-key"),
    }
    if not credentials["token"] and not (
        credentials["client_cert_pem"] and credentials["client_key_pem"]
    ):
        raise ProbeError(ErrorClass.CONFIG, "kubeconfig user has no token or client certificate")
    return credentials


def _kubeconfig_data(entry: Mapping[str, Any], key: str) -> str | None:
    """`<key>-data` (base64 PEM) or `<key>` (a file on the worker), as PEM text."""
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(entry[f"{key}-data"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            raise ProbeError(ErrorClass.CONFIG, f"kubeconfig {key}-data is not base64") from None
    if entry.get(key):
        try:
            return Path(entry[key]).read_text()
        except OSError as exc:
            raise ProbeError(ErrorClass.CONFIG, f"kubeconfig {key} unreadable: {exc}") from None
    return None


# --- the client ------------------------------------------------------------------------


class KubeApiClient(ApiClient):
    """An `ApiClient` bound to one check's deadline, which knows the secrets it holds."""

    def __init__(self, configuration: Configuration, deadline: Deadline, secrets: Iterable[str]):
        super().__init__(configuration)
        self.deadline = deadline
        self.secrets = tuple(secrets)
        watch_sockets(self, deadline)

    def call_api(
        self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None
    ):
        """Make one request, within what is left of the deadline unless the caller says less."""
        timeout = _request_timeout or self.deadline.remaining()
        return super().call_api(
            method, url, header_params, body, post_params, _request_timeout=timeout
        )

    def close(self) -> None:
        """Close the connections and stop the deadline's timer."""
        self.deadline.cancel()
        super().close()


def client_for(connection: Connection, deadline: Deadline) -> KubeApiClient:
    """A client for `connection`, built from a fresh `Configuration` (no global state)."""
    configuration = Configuration(
        host=connection.server,
        ca_cert_data=connection.ca_pem,
        verify_ssl=connection.verify,
        tls_server_name=connection.tls_server_name,
        retries=False,  # one attempt per call: the check's own timeout is the budget
    )
    if connection.token:
        configuration.api_key = {"BearerToken": connection.token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
    client = KubeApiClient(configuration, deadline, connection.secrets)
    guard_pool_manager(client.rest_client.pool_manager, lambda: current(Family.INSTANCES))
    if connection.client_cert_pem:
        # urllib3 loads client certificates only from files; a context loaded once does not.
        pool_kw = client.rest_client.pool_manager.connection_pool_kw
        pool_kw["ssl_context"] = _client_cert_context(connection)
    return client


def _client_cert_context(connection: Connection) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=connection.ca_pem)
    if not connection.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with tempfile.TemporaryDirectory(prefix="agent-kube-") as folder:  # removed on exit
        cert, key = Path(folder, "client.crt"), Path(folder, "client.key")
        cert.write_text(connection.client_cert_pem or "")
        key.touch(mode=0o600)
        key.write_text(connection.client_key_pem or "")
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError:
            raise ProbeError(
                ErrorClass.CONFIG, "kubeconfig client certificate is invalid"
            ) from None
    return context


def api_client_for(config: Config, resolver: SecretResolver, deadline: Deadline) -> KubeApiClient:
    """The one place a Kubernetes client is built from a config (the probe and discovery)."""
    return client_for(connection_for(config, resolver), deadline)


# --- errors ------------------------------------------------------------------------------


def _class_of(link: BaseException) -> ErrorClass | None:
    if isinstance(link, ApiException):
        if link.status in (401, 403):
            return ErrorClass.AUTH
        return ErrorClass.PROTOCOL if link.status else None
    if isinstance(link, urllib3.exceptions.NameResolutionError):
        return ErrorClass.DNS
    if isinstance(link, urllib3.exceptions.SSLError):
        return ErrorClass.TLS
    if isinstance(link, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ProtocolError):
        return ErrorClass.UNREACHABLE  # a vaguer class: a wrapped OSError may say more
    if isinstance(link, urllib3.exceptions.TimeoutError):
        return ErrorClass.TIMEOUT
    found = classify_standard(link)
    return None if found is ErrorClass.INTERNAL else found


def explain(exc: BaseException) -> tuple[ErrorClass, BaseException]:
    """The error class of a client failure and the wrapped exception that shows it."""
    vague: tuple[ErrorClass, BaseException] | None = None
    for link in causes(exc):
        error_class = _class_of(link)
        if error_class is ErrorClass.UNREACHABLE:
            vague = vague or (error_class, link)
        elif error_class is not None:
            return error_class, link
    return vague or (ErrorClass.INTERNAL, exc)


def _describe(cause: BaseException) -> str:
    if isinstance(cause, ApiException):
        return f"HTTP {cause.status} {cause.reason or ''}".rstrip() + status_message(cause.body)
    return str(cause) or type(cause).__name__


@contextmanager
def calling(what: str, deadline: Deadline) -> Iterator[None]:
    """Turn a client failure inside the block into a `ProbeError` that names `what`.

    Anything failing once the deadline has passed (its timer shuts the sockets) is a TIMEOUT.
    """
    with bounded(deadline):
        try:
            yield
        except ProbeError:
            raise
        except Exception as exc:
            error_class, cause = explain(exc)
            raise ProbeError(error_class, f"{what}: {_describe(cause)}") from exc


def readable(api, listing: Listing, deadline: Deadline, limits: Limits, start, step, forbidden):
    """`fold_list` of `listing`, or None (its resource added to `forbidden`) on HTTP 403."""
    try:
        with calling(listing.what, deadline):
            return fold_list(api, listing, deadline, limits, start, step)
    except Forbidden:
        forbidden.append(listing.what)
        return None
