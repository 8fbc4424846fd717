"""Fixed commands run in a shell kept open on a cached SSH login, instead of a channel each.

A command in a channel of its own costs about ten SSH packets (open, confirmation, exec
request, its reply, data, exit status, EOF, close both ways), each one decrypted by
paramiko's reader thread and handed to the checking thread; on a warm login that was most
of a check's client CPU. A shell kept open in one channel takes the command as one data
packet and answers with one: the command's output, then an end line that carries a random
nonce, so the output cannot be confused with what a previous command printed.

A shell is reused only after a clean run: its end line seen, nothing after it, within the
deadline and the cap. Anything else (a timeout, a cut, a shell that exited, text after the
end line) closes it, so a shell never carries a half-read answer into the next check. The
commands are the probe's fixed ones; nothing from an instance's config goes into them.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass

import paramiko

END_MARK = "@@agent-shell-done:"
# A transport may be leased by several checks at once: each needs a shell of its own.
MAX_IDLE_SHELLS = 4


class ShellGone(Exception):
    """The shell (or its transport) ended before it said anything: the login is dead."""


@dataclass(frozen=True)
class ShellOutput:
    """What a command printed, whether it printed more than we kept, and if the shell goes on."""

    data: bytes
    truncated: bool
    reusable: bool


class ShellTransport(paramiko.Transport):
    """A transport that keeps its idle shells; they end when it closes."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.idle_shells: list[paramiko.Channel] = []
        self.shells_lock = threading.Lock()


def take(transport: paramiko.Transport) -> paramiko.Channel | None:
    """An idle shell of `transport` that is still open, or None."""
    if not isinstance(transport, ShellTransport):
        return None
    with transport.shells_lock:
        while transport.idle_shells:
            shell = transport.idle_shells.pop()
            if not (shell.closed or shell.eof_received or shell.exit_status_ready()):
                return shell
    return None


def give_back(transport: paramiko.Transport, shell: paramiko.Channel) -> None:
    """Keep `shell` for the next command on `transport` (closed when enough are kept)."""
    if isinstance(transport, ShellTransport):
        with transport.shells_lock:
            if len(transport.idle_shells) < MAX_IDLE_SHELLS:
                transport.idle_shells.append(shell)
                return
    shell.close()


def open_shell(transport: paramiko.Transport, timeout_s: float) -> paramiko.Channel:
    """A new shell channel: `sh` reading commands from the channel, stderr merged."""
    shell = transport.open_session(timeout=timeout_s)
    shell.set_combine_stderr(True)
    shell.settimeout(timeout_s)
    shell.exec_command("exec sh")
    return shell


def run(shell: paramiko.Channel, command: str, deadline: float, cap: int) -> ShellOutput:
    """Run one fixed one-line `command` in `shell`; read at most `cap` bytes, before the deadline.

    Raises ShellGone when the shell ends before a byte of output (a dead login), TimeoutError
    when the deadline passes.
    """
    end = f"{END_MARK}{secrets.token_hex(8)}"
    trailer = f"\n{end}\n".encode()
    shell.settimeout(left_s(deadline))
    shell.sendall(f"{command} </dev/null; printf '\\n%s\\n' '{end}'\n".encode())
    buffer = bytearray()
    while trailer not in buffer and len(buffer) <= cap + len(trailer):
        shell.settimeout(left_s(deadline))
        data = shell.recv(32768)
        if not data:
            if not buffer:
                raise ShellGone("the shell ended before it answered")
            break
        buffer += data
    return _framed(bytes(buffer), trailer, cap)


def _framed(buffer: bytes, trailer: bytes, cap: int) -> ShellOutput:
    # The trailer's leading newline is ours: the output proper ends before it.
    end = buffer.find(trailer)
    if end < 0:
        return ShellOutput(buffer[:cap], truncated=len(buffer) > cap, reusable=False)
    clean = end + len(trailer) == len(buffer) and end <= cap
    return ShellOutput(buffer[: min(end, cap)], truncated=end > cap, reusable=clean)


def left_s(deadline: float) -> float:
    """Seconds left before `deadline`; a TimeoutError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the SSH check ran out of time")
    return left
