"""A per-process cache of authenticated SSH transports, so a check reuses its connection.

A command on a warm connection costs a few milliseconds instead of a full key exchange and
authentication. The cache is a bounded LRU with idle expiry; a caller leases a transport
(several callers may share one: SSH multiplexes channels) and the cache closes a transport
only when nobody holds it. One transport is built at a time per key, so a burst of checks
against one host makes one connection. After `fork()` the child forgets the parent's
transports without touching their sockets (registered with `os.register_at_fork`).

A cached login proves only that one session process still answers, not that the host's
sshd still accepts logins: stopping the listener (`systemctl stop ssh`) leaves sessions
alive. So a transport is trusted for at most `max_age_s` after its login; the first check
after that logs in afresh, and a host whose listener is gone is seen then (REFUSED).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import paramiko

DEFAULT_MAX_SIZE = 64
DEFAULT_IDLE_S = 300.0
DEFAULT_MAX_AGE_S = 60.0
# Idle expiry walks every entry, so a checkout runs it at most this often, not every time.
EXPIRY_SCAN_EVERY_S = 1.0
# Paramiko's reader thread wakes every 0.1 s on an idle socket (its socket timeout) just to
# look for a close; hundreds of cached transports made thousands of wake-ups a second, all
# fighting for the GIL. Data still wakes the thread at once, and `_close` shuts the socket
# down so a closing transport's thread wakes at once too.
IDLE_WAKEUP_S = 5.0


@dataclass(frozen=True)
class PoolStats:
    """Counters of a pool since it was made (or last cleared)."""

    size: int = 0
    hits: int = 0
    misses: int = 0
    discarded: int = 0
    evicted: int = 0
    aged: int = 0


@dataclass
class _Entry:
    transport: paramiko.Transport
    last_used: float
    created: float
    leases: int = 0
    retired: bool = False


class TransportPool:
    """A bounded LRU of live transports, keyed by whatever identifies a login."""

    def __init__(
        self,
        max_size: int = DEFAULT_MAX_SIZE,
        idle_s: float = DEFAULT_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
        max_age_s: float = DEFAULT_MAX_AGE_S,
    ) -> None:
        self.max_size = max_size
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._reset()

    @contextmanager
    def lease(
        self, key: Hashable, connect: Callable[[], paramiko.Transport]
    ) -> Iterator[tuple[paramiko.Transport, bool]]:
        """A transport for `key` and whether it was reused; `connect()` makes one when needed."""
        entry, reused = self._checkout(key, connect)
        try:
            yield entry.transport, reused
        finally:
            self._release(entry)

    def discard(self, key: Hashable, transport: paramiko.Transport) -> None:
        """Drop a transport found dead; it is closed once its last lease ends."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.transport is transport:
                self._retire(key)
                self._stats["discarded"] += 1

    def clear(self, close: bool = True) -> None:
        """Forget every transport; `close=False` after fork, where the sockets are the parent's."""
        with self._lock:
            entries = list(self._entries.values())
        if close:
            for entry in entries:
                _close(entry.transport)
        self._reset()

    def stats(self) -> PoolStats:
        """The pool's counters and current size."""
        with self._lock:
            return PoolStats(size=len(self._entries), **self._stats)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._connecting: dict[Hashable, threading.Lock] = {}
        self._to_close: list[_Entry] = []
        self._stats = {"hits": 0, "misses": 0, "discarded": 0, "evicted": 0, "aged": 0}
        self._next_scan = float("-inf")

    def _checkout(
        self, key: Hashable, connect: Callable[[], paramiko.Transport]
    ) -> tuple[_Entry, bool]:
        with self._key_lock(key):
            entry = self._take(key)
            if entry is not None:
                return entry, True
            return self._insert(key, connect()), False

    def _key_lock(self, key: Hashable) -> threading.Lock:
        with self._lock:
            return self._connecting.setdefault(key, threading.Lock())

    def _take(self, key: Hashable) -> _Entry | None:
        with self._lock:
            self._expire_idle()
            entry = self._entries.get(key)
            unfit = self._unfit(entry) if entry is not None else None
            if unfit is not None:
                self._retire(key)
                self._stats[unfit] += 1
                entry = None
            self._stats["hits" if entry else "misses"] += 1
            if entry is not None:
                entry.leases += 1
                self._entries.move_to_end(key)
        self._close_retired()
        return entry

    def _unfit(self, entry: _Entry) -> str | None:
        """Why a cached transport must not be reused (the counter to bump), or None."""
        if not entry.transport.is_active():
            return "discarded"
        if self._clock() - entry.created > self.max_age_s:
            return "aged"
        return None

    def _insert(self, key: Hashable, transport: paramiko.Transport) -> _Entry:
        transport.sock.settimeout(IDLE_WAKEUP_S)
        now = self._clock()
        entry = _Entry(transport, now, now, leases=1)
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.max_size:
                self._retire(next(iter(self._entries)))
                self._stats["evicted"] += 1
        self._close_retired()
        return entry

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.leases -= 1
            entry.last_used = self._clock()
            close = entry.retired and entry.leases == 0
        if close:
            _close(entry.transport)

    def _expire_idle(self) -> None:
        now = self._clock()
        if now < self._next_scan:
            return
        self._next_scan = now + min(EXPIRY_SCAN_EVERY_S, self.idle_s)
        cutoff = now - self.idle_s
        for key, entry in list(self._entries.items()):
            if entry.leases == 0 and entry.last_used < cutoff:
                self._retire(key)
                self._stats["evicted"] += 1

    def _retire(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        entry.retired = True
        self._to_close.append(entry)

    def _close_retired(self) -> None:
        with self._lock:
            idle = [entry for entry in self._to_close if entry.leases == 0]
            self._to_close = []
        for entry in idle:
            _close(entry.transport)


def _close(transport: paramiko.Transport) -> None:
    """Close a transport now: shut the socket down first, so its reader thread wakes."""
    with suppress(OSError):  # already closed: close() below is all there is to do
        transport.sock.shutdown(socket.SHUT_RDWR)
    transport.close()


default_pool = TransportPool()


def clear_default_pool(close: bool = True) -> None:
    """Forget the process's cached transports (Celery: on worker shutdown, or after fork)."""
    default_pool.clear(close=close)


os.register_at_fork(after_in_child=lambda: default_pool.clear(close=False))
