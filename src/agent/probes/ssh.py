"""SSH probe: log in with paramiko, verify the host key, and read the host's basic facts.

`connection_config` fields:

- `username` (required): the login name;
- `port` (default: the instance's port, else 22);
- `private_key`: a secret reference (`enc:`, `env:`, `file:`) to a PEM or OpenSSH private key
  (ed25519, ecdsa or rsa), with `private_key_passphrase` (a reference too) when it is
  encrypted; or `password`: a secret reference. A key is used when both are given;
- `host_key`: the server's public key line (`ssh-ed25519 AAAA...`), pinned;
- `trust_on_first_use` (default false): accept and record an unknown host key.

The host key is checked right after key exchange and before authentication, so nothing is
sent to a host whose key is unknown or changed: the pinned key if there is one, else the
record in the `KnownHosts` store the caller hands in. Facts come from one fixed command
(`FACTS_COMMAND`, nothing from config is ever put into it), run in a shell kept open on
the login (`sshshell`); its output is capped at `MAX_OUTPUT_BYTES`. Every wait (connect,
banner, key exchange, authentication, channel, command) is bounded by the probe's one
deadline. Logins are cached per process (`sshpool.default_pool`), and a dead cached
connection is replaced once, transparently.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any, Self, TypeVar

import paramiko
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.connections import sshshell
from agent.connections.known_hosts import (
    KnownHosts,
    MemoryKnownHosts,
    host_entry,
    keyline_of,
    parse_keyline,
)
from agent.connections.sshpool import TransportPool, default_pool
from agent.core.credentials import SecretResolver
from agent.core.results import ErrorClass, Observation, ProbeError, Status, parse_config
from agent.probes.base import InstanceFacts, Probe, Target, clip, resources
from agent.probes.tcp import open_socket

MAX_OUTPUT_BYTES = 256 * 1024
REUSED_CHANNEL_TIMEOUT_S = 2.0
MARK = "@@agent-facts:"
_SECTIONS = (
    ("os-release", "cat /etc/os-release"),
    ("uname", "uname -sr"),
    ("uptime", "cat /proc/uptime"),
    ("nproc", "{ nproc || getconf _NPROCESSORS_ONLN; }"),
    ("loadavg", "cat /proc/loadavg"),
    ("meminfo", "cat /proc/meminfo"),
    ("df", "df -Pk /"),
)
_SCRIPT = "LC_ALL=C; export LC_ALL; " + " ".join(
    f"echo {MARK}{name}; {command} 2>/dev/null;" for name, command in _SECTIONS
)
# The output is gathered and written at once: one SSH data packet instead of a dozen halves
# the CPU a check costs on a cached connection, on both ends (measured: bench/health_sweep.py).
FACTS_COMMAND = f'sh -c \'facts=$({_SCRIPT} echo {MARK}end); printf "%s\\n" "$facts"\''
_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
_SIGNATURE_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}
_IDENTITY_SALT = os.urandom(16)
_default_known_hosts: KnownHosts = MemoryKnownHosts()
_N = TypeVar("_N", int, float)


# The connection_config fields that hold secrets: references only, never shown.
SECRET_FIELDS: tuple[str, ...] = ("private_key", "private_key_passphrase", "password")


class Config(BaseModel):
    """An SSH target and login, validated; secret fields hold references, not values."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    host: str = Field(min_length=1, description="the instance's host")
    port: int = Field(default=22, ge=1, le=65535, description="the instance's port, else 22")
    username: str = Field(min_length=1, description="the login name")
    private_key: str | None = Field(
        default=None,
        description=(
            "a PEM or OpenSSH private key (ed25519, ecdsa or rsa); used when both it and `password`"
            " are given"
        ),
    )
    private_key_passphrase: str | None = Field(
        default=None, description="the passphrase of an encrypted `private_key`"
    )
    password: str | None = Field(
        default=None, description="the login password, when there is no `private_key`"
    )
    host_key: str | None = Field(
        default=None, description="the server's public key line (`ssh-ed25519 AAAA...`), pinned"
    )
    trust_on_first_use: bool = Field(
        default=False,
        description=(
            "accept and record an unknown host key at the first check, and only that key afterwards"
        ),
    )

    @field_validator("host_key")
    @classmethod
    def _host_key_is_a_key_line(cls, value: str | None) -> str | None:
        if value is not None:
            parse_keyline(value)
        return value

    @model_validator(mode="after")
    def _has_a_credential(self) -> Config:
        if not (self.private_key or self.password):
            raise ValueError("give private_key or password (as a secret reference)")
        return self


@dataclass(frozen=True)
class Credentials:
    """Resolved secrets of a login."""

    key_text: str | None = field(repr=False)
    passphrase: str | None = field(repr=False)
    password: str | None = field(repr=False)

    def private_key(self) -> paramiko.PKey | None:
        """The parsed private key, if the login has one (a CONFIG error if unusable)."""
        return load_private_key(self.key_text, self.passphrase) if self.key_text else None


@dataclass(frozen=True)
class Login:
    """A login's name and an identity for its credentials that reveals nothing.

    The credentials are resolved (decrypted) and the key parsed only when a connection is
    made: a check on a cached login needs just the identity.
    """

    username: str
    identity: str
    reveal: Callable[[], Credentials] = field(repr=False)


@dataclass(frozen=True)
class CommandOutput:
    """What a command printed, and whether it printed more than we kept."""

    text: str
    truncated: bool


def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """A private key from PEM or OpenSSH text; a CONFIG error that never quotes the key."""
    for key_class in _KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
        except (paramiko.SSHException, ValueError, TypeError):
            continue
    raise ProbeError(
        ErrorClass.CONFIG,
        "private_key is not an ed25519, ecdsa or rsa key, or its passphrase is missing or wrong",
    )


def verify_host_key(
    presented: paramiko.PKey, config: Config, known_hosts: KnownHosts, entry: str
) -> None:
    """Accept the server's key only if pinned or known, or unknown with trust on first use."""
    expected = config.host_key or known_hosts.get(entry)
    if expected is None:
        if not config.trust_on_first_use:
            raise ProbeError(
                ErrorClass.HOST_KEY,
                f"host key of {entry} is unknown (presented {presented.fingerprint}); "
                "pin host_key or set trust_on_first_use",
            )
        known_hosts.remember(entry, keyline_of(presented))
        return
    pinned = _known_key(expected)
    if pinned.asbytes() != presented.asbytes():
        raise ProbeError(
            ErrorClass.HOST_KEY,
            f"host key of {entry} changed: expected {pinned.fingerprint}, "
            f"presented {presented.fingerprint}; nothing was sent",
        )


# Known host key lines, parsed once each: every check on a cached login verifies one.
_known_key = lru_cache(maxsize=4096)(parse_keyline)


def connect(
    config: Config, login: Login, known_hosts: KnownHosts, deadline: float
) -> paramiko.Transport:
    """An authenticated transport, or an error; the host key is checked before any login."""
    entry = host_entry(config.host, config.port)
    credentials = login.reveal()
    key = credentials.private_key()  # an unusable key fails here, before anything is sent
    sock = open_socket(config.host, config.port, _left(deadline))
    transport = sshshell.ShellTransport(sock)
    try:
        _prefer_known_key_type(transport, config.host_key or known_hosts.get(entry))
        _negotiate(transport, deadline)
        verify_host_key(transport.get_remote_server_key(), config, known_hosts, entry)
        _authenticate(transport, login.username, credentials.password, key, deadline)
    except BaseException:
        transport.close()
        raise
    return transport


def _prefer_known_key_type(transport: paramiko.Transport, expected: str | None) -> None:
    # Ask for the key type we know, so a server with several keys shows the one we can check.
    if expected is None:
        return
    name = _known_key(expected).get_name()
    transport.get_security_options().key_types = _SIGNATURE_ALGORITHMS.get(name, (name,))


def _negotiate(transport: paramiko.Transport, deadline: float) -> None:
    # Paramiko's own waits get a second of slack so that our deadline is what fires first.
    slack = _left(deadline) + 1.0
    transport.banner_timeout = transport.handshake_timeout = slack
    done = threading.Event()
    transport.start_client(event=done)
    if not done.wait(_left(deadline)):
        raise TimeoutError("no SSH banner and key exchange before the deadline")
    if not transport.is_active():
        raise transport.get_exception() or paramiko.SSHException("key exchange failed")


def _authenticate(
    transport: paramiko.Transport,
    username: str,
    password: str | None,
    key: paramiko.PKey | None,
    deadline: float,
) -> None:
    transport.auth_timeout = _left(deadline)
    try:
        if key is not None:
            transport.auth_publickey(username, key)
        else:
            transport.auth_password(username, password or "")
    except paramiko.AuthenticationException as exc:
        method = "public key" if key is not None else "password"
        raise ProbeError(
            ErrorClass.AUTH, f"{username}: {method} authentication refused ({exc})"
        ) from None


def run_command(
    channel: paramiko.Channel, command: str, deadline: float, cap: int = MAX_OUTPUT_BYTES
) -> CommandOutput:
    """Run `command` on an open channel; read at most `cap` bytes, before the deadline."""
    with channel:
        channel.set_combine_stderr(True)
        channel.settimeout(_left(deadline))
        channel.exec_command(command)
        chunks, size = [], 0
        while size <= cap:
            channel.settimeout(_left(deadline))
            data = channel.recv(32768)
            if not data:
                break
            chunks.append(data)
            size += len(data)
    text = b"".join(chunks)[:cap].decode("utf-8", errors="replace")
    return CommandOutput(text=text, truncated=size > cap)


_left = sshshell.left_s


def split_sections(text: str, mark: str = MARK) -> dict[str, list[str]]:
    """A fixed command's output, cut into the sections its `mark` lines open."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(mark):
            current = sections.setdefault(line[len(mark) :].strip(), [])
        elif current is not None:
            current.append(line)
    return sections


def parse_os_release(lines: list[str]) -> dict[str, str]:
    """NAME and VERSION_ID from /etc/os-release, as os_name and os_version."""
    values = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip().strip("\"'")
    facts = {"os_name": values.get("NAME"), "os_version": values.get("VERSION_ID")}
    return {name: value for name, value in facts.items() if value}


def parse_uname(lines: list[str]) -> dict[str, str]:
    """The OS type (`linux`, `freebsd`, `darwin`) and kernel release from `uname -sr`."""
    words = lines[0].split() if lines else []
    if len(words) < 2:
        return {}
    return {"os_type": words[0].lower(), "kernel": words[1]}


def parse_uptime(lines: list[str]) -> dict[str, float]:
    """Seconds since boot, from /proc/uptime."""
    value = _number(_word(lines, 0), float)
    return {} if value is None else {"uptime_s": value}


def parse_nproc(lines: list[str]) -> dict[str, int]:
    """The number of online CPUs."""
    value = _number(_word(lines, 0), int)
    return {} if value is None else {"cpu_count": value}


def parse_loadavg(lines: list[str]) -> dict[str, float]:
    """The 1, 5 and 15 minute load averages, from /proc/loadavg."""
    loads = [_number(_word(lines, i), float) for i in range(3)]
    found = [load for load in loads if load is not None]
    if len(found) < len(loads):
        return {}
    return dict(zip(("load_1", "load_5", "load_15"), found, strict=True))


def parse_meminfo(lines: list[str]) -> dict[str, int]:
    """Total and available memory in bytes, from /proc/meminfo (kB values)."""
    kib = {}
    for line in lines:
        name, _, rest = line.partition(":")
        value = _number(rest.split()[0] if rest.split() else "", int)
        if value is not None:
            kib[name.strip()] = value
    available = kib.get("MemAvailable", kib.get("MemFree"))
    facts = {"memory_total_bytes": kib.get("MemTotal"), "memory_available_bytes": available}
    return {name: value * 1024 for name, value in facts.items() if value is not None}


def parse_df(lines: list[str]) -> dict[str, int]:
    """Size and free space of / in bytes, from `df -Pk /` (the device name may hold spaces)."""
    words = lines[-1].split() if len(lines) >= 2 else []
    total = _number(words[-5], int) if len(words) >= 6 else None
    free = _number(words[-3], int) if len(words) >= 6 else None
    if total is None or free is None:
        return {}
    return {"disk_total_bytes": total * 1024, "disk_free_bytes": free * 1024}


_PARSERS: dict[str, Callable[[list[str]], Mapping[str, Any]]] = {
    "os-release": parse_os_release,
    "uname": parse_uname,
    "uptime": parse_uptime,
    "nproc": parse_nproc,
    "loadavg": parse_loadavg,
    "meminfo": parse_meminfo,
    "df": parse_df,
}


def parse_facts(text: str) -> dict[str, Any]:
    """Every fact the facts command's output holds; a missing section just adds nothing."""
    sections = split_sections(text)
    facts: dict[str, Any] = {}
    for name, parse in _PARSERS.items():
        facts.update(parse(sections.get(name, [])))
    return facts


def observe(output: CommandOutput) -> Observation:
    """The observation for the facts command's output: a warning when it was cut or garbled."""
    facts = parse_facts(output.text)
    if output.truncated:
        message = f"facts output exceeded {MAX_OUTPUT_BYTES} bytes and was cut"
    elif f"{MARK}end" not in output.text:
        message = "facts output is incomplete: the remote shell did not run the facts command"
    else:
        return Observation(
            facts=facts, checks={"ssh.can_connect": Status.OK, "ssh.facts": Status.OK}
        )
    checks = {"ssh.can_connect": Status.OK, "ssh.facts": Status.WARNING}
    return Observation(facts=facts, checks=checks, status=Status.WARNING, message=message)


def _word(lines: list[str], index: int) -> str:
    words = lines[0].split() if lines else []
    return words[index] if index < len(words) else ""


def _number(text: str, kind: type[_N]) -> _N | None:
    try:
        return kind(text)
    except ValueError:
        return None


class SshProbe(Probe):
    """Logs in (or reuses a login), checks the host key, and reads the host's facts."""

    kind = "ssh"

    def __init__(
        self,
        raw: Mapping[str, Any],
        resolver: SecretResolver,
        timeout_s: float,
        known_hosts: KnownHosts,
        pool: TransportPool,
    ) -> None:
        super().__init__(timeout_s)
        self._raw = raw
        self._resolver = self.tracking(resolver)
        self._known_hosts = known_hosts
        self._pool = pool

    @classmethod
    def of(cls, target: Target) -> Self:
        """The SSH probe of one instance.

        Known hosts default to one store in this process's memory, the pool to the process's
        shared transport cache.
        """
        known = _default_known_hosts if target.known_hosts is None else target.known_hosts
        pool = default_pool if target.pool is None else target.pool
        return cls(target.raw(), target.resolver, target.timeout_s, known, pool)

    def config(self) -> Config:
        """The validated connection settings; a CONFIG ProbeError that never echoes a value."""
        return parse_config(Config, self._raw)

    def check(self) -> Observation:
        """Connect, verify, authenticate and run the facts command, all within the timeout.

        The facts command runs in a shell kept open on the login (`sshshell`): on a cached
        login a check is then two SSH packets instead of about ten.
        """
        return observe(self._run(FACTS_COMMAND, MAX_OUTPUT_BYTES, self._in_shell))

    def execute(self, command: str, cap: int = MAX_OUTPUT_BYTES) -> CommandOutput:
        """Run one fixed `command` over a verified (or cached) login, within the timeout.

        Raises like `check()`; discovery calls it with its own fixed command, in a channel
        of its own.
        """
        return self._run(command, cap, self._in_channel)

    def _run(self, command: str, cap: int, runner: _Runner) -> CommandOutput:
        deadline = time.monotonic() + self.timeout_s
        config = self.config()
        login = self._login(config)
        key = (config.host, config.port, config.username, login.identity)
        opener = partial(connect, config, login, self._known_hosts, deadline)
        for _ in range(2):  # a dead cached login is replaced once
            output = self._attempt(key, opener, partial(runner, config, deadline, command, cap))
            if output is not None:
                return output
        raise ProbeError(ErrorClass.PROTOCOL, "cached SSH connections kept failing")

    def classify(self, exc: BaseException) -> ErrorClass:
        """Paramiko's failures in the probe's vocabulary."""
        if isinstance(exc, paramiko.BadHostKeyException):
            return ErrorClass.HOST_KEY
        if isinstance(exc, paramiko.AuthenticationException):
            return ErrorClass.AUTH
        if isinstance(exc, paramiko.SSHException | EOFError):
            return ErrorClass.PROTOCOL
        return super().classify(exc)

    def _login(self, config: Config) -> Login:
        references = (config.private_key, config.private_key_passphrase, config.password)
        proof = "\0".join(self._identity_part(reference) for reference in references).encode()
        identity = hmac.new(_IDENTITY_SALT, proof, hashlib.sha256).hexdigest()
        return Login(config.username, identity, partial(self._credentials, *references))

    def _identity_part(self, reference: str | None) -> str:
        # An `enc:` token stands for one value for good, so it identifies the login as well as
        # the value does, and a check on a cached login decrypts nothing; `env:` and `file:`
        # may change behind the same name, so those are read every time.
        if reference is None:
            return ""
        if reference.startswith("enc:"):
            return "token:" + reference
        return "value:" + (self._reveal(reference) or "")

    def _credentials(self, key: str | None, passphrase: str | None, password: str | None):
        return Credentials(self._reveal(key), self._reveal(passphrase), self._reveal(password))

    def _reveal(self, reference: str | None) -> str | None:
        if reference is None:
            return None
        return self._resolver.resolve(reference)

    def _attempt(
        self,
        key: tuple[str, int, str, str],
        opener: Callable[[], paramiko.Transport],
        runner: Callable[[paramiko.Transport, bool], CommandOutput | None],
    ) -> CommandOutput | None:
        with self._pool.lease(key, opener) as (transport, reused):
            output = runner(transport, reused)
            if output is None:
                self._pool.discard(key, transport)
            return output

    def _in_channel(
        self,
        config: Config,
        deadline: float,
        command: str,
        cap: int,
        transport: paramiko.Transport,
        reused: bool,
    ) -> CommandOutput | None:
        """The command's output in a channel of its own; None when the login turned out dead."""
        channel = self._open_channel(config, transport, reused, deadline)
        return None if channel is None else run_command(channel, command, deadline, cap)

    def _in_shell(
        self,
        config: Config,
        deadline: float,
        command: str,
        cap: int,
        transport: paramiko.Transport,
        reused: bool,
    ) -> CommandOutput | None:
        """The command's output from the login's kept shell; None when the login turned out dead."""
        if reused:
            self._verify_again(config, transport)
        shell = sshshell.take(transport)
        try:
            shell = shell or sshshell.open_shell(transport, _channel_timeout(deadline, reused))
            done = sshshell.run(shell, command, deadline, cap)
        except (paramiko.SSHException, EOFError, OSError, sshshell.ShellGone) as exc:
            _close_quietly(shell)
            if reused and not isinstance(exc, TimeoutError):
                return None
            if isinstance(exc, sshshell.ShellGone):
                return CommandOutput(text="", truncated=False)
            raise
        except BaseException:
            _close_quietly(shell)
            raise
        if done.reusable:
            sshshell.give_back(transport, shell)
        else:
            shell.close()
        return CommandOutput(done.data.decode("utf-8", errors="replace"), done.truncated)

    def _open_channel(
        self, config: Config, transport: paramiko.Transport, reused: bool, deadline: float
    ) -> paramiko.Channel | None:
        """A session channel; None when a reused transport turned out to be dead."""
        if not reused:
            return transport.open_session(timeout=_left(deadline))
        self._verify_again(config, transport)
        try:
            return transport.open_session(timeout=_channel_timeout(deadline, reused))
        except (paramiko.SSHException, EOFError, OSError):
            return None

    def _verify_again(self, config: Config, transport: paramiko.Transport) -> None:
        # A cached login is checked against today's record: a key changed since is refused.
        entry = host_entry(config.host, config.port)
        verify_host_key(transport.get_remote_server_key(), config, self._known_hosts, entry)


_Runner = Callable[..., CommandOutput | None]


def _channel_timeout(deadline: float, reused: bool) -> float:
    # A reused transport that cannot open a channel soon is dead: replace it, don't wait.
    left = _left(deadline)
    return min(left, REUSED_CHANNEL_TIMEOUT_S) if reused else left


def _close_quietly(channel: paramiko.Channel | None) -> None:
    if channel is not None:
        with suppress(Exception):  # closing a channel of a dead transport may fail; it is gone
            channel.close()


def instance_facts(facts: Mapping[str, Any]) -> InstanceFacts:
    """What the instance row keeps of this probe's facts: `os_type`, `os_version`, `resources`."""
    version = " ".join(str(v) for v in (facts.get("os_name"), facts.get("os_version")) if v)
    return InstanceFacts(
        clip(facts.get("os_type")),
        clip(version or facts.get("kernel")),
        resources(
            facts.get("cpu_count"),
            {
                "total_bytes": facts.get("memory_total_bytes"),
                "available_bytes": facts.get("memory_available_bytes"),
            },
            {
                "total_bytes": facts.get("disk_total_bytes"),
                "free_bytes": facts.get("disk_free_bytes"),
            },
        ),
    )


from_instance = SshProbe.from_instance
